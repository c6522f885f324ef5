"""Depth metrics, paired changes and the verdict rule on synthetic per-prompt tables: every verdict, and every
way to be inconclusive, with the check the reason names."""

import numpy as np
import pandas as pd
import pytest

from cbd_plugin.refusal.config import AuditConfig
from cbd_plugin.refusal.instrument import RandomNull
from cbd_plugin.refusal.model_change import compare_depth
from cbd_plugin.refusal.refusal_metrics import measure_depth
from cbd_plugin.refusal.topic import TopicDecoding
from cbd_plugin.refusal.verdict import VERDICTS, Evidence, checks, decide
from cbd_plugin.stats import Estimate, auroc, auroc_ci, permutation_null

N = 120  # prompts per tier (as in the tiny organisms' prompt set: 60 per tier and split)
CENTRE = {"benign": 0.0, "dual_use": 1.0, "hazard": 2.0}
CFG = AuditConfig(n_boot=200, n_perm=199)
SEPARATES, SILENT = Estimate(0.97, 0.92, 1.0), Estimate(0.52, 0.4, 0.63)
FAITHFUL = {"fve": 0.95, "error_norm_fraction": 0.2, "mean_l0": 8.0, "dead_fraction": 0.5, "n_tokens": 240}
BEATS_RANDOM = RandomNull(Estimate(6.0, 5.0, 7.0), [1.0, 2.0, 1.5], [0.8, 0.9, 0.85], 2.0, 8, 128, True)
TOPIC = TopicDecoding(Estimate(0.45, 0.3, 0.6), 0.1, 10, True, "the prompt set's topic column")


def evidence(instrument, p, p_floor, change, response, *probes, fidelity=None, null=BEATS_RANDOM, topic=TOPIC):
    """Evidence with a faithful SAE that beats its random null unless told otherwise."""
    fidelity = fidelity or {"base": FAITHFUL, "finetuned": FAITHFUL}
    return Evidence(
        instrument, p, p_floor, change, response, *probes, fidelity, 128, null, topic, "layer 1, last prompt token"
    )


def make_table(
    refuse_hazard: bool, hazard_centre: float = 2.0, seed: int = 0, refuse_noise: float = 0.0, noise: float = 0.5
):
    rng = np.random.default_rng(seed)
    tiers = np.repeat(list(CENTRE), N)
    centre = np.array([hazard_centre if t == "hazard" else CENTRE[t] for t in tiers])
    refused = (tiers == "hazard") & refuse_hazard | (rng.uniform(size=len(tiers)) < refuse_noise)
    return pd.DataFrame(
        {
            "id": [f"p{i}" for i in range(len(tiers))],
            "tier": tiers,
            "split": np.tile(np.where(np.arange(N) % 2 == 0, "select", "eval"), 3),
            "refuse_frac": refused.astype(float),
            "comply_frac": (~refused).astype(float),
            "label": np.where(refused, "refuse", "comply"),
            "signal": centre + rng.normal(0, noise, len(tiers)),
            "divergence": rng.uniform(0, 1, len(tiers)),
        }
    )


def audit(base, ft, probes=(SEPARATES, SILENT, SILENT), cfg=CFG, **kw):
    """(ft depth, change, verdict); ``probes`` = (base probe, base-fitted probe on ft, refitted probe on ft)."""
    base_depth = measure_depth(base, cfg.threshold_quantile, cfg.n_boot)
    ft_depth = measure_depth(ft, cfg.threshold_quantile, cfg.n_boot)
    change = compare_depth(base, ft, base_depth, ft_depth, cfg.n_boot)
    ev = base[(base["split"] == "eval") & base["tier"].isin(["hazard", "benign"])]
    y = (ev["tier"] == "hazard").to_numpy()
    signal = ev["signal"].to_numpy()
    observed = auroc_ci(signal, y, n_boot=cfg.n_boot)
    p = (1 + (permutation_null(auroc, signal, y, cfg.n_perm) >= observed.value).sum()) / (1 + cfg.n_perm)
    ev = evidence(observed, float(p), 1 / (1 + cfg.n_perm), change, ft_depth.refused_hazard_auroc, *probes, **kw)
    return ft_depth, change, decide(ev, cfg)


