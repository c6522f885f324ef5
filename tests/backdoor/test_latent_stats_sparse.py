"""Sparse codes give the accumulators the same results as the dense codes they stand for, and state follows the
codes' device: LatentStats, PromptFeatures and the pipeline's ``accumulate`` (sparse SAE vs the dense fallback)."""

import numpy as np
import pytest
import torch
from sae_fixtures import batches, random_batchtopk

from cbd_plugin.backdoor.latent_stats import LatentStats, PromptFeatures
from cbd_plugin.backdoor.pipeline import PassStats, accumulate
from cbd_plugin.backdoor.roles import DECISION, FIRE, ROLES
from cbd_plugin.sae.metrics import ReconstructionStats
from cbd_plugin.sae.sparse import SparseCodes

N_LATENTS, N_GROUPS, D, M = 40, 5, 6, 6


def labelled_tokens(seed=0, n_prompts=30):
    """Prompts of random length (one decision token, two fire tokens), group per prompt."""
    rng = np.random.default_rng(seed)
    prompt_id, role = [], []
    for p in range(n_prompts):
        n = int(rng.integers(4, 9))
        r = rng.choice([0, 3], size=n)
        r[-3] = DECISION
        r[-2:] = FIRE
        prompt_id += [p] * n
        role += r.tolist()
    prompt_id, role = np.array(prompt_id), np.array(role)
    return rng, rng.integers(0, N_GROUPS, size=n_prompts)[prompt_id], role, prompt_id


def sparse_codes(rng, n, signed=False):
    """Codes of ``n`` tokens with up to M distinct active latents each; the rest padding: value 0 at index 0 or at
    one of the row's active latents (so a padding slot repeats an active index). ``signed``: negative values too."""
    indices = torch.tensor(np.stack([rng.permutation(N_LATENTS)[:M] for _ in range(n)]))
    values = torch.tensor(rng.exponential(size=(n, M)) + 0.1, dtype=torch.float32)
    if signed:
        values *= torch.tensor(rng.choice([-1.0, 1.0], size=(n, M)), dtype=torch.float32)
    n_active = torch.tensor(rng.integers(0, M + 1, size=n))
    padding = torch.arange(M)[None, :] >= n_active[:, None]
    values[padding] = 0
    repeat = padding & torch.tensor(rng.random((n, M)) < 0.5) & (n_active[:, None] > 0)
    indices = torch.where(repeat, indices[:, :1].expand(n, M), torch.where(padding, 0, indices))
    return SparseCodes(values, indices)


def part(codes: SparseCodes, s) -> SparseCodes:
    return SparseCodes(codes.top_acts[s], codes.top_indices[s])


@pytest.mark.parametrize("signed", [False, True])
def test_latent_stats_sparse_equals_dense(signed):
    rng, group, role, _ = labelled_tokens()
    codes = sparse_codes(rng, len(role), signed)
    dense = codes.to_dense(N_LATENTS)
    sparse_stats, dense_stats = LatentStats(N_LATENTS, N_GROUPS), LatentStats(N_LATENTS, N_GROUPS)
    for s in batches(len(role)):
        sparse_stats.update(part(codes, s), group[s], role[s])
        dense_stats.update(dense[s], group[s], role[s])
    assert sparse_stats.sums.dtype == sparse_stats.squares.dtype == torch.float64
    torch.testing.assert_close(sparse_stats.tokens, dense_stats.tokens, rtol=0, atol=0)
    torch.testing.assert_close(sparse_stats.fires, dense_stats.fires, rtol=0, atol=0)
    for name in ("sums", "squares"):
        torch.testing.assert_close(getattr(sparse_stats, name), getattr(dense_stats, name), rtol=1e-12, atol=1e-12)
    for r in range(len(ROLES)):
        for got, want in zip(sparse_stats.moments([0, 2], r), dense_stats.moments([0, 2], r)):
            np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


