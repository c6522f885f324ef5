"""Conjunction scores, selection-half ranking, evaluation-half detection, the 2x2 breakdown and the verdict.

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
VAR_FLOOR = 1e-12  # keeps the separation of never-varying latents finite
ROC_LATENTS = 5  # top conjunction latents drawn in the ROC plot
VERDICTS = ("conjunctive", "or_gated", "no_backdoor_signal", "inconclusive")


def latent_table(stats: LatentStats, n_pairs: int, role: str, pair: int | None = None) -> pd.DataFrame:
    """Per-latent rates, means, separations and scores at ``role``, pooled over all pairs or for one ``pair``."""
    moments = {}
    for condition in CONDITIONS:
        owners = [-1] if condition == "clean" else ([pair] if pair is not None else range(n_pairs))
        moments[condition] = stats.moments([group_id(p, condition, n_pairs) for p in owners], ROLES.index(role))
    table = pd.DataFrame({f"{name}_{c}": m[k] for c, m in moments.items()
                          for k, name in enumerate(("rate", "mean", "var"))})
    table.index.name = "latent"
    for c in FALSE_TRIGGERS + ("clean",):
        table[f"separation_{c}"] = (table.mean_matched - table[f"mean_{c}"]) / np.sqrt(
            (table.var_matched + table[f"var_{c}"]) / 2 + VAR_FLOOR)
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
    for name in ("conjunction_score", "signal_score", "conjunction_rate_margin"):
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
        return "no_backdoor_signal", (f"no top latent separates matched pairs from clean prompts (signal AUROC "
                                      f">= {t}); best detection AUROC {best:.3f}")
    conjunctive = responsive[(responsive.detection_auroc >= t) & (responsive.eval_single_ratio < f)]
    if not conjunctive.empty:
        j = conjunctive.sort_values("detection_auroc", ascending=False).iloc[0]
        return "conjunctive", (f"latent {int(j.latent)} detects matched pairs (AUROC {j.detection_auroc:.3f}) and "
                               f"responds to a single trigger word at {j.eval_single_ratio:.2f} of its mean "
                               f"activation on matched pairs (< {f})")
    j = responsive.sort_values("signal_auroc", ascending=False).iloc[0]
    if j.eval_single_ratio >= f:
        return "or_gated", (f"the most responsive latent {int(j.latent)} responds to a single trigger word at "
                            f"{j.eval_single_ratio:.2f} of its mean activation on matched pairs (>= {f}): the "
                            "behaviour is not conjunctive")
    return "inconclusive", (f"latent {int(j.latent)} responds to matched pairs (signal AUROC {j.signal_auroc:.3f}) "
                            f"but neither separates them from false triggers nor fires on single triggers")