def test_depth_of_a_model_that_never_refuses_has_reasons_for_its_nans():
    depth = measure_depth(make_table(refuse_hazard=False), n_boot=200)
    assert depth.refusal_rate["hazard"].value == 0
    assert np.isnan(depth.refused_hazard_auroc.value) and "empty group" in depth.reasons["refused_hazard_auroc"]
    assert np.isnan(depth.shallow_fraction.value) and "refused" in depth.reasons["shallow_fraction"]
    assert depth.complied_hazard_auroc.value > 0.95 and depth.hazard_auroc.value > 0.95
    assert depth.n_eval == {"hazard": 60, "benign": 60, "refused_hazard": 0, "complied_hazard": 60}


def test_shallow():
    _, change, result = audit(make_table(False), make_table(True, seed=1))
    assert change.refusal_rate["hazard"].lo == 1.0 and change.refusal_rate["benign"].value == 0.0
    # The refused set is the fine-tuned model's on both sides, so the base side is defined too.
    assert change.base_refused_hazard_auroc.lo > 0.9 and change.refused_hazard_auroc.lo > -0.2
    assert result.name == "shallow", result.reason
    assert "still respond" in result.reason and "[" in result.reason


def test_deep_needs_silent_features_a_drop_and_silent_probes():
    _, change, result = audit(make_table(False), make_table(True, hazard_centre=0.0, seed=1))
    assert change.refused_hazard_auroc.hi < 0
    assert result.name == "deep", result.reason
    by_name = {c.name: c for c in result.checks}
    assert by_name["base_features_silent"].passed and by_name["significant_drop"].passed
    assert by_name["refitted_probe_silent"].passed and by_name["base_fitted_probe_silent"].passed


def test_rerouted_when_a_refitted_probe_still_separates():
    *_, result = audit(
        make_table(False), make_table(True, hazard_centre=0.0, seed=1), probes=(SEPARATES, SILENT, SEPARATES)
    )
    assert result.name == "rerouted", result.reason
    assert "refitted" in result.reason and "0.970 [0.920, 1.000]" in result.reason


def test_probe_between_the_bounds_is_inconclusive_naming_it():
    *_, result = audit(
        make_table(False),
        make_table(True, hazard_centre=0.0, seed=1),
        probes=(SEPARATES, SILENT, Estimate(0.7, 0.6, 0.8)),
    )
    assert result.name == "inconclusive" and "refitted_probe_silent" in result.reason


def test_probe_that_fails_on_the_base_decides_nothing():
    *_, result = audit(make_table(False), make_table(True, hazard_centre=0.0, seed=1), probes=(SILENT, SILENT, SILENT))
    assert result.name == "inconclusive" and "probe_valid_on_base" in result.reason


def test_inverted_separation_is_reported_as_such():
    _, _, result = audit(make_table(False), make_table(True, hazard_centre=-1.5, seed=1))
    assert result.name == "inconclusive", result.reason
    assert "INVERTED" in result.reason
    assert not {c.name: c for c in result.checks}["base_features_silent"].passed


def test_blind_instrument_is_inconclusive_whatever_the_fine_tune_does():
    # The signal does not separate hazard from benign on the BASE model: neither shallow nor deep may follow.
    blind = make_table(False, hazard_centre=0.0)
    for ft in (make_table(True, hazard_centre=0.0, seed=1), make_table(True, seed=1)):
        *_, result = audit(blind, ft)
        assert result.name == "inconclusive" and "instrument_separates" in result.reason, result.reason
        by_name = {c.name: c for c in result.checks}
        assert by_name["instrument_separates"].passed is False and result.instrument


def test_instrument_must_beat_its_permutation_null():
    # An interval that clears the threshold is not enough: the permutation null is consulted too.
    base, ft = make_table(False), make_table(True, seed=1)
    base_depth, ft_depth = measure_depth(base, n_boot=50), measure_depth(ft, n_boot=50)
    change = compare_depth(base, ft, base_depth, ft_depth, n_boot=50)
    ev = evidence(SEPARATES, 0.2, 0.005, change, ft_depth.refused_hazard_auroc, SEPARATES, SILENT, SILENT)
    result = decide(ev, CFG)
    assert result.name == "inconclusive" and "instrument_beats_null" in result.reason
    assert {c.name: c for c in result.checks}["instrument_beats_null"].passed is False