def test_latent_stats_rejects_mismatched_sparse_codes():
    codes = SparseCodes(torch.zeros(3, M), torch.zeros(3, M - 1, dtype=torch.long))
    with pytest.raises(ValueError, match="SparseCodes"):
        LatentStats(N_LATENTS, N_GROUPS).update(codes, np.zeros(3, int), np.zeros(3, int))


@pytest.mark.parametrize("candidates", [[5, 0, 17, 39], [3, 3, 11], list(range(N_LATENTS)), []])
@pytest.mark.parametrize("signed", [False, True])
def test_prompt_features_sparse_equals_dense(candidates, signed):
    """Non-candidate latents, repeated candidates, every latent; negative values (where an inactive token's 0
    decides the prompt's max)."""
    rng, _, role, prompt_id = labelled_tokens(1)
    codes = sparse_codes(rng, len(role), signed)
    dense = codes.to_dense(N_LATENTS)
    inputs = torch.randn(len(role), D)
    n_prompts = int(prompt_id.max()) + 1
    sparse_f, dense_f = PromptFeatures(n_prompts, candidates, D), PromptFeatures(n_prompts, candidates, D)
    for s in batches(len(role)):
        sparse_f.update(part(codes, s), inputs[s], prompt_id[s], role[s])
        dense_f.update(dense[s], inputs[s], prompt_id[s], role[s])
    for name in ("decision", "prompt_max"):
        np.testing.assert_array_equal(sparse_f.feature(name), dense_f.feature(name))
    np.testing.assert_array_equal(sparse_f.inputs(), dense_f.inputs())
    # and both equal the one-shot definition
    x = dense.numpy()[:, np.asarray(candidates, dtype=int)]
    for p in range(n_prompts):
        in_prompt = (prompt_id == p) & (role != FIRE)
        decision = np.flatnonzero((prompt_id == p) & (role == DECISION))[0]
        np.testing.assert_array_equal(sparse_f.feature("prompt_max")[p], x[in_prompt].max(0))
        np.testing.assert_array_equal(sparse_f.feature("decision")[p], x[decision])


def test_prompt_features_sparse_equals_dense_on_shuffled_tokens():
    """Batches whose prompts are not consecutive (state rows updated through an index, not a slice)."""
    rng, _, role, prompt_id = labelled_tokens(4)
    order = rng.permutation(len(role))
    role, prompt_id = role[order], prompt_id[order]
    codes = sparse_codes(rng, len(role), signed=True)
    dense, inputs = codes.to_dense(N_LATENTS), torch.randn(len(role), D)
    n_prompts = int(prompt_id.max()) + 1
    sparse_f, dense_f = PromptFeatures(n_prompts, [7, 2, 30], D), PromptFeatures(n_prompts, [7, 2, 30], D)
    for s in batches(len(role), sizes=(50, 9, 31)):
        sparse_f.update(part(codes, s), inputs[s], prompt_id[s], role[s])
        dense_f.update(dense[s], inputs[s], prompt_id[s], role[s])
    for name in ("decision", "prompt_max"):
        np.testing.assert_array_equal(sparse_f.feature(name), dense_f.feature(name))
    np.testing.assert_array_equal(sparse_f.inputs(), dense_f.inputs())


