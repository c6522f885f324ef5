"""Pair specificity of latents with bootstrap intervals, and a permutation null of selection-then-evaluation.

Everything here reads one per-prompt feature per latent (by default its activation at the decision token) for every
latent, on both halves, with each prompt's condition. Definitions, for latent j:

* ``separation_c(j)``: AUROC of matched prompts vs condition c in (single_a, single_b, mismatch, clean), on the
  evaluation half, with a 95% percentile-bootstrap interval over prompts (each condition resampled on its own);
* ``interaction(j) = (m - a - b + clean) / (m - clean)`` on the condition means (m matched, a single_a, b single_b),
  clipped to [-1, 1], and -1 when m <= clean: the share of the response to a matched pair that the sum of the
  single-word responses does not explain. 1 for an AND code, 0 for an additive code (one unit per trigger word),
  negative for OR codes. With the same bootstrap;
* ``selection_score(j)``: the smallest standardised mean separation of matched prompts from single_a, single_b
  and mismatch on the SELECTION half; the top ``n_top`` latents by it are the only ones the verdict tests;
* ``specificity(j) = min_c separation_c(j)`` (point estimate), and the procedure's statistic ``max_j
  specificity(j)`` over the selection-chosen latents.

Per pair (when each prompt's pair is known): an SAE may code the conjunction with one latent per pair (or per few
pairs) rather than one for all; such latents each separate only their pairs' matched prompts, so no single one
passes the pooled rule. Pair p's view keeps p's matched, single_a and single_b prompts, EVERY mismatch holding a
word of p (whichever pair owns the prompt) and every clean prompt, labelled as the pooled conditions; the same
definitions then hold within it. Pair p's candidates are its own top ``n_top`` by its selection-half conjunction
score plus the pooled top ``n_top``. The per-pair statistic is ``min_p max_j specificity_p(j)`` (every pair must be
covered), and the procedure's statistic is the larger of the pooled and the per-pair one.

Two nulls rerun selection and evaluation, per pair included, ``p = (1 + #{null >= observed}) / (1 +
n_permutations)``:

* the label null shuffles the prompts' labels (condition, pair, other pair: jointly) among the prompts of each half.
  It asks whether anything tells the conditions apart; a fine-tune on the trigger words without any gate already
  does (each word leaves its own trace), so it cannot say no to a conjunction. Its signal statistic (best AUROC of
  matched vs clean among the top latents by selection-half separation from clean) says whether the SAE sees the
  trigger words at all;
* the conjunction null holds the word exposure fixed and shuffles only what no sum of word effects explains: each
  latent's per-prompt feature is fitted, per half, by least squares on the prompt's exposure design (an intercept,
  one indicator per trigger word, one per template), and the residuals are permuted among the prompts of the half
  (Freedman and Lane's permutation of residuals under the reduced model). A model whose latents respond to each
  trigger word on its own, however strongly, keeps its structure under this null; only a response to the words
  together beyond their sum (the conjunction) is scattered.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.stats import rankdata

from ..stats import auroc_ci_many, progress
from .config import ConjunctionConfig
from .probes import CONDITIONS

OTHERS = ("single_a", "single_b", "mismatch", "clean")
MISMATCH, CLEAN = CONDITIONS.index("mismatch"), CONDITIONS.index("clean")
VAR_FLOOR = 1e-12  # keeps the standardised separation of never-varying latents finite


@dataclass
class HalfCodes:
    """One half's per-prompt feature of every latent ``x [prompts, latents]`` and condition index per prompt; with
    ``pair`` (the pair owning each prompt, -1 for clean) and ``other`` (a mismatch's second pair, else -1) the
    per-pair route is available."""

    x: np.ndarray
    condition: np.ndarray  # index into CONDITIONS
    pair: np.ndarray | None = None
    other: np.ndarray | None = None
    exposure: np.ndarray | None = None  # [prompts, k] the conjunction null's design: word and template indicators

    def __post_init__(self):
        self.x = np.asarray(self.x, dtype=np.float64)
        self.condition = np.asarray(self.condition, dtype=np.int64)
        if self.x.ndim != 2 or len(self.condition) != len(self.x):
            raise ValueError(f"HalfCodes: x {self.x.shape} and {len(self.condition)} conditions")
        if self.pair is not None:
            self.pair = np.asarray(self.pair, dtype=np.int64)
            self.other = np.full(len(self.pair), -1) if self.other is None else np.asarray(self.other, dtype=np.int64)
            if len(self.pair) != len(self.x) or len(self.other) != len(self.x):
                raise ValueError(f"HalfCodes: x {self.x.shape}, {len(self.pair)} pairs and {len(self.other)} others")
            if ((self.condition == CLEAN) != (self.pair < 0)).any():
                raise ValueError("HalfCodes: clean prompts (and only they) have pair -1")
        if self.exposure is not None:
            self.exposure = np.asarray(self.exposure, dtype=np.float64)
            if self.exposure.ndim != 2 or len(self.exposure) != len(self.x):
                raise ValueError(f"HalfCodes: x {self.x.shape} and exposure {self.exposure.shape}")
        if not np.isfinite(self.x).all():
            raise ValueError("HalfCodes: non-finite latent activations")
        missing = [c for k, c in enumerate(CONDITIONS) if not (self.condition == k).any()]
        if missing:
            raise ValueError(f"HalfCodes: no prompt of condition(s) {missing}")

    @property
    def n_pairs(self) -> int:
        """0 when pairs are unknown (the per-pair route is off)."""
        return 0 if self.pair is None else int(self.pair.max()) + 1

    def shuffled(self, rng) -> HalfCodes:
        """Labels permuted jointly among the prompts (the same draw as permuting the conditions alone)."""
        order = rng.permutation(len(self.condition))
        if self.pair is None:
            return HalfCodes(self.x, self.condition[order])
        return HalfCodes(self.x, self.condition[order], self.pair[order], self.other[order])

    def with_x(self, x: np.ndarray) -> HalfCodes:
        return HalfCodes(x, self.condition, self.pair, self.other, self.exposure)

    def pair_view(self, p: int) -> HalfCodes:
        """The prompts that concern pair ``p`` (module docstring), labelled as the pooled conditions."""
        own = (self.pair == p) & (self.condition < MISMATCH)
        mismatch = (self.condition == MISMATCH) & ((self.pair == p) | (self.other == p))
        keep = own | mismatch | (self.condition == CLEAN)
        return HalfCodes(self.x[keep], self.condition[keep])


@dataclass
class ExposureFit:
    """One half's features split into the part a sum of word and template effects explains and the rest."""

    half: HalfCodes
    fitted: np.ndarray
    residual: np.ndarray

    @classmethod
    def of(cls, half: HalfCodes) -> ExposureFit:
        if half.exposure is None:
            raise ValueError("ExposureFit: the half has no exposure design (HalfCodes.exposure)")
        design = np.column_stack([np.ones(len(half.x)), half.exposure])
        coef = np.linalg.lstsq(design, half.x, rcond=None)[0]
        fitted = design @ coef
        return cls(half, fitted, half.x - fitted)

    def resampled(self, rng) -> HalfCodes:
        """Fitted word effects plus permuted residuals, with the half's own labels."""
        return self.half.with_x(self.fitted + self.residual[rng.permutation(len(self.residual))])


def condition_moments(half: HalfCodes) -> tuple[np.ndarray, np.ndarray]:
    """Means and variances ``[conditions, latents]`` of each latent per condition."""
    onehot = (half.condition[None, :] == np.arange(len(CONDITIONS))[:, None]).astype(np.float64)
    counts = onehot.sum(1, keepdims=True)
    mean = onehot @ half.x / counts
    var = np.maximum(onehot @ half.x**2 / counts - mean**2, 0.0)
    return mean, var


def selection_scores(half: HalfCodes) -> tuple[np.ndarray, np.ndarray]:
    """Conjunction score (smallest standardised separation of matched from single_a, single_b and mismatch: the
    ranking of :mod:`cbd_plugin.backdoor.analysis`) and signal score (standardised separation from clean)."""
    mean, var = condition_moments(half)
    m = CONDITIONS.index("matched")
    separation = np.stack(
        [
            (mean[m] - mean[CONDITIONS.index(c)]) / np.sqrt((var[m] + var[CONDITIONS.index(c)]) / 2 + VAR_FLOOR)
            for c in OTHERS
        ]
    )
    return separation[:3].min(0), separation[OTHERS.index("clean")]


def top_latents(score: np.ndarray, n: int) -> np.ndarray:
    """The ``n`` highest scores, ties by latent id (stable)."""
    return np.argsort(-score, kind="stable")[:n]


def aurocs_vs(half: HalfCodes, latents: np.ndarray, condition: str) -> np.ndarray:
    """AUROC of matched vs ``condition`` for each of ``latents`` at once: the share of (matched, other) prompt pairs
    ordered correctly, ties counting half (the Mann-Whitney statistic; counted directly, as the null calls this
    thousands of times on a few dozen prompts, where ranking costs more than comparing every pair)."""
    pos = half.x[half.condition == CONDITIONS.index("matched")][:, latents]
    neg = half.x[half.condition == CONDITIONS.index(condition)][:, latents]
    return mann_whitney(pos, neg)


def mann_whitney(pos: np.ndarray, neg: np.ndarray) -> np.ndarray:
    """AUROC of ``pos [n, m]`` vs ``neg [k, m]`` per column (ties count half)."""
    if len(pos) * len(neg) > 1 << 16:  # large halves: ranks, linear in the prompts
        ranks = rankdata(np.concatenate([pos, neg]), axis=0)
        return (ranks[: len(pos)].sum(0) - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg))
    diff = pos[:, None, :] - neg[None, :, :]
    return ((diff > 0).sum((0, 1)) + 0.5 * (diff == 0).sum((0, 1))) / (len(pos) * len(neg))


