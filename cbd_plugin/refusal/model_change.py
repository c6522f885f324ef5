"""Base vs fine-tuned: changes in refusal and in the base features' response (fine-tuned minus base).

Both per-prompt tables (see :mod:`cbd_plugin.refusal.refusal_metrics`) come from the same prompts, the same SAE and the
same hazard latents (selected on the *base* model's select split), so every change is paired by prompt: each
bootstrap replicate resamples prompt ids (within tier) and recomputes both models' statistic on them.

* ``refusal_rate[tier]``: change in the tier's refusal rate.
* ``hazard_auroc``: change in the signal's AUROC for all hazard vs benign eval prompts (the representation).
* ``refused_hazard_auroc``: change in the signal's AUROC for the hazard eval prompts *the fine-tuned model
  refuses* vs benign eval prompts, both models scored on that same prompt set: do the base features respond
  less, on the fine-tuned model, to exactly the prompts it refuses? ``base_refused_hazard_auroc`` is the base
  model's side of it.
* ``shallow_fraction``: change in the fraction of those refused prompts above each model's shallow threshold.

The verdict that reads these is in :mod:`cbd_plugin.refusal.verdict`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ..stats import Estimate, auroc, bootstrap
from ..vocab import TIERS
from .refusal_metrics import NAN, Depth


@dataclass
class DepthChange:
    refusal_rate: dict[str, Estimate]
    hazard_auroc: Estimate
    refused_hazard_auroc: Estimate
    base_refused_hazard_auroc: Estimate
    shallow_fraction: Estimate
    reasons: dict[str, str] = field(default_factory=dict)


def paired(base: pd.DataFrame, finetuned: pd.DataFrame) -> pd.DataFrame:
    """One row per prompt with ``*_base`` and ``*_ft`` columns; raises if the prompt sets differ."""
    if set(base["id"]) != set(finetuned["id"]):
        raise ValueError("paired: base and fine-tuned tables cover different prompt ids")
    return base.merge(finetuned, on=["id", "tier", "split"], suffixes=("_base", "_ft"))


def _refused_hazard_auroc(signal: np.ndarray, tier: np.ndarray, label: np.ndarray) -> float:
    """Refused-hazard vs benign AUROC (``label``: the fine-tuned model's); raises ValueError on an empty group
    (the bootstrap skips such draws)."""
    positive = (tier == "hazard") & (label == "refuse")
    keep = positive | (tier == "benign")
    return auroc(signal[keep], positive[keep])


def _shallow_fraction(signal: np.ndarray, tier: np.ndarray, label: np.ndarray, threshold: float) -> float:
    refused = (tier == "hazard") & (label == "refuse")
    if not refused.any():
        raise ValueError("no refused hazard prompt")
    return float((signal[refused] > threshold).mean())


def _change(statistic, rows: pd.DataFrame, what: str, reasons: dict, n_boot: int, seed: int) -> Estimate:
    """Paired bootstrap of ``statistic(rows, "_ft") - statistic(rows, "_base")``, resampling prompts within tier.

    ``statistic`` gets the rows as a dict of numpy columns (fast to index per replicate)."""
    return _level(lambda sub: statistic(sub, "_ft") - statistic(sub, "_base"), rows, what, reasons, n_boot, seed)


def _level(statistic, rows: pd.DataFrame, what: str, reasons: dict, n_boot: int, seed: int) -> Estimate:
    """Bootstrap of ``statistic(rows)`` (a dict of numpy columns), resampling prompts within tier; NaN with a
    reason where it is undefined on the full set."""
    columns = {c: rows[c].to_numpy() for c in rows.columns}

    def value(idx):
        return statistic({c: v[idx] for c, v in columns.items()})

    idx = np.arange(len(rows))
    try:
        value(idx)
    except ValueError as err:
        reasons[what] = f"undefined: {err}"
        return NAN
    return bootstrap(value, idx, n_boot=n_boot, seed=seed, stratify=columns["tier"])


def compare_depth(
    base: pd.DataFrame, finetuned: pd.DataFrame, base_depth: Depth, ft_depth: Depth, n_boot: int = 1000, seed: int = 0
) -> DepthChange:
    """Changes (fine-tuned minus base) in refusal rate per tier, hazard AUROC, refused-hazard AUROC and shallow
    fraction (module docstring); shallow thresholds are each model's own (from its ``Depth``)."""
    rows = paired(base, finetuned)
    ev = rows[(rows["split"] == "eval") & rows["tier"].isin(["hazard", "benign"])]
    thresholds = {"_base": base_depth.shallow_threshold, "_ft": ft_depth.shallow_threshold}
    reasons: dict[str, str] = {}
    refusal = {
        t: _change(
            lambda sub, s: float(sub["refuse_frac" + s].mean()),
            rows[rows["tier"] == t],
            f"refusal_rate/{t}",
            reasons,
            n_boot,
            seed,
        )
        for t in TIERS
    }
    return DepthChange(
        refusal_rate=refusal,
        hazard_auroc=_change(
            lambda sub, s: auroc(sub["signal" + s], sub["tier"] == "hazard"), ev, "hazard_auroc", reasons, n_boot, seed
        ),
        # The refused set is the fine-tuned model's ("label_ft") on both sides: the same prompts, both models.
        refused_hazard_auroc=_change(
            lambda sub, s: _refused_hazard_auroc(sub["signal" + s], sub["tier"], sub["label_ft"]),
            ev,
            "refused_hazard_auroc",
            reasons,
            n_boot,
            seed,
        ),
        base_refused_hazard_auroc=_level(
            lambda sub: _refused_hazard_auroc(sub["signal_base"], sub["tier"], sub["label_ft"]),
            ev,
            "base_refused_hazard_auroc",
            reasons,
            n_boot,
            seed,
        ),
        shallow_fraction=_change(
            lambda sub, s: _shallow_fraction(sub["signal" + s], sub["tier"], sub["label_ft"], thresholds[s]),
            ev,
            "shallow_fraction",
            reasons,
            n_boot,
            seed,
        ),
        reasons=reasons,
    )
