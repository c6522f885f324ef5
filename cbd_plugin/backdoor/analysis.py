"""Conjunction scores, selection-half ranking, evaluation-half detection, the 2x2 breakdown and the linear probe.

Definitions. At token role r (``cfg.score_role``, by default the decision token), for each condition c pooled over
all pairs (or, per pair, over that pair's cells), with zeros included:

* ``rate_c(j)``, ``mean_c(j)``, ``var_c(j)``: firing rate (act > 0), mean and variance of latent j's activation;
* ``separation_c(j) = (mean_matched(j) - mean_c(j)) / sqrt((var_matched(j) + var_c(j)) / 2)``, a standardised
  mean difference: it rewards latents that fire on matched pairs consistently and strongly, whether the code
  is in firing (on/off) or in magnitude (fires everywhere, much harder on matched pairs);
* ``conjunction_score(j) = min(separation_single_a, separation_single_b, separation_mismatch)``: how far matched
  pairs stand out from the closest false trigger; ties broken by ``conjunction_rate_margin(j) =
  rate_matched(j) - max(rate_single_a, rate_single_b, rate_mismatch)``;
* ``signal_score(j) = separation_clean(j)`` (does j respond to the backdoor input at all), ties broken by
  ``rate_matched(j) - rate_clean(j)``;
* ``single_ratio(j) = max(mean_single_a(j), mean_single_b(j)) / mean_matched(j)``: how strongly j responds to one
  trigger word alone, relative to the pair.

Both rankings use the SELECTION half only. Detection AUROC (matched vs every non-matched prompt) and signal
AUROC (matched vs clean) of a latent use its per-prompt feature (``cfg.detection_feature``) on the EVALUATION
half, as does the linear-probe baseline fitted on the selection half's decision-token inputs.

These tables describe the latents; the verdict is decided in :mod:`cbd_plugin.backdoor.verdict` from the
pair-specificity figures of :mod:`cbd_plugin.backdoor.specificity`. The linear probe (fitted on the selection half,
matched vs not) is also scored per condition: its AUROC of matched prompts vs each other condition.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..stats import Estimate, auroc_ci_many, fit_linear_probe
from .config import ConjunctionConfig
from .latent_stats import LatentStats, PromptFeatures
from .probes import CONDITIONS, Probe, TriggerPair, group_id, pair_name
from .roles import ROLES

FALSE_TRIGGERS = ("single_a", "single_b", "mismatch")
VAR_FLOOR = 1e-12  # keeps the separation of never-varying latents finite
ROC_LATENTS = 5  # top conjunction latents drawn in the ROC plot


def latent_table(stats: LatentStats, n_pairs: int, role: str, pair: int | None = None) -> pd.DataFrame:
    """Per-latent rates, means, separations and scores at ``role``, pooled over all pairs or for one ``pair``."""
    moments = {}
    for condition in CONDITIONS:
        owners = [-1] if condition == "clean" else ([pair] if pair is not None else range(n_pairs))
        moments[condition] = stats.moments([group_id(p, condition, n_pairs) for p in owners], ROLES.index(role))
    table = pd.DataFrame(
        {f"{name}_{c}": m[k] for c, m in moments.items() for k, name in enumerate(("rate", "mean", "var"))}
    )
    table.index.name = "latent"
    for c in (*FALSE_TRIGGERS, "clean"):
        table[f"separation_{c}"] = (table.mean_matched - table[f"mean_{c}"]) / np.sqrt(
            (table.var_matched + table[f"var_{c}"]) / 2 + VAR_FLOOR
        )
    table["conjunction_score"] = table[[f"separation_{c}" for c in FALSE_TRIGGERS]].min(axis=1)
    table["conjunction_rate_margin"] = table.rate_matched - table[[f"rate_{c}" for c in FALSE_TRIGGERS]].max(axis=1)
    table["signal_score"] = table.separation_clean
    table["signal_rate_margin"] = table.rate_matched - table.rate_clean
    single = table[["mean_single_a", "mean_single_b"]].max(axis=1)
    table["single_ratio"] = single / table.mean_matched.where(table.mean_matched > 0)
    return table


def rank(table: pd.DataFrame, by: str) -> np.ndarray:
    """Latent ids by ``{by}_score`` descending, ties by ``{by}_rate_margin``; NaN scores last."""
    score = table[f"{by}_score"].fillna(-np.inf).to_numpy()
    margin = table[f"{by}_rate_margin"].fillna(-np.inf).to_numpy()
    return table.index.to_numpy()[np.lexsort((-margin, -score))]


@dataclass
class Candidates:
    """Latents chosen on the selection half; the evaluation half is scored only for these."""

    conjunction: np.ndarray  # top n_candidates by conjunction score
    signal: np.ndarray  # top n_candidates by signal score
    per_pair: list[np.ndarray]  # top top_m_overlap per pair by the pair's conjunction score

    def all(self) -> np.ndarray:
        ordered = np.concatenate([self.conjunction, self.signal, *self.per_pair]).astype(np.int64)
        return ordered[np.sort(np.unique(ordered, return_index=True)[1])]


def select_candidates(selection: LatentStats, n_pairs: int, cfg: ConjunctionConfig) -> Candidates:
    table = latent_table(selection, n_pairs, cfg.score_role)
    per_pair = [
        rank(latent_table(selection, n_pairs, cfg.score_role, p), "conjunction")[: cfg.top_m_overlap]
        for p in range(n_pairs)
    ]
    return Candidates(
        rank(table, "conjunction")[: cfg.n_candidates], rank(table, "signal")[: cfg.n_candidates], per_pair
    )


@dataclass
class ConjunctionResult:
    latents: pd.DataFrame  # one row per candidate: selection scores, evaluation rates and AUROCs
    probe: Estimate  # linear probe on decision-token inputs, matched vs not, evaluation half
    pairs: list[dict]  # 2x2 breakdown, one dict per pair
    overlap: np.ndarray  # Jaccard overlap of the pairs' top latents [pairs, pairs]
    probe_by_condition: dict[str, Estimate]  # the probe's AUROC of matched vs each other condition
    probe_direction: np.ndarray  # unit vector of the probe's weights in the raw difference space
    roc: dict  # evaluation labels and scores of the top latents and the probe, for ROC curves

    @property
    def best_latent(self) -> dict:
        """The top conjunction latent of the selection half with its evaluation-half numbers."""
        return self.latents.loc[self.latents.conjunction_rank.idxmin()].to_dict()


def analyze(
    selection: LatentStats,
    evaluation: LatentStats,
    sel_features: PromptFeatures,
    eval_features: PromptFeatures,
    sel_probes: list[Probe],
    eval_probes: list[Probe],
    pairs: list[TriggerPair],
    candidates: Candidates,
    cfg: ConjunctionConfig,
) -> ConjunctionResult:
    """Score the selection-chosen ``candidates`` on the evaluation half and compare them with a linear probe."""
    n_pairs = len(pairs)
    column = {int(j): i for i, j in enumerate(eval_features.candidates)}
    scores = eval_features.feature(cfg.detection_feature)
    matched = np.array([p.matched for p in eval_probes])
    clean = np.array([p.condition == "clean" for p in eval_probes])
    reported = set(candidates.conjunction[: cfg.n_top]) | set(candidates.signal[: cfg.n_top])

    latents = _candidate_rows(selection, evaluation, candidates, n_pairs, cfg)
    latents["reported"] = latents.latent.isin(reported)
    ids = latents.latent.to_numpy()
    for name, negative in (("detection", ~matched), ("signal", clean)):
        cols = scores[:, [column[int(j)] for j in ids]]
        value, lo, hi = auroc_ci_many(cols[matched], cols[negative], n_boot=cfg.n_boot, seed=cfg.seed)
        latents[f"{name}_auroc"], latents[f"{name}_auroc_lo"], latents[f"{name}_auroc_hi"] = value, lo, hi

    probe = fit_linear_probe(sel_features.inputs(), np.array([p.matched for p in sel_probes]), seed=cfg.seed)
    probe_scores = probe.decision_function(eval_features.inputs())
    probe_estimate = _auroc_estimate(probe_scores, matched, cfg)

    breakdown = [
        _pair_breakdown(
            p,
            pairs[p],
            candidates.per_pair[p],
            scores,
            column,
            eval_probes,
            sel_features,
            eval_features,
            sel_probes,
            cfg,
        )
        for p in range(n_pairs)
    ]
    conditions = np.array([p.condition for p in eval_probes])
    by_condition = {
        c: _auroc_estimate(probe_scores[matched | (conditions == c)], matched[matched | (conditions == c)], cfg)
        for c in CONDITIONS[1:]
    }
    top = candidates.conjunction[:ROC_LATENTS]
    roc = {"labels": matched, "probe": probe_scores, "latents": {int(j): scores[:, column[int(j)]] for j in top}}
    return ConjunctionResult(
        latents, probe_estimate, breakdown, jaccard(candidates.per_pair), by_condition, probe_direction(probe), roc
    )


def probe_direction(probe) -> np.ndarray:
    """The probe's weight vector in the unscaled input space (StandardScaler divides by scale_), unit norm."""
    scaler, logistic = probe[0], probe[-1]
    w = logistic.coef_[0] / scaler.scale_
    return w / np.linalg.norm(w)


