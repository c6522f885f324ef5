"""The audit end to end: plumbing on a random tiny Gemma-2 (fast), then the tiny refusal organisms (slow)."""

import json
from dataclasses import replace

import pandas as pd
import pytest
import torch

from cbd_plugin.capture import load_language_model
from cbd_plugin.demo import REFUSAL_SAE, refusal_config
from cbd_plugin.organisms.corpus import tier_prompts as corpus_tier_prompts
from cbd_plugin.organisms.recipes import ModelShape
from cbd_plugin.organisms.tokenizer import build_tokenizer
from cbd_plugin.organisms.train import new_model
from cbd_plugin.refusal import AuditConfig, audit_refusal_depth
from cbd_plugin.refusal.training import train_tier_sae
from cbd_plugin.sae import TopKSAE


def tier_prompts(n_per_tier_split: int) -> pd.DataFrame:
    return pd.DataFrame(corpus_tier_prompts(n_per_tier_split))[["id", "text", "tier", "split"]]


@pytest.fixture(scope="module")
def random_model(tmp_path_factory):
    path = tmp_path_factory.mktemp("random_gemma")
    tokenizer = build_tokenizer()
    shape = ModelShape(hidden_size=32, intermediate_size=64, num_layers=2, num_heads=2, num_kv_heads=1, head_dim=16)
    new_model(shape, tokenizer, seed=0).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return load_language_model(str(path)), tokenizer


@pytest.mark.parametrize("positions", ["last_instruction", "last_prompt", "first_response", "all_prompt"])
def test_audit_plumbing_on_identical_models(random_model, positions, tmp_path):
    model, tokenizer = random_model
    sae = TopKSAE(32, 64, k=8, generator=torch.Generator().manual_seed(0))
    cfg = AuditConfig(positions=positions, n_response_tokens=2, max_new_tokens=3, n_latents=4, n_boot=50, n_perm=199)
    report = audit_refusal_depth(
        model,
        model,
        tokenizer,
        sae,
        tier_prompts(4),
        layer=0,
        cfg=cfg,
        out_dir=tmp_path,
        baseline_sae=TopKSAE(32, 64, k=8, generator=torch.Generator().manual_seed(1)),
    )
    # The same model twice: every change is exactly 0.
    assert all(e.value == 0 and e.lo == 0 == e.hi for e in report.change.refusal_rate.values())
    # A random model read by a random SAE on 4 prompts per tier and split: no instrument can be shown to work, so
    # the verdict must say so rather than call the (identical) models unchanged.
    assert report.verdict.name == "inconclusive" and "instrument" in report.verdict.reason
    base = report.models["base"]
    assert base.feature_variance.signal_std > 0  # a random model's features still vary across prompts
    assert 0 < base.reconstruction["mean_l0"] <= 8
    assert set(report.sae_comparison) == {"sae", "baseline", "auroc_gain", "fve_cost"}
    # One capture, every layer of this 2-layer model; identical models give identical probes.
    assert [row.layer for row in report.depth_profile] == [0, 1]
    for row in report.depth_profile:
        assert row.base_probe.value == row.base_fitted_probe.value == row.refit_probe.value
    assert report.depth_profile[0].base_signal is not None and report.depth_profile[1].base_signal is None
    assert 0 <= report.sae_health["prompt_tokens"]["dead_fraction"] <= 1

    written = json.loads((tmp_path / "report.json").read_text())  # strict JSON: NaN written as null
    assert written["verdict"]["name"] == "inconclusive" and written["config"]["positions"] == positions
    assert set(written["verdict"]) == {
        "name",
        "reason",
        "checks",
        "scope",
        "instrument",
        "title",
        "probe_verdict",
        "probe_reason",
    }
    assert written["verdict"]["instrument"] is True and written["verdict"]["title"].startswith(
        "inconclusive (instrument) at layer 0, "
    )
    assert written["verdict"]["reason"].startswith(f"at {written['verdict']['scope']}: ")
    null = written["random_null"]
    assert len(null["null_separation"]) == cfg.n_random_instruments and null["dict_size"] == 64
    assert null["null_upper"] == max(null["null_separation"])
    assert {"name", "passed", "value", "interval", "threshold", "detail"} == set(written["verdict"]["checks"][0])
    assert {"verdict_shallow", "verdict_deep", "verdict_rerouted", "verdict_no_change", "verdict_inconclusive"} <= set(
        written["definitions"]
    )
    assert sorted(written["separation"]["latents"]["hazard"]) == sorted(report.separation.latents.hazard.tolist())
    assert [row["layer"] for row in written["depth_profile"]] == [0, 1]
    prefill = written["prefill"]  # behavioural depth: both models' curves, or why there are none
    assert set(prefill) == {"base", "finetuned"} or set(prefill) == {"skipped"}, prefill
    if "base" in prefill:
        assert prefill["base"]["refused"] == prefill["finetuned"]["refused"] and prefill["base"]["ks"] == [0, 1, 3, 5]
    samples = pd.read_csv(tmp_path / "samples.csv", keep_default_na=False)
    assert len(samples) == 2 * 24
    assert {
        "id",
        "tier",
        "split",
        "model",
        "completion",
        "label",
        "prompt_label",
        "signal",
        "divergence",
        "n_positions",
    } <= set(samples.columns)
    expected = {"last_instruction": {1}, "last_prompt": {1}, "all_prompt": None, "first_response": {1, 2}}[positions]
    if expected:
        assert set(samples["n_positions"]) <= expected
    for png in ("signal_by_tier_label.png", "refusal_rates.png", "permutation_null.png", "depth_profile.png"):
        assert (tmp_path / png).stat().st_size > 1000
    profile = pd.read_csv(tmp_path / "depth_profile.csv")
    assert set(profile["series"]) == {
        "base_probe",
        "base_fitted_probe",
        "refit_probe",
        "base_signal",
        "finetuned_signal",
    }
    assert set(profile["positions"]) == {positions}
    assert set(profile["state"]) <= {"separates", "inverted", "silent", "undetermined"}
    # The profile covers every position kind at every layer (probes only away from the audit positions).
    everywhere = pd.read_csv(tmp_path / "depth_profile_positions.csv")
    assert set(everywhere["positions"]) == {"last_instruction", "last_prompt", "first_response", "all_prompt"}
    assert len(everywhere[everywhere["series"] == "refit_probe"]) == 4 * 2
    # Topics derived from the format-matched prompts: one hazard word per prompt, decoded on both models.
    assert written["topic_decoding"]["base"]["n_topics"] >= 2


