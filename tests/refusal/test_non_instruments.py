"""Six SAEs that are no instrument must give ``inconclusive (instrument)`` on the shallow and deep organisms, and the
audit's own SAE must still give its verdicts (issue 17). Slow: trains four SAEs and runs both organisms once.

The non-instruments, each of the audit SAE's shape (TINY_SAE: 128 latents, k 8), read at the audit layer (1):

* ``random``: fresh TopK weights (random unit decoder rows, encoder = decoder transpose, no bias);
* ``random_centred``: the same, reading the residual centred on the base's mean (b_dec = that mean);
* ``noise``: trained on Gaussian noise with the base residuals' per-dimension mean and standard deviation;
* ``shuffled``: trained on the base residuals with each token's coordinates permuted independently (the feature
  dimension shuffled per token: every token keeps its values and norm, the directions are destroyed);
* ``other_layer``: the audit recipe's SAE trained at layer 3, used at layer 1;
* ``tier_projected``: the audit SAE with the tier directions (hazard minus benign and dual-use minus benign mean
  residuals, over its training tokens and at the positions read) projected out of its encoder and decoder.
"""

from dataclasses import replace

import numpy as np
import pytest
import torch

from cbd_plugin.capture import TokenRows, load_language_model, num_layers
from cbd_plugin.demo import refusal_config
from cbd_plugin.refusal.audit import analyse_runs, prepare_prompts, run_model
from cbd_plugin.refusal.grid import expected_verdicts
from cbd_plugin.refusal.tier_batches import BalancedTierBatches
from cbd_plugin.refusal.training import TINY_SAE, select_split_activations, train_tier_sae
from cbd_plugin.sae import TopKSAE, train_sae
from cbd_plugin.sae.labels import TIER_BENIGN, TIER_HAZARD, TIER_OTHER

pytestmark = [pytest.mark.slow, pytest.mark.grid]
LAYER, OTHER_LAYER = 1, 3
MODES = {"tiny-refusal-shallow": "shallow", "tiny-refusal-deep": "deep"}


def rows_of(x: torch.Tensor) -> TokenRows:
    rows = TokenRows(x.shape[1], x.dtype)
    rows.append(x)
    return rows


def train_on(acts: TokenRows, tier, example, save_dir) -> TopKSAE:
    """The audit recipe's training (cbd_plugin.refusal.training.train_tier_sae) on given token rows."""
    cfg = replace(TINY_SAE, activation_dim=acts.width, layer=LAYER)
    batches = BalancedTierBatches(
        acts,
        tier,
        example,
        examples_per_tier=16,
        other_per_batch=min(8, len(np.unique(example[tier == TIER_OTHER]))),
        seed=0,
    )
    return train_sae(batches, cfg.trainer_config(), cfg.steps, save_dir, save_every=cfg.steps).ae.eval()


def tier_directions(x: torch.Tensor, tier: np.ndarray) -> list[torch.Tensor]:
    benign = x[torch.from_numpy(tier == TIER_BENIGN)].mean(0)
    return [x[torch.from_numpy(tier == code)].mean(0) - benign for code in (TIER_HAZARD, TIER_OTHER)]