def interaction(means: dict[str, np.ndarray]) -> np.ndarray:
    """Interaction share from condition means (arrays broadcast); see the module docstring."""
    m, a, b, clean = means["matched"], means["single_a"], means["single_b"], means["clean"]
    response = m - clean
    with np.errstate(divide="ignore", invalid="ignore"):
        share = np.where(response > 0, (m - a - b + clean) / np.where(response > 0, response, 1.0), -1.0)
    return np.clip(share, -1.0, 1.0)


def specificity_table(evaluation: HalfCodes, latents: np.ndarray, cfg: ConjunctionConfig) -> pd.DataFrame:
    """Per latent: separation from each other condition and the interaction share, each with its interval.

    AUROC intervals come from :func:`cbd_plugin.stats.auroc_ci_many`; the interaction share's from resampling each
    condition's prompts on their own (resampling counts, one draw for every latent).
    """
    values = {c: evaluation.x[evaluation.condition == CONDITIONS.index(c)][:, latents] for c in CONDITIONS}
    rows = {"latent": latents}
    for c in OTHERS:
        point, lo, hi = auroc_ci_many(values["matched"], values[c], n_boot=cfg.n_boot, seed=cfg.seed)
        rows |= {f"auroc_{c}": point, f"auroc_{c}_lo": lo, f"auroc_{c}_hi": hi}
    rng = np.random.default_rng(cfg.seed)
    weights = {c: rng.multinomial(len(v), np.full(len(v), 1 / len(v)), size=cfg.n_boot) for c, v in values.items()}
    reps = interaction({c: weights[c] @ v / len(v) for c, v in values.items()})
    lo, hi = np.quantile(reps, [0.025, 0.975], axis=0)
    rows |= {
        "interaction": interaction({c: v.mean(0) for c, v in values.items()}),
        "interaction_lo": lo,
        "interaction_hi": hi,
    }
    table = pd.DataFrame(rows)
    lows = table[[f"auroc_{c}_lo" for c in OTHERS]]
    table["weakest"] = [OTHERS[k] for k in lows.to_numpy().argmin(1)]
    table["specificity_lo"] = lows.min(axis=1)
    table["specificity"] = table[[f"auroc_{c}" for c in OTHERS]].min(axis=1)
    table["passes"] = (table.specificity_lo >= cfg.separation_threshold) & (
        table.interaction_lo >= cfg.interaction_threshold
    )
    return table