def test_sampled_completions_are_aggregated_per_prompt(random_model, tmp_path):
    model, tokenizer = random_model
    sae = TopKSAE(32, 64, k=8, generator=torch.Generator().manual_seed(0))
    cfg = AuditConfig(temperature=1.0, n_samples=3, max_new_tokens=3, n_latents=4, n_boot=50, n_perm=199)
    report = audit_refusal_depth(model, None, tokenizer, sae, tier_prompts(4), layer=1, cfg=cfg)
    assert report.change is None and report.verdict is None and list(report.models) == ["base"]
    assert report.samples.groupby("id").size().eq(3).all()
    assert report.samples.groupby("id")["completion"].nunique().max() > 1  # sampling, not greedy
    assert all(row.refit_probe is None for row in report.depth_profile)


# ---------------------------------------------------------------- tiny refusal organisms (slow)


class BlindSAE(torch.nn.Module):
    """Codes that ignore the input: every token gets the same latent vector."""

    def __init__(self, d_model: int, dict_size: int = 64):
        super().__init__()
        self.dict_size, self.activation_dim = dict_size, d_model
        self.codes = torch.nn.Parameter(torch.rand(dict_size, generator=torch.Generator().manual_seed(0)))
        self.decoder = torch.nn.Parameter(torch.randn(dict_size, d_model, generator=torch.Generator().manual_seed(1)))

    def encode(self, x):
        return self.codes.expand(x.shape[0], -1).clone()

    def decode(self, f):
        return f @ self.decoder