@torch.no_grad()
def project_out(sae: TopKSAE, directions: list[torch.Tensor]) -> TopKSAE:
    basis, _ = torch.linalg.qr(torch.stack(directions, 1))  # [d, r], orthonormal
    out = TopKSAE(sae.activation_dim, sae.dict_size, sae.k)
    out.load_state_dict(sae.state_dict())
    out.W_enc.sub_(basis @ (basis.T @ out.W_enc))
    out.W_dec.sub_((out.W_dec @ basis) @ basis.T)
    return out.eval()


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    from cbd_plugin.organisms import build

    names = ["tiny-base", *MODES]
    organisms = build(names)
    out = tmp_path_factory.mktemp("non_instruments")
    base = load_language_model(str(organisms["tiny-base"].path))
    cfg = refusal_config()
    frame, notes, check = prepare_prompts(
        organisms["tiny-refusal-shallow"].data_dir / "prompts.jsonl", base.tokenizer, cfg
    )
    layers = cfg.layers_to_profile(num_layers(base), LAYER)
    runs = {"base": run_model("base", base, base.tokenizer, frame, layers, [LAYER], cfg, keep_prompt_tokens=True)}
    for name in MODES:
        runs[name] = run_model(
            "finetuned", load_language_model(str(organisms[name].path)), base.tokenizer, frame, layers, [LAYER], cfg
        )

    acts, tier, example = select_split_activations(base, base.tokenizer, frame, LAYER)
    x = acts[0 : len(acts)]
    gen = torch.Generator().manual_seed(0)
    audit_sae = train_tier_sae(base, base.tokenizer, frame, LAYER, TINY_SAE, out / "audit")
    read = runs["base"].capture.read_acts[LAYER]
    read_x = read[0 : len(read)]
    read_tier = frame["tier"].map({"benign": TIER_BENIGN, "hazard": TIER_HAZARD}).fillna(TIER_OTHER).to_numpy()
    read_tier = read_tier[runs["base"].capture.read_prompt]
    centred = TopKSAE(x.shape[1], TINY_SAE.dict_size, TINY_SAE.k, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        centred.b_dec.copy_(x.mean(0))
    noise = x.mean(0) + x.std(0) * torch.randn(x.shape, generator=gen)
    shuffled = torch.gather(x, 1, torch.argsort(torch.rand(x.shape, generator=gen), dim=1))
    saes = {
        "random": TopKSAE(x.shape[1], TINY_SAE.dict_size, TINY_SAE.k, generator=torch.Generator().manual_seed(0)),
        "random_centred": centred.eval(),
        "noise": train_on(rows_of(noise), tier, example, out / "noise"),
        "shuffled": train_on(rows_of(shuffled), tier, example, out / "shuffled"),
        "other_layer": train_tier_sae(base, base.tokenizer, frame, OTHER_LAYER, TINY_SAE, out / "other_layer"),
        "tier_projected": project_out(audit_sae, tier_directions(x, tier) + tier_directions(read_x, read_tier)),
        "audit": audit_sae,
    }
    results = {}
    for sae_name, sae in saes.items():
        for name in MODES:
            report = analyse_runs({"base": runs["base"], "finetuned": runs[name]}, frame, sae, LAYER, cfg, notes, check)
            results[sae_name, name] = (
                report,
                expected_verdicts(MODES[name], organisms[name].behaviour, cfg.separation_auroc),
            )
            null, fid = report.random_null, {m: report.models[m].reconstruction for m in report.models}
            print(
                f"{sae_name:15s} {name:21s} {report.verdict.title}\n"
                f"    fve base {fid['base']['fve']:.3f} ft {fid['finetuned']['fve']:.3f}; error norm base "
                f"{fid['base']['error_norm_fraction']:.3f} ft {fid['finetuned']['error_norm_fraction']:.3f}; "
                f"L0 {fid['base']['mean_l0']:.2f}; dead {fid['base']['dead_fraction']:.3f}; "
                f"signal AUROC {report.separation.signal_auroc.value:.3f}; separation {null.separation.value:.2f} "
                f"[{null.separation.lo:.2f}, {null.separation.hi:.2f}] vs random max {null.null_upper:.2f}; "
                f"probes alone: {report.verdict.probe_verdict}\n    failed: "
                f"{[c.name for c in report.verdict.checks if c.passed is False]}"
            )
    return results


@pytest.mark.parametrize("organism", list(MODES))
@pytest.mark.parametrize("sae", ["random", "random_centred", "noise", "shuffled", "other_layer", "tier_projected"])
def test_non_instrument_is_inconclusive_naming_the_instrument(setup, sae, organism):
    report, expected = setup[sae, organism]
    verdict = report.verdict
    assert verdict.name == "inconclusive" and verdict.instrument, verdict.reason
    assert verdict.title.startswith("inconclusive (instrument) at layer 1, last prompt token")
    failed = [c.name for c in verdict.checks if c.passed is False]
    assert failed and failed[0] in verdict.reason
    # Two independent grounds: the fidelity floors, and the separation no better than random instruments'.
    assert "instrument_beats_random" in failed and any(name.startswith("fve_") for name in failed)
    # The probes alone are reported, and they see what the organism is built to be (its build's ground truth).
    assert verdict.probe_verdict in (*expected, "inconclusive")


@pytest.mark.parametrize("organism", list(MODES))
def test_audit_sae_keeps_its_verdict_and_beats_random_instruments(setup, organism):
    report, expected = setup["audit", organism]
    assert report.verdict.name in expected, report.verdict.reason
    assert not report.verdict.instrument
    assert report.random_null.separation.lo > report.random_null.null_upper
    assert report.verdict.title == f"{report.verdict.name} at layer 1, last prompt token"
