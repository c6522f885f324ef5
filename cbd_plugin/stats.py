"""Detection statistics shared by both methods: AUROC with bootstrap intervals and a linear-probe baseline.

Thin wrappers over scikit-learn so that every number in a report comes with an interval computed the same way.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from scipy.stats import binomtest, rankdata
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from tqdm.auto import tqdm


def progress(iterable, desc: str, total: int | None = None):
    """A tqdm bar for a resampling loop, shown only when the loop has run 2 s (the many short bootstraps of a
    report stay silent) and only on a terminal (``disable=None``: quiet under CI and in logs)."""
    return tqdm(iterable, desc=desc, total=total, delay=2, disable=None, leave=False)


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


def bootstrap(statistic, *arrays, n_boot: int = 1000, level: float = 0.95, seed: int = 0, stratify=None) -> Estimate:
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
    for _ in progress(range(n_boot), "bootstrap"):
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
    return bootstrap(
        auroc, np.asarray(scores, dtype=np.float64), labels, n_boot=n_boot, level=level, seed=seed, stratify=labels
    )


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
    return np.array([statistic(scores, rng.permutation(labels)) for _ in progress(range(n_perm), "permutations")])


def proportion_ci(successes: int, n: int, level: float = 0.95) -> Estimate:
    """A binomial proportion with its Wilson score interval (scipy's ``binomtest``): unlike the bootstrap it
    stays informative at 0 of n and n of n, which is where fire rates of backdoor behaviour live."""
    if not 0 <= successes <= n or n < 1:
        raise ValueError(f"proportion_ci: need 0 <= successes <= n and n >= 1, got {successes} of {n}")
    interval = binomtest(int(successes), int(n)).proportion_ci(confidence_level=level, method="wilson")
    return Estimate(successes / n, float(interval.low), float(interval.high), level)


def auroc_ci_many(pos, neg, n_boot: int = 1000, level: float = 0.95, seed: int = 0):
    """AUROC of ``pos [n_pos, m]`` vs ``neg [n_neg, m]`` for m scores at once, with percentile-bootstrap intervals
    (each class resampled on its own, as ``auroc_ci``); returns ``(value, lo, hi)`` arrays of length m.

    Written out because it is the analyses' hot loop: one draw of resampling counts serves all m scores, and the
    AUROC of a resample is ``w_pos . C . w_neg / (n_pos n_neg)`` for the pairwise comparison matrix C, ~100x
    cheaper than m calls of ``auroc_ci``.
    """
    pos, neg = np.asarray(pos, dtype=np.float64), np.asarray(neg, dtype=np.float64)
    if pos.ndim != 2 or neg.ndim != 2 or pos.shape[1] != neg.shape[1] or not len(pos) or not len(neg):
        raise ValueError(f"auroc_ci_many: need non-empty [n, m] arrays with equal m, got {pos.shape}, {neg.shape}")
    if not (np.isfinite(pos).all() and np.isfinite(neg).all()):
        raise ValueError("auroc_ci_many: scores must be finite")
    rng = np.random.default_rng(seed)
    w_pos = rng.multinomial(len(pos), np.full(len(pos), 1 / len(pos)), size=n_boot).astype(np.float64)
    w_neg = rng.multinomial(len(neg), np.full(len(neg), 1 / len(neg)), size=n_boot).astype(np.float64)
    value, reps = np.empty(pos.shape[1]), np.empty((n_boot, pos.shape[1]))
    for j in range(pos.shape[1]):
        compare = (pos[:, j, None] > neg[None, :, j]) + 0.5 * (pos[:, j, None] == neg[None, :, j])
        value[j] = compare.mean()
        reps[:, j] = ((w_pos @ compare) * w_neg).sum(1) / compare.size
    alpha = (1 - level) / 2
    lo, hi = np.quantile(reps, [alpha, 1 - alpha], axis=0)
    return value, lo, hi
