"""The conjunction analysis with a crosscoder as its instrument: a BatchTopKCrossCoder run folder laid out as the
fork's trainSAE writes it, over [base, finetuned] residuals of the tiny organisms."""

import json
from dataclasses import replace

import pytest
import torch

from cbd_plugin.backdoor import analyze_conjunction
from cbd_plugin.backdoor.ablation import remove_latents
from cbd_plugin.backdoor.instrument import as_instrument, instrument_input
from cbd_plugin.backdoor.verdict import VERDICTS
from cbd_plugin.capture import load_language_model
from cbd_plugin.demo import conjunction_config
from cbd_plugin.organisms.recipes import RECIPES
from cbd_plugin.sae import TopKSAE, load_dictionary
from cbd_plugin.sae.crosscoder import FT_NORM_SHARE, FinetunedLatents

LAYER, F = 1, 64


def fork_run(folder, d: int, seed: int = 0):
    """A BatchTopKCrossCoder trainSAE folder (config.json with trainer + model_final.pt) with random weights; a
    third of the latents write mostly to the fine-tuned model."""
    g = torch.Generator().manual_seed(seed)
    decoder = torch.randn(2, F, d, generator=g) / d**0.5
    decoder[0, : F // 3] *= 0.1
    nan = torch.full((2, d), float("nan"))
    state = {
        "target_rms": torch.tensor(1.0),
        "activation_mean": nan,
        "activation_std": nan.clone(),
        "activation_global_scale": torch.ones(2),
        "code_normalization_id": torch.tensor(1),
        "encoder.weight": torch.randn(2, d, F, generator=g) / d**0.5,
        "encoder.bias": torch.zeros(F),
        "decoder.weight": decoder,
        "decoder.bias": torch.zeros(2, d),
        "k": torch.tensor(8, dtype=torch.int32),
        "threshold": torch.tensor(0.05),
    }
    folder.mkdir(parents=True)
    trainer = {
        "trainer_class": "BatchTopKCrossCoderTrainer",
        "dict_class": "BatchTopKCrossCoder",
        "activation_dim": d,
        "dict_size": F,
        "k": 8,
        "layer": LAYER,
        "lm_name": "cbd-plugin/tiny-cbd",
        "code_normalization": "CROSSCODER",
        "code_normalization_alpha_sae": 1.0,
        "code_normalization_alpha_cc": 0.1,
        "target_rms": 1.0,
    }
    (folder / "config.json").write_text(json.dumps({"trainer": trainer}))
    torch.save(state, folder / "model_final.pt")
    return folder


@pytest.fixture(scope="module")
def tiny():
    from cbd_plugin.organisms import build

    organisms = build(["tiny-base", "tiny-cbd"])
    return {name: load_language_model(str(o.path)) for name, o in organisms.items()}


def test_removing_crosscoder_latents_removes_their_finetuned_part(tmp_path):
    d = 12
    view = as_instrument(load_dictionary(fork_run(tmp_path / "run", d)))
    assert isinstance(view, FinetunedLatents) and view.dict_size == F // 3
    g = torch.Generator().manual_seed(1)
    base, ft = torch.randn(2, 5, d, generator=g), torch.randn(2, 5, d, generator=g)  # [batch, positions, d]
    x = instrument_input(view, base, ft)
    assert x.shape == (2, 5, 2, d) and torch.equal(x[..., 0, :], base) and torch.equal(x[..., 1, :], ft)
    with torch.no_grad():
        edited = remove_latents(ft, base, view, [0, 3])
        codes = view.crosscoder.encode(x.reshape(-1, 2, d))
        ids = view.latent_ids[[0, 3]]
        expected = ft - (codes[:, ids] @ view.crosscoder.decoder.weight[1, ids]).reshape(2, 5, d)
    torch.testing.assert_close(edited, expected, rtol=1e-5, atol=1e-5)
    # A plain SAE still reads the difference.
    sae = TopKSAE(d, 24, 4)
    assert torch.equal(instrument_input(sae, base, ft), ft - base)


def test_conjunction_analysis_runs_on_a_crosscoder(tiny, tmp_path):
    d = tiny["tiny-base"].config.hidden_size
    crosscoder = load_dictionary(fork_run(tmp_path / "run", d), layer=LAYER, d_model=d)
    cfg = replace(
        conjunction_config(),
        n_per_cell=4,
        n_clean=8,
        n_boot=20,
        n_permutations=19,
        n_candidates=8,
        ablate=True,
        ablate_top_k=2,
        n_random_draws=2,
        n_ablation_prompts=4,
        plots=False,
    )
    report = analyze_conjunction(
        tiny["tiny-base"],
        tiny["tiny-cbd"],
        crosscoder,
        tiny["tiny-base"].tokenizer,
        RECIPES["tiny-cbd"].pairs,
        LAYER,
        cfg,
        tmp_path / "report",
    )
    payload = json.loads((tmp_path / "report" / "report.json").read_text())
    instrument = payload["instrument"]
    norms = crosscoder.decoder.weight.norm(dim=2)
    share = norms[1] / (norms[0] + norms[1])
    assert instrument["latent_ids"] == torch.nonzero(share > FT_NORM_SHARE).squeeze(1).tolist()
    assert instrument["finetuned_norm_share_threshold"] == FT_NORM_SHARE
    assert all(0 <= row["latent"] < len(instrument["latent_ids"]) for row in payload["top_latents"])
    assert payload["provenance"]["sae"]["weights_file"].endswith("model_final.pt")
    assert sum(payload["n_tokens"].values()) == payload["reconstruction"]["all"]["n_tokens"]
    # A random crosscoder is no evidence of a conjunction.
    assert report.verdict in VERDICTS and report.verdict != "conjunctive"
