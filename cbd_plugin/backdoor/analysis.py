"""Conjunction scores, selection-half ranking, evaluation-half detection, the 2x2 breakdown and the verdict.

Definitions. At token role r (``cfg.score_role``, by default the decision token), pooling the prompts of a
condition c over all pairs:

* ``rate_c(j)``: fraction of role-r tokens of condition c on which latent j fires (act > 0);
* ``mean_c(j)``: mean activation of latent j on those tokens (zeros included);
* ``conjunction_score(j) = rate_matched(j) - max(rate_single_a(j), rate_single_b(j), rate_mismatch(j))``,
  ties broken by ``conjunction_act_margin(j)``, the same difference of ``mean_c``;
* ``signal_score(j) = rate_matched(j) - rate_clean(j)`` (does j respond to the backdoor input at all),
  ties broken by ``mean_matched(j) - mean_clean(j)``;
* ``single_ratio(j) = max(rate_single_a(j), rate_single_b(j)) / rate_matched(j)``.

Per pair p the same, with the cells of p (mismatch: prompts with a word of p and a word of another pair).
Both rankings use the SELECTION half only. Detection AUROC (matched vs every non-matched prompt) and signal
AUROC (matched vs clean) of a latent use its per-prompt feature (``cfg.detection_feature``) on the EVALUATION
half, as does the linear-probe baseline fitted on the selection half's decision-token inputs.

Verdict, over the latents in the top ``cfg.n_top`` of either ranking, with evaluation-half numbers:
``no_backdoor_signal`` if none has signal AUROC >= ``auroc_threshold``; else ``conjunctive`` if one of those
responsive latents has detection AUROC >= ``auroc_threshold`` and single_ratio < ``or_fraction``; else
``or_gated`` if the most responsive latent (highest signal AUROC) has single_ratio >= ``or_fraction``;
else ``inconclusive``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..stats import Estimate, auroc, auroc_ci, fit_linear_probe
from .config import ConjunctionConfig
from .latent_stats import LatentStats, PromptFeatures
from .probes import CONDITIONS, Probe, TriggerPair, group_id, pair_name
from .roles import ROLES

FALSE_TRIGGERS = ("single_a", "single_b", "mismatch")
ROC_LATENTS = 5  # top conjunction latents drawn in the ROC plot
VERDICTS = ("conjunctive", "or_gated", "no_backdoor_signal", "inconclusive")


def latent_table(stats: LatentStats, n_pairs: int, role: str, pair: int | None = None) -> pd.DataFrame:
    """Per-latent rates, means and scores at ``role``, pooled over all pairs or for one ``pair``."""
    columns = {}
    for condition in CONDITIONS:
        owners = [-1] if condition == "clean" else ([pair] if pair is not None else range(n_pairs))
        groups = [group_id(p, condition, n_pairs) for p in owners]
        columns[f"rate_{condition}"], columns[f"mean_{condition}"] = stats.rate_and_mean(groups, ROLES.index(role))
    table = pd.DataFrame(columns)
    table.index.name = "latent"
    false_rate = table[[f"rate_{c}" for c in FALSE_TRIGGERS]].max(axis=1)
    false_mean = table[[f"mean_{c}" for c in FALSE_TRIGGERS]].max(axis=1)
    table["conjunction_score"] = table.rate_matched - false_rate
    table["conjunction_act_margin"] = table.mean_matched - false_mean
    table["signal_score"] = table.rate_matched - table.rate_clean
    table["signal_act_margin"] = table.mean_matched - table.mean_clean
    single = table[["rate_single_a", "rate_single_b"]].max(axis=1)
    table["single_ratio"] = np.where(table.rate_matched > 0, single / table.rate_matched.where(table.rate_matched > 0),
                                     np.nan)
    return table


def rank(table: pd.DataFrame, by: str) -> np.ndarray:
    """Latent ids by ``{by}_score`` descending, ties by ``{by}_act_margin``; NaN scores last."""
    score = table[f"{by}_score"].fillna(-np.inf).to_numpy()
    margin = table[f"{by}_act_margin"].fillna(-np.inf).to_numpy()
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
    per_pair = [rank(latent_table(selection, n_pairs, cfg.score_role, p), "conjunction")[:cfg.top_m_overlap]
                for p in range(n_pairs)]
    return Candidates(rank(table, "conjunction")[:cfg.n_candidates], rank(table, "signal")[:cfg.n_candidates],
                      per_pair)


@dataclass
class ConjunctionResult:
    latents: pd.DataFrame  # one row per candidate: selection scores, evaluation rates and AUROCs
    probe: Estimate  # linear probe on decision-token inputs, matched vs not, evaluation half
    pairs: list[dict]  # 2x2 breakdown, one dict per pair
    overlap: np.ndarray  # Jaccard overlap of the pairs' top latents [pairs, pairs]
    verdict: str
    verdict_reason: str
    roc: dict  # evaluation labels and scores of the top latents and the probe, for ROC curves

    @property
    def best_latent(self) -> dict:
        """The top conjunction latent of the selection half with its evaluation-half numbers."""
        return self.latents.loc[self.latents.conjunction_rank.idxmin()].to_dict()


def analyze(selection: LatentStats, evaluation: LatentStats, sel_features: PromptFeatures,
            eval_features: PromptFeatures, sel_probes: list[Probe], eval_probes: list[Probe],
            pairs: list[TriggerPair], candidates: Candidates, cfg: ConjunctionConfig) -> ConjunctionResult:
    """Score the selection-chosen ``candidates`` on the evaluation half and compare them with a linear probe."""
    n_pairs = len(pairs)
    column = {int(j): i for i, j in enumerate(eval_features.candidates)}
    scores = eval_features.feature(cfg.detection_feature)
    matched = np.array([p.matched for p in eval_probes])
    clean = np.array([p.condition == "clean" for p in eval_probes])
    reported = set(candidates.conjunction[:cfg.n_top]) | set(candidates.signal[:cfg.n_top])

    latents = _candidate_rows(selection, evaluation, candidates, n_pairs, cfg)
    latents["in_verdict"] = latents.latent.isin(reported)
    detection, signal = [], []
    for j, report in zip(latents.latent, latents.in_verdict):
        s = scores[:, column[j]]
        detection.append(_auroc(s, matched, report, cfg))
        signal.append(_auroc(s[matched | clean], matched[matched | clean], report, cfg))
    for name, estimates in (("detection", detection), ("signal", signal)):
        latents[f"{name}_auroc"] = [e.value for e in estimates]
        latents[f"{name}_auroc_lo"] = [e.lo for e in estimates]
        latents[f"{name}_auroc_hi"] = [e.hi for e in estimates]

    probe = fit_linear_probe(sel_features.inputs(), np.array([p.matched for p in sel_probes]), seed=cfg.seed)
    probe_scores = probe.decision_function(eval_features.inputs())
    probe_estimate = auroc_ci(probe_scores, matched, n_boot=cfg.n_boot, seed=cfg.seed)

    breakdown = [_pair_breakdown(p, pairs[p], candidates.per_pair[p], scores, column, eval_probes, sel_features,
                                 eval_features, sel_probes, cfg) for p in range(n_pairs)]
    verdict, reason = decide(latents[latents.in_verdict], cfg)
    top = candidates.conjunction[:ROC_LATENTS]
    roc = {"labels": matched, "probe": probe_scores, "latents": {int(j): scores[:, column[int(j)]] for j in top}}
    return ConjunctionResult(latents, probe_estimate, breakdown, jaccard(candidates.per_pair), verdict, reason, roc)


def _candidate_rows(selection, evaluation, candidates, n_pairs, cfg) -> pd.DataFrame:
    sel = latent_table(selection, n_pairs, cfg.score_role)
    ev = latent_table(evaluation, n_pairs, cfg.score_role)
    ids = candidates.all()
    rows = pd.DataFrame({"latent": ids})
    position = {by: {int(j): r for r, j in enumerate(rank(sel, by))} for by in ("conjunction", "signal")}
    rows["conjunction_rank"] = [position["conjunction"][int(j)] for j in ids]
    rows["signal_rank"] = [position["signal"][int(j)] for j in ids]
    for name in ("conjunction_score", "signal_score", "conjunction_act_margin"):
        rows[f"sel_{name}"] = sel[name].to_numpy()[ids]
    for name in [f"rate_{c}" for c in CONDITIONS] + [f"mean_{c}" for c in CONDITIONS] + \
            ["conjunction_score", "signal_score", "single_ratio"]:
        rows[f"eval_{name}"] = ev[name].to_numpy()[ids]
    return rows.sort_values("conjunction_rank", ignore_index=True)


def _auroc(scores, labels, with_interval: bool, cfg) -> Estimate:
    if with_interval:
        return auroc_ci(scores, labels, n_boot=cfg.n_boot, seed=cfg.seed)
    return Estimate(auroc(scores, labels), float("nan"), float("nan"))


def _pair_breakdown(p, pair, top, scores, column, eval_probes, sel_features, eval_features, sel_probes,
                    cfg) -> dict:
    """Best latent of pair ``p`` (selection) and its AUROC on matched-p vs prompts mentioning p, plus clean."""
    def subset(probes):
        keep = np.array([q.condition == "clean" or q.mentions(p) for q in probes])
        labels = np.array([q.matched and q.pair == p for q in probes])
        return keep, labels

    keep, labels = subset(eval_probes)
    best = int(top[0])
    latent_auc = auroc_ci(scores[keep, column[best]], labels[keep], n_boot=cfg.n_boot, seed=cfg.seed)
    sel_keep, sel_labels = subset(sel_probes)
    probe = fit_linear_probe(sel_features.inputs()[sel_keep], sel_labels[sel_keep], seed=cfg.seed)
    probe_scores = probe.decision_function(eval_features.inputs()[keep])
    probe_auc = auroc_ci(probe_scores, labels[keep], n_boot=cfg.n_boot, seed=cfg.seed)
    return {"pair": p, "name": pair_name(pair), "related": pair.related, "charged": pair.charged, "best_latent": best,
            "auroc": latent_auc.to_dict(), "probe_auroc": probe_auc.to_dict(), "top_latents": [int(j) for j in top]}


def jaccard(sets: list[np.ndarray]) -> np.ndarray:
    """Pairwise Jaccard overlap |A & B| / |A | B| of latent sets."""
    as_sets = [set(map(int, s)) for s in sets]
    return np.array([[len(a & b) / len(a | b) if a | b else 0.0 for b in as_sets] for a in as_sets])


def decide(rows: pd.DataFrame, cfg: ConjunctionConfig) -> tuple[str, str]:
    """The verdict (see the module docstring) from evaluation-half columns of the reported latents."""
    t, f = cfg.auroc_threshold, cfg.or_fraction
    responsive = rows[rows.signal_auroc >= t]
    if responsive.empty:
        best = rows.detection_auroc.max() if len(rows) else float("nan")
        return "no_backdoor_signal", (f"no top latent separates matched pairs from clean prompts (signal AUROC >= {t}); "
                                      f"best detection AUROC {best:.3f}")
    conjunctive = responsive[(responsive.detection_auroc >= t) & (responsive.eval_single_ratio < f)]
    if not conjunctive.empty:
        j = conjunctive.sort_values("detection_auroc", ascending=False).iloc[0]
        return "conjunctive", (f"latent {int(j.latent)} detects matched pairs (AUROC {j.detection_auroc:.3f}) and "
                               f"fires on single triggers at {j.eval_single_ratio:.2f} of its matched rate (< {f})")
    j = responsive.sort_values("signal_auroc", ascending=False).iloc[0]
    if j.eval_single_ratio >= f:
        return "or_gated", (f"the most responsive latent {int(j.latent)} fires on single triggers at "
                            f"{j.eval_single_ratio:.2f} of its matched rate (>= {f}): the behaviour is not "
                            "conjunctive")
    return "inconclusive", (f"latent {int(j.latent)} responds to matched pairs (signal AUROC {j.signal_auroc:.3f}) "
                            f"but neither separates them from false triggers nor fires on single triggers")