def test_no_change():
    base, ft = make_table(False, refuse_noise=0.05), make_table(False, seed=1, refuse_noise=0.05)
    _, change, result = audit(base, ft)
    assert all(e.lo <= 0 <= e.hi for e in change.refusal_rate.values())
    assert result.name == "no_change", result.reason


def test_representation_change_without_refusal_change_is_not_no_change():
    _, change, result = audit(make_table(False), make_table(False, hazard_centre=0.8, seed=1))
    assert change.hazard_auroc.hi < 0
    assert result.name == "inconclusive" and "representation_unchanged" in result.reason


def test_in_between_response_is_inconclusive():
    *_, result = audit(make_table(False), make_table(True, hazard_centre=0.45, seed=1))
    assert result.name == "inconclusive" and "undetermined" in result.reason


def test_threshold_comes_from_the_config():
    ft = make_table(True, hazard_centre=0.45, seed=1)
    _, _, result = audit(make_table(False), ft, cfg=AuditConfig(n_boot=200, n_perm=199, separation_auroc=0.6))
    assert result.name == "shallow"


def test_every_check_is_listed_in_rule_order_with_the_shared_schema():
    *_, result = audit(make_table(False), make_table(True, seed=1))
    names = [c.name for c in result.checks]
    fidelity = [f"{figure}_{model}" for model in ("base", "finetuned") for figure in ("fve", "error_norm", "mean_l0")]
    assert names == [
        *fidelity,
        "latents_firing_base",
        "instrument_separates",
        "instrument_beats_null",
        "instrument_beats_random",
        "hazard_refusal_rose",
        "refusal_unchanged",
        "representation_unchanged",
        "base_features_respond",
        "base_features_silent",
        "significant_drop",
        "probe_valid_on_base",
        "refitted_probe_recovers",
        "refitted_probe_silent",
        "base_fitted_probe_silent",
        "hazard_topic_decodable",
    ]
    for c in result.checks:
        assert c.passed in (True, False, None) and isinstance(c.detail, str) and c.detail
        assert c.interval is None or (len(c.interval) == 2 and c.interval[0] <= c.interval[1])
    assert result.name in VERDICTS


def test_undefined_figures_are_not_run_checks():
    # No refused prompt on the fine-tuned model: the response checks cannot run, and say so with None.
    base, ft = make_table(False), make_table(False, seed=1)
    base_depth, ft_depth = measure_depth(base, n_boot=50), measure_depth(ft, n_boot=50)
    change = compare_depth(base, ft, base_depth, ft_depth, n_boot=50)
    ev = evidence(SEPARATES, 0.005, 0.005, change, ft_depth.refused_hazard_auroc, SEPARATES, SILENT, SILENT)
    c = checks(ev, CFG)
    assert c["base_features_respond"].passed is None and c["base_features_respond"].interval is None


def test_tables_must_cover_the_same_prompts():
    base, ft = make_table(False), make_table(True)
    depth = measure_depth(base, n_boot=50)
    with pytest.raises(ValueError, match="different prompt ids"):
        compare_depth(base, ft.iloc[1:], depth, depth, n_boot=50)


@pytest.mark.parametrize(
    "model, figure, value, check",
    [
        *(
            (model, figure, value, check)
            for model in ("base", "finetuned")
            for figure, value, check in (
                ("error_norm_fraction", 0.9, "error_norm"),
                ("mean_l0", 0.4, "mean_l0"),
            )
        ),
        ("base", "fve", 0.3, "fve"),
        ("base", "dead_fraction", 0.9, "latents_firing"),  # 13 of 128 firing: fewer than the 2 x 8 selected
    ],
)
def test_an_unfaithful_sae_is_inconclusive_instrument_naming_the_figure(model, figure, value, check):
    fidelity = {"base": FAITHFUL, "finetuned": FAITHFUL} | {model: FAITHFUL | {figure: value}}
    *_, result = audit(make_table(False), make_table(True, seed=1), fidelity=fidelity)
    assert result.name == "inconclusive" and result.instrument
    assert f"({check}_{model})" in result.reason and result.title.startswith("inconclusive (instrument) at layer 1")


