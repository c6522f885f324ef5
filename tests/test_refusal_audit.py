"""The audit end to end: plumbing on a random tiny Gemma-2 (fast), then the tiny refusal organisms (slow)."""

import json
import random

import pandas as pd
import pytest
import torch

from cbd_plugin.capture import load_language_model
from cbd_plugin.organisms.corpus import tier_prompt_set
from cbd_plugin.organisms.recipes import ModelShape
from cbd_plugin.organisms.tokenizer import build_tokenizer
from cbd_plugin.organisms.train import new_model
from cbd_plugin.refusal import AuditConfig, audit_refusal_depth
from cbd_plugin.sae import TopKSAE


def tier_prompts(n_per_tier_split: int, seed: int = 0) -> pd.DataFrame:
    rng = random.Random(seed)
    rows = [{"id": f"{split}{i}", "text": e.prompt, "tier": e.tier, "split": split}
            for split in ("select", "eval") for i, e in enumerate(tier_prompt_set(rng, split, n_per_tier_split))]
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def random_model(tmp_path_factory):
    path = tmp_path_factory.mktemp("random_gemma")
    tokenizer = build_tokenizer()
    shape = ModelShape(hidden_size=32, intermediate_size=64, num_layers=2, num_heads=2, num_kv_heads=1, head_dim=16)
    new_model(shape, tokenizer, seed=0).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return load_language_model(str(path)), tokenizer


@pytest.mark.parametrize("positions", ["last_instruction", "first_response", "all_prompt"])
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
    expected = {"last_instruction": {1}, "all_prompt": None, "first_response": {1, 2}}[positions]
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