@pytest.fixture(scope="module")
def shallow_organisms():
    """Only the organisms these tests read (built on first use): another organism's build failing its contract
    must not take these tests down with it."""
    from cbd_plugin.organisms import build

    return build(["tiny-base", "tiny-refusal-shallow"])


@pytest.fixture(scope="module")
def refusal_setup(shallow_organisms, tmp_path_factory):
    """The base as an nnsight model, the shared prompt set, the audit layer, and two SAEs trained on the base's
    select split: with the contrastive term (weight 1) and without it (weight 0)."""
    organisms = shallow_organisms
    shallow = organisms["tiny-refusal-shallow"]
    prompts = shallow.data_dir / "prompts.jsonl"
    layer = shallow.behaviour["refusal"]["audit_layer"]
    base = load_language_model(str(organisms["tiny-base"].path))
    frame = pd.read_json(prompts, lines=True)
    out = tmp_path_factory.mktemp("refusal_saes")
    saes = {
        w: train_tier_sae(
            base, base.tokenizer, frame, layer, replace(REFUSAL_SAE, contrastive_weight=w), out / f"cw{w}"
        )
        for w in (1.0, 0.0)
    }
    return base, prompts, layer, saes


@pytest.mark.slow
def test_blind_sae_on_the_shallow_organism_is_inconclusive_naming_the_instrument(
    refusal_setup, shallow_organisms, tmp_path
):
    """The shallow organism's audit-layer residual IS the base's, and a probe there separates hazard perfectly: an
    SAE blind to its input must not turn that into deep (or anything else but inconclusive)."""
    base, prompts, layer, _ = refusal_setup
    finetuned = load_language_model(str(shallow_organisms["tiny-refusal-shallow"].path))
    blind = BlindSAE(base.config.hidden_size)
    report = audit_refusal_depth(base, finetuned, base.tokenizer, blind, prompts, layer, refusal_config(), tmp_path)
    assert report.separation.signal_auroc.value == 0.5  # a constant signal: every pair tied
    assert report.verdict.name == "inconclusive" and report.verdict.instrument
    by_name = {c.name: c for c in report.verdict.checks}
    # Constant codes reconstruct nothing, and their constant signal separates nothing: both are named failures.
    assert by_name["fve_base"].passed is False and "fve_base" in report.verdict.reason
    assert by_name["instrument_separates"].passed is False
    # ...while the probes show the hazard IS there, on both models: the instrument is what failed.
    probes = next(row for row in report.depth_profile if row.layer == layer)
    assert probes.base_probe.lo >= 0.7 and probes.refit_probe.lo >= 0.7
    written = json.loads((tmp_path / "report.json").read_text())
    assert written["verdict"]["name"] == "inconclusive"


@pytest.mark.slow
def test_contrastive_term_is_reported_with_a_paired_interval(refusal_setup):
    """The same SAE with and without the contrastive term: held-out AUROC gain (paired interval over eval prompts)
    and FVE cost are reported. Only robust properties are asserted: at the last prompt token the base separates
    the tiers perfectly with either SAE, so the gain's interval must contain 0 and the FVE cost stay small; the
    claim that the term improves separation is measured over seeds in tests/sae/test_sae_trainer.py."""
    base, prompts, layer, saes = refusal_setup
    cfg = replace(refusal_config(), max_new_tokens=2)
    report = audit_refusal_depth(base, None, base.tokenizer, saes[1.0], prompts, layer, cfg, baseline_sae=saes[0.0])
    comparison = report.sae_comparison
    gain = comparison["auroc_gain"]
    assert gain["lo"] <= gain["value"] <= gain["hi"] and gain["hi"] - gain["lo"] < 0.2
    assert comparison["sae"]["eval_auroc"]["lo"] >= 0.9 and comparison["baseline"]["eval_auroc"]["lo"] >= 0.9
    assert abs(comparison["fve_cost"]) < 0.1 and comparison["sae"]["fve"] > 0.8
