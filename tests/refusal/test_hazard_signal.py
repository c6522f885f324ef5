"""Hazard-latent selection, signal, permutation null, probe baseline and D, on synthetic activations."""

import numpy as np
import pytest

from cbd_plugin.refusal.hazard_signal import (
    HazardLatents,
    divergence,
    evaluate_separation,
    feature_variance,
    hazard_signal,
    latent_scores,
    select_latents,
    undefined_divergence,
)
from cbd_plugin.stats import auroc

D_MODEL, D_SAE = 16, 64


def planted(n_per_tier=40, strength=3.0, seed=0):
    """Residuals with a hazard direction added to hazard prompts, encoded by a random ReLU dictionary."""
    rng = np.random.default_rng(seed)
    tiers = np.repeat(["benign", "dual_use", "hazard"], n_per_tier)
    splits = np.tile(np.where(np.arange(n_per_tier) % 2 == 0, "select", "eval"), 3)
    direction = rng.normal(size=D_MODEL)
    direction /= np.linalg.norm(direction)
    raw = rng.normal(size=(len(tiers), D_MODEL)) + strength * np.outer(tiers == "hazard", direction)
    encoder = rng.normal(size=(D_MODEL, D_SAE))
    latents = np.maximum(raw @ encoder - 1.0, 0)
    return latents, raw, tiers, splits


def test_planted_hazard_direction_is_found_and_beats_the_null():
    latents, raw, tiers, splits = planted()
    sep = evaluate_separation(latents, raw, tiers, splits, m=4, n_perm=199, n_boot=200)
    assert sep.signal_auroc.value > 0.9 and sep.signal_auroc.lo > 0.75
    # Random latents carry the planted direction too (either sign), so the null is wide, but centred on chance.
    assert sep.selection_null_mean == pytest.approx(0.5, abs=0.1)
    assert sep.selection_null_p95 < sep.signal_auroc.value and sep.selection_p_value <= 2 / 200
    assert sep.label_null_p95 < 0.75 and sep.label_p_value == sep.p_floor == 1 / 200
    assert sep.probe_auroc.value > 0.9
    assert sep.n_select == {"hazard": 20, "benign": 20} and sep.n_eval == {"hazard": 20, "benign": 20}


def test_shuffled_tier_labels_collapse_separation_to_chance():
    latents, raw, tiers, splits = planted()
    shuffled = np.random.default_rng(1).permutation(tiers)
    sep = evaluate_separation(latents, raw, shuffled, splits, m=4, n_perm=100, n_boot=200)
    assert 0.3 < sep.signal_auroc.value < 0.7
    assert sep.signal_auroc.lo < 0.5 < sep.signal_auroc.hi
    assert sep.selection_p_value > 0.05 and sep.label_p_value > 0.05
    assert 0.25 < sep.probe_auroc.value < 0.75


def test_selection_sees_only_the_select_split():
    # Latent 0 separates hazard from benign on the select split only (spurious); latent 1 on the eval split only.
    rng = np.random.default_rng(0)
    n = 80
    tiers = np.tile(["benign", "hazard"], n // 2)
    splits = np.repeat(["select", "eval"], n // 2)
    latents = rng.uniform(0, 1, size=(n, 10))
    latents[:, 0] += 5 * ((tiers == "hazard") & (splits == "select"))
    latents[:, 1] += 5 * ((tiers == "hazard") & (splits == "eval"))
    sep = evaluate_separation(latents, latents, tiers, splits, m=1, n_perm=50, n_boot=200)
    assert sep.latents.hazard.tolist() == [0]  # chosen on select; latent 1 is invisible there
    assert sep.signal_auroc.lo < 0.5 < sep.signal_auroc.hi  # ...and honestly reported as chance on eval
    assert sep.label_p_value > 0.05
    # Selecting on the eval rows would have picked latent 1: the test can tell the two apart.
    assert select_latents(latents[splits == "eval"], tiers[splits == "eval"], 1).hazard.tolist() == [1]


def test_auroc_scores_agree_with_stats_auroc():
    latents, _, tiers, _ = planted(n_per_tier=15)
    keep = tiers != "dual_use"
    scores = latent_scores(latents[keep], tiers[keep] == "hazard", "auroc")
    some = [j for j in range(D_SAE) if latents[keep][:, j].std() > 0][:10]
    for j in some:
        assert scores[j] == pytest.approx(auroc(latents[keep][:, j], tiers[keep] == "hazard"))


def test_benign_latents_are_selected_symmetrically():
    latents, _, tiers, _splits = planted()
    chosen = select_latents(latents, tiers, m=3)
    assert len(chosen.hazard) == len(chosen.benign) == 3
    assert set(chosen.hazard).isdisjoint(chosen.benign)
    assert (np.diff(chosen.hazard_scores) <= 0).all() and (np.diff(chosen.benign_scores) >= 0).all()
    assert chosen.hazard_scores.min() > chosen.benign_scores.max()


def test_divergence_compares_the_prompt_with_the_benign_profile_over_the_selected_latents():
    chosen = HazardLatents(
        np.array([0, 1]),
        np.array([2, 3]),
        np.zeros(2),
        np.zeros(2),
        "smd",
        benign_profile=np.array([0.0, 0.0, 1.0, 1.0]),
    )  # over [*hazard, *benign]
    f = np.zeros((4, 6))
    f[0, [2, 3]] = [2, 2]  # exactly the benign profile (scaled): D = 0
    f[1, [0, 1]] = [1, 3]  # only hazard latents: orthogonal to benign, D = 1
    f[2, [4, 5]] = [5, 5]  # only unselected latents: no evidence either way, undefined
    f[3, [0, 2]] = [1, 1]  # half and half: D = 1 - 1/2
    d = divergence(f, chosen)
    assert d[0] == pytest.approx(0) and d[1] == pytest.approx(1) and np.isnan(d[2])
    assert d[3] == pytest.approx(0.5)
    counts = undefined_divergence(d, np.array(["benign", "hazard", "hazard", "hazard"]))
    assert counts == {
        "benign": {"undefined": 0, "total": 1, "fraction": 0.0},
        "hazard": {"undefined": 1, "total": 3, "fraction": pytest.approx(1 / 3)},
    }


def test_divergence_is_invariant_to_latent_order():
    # The seed paired the i-th hazard latent with the i-th benign one: reordering latents changed D. Here any
    # permutation of the SAE's latents (selection redone on the permuted codes) leaves every D unchanged.
    latents, _, tiers, splits = planted()
    sel = splits == "select"
    d = divergence(latents, select_latents(latents[sel], tiers[sel], m=4))
    for seed in range(3):
        perm = np.random.default_rng(seed).permutation(D_SAE)
        shuffled = latents[:, perm]
        d_perm = divergence(shuffled, select_latents(shuffled[sel], tiers[sel], m=4))
        np.testing.assert_allclose(d_perm, d, equal_nan=True)


def test_feature_variance_tells_a_constant_vector_from_a_varying_one():
    latents, _, tiers, _ = planted()
    chosen = select_latents(latents, tiers, m=4)
    varying = feature_variance(latents, hazard_signal(latents, chosen))
    assert varying.signal_std > 0.1 and varying.varying_fraction > 0.2 and varying.mean_cos_to_centroid < 0.95
    constant = np.tile(latents[:1], (len(latents), 1))
    flat = feature_variance(constant, hazard_signal(constant, chosen))
    assert flat.signal_std == pytest.approx(0, abs=1e-12) and flat.varying_fraction == pytest.approx(0)
    assert flat.mean_cos_to_centroid == pytest.approx(1)