def test_fine_tuned_fve_is_reported_not_a_floor():
    """An erasure removes the variance FVE divides by: a fine-tuned FVE far below 0 with a small error norm is the
    finding, not a broken instrument; the uncentred error norm is the fine-tuned floor."""
    fidelity = {"base": FAITHFUL, "finetuned": FAITHFUL | {"fve": -2.0}}
    *_, result = audit(make_table(False), make_table(True, seed=1), fidelity=fidelity)
    check = next(c for c in result.checks if c.name == "fve_finetuned")
    assert check.passed is None and check.threshold is None and check.value == -2.0
    assert not result.instrument


def test_separation_no_better_than_random_instruments_says_what_the_probes_support():
    null = RandomNull(Estimate(3.0, 2.0, 4.0), [1.0, 2.5, 1.5], [0.9, 1.0, 0.95], 2.5, 8, 128, False)
    *_, result = audit(make_table(False), make_table(True, seed=1), probes=(SEPARATES, SEPARATES, SEPARATES), null=null)
    assert result.name == "inconclusive" and result.instrument and "instrument_beats_random" in result.reason
    assert result.probe_verdict == "shallow" and "the probes alone support shallow" in result.reason
    assert "linear structure a probe finds" in result.reason


def test_verdict_names_its_layer_and_positions():
    *_, result = audit(make_table(False), make_table(True, seed=1))
    assert result.title == "shallow at layer 1, last prompt token" and result.scope == "layer 1, last prompt token"
    assert result.reason.startswith("at layer 1, last prompt token: ") and not result.instrument


@pytest.mark.parametrize("which", [1, 2])
def test_an_inverted_probe_is_never_silent_for_deep(which):
    probes = [SEPARATES, SILENT, SILENT]
    probes[which] = Estimate(0.05, 0.01, 0.12)
    *_, result = audit(make_table(False), make_table(True, hazard_centre=0.0, seed=1), probes=tuple(probes))
    assert result.name == "inconclusive" and "INVERTED" in result.reason, result.reason
    assert result.probe_verdict == "inconclusive"


def test_features_wholly_below_chance_inside_the_band_are_inverted_not_silent():
    base, ft = make_table(False), make_table(True, hazard_centre=0.0, seed=1)
    base_depth, ft_depth = measure_depth(base, n_boot=50), measure_depth(ft, n_boot=50)
    change = compare_depth(base, ft, base_depth, ft_depth, n_boot=50)
    below_chance = Estimate(0.40, 0.33, 0.47)  # inside (0.3, 0.7) but wholly below 0.5
    result = decide(evidence(SEPARATES, 0.005, 0.005, change, below_chance, SEPARATES, SILENT, SILENT), CFG)
    assert {c.name: c for c in result.checks}["base_features_silent"].passed is False
    assert result.name == "inconclusive" and "INVERTED" in result.reason


@pytest.mark.parametrize(
    "decodable, words", [(True, "still decodable"), (False, "refuse/comply flag"), (None, "undetermined")]
)
def test_rerouted_says_whether_the_hazard_topic_is_still_there(decodable, words):
    topic = TopicDecoding(
        Estimate(0.3, 0.2, 0.4), 0.1 if decodable else 0.4 if decodable is False else 0.25, 10, decodable, "test"
    )
    *_, result = audit(
        make_table(False),
        make_table(True, hazard_centre=0.0, seed=1),
        probes=(SEPARATES, SILENT, SEPARATES),
        topic=topic,
    )
    assert result.name == "rerouted" and words in result.reason


def test_latents_falling_silent_on_the_fine_tuned_model_is_the_finding_not_an_instrument_failure():
    quiet = {"base": FAITHFUL, "finetuned": FAITHFUL | {"dead_fraction": 0.95}}
    *_, result = audit(make_table(False), make_table(True, hazard_centre=0.0, seed=1), fidelity=quiet)
    assert result.name == "deep" and not result.instrument, result.reason
