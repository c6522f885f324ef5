"""Detection statistics shared by both methods: AUROC with bootstrap intervals and a linear-probe baseline.

Thin wrappers over scikit-learn so that every number in a report comes with an interval computed the same way.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from scipy.stats import rankdata
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler


@dataclass(frozen=True)
class Estimate:
    """A point estimate with a percentile-bootstrap interval (``lo``/``hi`` at level ``level``)."""

    value: float
    lo: float
    hi: float
    level: float = 0.95

    def to_dict(self) -> dict:
        return asdict(self)


def _check_binary(labels: np.ndarray, what: str) -> np.ndarray:
    labels = np.asarray(labels).astype(bool)
    if labels.all() or not labels.any():
        raise ValueError(f"{what}: needs both classes, got {int(labels.sum())} positives of {labels.size}")
    return labels


def auroc(scores, labels) -> float:
    """AUROC of ``scores`` for the positive class of boolean ``labels`` (ties count one half).

    The Mann-Whitney form on average ranks: equal to ``sklearn.metrics.roc_auc_score`` and ~50x cheaper per
    call, which matters inside bootstraps and permutation nulls.
    """
    labels = _check_binary(labels, "auroc")
    scores = np.asarray(scores, dtype=np.float64)
    if scores.shape != labels.shape or not np.isfinite(scores).all():
        raise ValueError(f"auroc: scores must be finite and shaped like labels {labels.shape}, got {scores.shape}")
    n_pos = int(labels.sum())
    n_neg = labels.size - n_pos
    return float((rankdata(scores)[labels].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def bootstrap(statistic, *arrays, n_boot: int = 1000, level: float = 0.95, seed: int = 0,
              stratify=None) -> Estimate:
    """Percentile bootstrap of ``statistic(*arrays)``, resampling rows jointly.

    ``stratify`` (an array of group labels) resamples within each group so that every replicate keeps the
    group sizes, e.g. both classes for an AUROC. Replicates where the statistic is undefined are skipped.
    """
    arrays = [np.asarray(a) for a in arrays]
    n = len(arrays[0])
    if any(len(a) != n for a in arrays):
        raise ValueError(f"bootstrap: arrays differ in length: {[len(a) for a in arrays]}")
    point = float(statistic(*arrays))
    rng = np.random.default_rng(seed)
    groups = [np.arange(n)] if stratify is None else [np.flatnonzero(stratify == g) for g in np.unique(stratify)]
    reps = []
    for _ in range(n_boot):
        idx = np.concatenate([rng.choice(g, size=len(g), replace=True) for g in groups])
        try:
            reps.append(float(statistic(*(a[idx] for a in arrays))))
        except ValueError:
            continue
    if not reps:
        return Estimate(point, float("nan"), float("nan"), level)
    alpha = (1 - level) / 2
    lo, hi = np.quantile(reps, [alpha, 1 - alpha])
    return Estimate(point, float(lo), float(hi), level)


def auroc_ci(scores, labels, n_boot: int = 1000, level: float = 0.95, seed: int = 0) -> Estimate:
    """AUROC with a class-stratified percentile-bootstrap interval."""
    labels = _check_binary(labels, "auroc_ci")
    return bootstrap(auroc, np.asarray(scores, dtype=np.float64), labels, n_boot=n_boot, level=level,
                     seed=seed, stratify=labels)


def fit_linear_probe(x, y, seed: int = 0, c: float = 1.0):
    """Standardised L2 logistic regression: the baseline every latent-based detector is compared with."""
    y = _check_binary(y, "fit_linear_probe")
    probe = make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=2000, random_state=seed))
    return probe.fit(np.asarray(x, dtype=np.float64), y)


def linear_probe_auroc(x_fit, y_fit, x_eval, y_eval, n_boot: int = 1000, seed: int = 0) -> Estimate:
    """Fit a linear probe on one split and report its AUROC (with interval) on another."""
    probe = fit_linear_probe(x_fit, y_fit, seed=seed)
    scores = probe.decision_function(np.asarray(x_eval, dtype=np.float64))
    return auroc_ci(scores, y_eval, n_boot=n_boot, seed=seed)


def permutation_null(statistic, scores, labels, n_perm: int = 200, seed: int = 0) -> np.ndarray:
    """Values of ``statistic(scores, shuffled_labels)`` under label permutation."""
    rng = np.random.default_rng(seed)
    labels = np.asarray(labels)
    return np.array([statistic(scores, rng.permutation(labels)) for _ in range(n_perm)])
