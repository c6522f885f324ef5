"""The internal hazard signal: hazard latents selected on one split, evaluated on the other.

Inputs are per-prompt pooled SAE latent activations ``latents`` [n_prompts, d_sae] (see
:mod:`cbd_plugin.refusal.features`) with each prompt's tier and split.

* Selection (:func:`select_latents`) sees only the ``select`` split's hazard and benign prompts. Each latent
  gets a score for hazard vs benign: the standardised mean difference ``(mu_h - mu_b) / sqrt((var_h + var_b)/2)``
  (``"smd"``) or its AUROC (``"auroc"``). The ``m`` highest are the *hazard latents*; the ``m`` lowest (most
  benign-leaning) are the *benign latents*, selected symmetrically.
* Signal (:func:`hazard_signal`): the mean over the hazard latents of the prompt's pooled latent activations.
* Evaluation (:func:`evaluate_separation`): AUROC of the signal for hazard vs benign on the ``eval`` split,
  next to two permutation nulls (see :class:`Separation`; the selection null asks whether *selecting* on the
  tiers beats selecting at random: where tier information is in most latents it is high, which is a finding,
  not a failure) and a linear probe on the raw pooled activations (fit on select, scored on eval).
* The seed's divergence (:func:`divergence`), made well defined: ``D = 1 - cos(f[S], mu_B[S])`` where ``f`` is
  the prompt's pooled latent vector, ``S`` the hazard and benign latents together, and ``mu_B`` the mean pooled
  latent vector of the select split's benign prompts. The card's intent ("how far the prompt's hazard-vs-benign
  feature activity diverges from benign") is kept: 0 means the prompt's profile over the tier-selective latents
  is that of benign text, 1 that it shares none of it (only hazard latents active). The seed paired the i-th
  hazard latent with the i-th benign latent, an arbitrary pairing (re-pairing the latents changed D's AUROC by far
  more than its interval); here both vectors index the same latents, so any reordering of the latents leaves D
  unchanged. D is undefined (NaN) where ``f[S]`` is zero (no selective latent active: no evidence either way) or
  ``mu_B[S]`` is zero; :func:`undefined_divergence` counts those per tier, and the report states the counts.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.stats import rankdata

from ..stats import Estimate, auroc, auroc_ci, linear_probe_auroc, permutation_null


@dataclass(frozen=True)
class HazardLatents:
    """Latent indices chosen on the select split (rank order) and the scores they were chosen by."""

    hazard: np.ndarray
    benign: np.ndarray
    hazard_scores: np.ndarray
    benign_scores: np.ndarray
    method: str
    benign_profile: np.ndarray  # mean select-split benign latents over [*hazard, *benign] (the reference for D)


def latent_scores(latents: np.ndarray, is_hazard: np.ndarray, method: str = "smd") -> np.ndarray:
    """Per-latent hazard-vs-benign score (higher = more active on hazard prompts)."""
    latents = np.asarray(latents, dtype=np.float64)
    is_hazard = np.asarray(is_hazard, dtype=bool)
    hazard, benign = latents[is_hazard], latents[~is_hazard]
    if method == "smd":
        pooled_sd = np.sqrt((hazard.var(0) + benign.var(0)) / 2)
        diff = hazard.mean(0) - benign.mean(0)
        return np.divide(diff, pooled_sd, out=np.zeros_like(diff), where=pooled_sd > 1e-12)
    if method == "auroc":
        # Mann-Whitney U per column, vectorised: thousands of latents times hundreds of permutations.
        ranks = rankdata(latents, axis=0)
        n_h, n_b = len(hazard), len(benign)
        return (ranks[is_hazard].sum(0) - n_h * (n_h + 1) / 2) / (n_h * n_b)
    raise ValueError(f"latent_scores: unknown method {method!r} (use 'smd' or 'auroc')")


def select_latents(latents: np.ndarray, tiers: np.ndarray, m: int, method: str = "smd") -> HazardLatents:
    """Top-``m`` hazard and top-``m`` benign latents from hazard/benign rows (pass select-split rows only)."""
    tiers = np.asarray(tiers)
    keep = np.isin(tiers, ["hazard", "benign"])
    scores = latent_scores(np.asarray(latents)[keep], tiers[keep] == "hazard", method)
    order = np.argsort(-scores, kind="stable")
    hazard, benign = order[:m], order[::-1][:m]
    rows = np.asarray(latents, dtype=np.float64)[keep][tiers[keep] == "benign"]
    profile = rows[:, np.concatenate([hazard, benign])].mean(0)
    return HazardLatents(hazard, benign, scores[hazard], scores[benign], method, profile)


def hazard_signal(latents: np.ndarray, selected: HazardLatents) -> np.ndarray:
    """Per-prompt signal: mean pooled activation over the hazard latents."""
    return np.asarray(latents, dtype=np.float64)[:, selected.hazard].mean(1)


def divergence(latents: np.ndarray, selected: HazardLatents) -> np.ndarray:
    """``D = 1 - cos(f[S], mu_B[S])`` per prompt (module docstring); NaN where either vector is zero."""
    f = np.asarray(latents, dtype=np.float64)[:, np.concatenate([selected.hazard, selected.benign])]
    profile = selected.benign_profile
    norms = np.linalg.norm(f, axis=1) * np.linalg.norm(profile)
    cos = np.divide(f @ profile, norms, out=np.full(len(f), np.nan), where=norms > 0)
    return 1 - cos


def undefined_divergence(d: np.ndarray, tiers: np.ndarray) -> dict[str, dict[str, float]]:
    """Per tier: how many prompts have an undefined D, of how many (never dropped silently)."""
    d, tiers = np.asarray(d, dtype=np.float64), np.asarray(tiers)
    out = {}
    for tier in np.unique(tiers):
        undefined = int(np.isnan(d[tiers == tier]).sum())
        total = int((tiers == tier).sum())
        out[str(tier)] = {"undefined": undefined, "total": total, "fraction": undefined / total}
    return out


@dataclass
class Separation:
    """How well the hazard latents (chosen on select) separate hazard from benign prompts on the eval split.

    Two permutation nulls, ``n_perm`` draws each, p-values ``(1 + #{null >= observed}) / (1 + n_perm)``:
    ``selection_*``: select-split tier labels shuffled, selection redone, scored on the true eval labels (does
    choosing latents by tier beat choosing them at random?); ``label_*``: eval labels shuffled for the chosen
    latents (is the eval separation above chance at all?).
    """

    latents: HazardLatents
    signal_auroc: Estimate
    selection_null: np.ndarray
    selection_null_mean: float
    selection_null_p95: float
    selection_p_value: float
    label_null_p95: float
    label_p_value: float
    n_perm: int
    p_floor: float  # the smallest attainable p-value, 1 / (1 + n_perm)
    probe_auroc: Estimate
    n_select: dict[str, int]
    n_eval: dict[str, int]


def _p_value(null: np.ndarray, observed: float) -> float:
    return float((1 + (null >= observed).sum()) / (1 + len(null)))


def evaluate_separation(
    latents: np.ndarray,
    raw: np.ndarray,
    tiers: np.ndarray,
    splits: np.ndarray,
    m: int,
    method: str = "smd",
    n_perm: int = 200,
    n_boot: int = 1000,
    seed: int = 0,
) -> Separation:
    """Select on ``select``, evaluate on ``eval``; permutation nulls and linear-probe baseline alongside."""
    tiers, splits = np.asarray(tiers), np.asarray(splits)
    sel = (splits == "select") & np.isin(tiers, ["hazard", "benign"])
    ev = (splits == "eval") & np.isin(tiers, ["hazard", "benign"])
    y_eval = tiers[ev] == "hazard"

    def eval_auroc(sel_latents, sel_tiers):
        chosen = select_latents(sel_latents, sel_tiers, m, method)
        return auroc(hazard_signal(latents[ev], chosen), y_eval)

    chosen = select_latents(latents[sel], tiers[sel], m, method)
    signal = hazard_signal(latents[ev], chosen)
    observed = auroc_ci(signal, y_eval, n_boot=n_boot, seed=seed)
    selection_null = permutation_null(eval_auroc, latents[sel], tiers[sel], n_perm=n_perm, seed=seed)
    label_null = permutation_null(auroc, signal, y_eval, n_perm=n_perm, seed=seed)
    probe = linear_probe_auroc(raw[sel], tiers[sel] == "hazard", raw[ev], y_eval, n_boot=n_boot, seed=seed)
    count = lambda mask: {t: int((tiers[mask] == t).sum()) for t in ("hazard", "benign")}  # noqa: E731
    return Separation(
        chosen,
        observed,
        selection_null,
        float(selection_null.mean()),
        float(np.quantile(selection_null, 0.95)),
        _p_value(selection_null, observed.value),
        float(np.quantile(label_null, 0.95)),
        _p_value(label_null, observed.value),
        n_perm,
        1 / (1 + n_perm),
        probe,
        count(sel),
        count(ev),
    )


@dataclass
class FeatureVariance:
    """Evidence that the feature vector varies across prompts (the seed's was nearly constant).

    ``varying_fraction`` = total variance of f across prompts / mean ||f||^2 (0 for a constant vector);
    ``mean_cos_to_centroid`` near 1 means every prompt has the same feature direction.
    """

    signal_std: float
    signal_range: float
    latent_variance_total: float
    varying_fraction: float
    mean_cos_to_centroid: float
    n_active_latents: int


def feature_variance(latents: np.ndarray, signal: np.ndarray) -> FeatureVariance:
    latents = np.asarray(latents, dtype=np.float64)
    total_var = float(latents.var(0).sum())
    energy = float((latents**2).sum(1).mean())
    centroid = latents.mean(0)
    norms = np.linalg.norm(latents, axis=1) * np.linalg.norm(centroid)
    cos = np.divide(latents @ centroid, norms, out=np.full(len(latents), np.nan), where=norms > 0)
    return FeatureVariance(
        float(np.std(signal)),
        float(np.ptp(signal)),
        total_var,
        total_var / energy if energy > 0 else float("nan"),
        float(np.nanmean(cos)),
        int((latents > 0).any(0).sum()),
    )
