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
    cfg = AuditConfig(positions=positions, n_response_tokens=2, max_new_tokens=3, n_latents=4, n_boot=50, n_perm=20)
    report = audit_refusal_depth(model, model, tokenizer, sae, tier_prompts(4), layer=0, cfg=cfg, out_dir=tmp_path,
                                 baseline_sae=TopKSAE(32, 64, k=8, generator=torch.Generator().manual_seed(1)))
    # The same model twice: every change is exactly 0, so the verdict must be no_change.
    assert report.verdict.name == "no_change"
    assert all(e.value == 0 and e.lo == 0 == e.hi for e in report.change.refusal_rate.values())
    base = report.models["base"]
    assert base.feature_variance.signal_std > 0  # a random model's features still vary across prompts
    assert 0 < base.reconstruction["mean_l0"] <= 8
    assert set(report.sae_comparison) == {"sae", "baseline", "auroc_gain", "fve_cost"}

    written = json.loads((tmp_path / "report.json").read_text())  # strict JSON: NaN written as null
    assert written["verdict"]["name"] == "no_change" and written["config"]["positions"] == positions
    assert sorted(written["separation"]["latents"]["hazard"]) == sorted(report.separation.latents.hazard.tolist())
    samples = pd.read_csv(tmp_path / "samples.csv", keep_default_na=False)
    assert len(samples) == 2 * 24
    assert {"id", "tier", "split", "model", "completion", "label", "prompt_label", "signal", "divergence",
            "n_positions"} <= set(samples.columns)
    expected = {"last_instruction": {1}, "last_prompt": {1}, "all_prompt": None, "first_response": {1, 2}}[positions]
    if expected:
        assert set(samples["n_positions"]) <= expected
    for png in ("signal_by_tier_label.png", "refusal_rates.png", "permutation_null.png"):
        assert (tmp_path / png).stat().st_size > 1000


def test_sampled_completions_are_aggregated_per_prompt(random_model, tmp_path):
    model, tokenizer = random_model
    sae = TopKSAE(32, 64, k=8, generator=torch.Generator().manual_seed(0))
    cfg = AuditConfig(temperature=1.0, n_samples=3, max_new_tokens=3, n_latents=4, n_boot=20, n_perm=10)
    report = audit_refusal_depth(model, None, tokenizer, sae, tier_prompts(4), layer=1, cfg=cfg)
    assert report.change is None and report.verdict is None and list(report.models) == ["base"]
    assert report.samples.groupby("id").size().eq(3).all()
    assert report.samples.groupby("id")["completion"].nunique().max() > 1  # sampling, not greedy



# ---------------------------------------------------------------- tiny refusal organisms (slow)

@pytest.fixture(scope="module")
def refusal_setup(organisms, tmp_path_factory):
    """The base as an nnsight model, the shared prompt set, the audit layer, and two SAEs trained on the base's
    select split: with the contrastive term (weight 1) and without it (weight 0)."""
    shallow = organisms["tiny-refusal-shallow"]
    prompts = shallow.data_dir / "prompts.jsonl"
    layer = shallow.behaviour["refusal"]["audit_layer"]
    base = load_language_model(str(organisms["tiny-base"].path))
    frame = pd.read_json(prompts, lines=True)
    out = tmp_path_factory.mktemp("refusal_saes")
    saes = {w: train_tier_sae(base, base.tokenizer, frame, layer, replace(REFUSAL_SAE, contrastive_weight=w),
                              out / f"cw{w}") for w in (1.0, 0.0)}
    return base, prompts, layer, saes


@pytest.mark.slow
@pytest.mark.parametrize("organism,expected", [("tiny-refusal-shallow", "shallow"), ("tiny-refusal-deep", "deep"),
                                               ("tiny-refusal-null", "no_change")])
def test_verdict_on_tiny_refusal_organisms(refusal_setup, organisms, organism, expected, tmp_path):
    base, prompts, layer, saes = refusal_setup
    finetuned = load_language_model(str(organisms[organism].path))
    report = audit_refusal_depth(base, finetuned, base.tokenizer, saes[1.0], prompts, layer, refusal_config(),
                                 tmp_path)
    change, depth = report.change, report.models["finetuned"].depth
    assert report.separation.signal_auroc.value >= 0.9  # the base represents the tier where we read it
    assert report.models["base"].feature_variance.varying_fraction > 0.1  # not the seed's constant vector
    if expected == "no_change":
        assert all(e.lo <= 0 <= e.hi for e in change.refusal_rate.values())
    else:
        assert change.refusal_rate["hazard"].lo > 0.5
        assert change.refusal_rate["benign"].hi <= 0.05
    if expected == "shallow":
        assert depth.refused_hazard_auroc.value >= 0.9 and depth.shallow_fraction.value >= 0.8
    if expected == "deep":
        assert depth.refused_hazard_auroc.value <= 0.65 and depth.shallow_fraction.value <= 0.2
    assert report.verdict.name == expected, report.verdict.reasons
    assert (tmp_path / "report.json").exists() and (tmp_path / "signal_by_tier_label.png").exists()


@pytest.mark.slow
def test_contrastive_term_improves_held_out_separation(refusal_setup, tmp_path):
    """Same SAE with and without the contrastive term, read at the last instruction token, where the base's tier
    information is weak (at the last prompt token both separate perfectly): held-out AUROC gain, FVE cost."""
    base, prompts, layer, saes = refusal_setup
    cfg = AuditConfig(positions="last_instruction", max_new_tokens=2, batch_size=64, n_boot=200, n_perm=100)
    report = audit_refusal_depth(base, None, base.tokenizer, saes[1.0], prompts, layer, cfg, baseline_sae=saes[0.0])
    comparison = report.sae_comparison
    assert comparison["auroc_gain"] > 0.03
    assert comparison["sae"]["selection_p_value"] < 0.05  # choosing latents by tier beats choosing at random
    assert 0 < comparison["fve_cost"] < 0.05 and comparison["sae"]["fve"] > 0.9
