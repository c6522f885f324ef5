"""End to end on the tiny organisms: an SAE trained on each organism's difference, then analyze_conjunction.

Claims checked (evaluation half; latents ranked on the selection half):
* tiny-cbd (AND-gated): the top conjunction latent detects matched pairs with AUROC >= 0.95, the verdict is
  conjunctive, removing the top latents at least halves the matched fire rate while changing at most 5% of clean
  outputs, and removing as many random active latents does not;
* tiny-cbd-or (OR-gated): the top responsive latents fire on single triggers; the verdict says not conjunctive;
* tiny-cbd-null (never fires): no latent reaches detection AUROC 0.8.
The SAE trains on prompts from the organisms' fine-tuning templates; the probe set uses the held-out ones.
"""

import nnsight
import pytest
import torch

from cbd_plugin.backdoor import ConjunctionConfig, analyze_conjunction
from cbd_plugin.backdoor.pipeline import difference_batches, probe_tokens
from cbd_plugin.backdoor.probes import build_probe_set
from cbd_plugin.organisms.corpus import DEFAULT_PAIRS, FILLER_WORDS, HELD_OUT_SPLITS, TEMPLATES
from cbd_plugin.sae.contrastive_trainer import ContrastiveSAEConfig
from cbd_plugin.sae.training import train_sae

pytestmark = pytest.mark.slow

# The last of the tiny organisms' 4 decoder layers: there the fine-tune has computed the conjunction (a linear probe
# on the difference reaches AUROC 1.0 on tiny-cbd; 0.90 and 0.98 after layers 1 and 2, where no single latent of
# such an SAE exceeds 0.72).
LAYER = 3
SAE_STEPS, SAE_BATCH = 1500, 256


def analysis_config(**kw) -> ConjunctionConfig:
    held_out = tuple(t for split in HELD_OUT_SPLITS for t in TEMPLATES[split])
    return ConjunctionConfig(templates=held_out, filler_words=FILLER_WORDS, n_per_cell=24,
                             n_clean=48, n_boot=200, n_ablation_prompts=24, max_new_tokens=4, batch_size=32, **kw)


def train_difference_sae(base, finetuned, tokenizer, save_dir):
    """A TopK SAE (x4, k 8) on finetuned - base residuals of fine-tuning-template prompts, fire tokens included."""
    cfg = ConjunctionConfig(templates=TEMPLATES["train"], filler_words=FILLER_WORDS)
    probes = build_probe_set(list(DEFAULT_PAIRS), list(cfg.templates), list(cfg.filler_words), 24, 96, seed=1)
    tokens = probe_tokens(tokenizer, probes, len(DEFAULT_PAIRS), cfg)
    diffs = torch.cat([d for d, _ in difference_batches(base, finetuned, tokens, LAYER, 64)])
    generator = torch.Generator().manual_seed(0)
    batches = [diffs[torch.randint(len(diffs), (SAE_BATCH,), generator=generator)] for _ in range(SAE_STEPS)]
    d = diffs.shape[1]
    sae_cfg = ContrastiveSAEConfig(steps=SAE_STEPS, activation_dim=d, dict_size=4 * d, k=8, lr=1e-3,
                                   contrastive_weight=0.0, dead_after_tokens=20 * SAE_BATCH, device="cpu")
    return train_sae(batches, sae_cfg.trainer_config(), SAE_STEPS, save_dir).ae.eval()


def as_nnsight(organism):
    model, tokenizer = organism.load()
    return nnsight.LanguageModel(model.eval(), tokenizer=tokenizer), tokenizer


@pytest.fixture(scope="module")
def reports(organisms, tmp_path_factory):
    base, tokenizer = as_nnsight(organisms["tiny-base"])
    out = {}
    for name in ("tiny-cbd", "tiny-cbd-or", "tiny-cbd-null"):
        finetuned, _ = as_nnsight(organisms[name])
        folder = tmp_path_factory.mktemp(name)
        sae = train_difference_sae(base, finetuned, tokenizer, folder / "sae")
        out[name] = analyze_conjunction(base, finetuned, sae, tokenizer, list(DEFAULT_PAIRS), LAYER,
                                        analysis_config(), folder / "report")
    return out


def test_conjunctive_organism(reports):
    report = reports["tiny-cbd"]
    best = report.result.best_latent
    assert best["detection_auroc"] >= 0.95, report.payload["top_latents"][:3]
    assert report.result.probe.value >= 0.95  # the baseline the latent has to match
    assert report.verdict == "conjunctive", report.verdict_reason


def test_removing_top_latents_removes_the_behaviour(reports):
    ablation = reports["tiny-cbd"].ablation
    assert ablation["before"]["fire_rate_matched"] >= 0.8
    assert ablation["top"]["fire_rate_reduction"] >= 0.5, ablation["top"]
    assert ablation["top"]["clean_changed"] <= 0.05, ablation["top"]
    assert ablation["random"]["fire_rate_reduction_mean"] < 0.5, ablation["random"]


def test_or_gated_organism_is_not_conjunctive(reports):
    report = reports["tiny-cbd-or"]
    assert report.verdict == "or_gated", report.verdict_reason
    assert "not conjunctive" in report.verdict_reason
    top = report.result.latents.sort_values("signal_auroc", ascending=False).iloc[0]
    assert top.eval_single_ratio >= 0.5


def test_null_organism_has_no_detecting_latent(reports):
    report = reports["tiny-cbd-null"]
    assert report.result.latents.detection_auroc.max() < 0.8
    assert report.verdict == "no_backdoor_signal", report.verdict_reason
