"""Streaming accumulators equal a one-shot computation on the same tokens split into uneven batches."""

import numpy as np
import pytest
import torch
from sae_fixtures import batches, random_batchtopk

from cbd_plugin.backdoor.latent_stats import LatentStats, PromptFeatures
from cbd_plugin.backdoor.pipeline import PassStats, accumulate
from cbd_plugin.backdoor.roles import DECISION, FIRE, ROLES
from cbd_plugin.sae.metrics import ReconstructionStats

N_LATENTS, N_GROUPS, D = 24, 5, 6


def tokens(seed=0, n_prompts=30):
    """Synthetic prompts of random length: roles with exactly one decision token, sparse non-negative latents."""
    rng = np.random.default_rng(seed)
    prompt_id, role = [], []
    for p in range(n_prompts):
        n = int(rng.integers(4, 9))
        r = rng.choice([0, 3], size=n)  # trigger / other
        r[-3] = DECISION
        r[-2:] = FIRE
        prompt_id += [p] * n
        role += r.tolist()
    prompt_id, role = np.array(prompt_id), np.array(role)
    group = rng.integers(0, N_GROUPS, size=n_prompts)[prompt_id]
    latents = torch.tensor(
        rng.exponential(size=(len(role), N_LATENTS)) * (rng.random((len(role), N_LATENTS)) < 0.3), dtype=torch.float32
    )
    return latents, group, role, prompt_id


def test_latent_stats_streaming_equals_one_shot():
    latents, group, role, _ = tokens()
    stats = LatentStats(N_LATENTS, N_GROUPS)
    for s in batches(len(role)):
        stats.update(latents[s], group[s], role[s])
    x = latents.numpy().astype(np.float64)
    for g in range(N_GROUPS):
        for r in range(len(ROLES)):
            mask = (group == g) & (role == r)
            n, fires, sums, squares = stats.select([g], r)
            assert n == mask.sum()
            np.testing.assert_array_equal(fires, (x[mask] > 0).sum(0))
            np.testing.assert_allclose(sums, x[mask].sum(0), rtol=1e-12)
            np.testing.assert_allclose(squares, (x[mask] ** 2).sum(0), rtol=1e-12)
    rate, mean, var = stats.moments([0, 1], DECISION)
    mask = np.isin(group, [0, 1]) & (role == DECISION)
    np.testing.assert_allclose(rate, (x[mask] > 0).mean(0))
    np.testing.assert_allclose(mean, x[mask].mean(0))
    np.testing.assert_allclose(var, x[mask].var(0), atol=1e-12)
    assert np.isnan(LatentStats(N_LATENTS, N_GROUPS).moments([0], DECISION)[1]).all()


def test_latent_stats_rejects_wrong_shape():
    with pytest.raises(ValueError, match="n_tokens"):
        LatentStats(N_LATENTS, N_GROUPS).update(torch.zeros(3, N_LATENTS + 1), np.zeros(3, int), np.zeros(3, int))


def test_prompt_features_streaming_equals_one_shot():
    latents, _, role, prompt_id = tokens(1)
    inputs = torch.randn(len(role), D)
    candidates = np.array([5, 0, 17])
    features = PromptFeatures(int(prompt_id.max()) + 1, candidates, D)
    for s in batches(len(role)):
        features.update(latents[s], inputs[s], prompt_id[s], role[s])
    x = latents.numpy()[:, candidates]
    for p in range(features.n_prompts):
        in_prompt = (prompt_id == p) & (role != FIRE)
        decision = np.flatnonzero((prompt_id == p) & (role == DECISION))[0]
        np.testing.assert_array_equal(features.feature("prompt_max")[p], x[in_prompt].max(0))
        np.testing.assert_array_equal(features.feature("decision")[p], x[decision])
        np.testing.assert_allclose(features.inputs()[p], inputs[decision].numpy())


def test_prompt_features_demand_every_decision_token():
    features = PromptFeatures(3, [0], D)
    features.update(torch.ones(1, 2), torch.ones(1, D), np.array([0]), np.array([DECISION]))
    with pytest.raises(ValueError, match="2 of 3 prompts"):
        features.feature("decision")


def test_accumulate_encodes_with_the_sae_and_feeds_every_accumulator():
    sae = random_batchtopk(D, N_LATENTS)
    _, group, role, prompt_id = tokens(3)
    inputs = torch.randn(len(role), D)
    stream = ((inputs[s], {"group": group[s], "role": role[s], "prompt_id": prompt_id[s]}) for s in batches(len(role)))
    n_prompts = int(prompt_id.max()) + 1
    acc = PassStats(
        LatentStats(N_LATENTS, N_GROUPS),
        PromptFeatures(n_prompts, [1, 2], D),
        ReconstructionStats(N_LATENTS),
        ReconstructionStats(N_LATENTS),
    )
    accumulate(stream, sae, acc, fired=np.arange(n_prompts) % 2 == 0)  # fire tokens of even prompts only
    with torch.no_grad():
        latents = sae.encode(inputs)
        x_hat = sae.decode(latents)
    one_shot = LatentStats(N_LATENTS, N_GROUPS)
    one_shot.update(latents, group, role)
    torch.testing.assert_close(acc.stats.sums, one_shot.sums)
    torch.testing.assert_close(acc.stats.fires, one_shot.fires)
    fire = (role == FIRE) & (prompt_id % 2 == 0)
    assert 0 < fire.sum() < (role == FIRE).sum()
    rec = ReconstructionStats(N_LATENTS)
    rec.update(inputs[fire], x_hat[fire], latents[fire])
    assert acc.reconstruction_fire.result() == pytest.approx(rec.result())
    assert acc.reconstruction.n == len(role)
