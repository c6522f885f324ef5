"""Ground truth from code no one here wrote: SAEs built or trained with SAELens and sparsify, saved with their own
save functions, loaded with ``load_dictionary`` and compared with the library's own ``encode`` (1e-5); the SAELens
export of every plugin SAE, loaded back with SAELens; Gemma Scope and upstream dictionary_learning files against
their published formulas (no library ships them); and the conjunction analysis with a sparsify-trained SAE.

Needs the ``interop`` extra (``pip install -e .[interop]``); each test skips with the reason when it is absent.
"""

import json

import numpy as np
import pytest
import torch

from cbd_plugin.sae import BatchTopKSAE, JumpReLUSAE, ReLUSAE, TopKSAE, load_dictionary

D, DICT, K = 16, 64, 4
TOL = 1e-5


def inputs(n: int = 40, seed: int = 7) -> torch.Tensor:
    return torch.randn(n, D, generator=torch.Generator().manual_seed(seed)) * 2 + 0.5


def randomise(module: torch.nn.Module, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            p.copy_(
                torch.rand(p.shape, generator=g) * 0.3
                if "threshold" in name
                else torch.randn(p.shape, generator=g) * (0.3 if p.ndim == 1 else 1.0)
            )


def max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max())


# --- SAELens: built with SAELens, saved with save_model / save_inference_model ---


def saelens_sae(arch: str, apply_b_dec: bool, normalize: str = "none"):
    sae_lens = pytest.importorskip("sae_lens", reason="the interop extra (sae-lens) is not installed")
    configs = {
        "standard": sae_lens.StandardSAEConfig,
        "topk": sae_lens.TopKSAEConfig,
        "jumprelu": sae_lens.JumpReLUSAEConfig,
    }
    extra = {"k": K} if arch == "topk" else {}
    cfg = configs[arch](d_in=D, d_sae=DICT, apply_b_dec_to_input=apply_b_dec, normalize_activations=normalize, **extra)
    sae = {"standard": sae_lens.StandardSAE, "topk": sae_lens.TopKSAE, "jumprelu": sae_lens.JumpReLUSAE}[arch](cfg)
    randomise(sae, seed=len(arch) + apply_b_dec)
    return sae


@pytest.mark.parametrize("apply_b_dec", [True, False])
@pytest.mark.parametrize("arch, ours", [("standard", ReLUSAE), ("topk", TopKSAE), ("jumprelu", JumpReLUSAE)])
def test_saelens_saved_sae_encodes_as_saelens(tmp_path, arch, ours, apply_b_dec):
    theirs = saelens_sae(arch, apply_b_dec)
    theirs.save_model(tmp_path / "sae")
    loaded = load_dictionary(tmp_path / "sae", d_model=D)
    assert type(loaded) is ours and loaded.subtract_b_dec is apply_b_dec
    x = inputs()
    with torch.no_grad():
        f, f_ref = loaded.encode(x), theirs.encode(x)
        assert (f_ref != 0).any() and (f_ref == 0).any()
        assert max_diff(f, f_ref) <= TOL
        assert max_diff(loaded.decode(f_ref), theirs.decode(f_ref)) <= 1e-4


def test_saelens_expected_average_only_in_reads_as_load_from_disk(tmp_path):
    sae_lens = pytest.importorskip("sae_lens", reason="the interop extra (sae-lens) is not installed")
    saelens_sae("topk", True, normalize="expected_average_only_in").save_model(tmp_path / "sae")
    reference = sae_lens.SAE.load_from_disk(tmp_path / "sae")
    with torch.no_grad():
        assert max_diff(load_dictionary(tmp_path / "sae").encode(inputs()), reference.encode(inputs())) <= TOL