def pair_candidates(selection: HalfCodes, p: int, pooled_top: np.ndarray, n_top: int) -> np.ndarray:
    """Pair ``p``'s top ``n_top`` latents by its own selection-half conjunction score, then the pooled top ones."""
    own = top_latents(selection_scores(selection.pair_view(p))[0], n_top)
    return np.concatenate([own, pooled_top[~np.isin(pooled_top, own)]])


def pair_tables(selection: HalfCodes, evaluation: HalfCodes, cfg: ConjunctionConfig) -> list[pd.DataFrame]:
    """Per pair: :func:`specificity_table` of its candidates on its view of the evaluation half (column ``pair``);
    empty when pairs are unknown."""
    pooled = top_latents(selection_scores(selection)[0], cfg.n_top)
    return [
        specificity_table(evaluation.pair_view(p), pair_candidates(selection, p, pooled, cfg.n_top), cfg).assign(pair=p)
        for p in range(selection.n_pairs)
    ]


def _best_specificity(evaluation: HalfCodes, latents: np.ndarray) -> float:
    return float(np.min([aurocs_vs(evaluation, latents, c) for c in OTHERS], axis=0).max())


def specificity_statistic(selection: HalfCodes, evaluation: HalfCodes, n_top: int) -> float:
    """Best evaluation-half specificity among the selection's top conjunction latents (or, when larger, the per-pair
    statistic: every pair's best among its candidates, the worst pair)."""
    top = top_latents(selection_scores(selection)[0], n_top)
    specificity = _best_specificity(evaluation, top)
    if selection.n_pairs:
        per_pair = min(
            _best_specificity(evaluation.pair_view(p), pair_candidates(selection, p, top, n_top))
            for p in range(selection.n_pairs)
        )
        specificity = max(specificity, per_pair)
    return specificity