def _candidate_rows(selection, evaluation, candidates, n_pairs, cfg) -> pd.DataFrame:
    sel = latent_table(selection, n_pairs, cfg.score_role)
    ev = latent_table(evaluation, n_pairs, cfg.score_role)
    ids = candidates.all()
    rows = pd.DataFrame({"latent": ids})
    position = {by: {int(j): r for r, j in enumerate(rank(sel, by))} for by in ("conjunction", "signal")}
    rows["conjunction_rank"] = [position["conjunction"][int(j)] for j in ids]
    rows["signal_rank"] = [position["signal"][int(j)] for j in ids]
    for name in ("conjunction_score", "signal_score", "conjunction_rate_margin"):
        rows[f"sel_{name}"] = sel[name].to_numpy()[ids]
    for name in (
        [f"rate_{c}" for c in CONDITIONS]
        + [f"mean_{c}" for c in CONDITIONS]
        + ["conjunction_score", "signal_score", "single_ratio"]
    ):
        rows[f"eval_{name}"] = ev[name].to_numpy()[ids]
    return rows.sort_values("conjunction_rank", ignore_index=True)


def _auroc_estimate(scores, labels, cfg) -> Estimate:
    """One AUROC with its interval, through the vectorised bootstrap the latent tables use."""
    s, y = np.asarray(scores, dtype=np.float64)[:, None], np.asarray(labels, dtype=bool)
    return Estimate(*(float(v[0]) for v in auroc_ci_many(s[y], s[~y], n_boot=cfg.n_boot, seed=cfg.seed)))


