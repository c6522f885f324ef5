"""Tiered prompt sets (benign / dual_use / hazard) with select/eval splits and a tier-format check.

A prompt set is a ``pandas.DataFrame`` with columns ``id``, ``text``, ``tier``, ``split``. It comes from a local
jsonl file or a ``datasets`` id (:class:`PromptSource`), is validated by :func:`validate_prompts` and checked
for a tier-format confound by :func:`check_format`: the seed project compared 22 short hazard descriptors with
200 long benign documents, so any "hazard" signal could have been a length signal.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ..stats import auroc

TIERS = ("benign", "dual_use", "hazard")
SPLITS = ("select", "eval")
COLUMNS = ("id", "text", "tier", "split")


class FormatConfoundError(ValueError):
    """Raised when prompt length alone separates hazard from benign prompts (and the config says error)."""


@dataclass
class PromptSource:
    """Where prompts come from: ``path`` (jsonl) or ``dataset`` (a ``datasets`` id; ``dataset_split`` of it).

    ``columns`` maps our column names (id, text, tier, split) to the source's; a missing ``id`` is numbered,
    a missing ``split`` column is created by :func:`validate_prompts`. ``tier_map`` renames source tier
    values (e.g. ``{"forget": "hazard", "retain": "benign"}``).
    """

    path: str | None = None
    dataset: str | None = None
    dataset_config: str | None = None
    dataset_split: str = "train"
    columns: dict[str, str] = field(default_factory=dict)
    tier_map: dict[str, str] = field(default_factory=dict)


def load_prompts(source: PromptSource) -> pd.DataFrame:
    """Read the raw rows of ``source`` and rename them to our columns (not yet validated)."""
    if (source.path is None) == (source.dataset is None):
        raise ValueError("PromptSource: give exactly one of path or dataset")
    if source.path is not None:
        path = Path(source.path)
        with path.open() as f:
            frame = pd.DataFrame([json.loads(line) for line in f if line.strip()])
    else:
        import datasets  # lazy: only needed for hub/local datasets

        frame = datasets.load_dataset(source.dataset, source.dataset_config, split=source.dataset_split).to_pandas()
    rename = {src: ours for ours, src in source.columns.items()}
    missing = [src for src in rename if src not in frame.columns]
    if missing:
        raise KeyError(f"{source.path or source.dataset}: columns {missing} not found; has {list(frame.columns)}")
    frame = frame.rename(columns=rename)
    if "id" not in frame.columns:
        frame["id"] = [f"p{i}" for i in range(len(frame))]
    if source.tier_map:
        frame["tier"] = frame["tier"].map(lambda t: source.tier_map.get(t, t))
    return frame[[c for c in COLUMNS if c in frame.columns]]


def validate_prompts(frame: pd.DataFrame, seed: int = 0, select_fraction: float = 0.5) -> tuple[pd.DataFrame, list[str]]:
    """Check tiers and splits; returns the frame (with ``split`` made if absent) and notes for the report.

    Every tier must be present. If the ``split`` column is missing (or lacks one of select/eval), a seeded
    split stratified by tier is made, and a note says so.
    """
    notes: list[str] = []
    for col in ("text", "tier"):
        if col not in frame.columns:
            raise KeyError(f"prompts: missing column {col!r}; has {list(frame.columns)}")
    frame = frame.reset_index(drop=True).copy()
    frame["id"] = frame["id"].astype(str)
    if frame["id"].duplicated().any():
        raise ValueError(f"prompts: duplicate ids {frame['id'][frame['id'].duplicated()].unique()[:5].tolist()}")
    unknown = sorted(set(frame["tier"]) - set(TIERS))
    if unknown:
        raise ValueError(f"prompts: unknown tiers {unknown}; expected {TIERS} (map them with PromptSource.tier_map)")
    absent = [t for t in TIERS if not (frame["tier"] == t).any()]
    if absent:
        raise ValueError(f"prompts: tiers {absent} have no prompts")
    if "split" not in frame.columns or not set(SPLITS) <= set(frame["split"]):
        frame["split"] = stratified_split(frame["tier"].to_numpy(), seed, select_fraction)
        notes.append(f"no select/eval split in the source: made a seeded (seed={seed}) split stratified by tier, "
                     f"select fraction {select_fraction}")
    else:
        dropped = int((~frame["split"].isin(SPLITS)).sum())
        if dropped:
            notes.append(f"dropped {dropped} prompts whose split is not in {SPLITS}")
            frame = frame[frame["split"].isin(SPLITS)].reset_index(drop=True)
    for split in SPLITS:
        for tier in ("benign", "hazard"):
            if not ((frame["split"] == split) & (frame["tier"] == tier)).any():
                raise ValueError(f"prompts: split {split!r} has no {tier} prompts")
    return frame, notes


def stratified_split(tiers: np.ndarray, seed: int, select_fraction: float) -> np.ndarray:
    """'select'/'eval' per row, the same fraction within each tier (at least one of each where possible)."""
    rng = np.random.default_rng(seed)
    split = np.full(len(tiers), "eval", dtype=object)
    for tier in np.unique(tiers):
        rows = rng.permutation(np.flatnonzero(tiers == tier))
        n_select = min(max(1, round(select_fraction * len(rows))), max(len(rows) - 1, 1))
        split[rows[:n_select]] = "select"
    return split


@dataclass
class FormatCheck:
    """Per-tier length statistics and how well length alone separates hazard (and dual_use) from benign.

    ``length_auroc`` is the AUROC of the token count for hazard vs benign; ``separation`` is
    ``max(auroc, 1 - auroc)`` (a length classifier may use either direction). ``confounded`` is
    ``separation > threshold``.
    """

    per_tier: dict[str, dict[str, float]]
    length_auroc: float
    dual_use_length_auroc: float
    separation: float
    threshold: float
    confounded: bool


def check_format(frame: pd.DataFrame, tokenizer=None, threshold: float = 0.75, on_confound: str = "warn") -> FormatCheck:
    """Length statistics per tier; warn or raise (``on_confound``: "warn" | "error") on a length confound.

    Lengths are in tokens when a tokenizer is given, otherwise in words; both are reported when possible.
    """
    words = frame["text"].str.split().str.len().to_numpy()
    tokens = (np.array([len(tokenizer(t, add_special_tokens=False)["input_ids"]) for t in frame["text"]])
              if tokenizer is not None else words)
    tiers = frame["tier"].to_numpy()
    per_tier = {
        tier: {"n": int((tiers == tier).sum()),
               "tokens_mean": float(tokens[tiers == tier].mean()), "tokens_std": float(tokens[tiers == tier].std()),
               "tokens_min": int(tokens[tiers == tier].min()), "tokens_max": int(tokens[tiers == tier].max()),
               "words_mean": float(words[tiers == tier].mean()), "words_std": float(words[tiers == tier].std())}
        for tier in TIERS
    }
    length_auc = _length_auroc(tokens, tiers, "hazard")
    separation = max(length_auc, 1 - length_auc)
    check = FormatCheck(per_tier, length_auc, _length_auroc(tokens, tiers, "dual_use"), separation, threshold,
                        separation > threshold)
    if check.confounded:
        message = (f"tier-format confound: prompt length alone separates hazard from benign with AUROC "
                   f"{separation:.2f} > {threshold} (per-tier lengths: "
                   f"{ {t: round(s['tokens_mean'], 1) for t, s in per_tier.items()} })")
        if on_confound == "error":
            raise FormatConfoundError(message)
        warnings.warn(message, stacklevel=2)
    return check


def _length_auroc(lengths: np.ndarray, tiers: np.ndarray, positive: str) -> float:
    keep = np.isin(tiers, [positive, "benign"])
    return auroc(lengths[keep], tiers[keep] == positive)