@pytest.mark.parametrize("training_class", ["TopKTrainingSAE", "BatchTopKTrainingSAE"])
def test_saelens_trained_sae_loads(tmp_path, training_class):
    """Trained with SAELens's own training forward pass, saved with save_inference_model (BatchTopK saves as JumpReLU
    with its learned threshold)."""
    sae_lens = pytest.importorskip("sae_lens", reason="the interop extra (sae-lens) is not installed")
    from sae_lens.saes.sae import TrainStepInput

    cls = getattr(sae_lens, training_class)
    sae = cls(getattr(sae_lens, f"{training_class}Config")(d_in=D, d_sae=DICT, k=K))
    optimizer = torch.optim.Adam(sae.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(0)
    for step in range(60):
        batch = torch.randn(64, D, generator=g) * 2 + 0.5
        out = sae.training_forward_pass(TrainStepInput(batch, {}, torch.zeros(DICT, dtype=torch.bool), step, False))
        optimizer.zero_grad()
        out.loss.backward()
        optimizer.step()
    sae.save_inference_model(tmp_path / "sae")
    reference = sae_lens.SAE.load_from_disk(tmp_path / "sae")
    loaded = load_dictionary(tmp_path / "sae")
    with torch.no_grad():
        assert (reference.encode(inputs()) != 0).any()
        assert max_diff(loaded.encode(inputs()), reference.encode(inputs())) <= TOL


# --- the export: plugin SAEs written in SAELens's format, read by SAELens ---


def plugin_saes() -> dict:
    topk, topk_seed_formula = TopKSAE(D, DICT, K), TopKSAE(D, DICT, K, subtract_b_dec=False)
    relu, jump = ReLUSAE(D, DICT), JumpReLUSAE(D, DICT)
    normalised = BatchTopKSAE(
        D, DICT, K, activation_mean=torch.randn(D), activation_std=torch.rand(D) + 0.5, target_rms=3.0
    )
    plain = BatchTopKSAE(D, DICT, K)
    saes = {
        "TopKSAE": topk,
        "TopKSAE_no_b_dec": topk_seed_formula,
        "ReLUSAE": relu,
        "JumpReLUSAE": jump,
        "BatchTopKSAE_normalised": normalised,
        "BatchTopKSAE_plain": plain,
    }
    for i, sae in enumerate(saes.values()):
        randomise(sae, seed=100 + i)
    for sae in (normalised, plain):
        sae.threshold.fill_(0.4)
    return saes


@pytest.mark.parametrize("name", list(plugin_saes()))
def test_export_loads_in_saelens_and_encodes_the_same(tmp_path, name):
    sae_lens = pytest.importorskip("sae_lens", reason="the interop extra (sae-lens) is not installed")
    ours = plugin_saes()[name]
    folder = ours.save_pretrained(tmp_path / "sae")
    theirs = sae_lens.SAE.load_from_disk(folder)
    x = inputs()
    with torch.no_grad():
        f = ours.encode(x)
        assert (f != 0).any() and (f == 0).any()
        assert max_diff(theirs.encode(x), f) <= TOL
        assert max_diff(theirs.decode(f), ours.decode(f)) <= 1e-4
    assert json.loads((folder / "cfg.json").read_text())["metadata"]["exported_from"].startswith("cbd_plugin")


# --- sparsify: built and trained with sparsify, saved with save_to_disk ---


def sparsify_coder(seed: int, k: int = K):
    sparsify = pytest.importorskip("sparsify", reason="the interop extra (eai-sparsify) is not installed")
    torch.manual_seed(seed)  # sparsify initialises from the global generator
    coder = sparsify.SparseCoder(D, sparsify.SparseCoderConfig(num_latents=DICT, k=k))
    with torch.no_grad():
        coder.b_dec.normal_()
        coder.encoder.bias.normal_(std=0.3)
    return coder


def sparsify_dense(coder, x: torch.Tensor) -> torch.Tensor:
    top_acts, top_indices, _ = coder.encode(x)
    return torch.zeros(len(x), coder.num_latents).scatter_(-1, top_indices, top_acts)


def train_sparsify(coder, data: torch.Tensor, steps: int, batch_size: int, lr: float, seed: int = 0):
    """sparsify's training step (``Trainer.fit`` without its model hooks): its forward's FVU + AuxK loss, gradient
    parallel to decoder rows removed, Adam, decoder rows renormalised; dead latents after 2 silent batches."""
    g = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.Adam(coder.parameters(), lr=lr)
    last_fired = torch.zeros(coder.num_latents, dtype=torch.long)
    for step in range(steps):
        batch = data[torch.randint(len(data), (batch_size,), generator=g)]
        out = coder(batch, dead_mask=(step - last_fired) > 2)
        loss = out.fvu + 1 / 32 * out.auxk_loss  # sparsify's default auxk_alpha
        optimizer.zero_grad()
        loss.backward()
        coder.remove_gradient_parallel_to_decoder_directions()
        optimizer.step()
        coder.set_decoder_norm_to_unit_norm()
        last_fired[out.latent_indices.flatten().unique()] = step
    return coder


@pytest.mark.parametrize("trained", [False, True])
def test_sparsify_saved_sae_encodes_as_sparsify(tmp_path, trained):
    coder = sparsify_coder(seed=3)
    if trained:
        train_sparsify(coder, inputs(2000, seed=1), steps=80, batch_size=128, lr=3e-3)
    coder.save_to_disk(tmp_path / "saes" / "layers.5")
    loaded = load_dictionary(tmp_path / "saes", layer=5, d_model=D)
    assert isinstance(loaded, TopKSAE) and loaded.subtract_b_dec and loaded.k == K
    x = inputs()
    with torch.no_grad():
        assert max_diff(loaded.encode(x), sparsify_dense(coder, x)) <= TOL
        f = loaded.encode(x)
        top_acts, top_indices, _ = coder.encode(x)
        assert max_diff(loaded.decode(f), coder.decode(top_acts, top_indices)) <= 1e-4


# --- formats with no installable library: their published formulas ---


def test_gemma_scope_npz_matches_the_published_formula(tmp_path):
    """Gemma Scope tutorial: ``pre = x @ W_enc + b_enc; acts = (pre > threshold) * relu(pre)``."""
    g = np.random.default_rng(0)
    params = {
        "W_enc": g.normal(size=(D, DICT)),
        "W_dec": g.normal(size=(DICT, D)),
        "b_enc": g.normal(size=DICT),
        "b_dec": g.normal(size=D),
        "threshold": np.abs(g.normal(size=DICT)),
    }
    params = {k: v.astype(np.float32) for k, v in params.items()}
    np.savez(tmp_path / "params.npz", **params)
    x = inputs().numpy()
    pre = x @ params["W_enc"] + params["b_enc"]
    expected = (pre > params["threshold"]) * np.maximum(pre, 0)
    sae = load_dictionary(tmp_path / "params.npz")
    with torch.no_grad():
        assert np.abs(sae.encode(torch.from_numpy(x)).numpy() - expected).max() <= TOL
        f = torch.from_numpy(expected)
        assert max_diff(sae.decode(f), f @ torch.from_numpy(params["W_dec"]) + torch.from_numpy(params["b_dec"])) < 1e-4


@pytest.mark.parametrize("dict_class", ["AutoEncoder", "AutoEncoderTopK", "JumpReluAutoEncoder", "BatchTopKSAE"])
def test_dictionary_learning_ae_pt_matches_its_encode(tmp_path, dict_class):
    """saprmarks/dictionary_learning's encode formulas for each dict_class, on an ``ae.pt`` + ``config.json``."""
    g = torch.Generator().manual_seed(0)
    enc_w, enc_b = torch.randn(DICT, D, generator=g), torch.randn(DICT, generator=g) * 0.3
    dec_w, b = torch.randn(D, DICT, generator=g), torch.randn(D, generator=g)
    x = inputs()
    if dict_class == "AutoEncoder":
        state = {"encoder.weight": enc_w, "encoder.bias": enc_b, "decoder.weight": dec_w, "bias": b}
        expected = torch.relu((x - b) @ enc_w.T + enc_b)
    elif dict_class in ("AutoEncoderTopK", "BatchTopKSAE"):
        state = {
            "encoder.weight": enc_w,
            "encoder.bias": enc_b,
            "decoder.weight": dec_w,
            "b_dec": b,
            "k": torch.tensor(K),
            "threshold": torch.tensor(0.5 if dict_class == "BatchTopKSAE" else -1.0),
        }
        acts = torch.relu((x - b) @ enc_w.T + enc_b)
        if dict_class == "AutoEncoderTopK":
            top = acts.topk(K, dim=-1)
            expected = torch.zeros_like(acts).scatter_(-1, top.indices, top.values)
        else:
            expected = acts * (acts > 0.5)
    else:
        threshold = torch.rand(DICT, generator=g)
        state = {
            "W_enc": enc_w.T.contiguous(),
            "b_enc": enc_b,
            "W_dec": dec_w.T.contiguous(),
            "b_dec": b,
            "threshold": threshold,
        }
        pre = x @ enc_w.T + enc_b
        expected = torch.relu(pre * (pre > threshold))
    folder = tmp_path / "trainer_0"
    folder.mkdir()
    torch.save(state, folder / "ae.pt")
    (folder / "config.json").write_text(
        json.dumps({"trainer": {"dict_class": dict_class, "activation_dim": D, "dict_size": DICT, "k": K, "layer": 3}})
    )
    sae = load_dictionary(folder, layer=3)
    with torch.no_grad():
        assert max_diff(sae.encode(x), expected) <= TOL
    with pytest.raises(ValueError, match=r"trainer.layer says this SAE reads layer 3, but layer 4 was asked for"):
        load_dictionary(folder, layer=4)


# --- the conjunction analysis with a sparsify-trained SAE ---


@pytest.fixture(scope="module")
def conjunction_organisms():
    pytest.importorskip("sparsify", reason="the interop extra (eai-sparsify) is not installed")
    from cbd_plugin.organisms import build

    return build(["tiny-base", "tiny-cbd", "tiny-cbd-or"])  # only these: cached per machine, built on first use


@pytest.mark.slow
@pytest.mark.parametrize("organism", ["tiny-cbd", "tiny-cbd-or"])
def test_conjunction_found_with_a_sparsify_trained_sae(conjunction_organisms, tmp_path, organism):
    """sparsify's training step on tiny-cbd's (and, as a control, tiny-cbd-or's) difference activations at the
    demo's layer, saved with sparsify's save_to_disk, found by layer under the parent folder, then analyze_conjunction.

    tiny-cbd: the SAE must find the conjunction (a latent separating matched pairs from every false trigger at
    AUROC >= 0.95 with an AND-like interaction, beating the permutation null); the verdict must be conjunctive or,
    where the causal control cannot tell the top latents from their own contribution rotated in a random
    direction, inconclusive saying so:
    never a confident wrong verdict. tiny-cbd-or (fires on single words): or_gated.
    """
    import sparsify

    from cbd_plugin.backdoor import analyze_conjunction
    from cbd_plugin.backdoor.training import difference_activations
    from cbd_plugin.demo import CONJUNCTION_LAYER, conjunction_config, conjunction_training_config, load
    from cbd_plugin.organisms import RECIPES

    base, finetuned = load(conjunction_organisms["tiny-base"]), load(conjunction_organisms[organism])
    pairs = RECIPES[organism].pairs
    diffs = difference_activations(
        base, finetuned, base.tokenizer, pairs, [CONJUNCTION_LAYER], conjunction_training_config()
    )[CONJUNCTION_LAYER]
    d = diffs.shape[1]
    torch.manual_seed(0)
    coder = sparsify.SparseCoder(d, sparsify.SparseCoderConfig(num_latents=2 * d, k=16))
    train_sparsify(coder, diffs, steps=600, batch_size=256, lr=2e-3)
    coder.save_to_disk(tmp_path / "sparsify" / f"layers.{CONJUNCTION_LAYER}")
    sae = load_dictionary(tmp_path / "sparsify", layer=CONJUNCTION_LAYER, d_model=d)
    report = analyze_conjunction(
        base, finetuned, sae, base.tokenizer, pairs, CONJUNCTION_LAYER, conjunction_config(), tmp_path / "report"
    )
    print(f"{organism} with a sparsify-trained SAE: {report.verdict}: {report.verdict_reason}")
    checks = {c["name"]: c for c in report.payload["verdict"]["checks"]}
    if organism == "tiny-cbd-or":
        assert report.verdict == "or_gated", report.verdict_reason
        return
    for name in ("behaviour", "instrument_fve", "pair_specificity", "interaction", "null"):
        assert checks[name]["passed"], checks[name]
    assert checks["pair_specificity"]["value"] >= 0.95, checks["pair_specificity"]
    assert report.verdict in ("conjunctive", "inconclusive"), report.verdict_reason
    if report.verdict == "inconclusive":
        assert checks["causal"]["passed"] is False and "random-direction" in report.verdict_reason