def test_state_follows_the_codes_device_and_dtype():
    """State moves to the first batch's device and stays there; sums float64, features float32. LatentStats on
    'meta' (no data): its updates run without a host copy (a .cpu() or a data-dependent size would raise)."""
    rng, group, role, prompt_id = labelled_tokens(2)
    codes = sparse_codes(rng, len(role))
    meta = SparseCodes(codes.top_acts.to("meta"), codes.top_indices.to("meta"))
    stats = LatentStats(N_LATENTS, N_GROUPS)
    stats.update(meta, group, role)
    assert {t.device.type for t in (stats.tokens, stats.fires, stats.sums, stats.squares)} == {"meta"}
    assert stats.sums.dtype == stats.squares.dtype == torch.float64
    on_cpu = LatentStats(N_LATENTS, N_GROUPS, device="cpu")
    on_cpu.update(codes, group, role)
    assert on_cpu.sums.device.type == "cpu" and isinstance(on_cpu.select([0], DECISION)[2], np.ndarray)
    features = PromptFeatures(int(prompt_id.max()) + 1, [1, 4], D)
    features.update(codes, torch.zeros(len(role), D), prompt_id, role)
    assert {t.device.type for t in (features.decision, features.prompt_max, features.decision_input)} == {"cpu"}
    assert features.decision.dtype == features.prompt_max.dtype == torch.float32


def test_prompt_features_padding_repeating_a_negative_active_latent():
    """A prompt whose every token has latent 3 active and negative: its max is negative, although a padding
    slot (value 0) repeats index 3; one token without latent 3 makes the max 0."""
    values = torch.tensor([[-2.0, 0.0], [-1.0, 0.0], [-3.0, 0.0], [-1.5, 0.5]])
    indices = torch.tensor([[3, 3], [3, 0], [3, 3], [3, 1]])
    role, prompt_id = np.array([0, DECISION, 0, DECISION]), np.array([0, 0, 1, 1])
    codes = SparseCodes(values, indices)
    for candidates in ([3], [0, 1, 3]):
        sparse_f, dense_f = PromptFeatures(2, candidates, D), PromptFeatures(2, candidates, D)
        sparse_f.update(codes, torch.zeros(4, D), prompt_id, role)
        dense_f.update(codes.to_dense(N_LATENTS), torch.zeros(4, D), prompt_id, role)
        np.testing.assert_array_equal(sparse_f.feature("prompt_max"), dense_f.feature("prompt_max"))
        np.testing.assert_array_equal(sparse_f.feature("decision"), dense_f.feature("decision"))
    np.testing.assert_array_equal(dense_f.feature("prompt_max")[:, 2], [-1.0, -1.5])


class DenseOnly(torch.nn.Module):
    """An SAE without encode_sparse/decode_sparse (as a wrapped host SAE): accumulate falls back to dense codes."""

    def __init__(self, sae):
        super().__init__()
        self.sae, self.dict_size, self.activation_dim = sae, sae.dict_size, sae.activation_dim

    def encode(self, x):
        return self.sae.encode(x)

    def decode(self, f):
        return self.sae.decode(f)


def test_accumulate_sparse_equals_the_dense_fallback():
    sae = random_batchtopk(D, N_LATENTS)
    _, group, role, prompt_id = labelled_tokens(3)
    inputs = torch.randn(len(role), D)
    n_prompts = int(prompt_id.max()) + 1
    fired = np.arange(n_prompts) % 2 == 0
    results = []
    for model in (sae, DenseOnly(sae)):
        stream = (
            (inputs[s], {"group": group[s], "role": role[s], "prompt_id": prompt_id[s]}) for s in batches(len(role))
        )
        acc = PassStats(
            LatentStats(N_LATENTS, N_GROUPS),
            PromptFeatures(n_prompts, np.arange(N_LATENTS), D),
            ReconstructionStats(N_LATENTS),
            ReconstructionStats(N_LATENTS),
        )
        results.append(accumulate(stream, model, acc, fired))
    sparse, dense = results
    for name in ("tokens", "fires", "sums", "squares"):
        torch.testing.assert_close(getattr(sparse.stats, name), getattr(dense.stats, name), rtol=1e-6, atol=1e-9)
    for name in ("decision", "prompt_max"):
        np.testing.assert_allclose(sparse.features.feature(name), dense.features.feature(name), rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(sparse.features.inputs(), dense.features.inputs())
    for name in ("reconstruction", "reconstruction_fire"):
        assert getattr(sparse, name).result() == pytest.approx(getattr(dense, name).result(), rel=1e-6)