def signal_statistic(selection: HalfCodes, evaluation: HalfCodes, n_top: int) -> float:
    """Best matched-vs-clean AUROC among the selection's top signal latents."""
    return float(aurocs_vs(evaluation, top_latents(selection_scores(selection)[1], n_top), "clean").max())


def procedure_statistics(selection: HalfCodes, evaluation: HalfCodes, n_top: int) -> tuple[float, float]:
    """The statistics the label null calibrates: :func:`specificity_statistic` and :func:`signal_statistic`."""
    return specificity_statistic(selection, evaluation, n_top), signal_statistic(selection, evaluation, n_top)


@dataclass
class NullResult:
    observed: dict[str, float]  # {"specificity": ..., "signal": ..., "conjunction": ...}
    null: dict[str, np.ndarray]  # the statistics under the null's resampling
    p_value: dict[str, float]

    def to_dict(self) -> dict:
        return {
            "observed": self.observed,
            "p_value": self.p_value,
            "n_permutations": len(self.null["signal"]),
            "null_quantiles": {
                k: dict(zip(("q50", "q95", "q99", "max"), np.quantile(v, [0.5, 0.95, 0.99, 1.0]).tolist()))
                for k, v in self.null.items()
            },
        }


def _p_value(null: np.ndarray, observed: float) -> float:
    return float((1 + (null >= observed - 1e-12).sum()) / (1 + len(null)))


def permutation_null(selection: HalfCodes, evaluation: HalfCodes, cfg: ConjunctionConfig) -> NullResult:
    """Both nulls (module docstring): ``specificity`` and ``signal`` under shuffled labels, ``conjunction`` (the
    specificity statistic) under permuted residuals of the word-exposure fit (when the halves have an exposure
    design)."""
    observed = dict(zip(("specificity", "signal"), procedure_statistics(selection, evaluation, cfg.n_top)))
    rng = np.random.default_rng(cfg.seed + 1)
    null = np.array(
        [
            procedure_statistics(selection.shuffled(rng), evaluation.shuffled(rng), cfg.n_top)
            for _ in progress(range(cfg.n_permutations), "label permutation null")
        ]
    )
    nulls = {"specificity": null[:, 0], "signal": null[:, 1]}
    if selection.exposure is not None and evaluation.exposure is not None:
        fits = ExposureFit.of(selection), ExposureFit.of(evaluation)
        rng = np.random.default_rng(cfg.seed + 2)
        observed["conjunction"] = observed["specificity"]
        nulls["conjunction"] = np.array(
            [
                specificity_statistic(fits[0].resampled(rng), fits[1].resampled(rng), cfg.n_top)
                for _ in progress(range(cfg.n_permutations), "conjunction null")
            ]
        )
    return NullResult(observed, nulls, {k: _p_value(v, observed[k]) for k, v in nulls.items()})


def firing_signal(selection: HalfCodes, evaluation: HalfCodes, firing: tuple[str, ...], cfg: ConjunctionConfig) -> dict:
    """Whether the SAE sees what makes the model fire when that is not a matched pair (single words, mismatched
    pairs): the top ``n_top`` latents by selection-half standardised separation of the ``firing`` conditions'
    prompts from clean ones, the best evaluation-half AUROC with its bootstrap interval, and a label-permutation
    null of that selection-then-evaluation (labels shuffled among those prompts)."""
    codes = [CONDITIONS.index(c) for c in firing]

    def split(half, labels=None):
        keep = np.isin(half.condition, codes) | (half.condition == CLEAN)
        labels = np.isin(half.condition[keep], codes) if labels is None else labels
        return half.x[keep], labels

    def statistic(sel, ev) -> tuple[np.ndarray, float]:
        (xs, ys), (xe, ye) = sel, ev
        sep = (xs[ys].mean(0) - xs[~ys].mean(0)) / np.sqrt((xs[ys].var(0) + xs[~ys].var(0)) / 2 + VAR_FLOOR)
        top = top_latents(sep, cfg.n_top)
        return top, float(mann_whitney(xe[ye][:, top], xe[~ye][:, top]).max())

    sel, ev = split(selection), split(evaluation)
    top, observed = statistic(sel, ev)
    rng = np.random.default_rng(cfg.seed + 3)
    null = np.array(
        [
            statistic((sel[0], rng.permutation(sel[1])), (ev[0], rng.permutation(ev[1])))[1]
            for _ in range(cfg.n_permutations)
        ]
    )
    value, lo, hi = auroc_ci_many(ev[0][ev[1]][:, top], ev[0][~ev[1]][:, top], n_boot=cfg.n_boot, seed=cfg.seed)
    best = int(np.argmax(lo))
    return {
        "conditions": list(firing),
        "latent": int(top[best]),
        "auroc": float(value[best]),
        "lo": float(lo[best]),
        "hi": float(hi[best]),
        "p": _p_value(null, observed),
    }