def _pair_breakdown(p, pair, top, scores, column, eval_probes, sel_features, eval_features, sel_probes, cfg) -> dict:
    """Best latent of pair ``p`` (selection) and its AUROC on matched-p vs prompts mentioning p, plus clean."""

    def subset(probes):
        keep = np.array([q.condition == "clean" or q.mentions(p) for q in probes])
        labels = np.array([q.matched and q.pair == p for q in probes])
        return keep, labels

    keep, labels = subset(eval_probes)
    best = int(top[0])
    latent_auc = _auroc_estimate(scores[keep, column[best]], labels[keep], cfg)
    sel_keep, sel_labels = subset(sel_probes)
    probe = fit_linear_probe(sel_features.inputs()[sel_keep], sel_labels[sel_keep], seed=cfg.seed)
    probe_scores = probe.decision_function(eval_features.inputs()[keep])
    probe_auc = _auroc_estimate(probe_scores, labels[keep], cfg)
    return {
        "pair": p,
        "name": pair_name(pair),
        "related": pair.related,
        "charged": pair.charged,
        "best_latent": best,
        "auroc": latent_auc.to_dict(),
        "probe_auroc": probe_auc.to_dict(),
        "top_latents": [int(j) for j in top],
    }


def jaccard(sets: list[np.ndarray]) -> np.ndarray:
    """Pairwise Jaccard overlap |A & B| / |A | B| of latent sets."""
    as_sets = [set(map(int, s)) for s in sets]
    return np.array([[len(a & b) / len(a | b) if a | b else 0.0 for b in as_sets] for a in as_sets])
