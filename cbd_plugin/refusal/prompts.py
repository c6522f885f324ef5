"""Tiered prompt sets (benign / dual_use / hazard) with select/eval splits and a tier-format check.

A prompt set is a ``pandas.DataFrame`` with columns ``id``, ``text``, ``tier``, ``split``. It comes from a local
jsonl file, one ``datasets`` id, or several dataset sources each giving one tier (a shipped ``preset`` or
``sources``, :mod:`.prompt_sources`), all named by a :class:`PromptSource`; it is validated by
:func:`validate_prompts` and checked for a tier-format confound by :func:`check_format`: the seed project
compared 22 short hazard descriptors with 200 long benign documents, so any "hazard" signal could have been a
length signal. Bad rows are errors naming the file, line and column.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass, field, fields
from pathlib import Path

import numpy as np
import pandas as pd

from ..stats import auroc
from ..vocab import SPLITS, TIERS
from .prompt_sources import PromptSetSpec, load_prompt_set, preset, stratified_split

COLUMNS = ("id", "text", "tier", "split")


class FormatConfoundError(ValueError):
    """Raised when prompt length alone separates hazard from benign prompts (and the config says error)."""


@dataclass
class PromptSource:
    """Where prompts come from; give exactly one of ``path``, ``dataset``, ``preset`` or ``sources``.

    ``path`` (jsonl) or ``dataset`` (a ``datasets`` id; ``dataset_split`` of it): ``columns`` maps our column
    names (id, text, tier, split) to the source's; a missing ``id`` is numbered, a missing ``split`` column is
    created by :func:`validate_prompts`. ``tier_map`` renames source tier values (e.g.
    ``{"forget": "hazard", "retain": "benign"}``). ``preset`` (a shipped set, e.g. ``wmdp_mmlu_bio``) or
    ``sources`` (a list of :class:`~.prompt_sources.DatasetSource` mappings: id, subset, splits, tier,
    template) build a balanced, split set; the remaining keys tune it and override the preset's.
    """

    path: str | None = None
    dataset: str | None = None
    dataset_config: str | None = None
    dataset_split: str = "train"
    columns: dict[str, str] = field(default_factory=dict)
    tier_map: dict[str, str] = field(default_factory=dict)
    preset: str | None = None  # shipped multi-source set (cbd_plugin/refusal/data/presets/)
    sources: list[dict] | None = None  # multi-source set: one mapping per DatasetSource
    n_per_tier: int | None = None  # multi-source: rows per tier (None: the preset's, else all matched)
    match_length: bool | None = None  # multi-source: length-matched tiers (None: the preset's, else true)
    select_fraction: float | None = None  # multi-source: select share (None: the preset's, else 0.5)
    seed: int | None = None  # multi-source: sampling and split seed (None: the preset's, else 0)
    data_dir: str | None = None  # multi-source: read hub ids owner/name from <data_dir>/owner/name


def load_prompts(source: PromptSource) -> pd.DataFrame:
    """Read the raw rows of ``source`` and rename them to our columns (not yet validated)."""
    check_source(source)
    if source.preset is not None or source.sources is not None:
        return _load_prompt_set(source)
    if source.path is not None:
        frame, lines = _read_jsonl(Path(source.path).expanduser())
        where = [f"{source.path}:{n}" for n in lines]
    else:
        import datasets  # lazy: only needed for hub/local datasets

        frame = datasets.load_dataset(source.dataset, source.dataset_config, split=source.dataset_split).to_pandas()
        where = [f"{source.dataset} row {i}" for i in range(len(frame))]
    rename = {src: ours for ours, src in source.columns.items()}
    missing = [src for src in rename if src not in frame.columns]
    if missing:
        raise KeyError(f"{source.path or source.dataset}: columns {missing} not found; has {list(frame.columns)}")
    frame = frame.rename(columns=rename)
    if "id" not in frame.columns:
        frame["id"] = [f"p{i}" for i in range(len(frame))]
    _check_values(frame, where, {ours: src for src, ours in rename.items()})
    if source.tier_map:
        frame["tier"] = frame["tier"].map(lambda t: source.tier_map.get(t, t))
    return frame[[c for c in COLUMNS if c in frame.columns]]


def check_source(source: PromptSource) -> None:
    """Config errors of ``source`` raised before anything is read (for a method to call before loading models):
    one kind of source given, the jsonl file exists, the preset exists, every multi-source entry is valid."""
    given = [k for k in ("path", "dataset", "preset", "sources") if getattr(source, k) is not None]
    if len(given) != 1:
        raise ValueError(f"PromptSource: give exactly one of path, dataset, preset or sources (got {given or 'none'})")
    if source.path is not None and not Path(source.path).expanduser().is_file():
        raise FileNotFoundError(f"prompt file {source.path} does not exist")
    if source.preset is not None or source.sources is not None:
        _prompt_set_spec(source)


def _prompt_set_spec(source: PromptSource):
    values = preset(source.preset) if source.preset is not None else {"sources": source.sources}
    for key in ("n_per_tier", "match_length", "select_fraction", "seed", "data_dir"):
        if getattr(source, key) is not None:
            values[key] = getattr(source, key)
    unknown = set(values) - {f.name for f in fields(PromptSetSpec)}
    if unknown:
        raise KeyError(f"prompt set {source.preset or 'sources'}: unknown keys {sorted(unknown)}")
    return PromptSetSpec(**values)


def _load_prompt_set(source: PromptSource) -> pd.DataFrame:
    return load_prompt_set(_prompt_set_spec(source))


def _read_jsonl(path: Path) -> tuple[pd.DataFrame, list[int]]:
    """Rows of a jsonl file and their 1-based line numbers; errors name the file and line."""
    rows, lines = [], []
    with path.open("rb") as f:
        for number, raw in enumerate(f, start=1):
            try:
                line = raw.decode("utf-8-sig" if number == 1 else "utf-8")  # a BOM opening the file is fine
            except UnicodeDecodeError as err:
                raise ValueError(
                    f"{path}:{number}: not UTF-8 (byte {err.start}: {raw[err.start : err.start + 1]!r}); "
                    "save the file as UTF-8"
                ) from None
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                raise ValueError(f"{path}:{number}: not valid JSON ({err.msg} at column {err.colno})") from None
            if not isinstance(row, dict):
                raise ValueError(f"{path}:{number}: expected a JSON object per line, got a {type(row).__name__}")
            rows.append(row)
            lines.append(number)
    if not rows:
        raise ValueError(f"{path}: no prompts (the file is empty)")
    return pd.DataFrame(rows), lines


def _check_values(frame: pd.DataFrame, where: list[str], source_name: dict[str, str]) -> None:
    """Columns ``text`` and ``tier`` exist and every row has a non-empty string text and a tier; errors name the
    file (and line) and the source's column name."""
    origin = where[0].rsplit(":", 1)[0].split(" row ")[0] if where else "prompts"
    for col in ("text", "tier"):
        name = source_name.get(col, col)
        if col not in frame.columns:
            raise KeyError(f"{origin}: no row has column {name!r}; columns are {sorted(map(str, frame.columns))}")
        for i, value in enumerate(frame[col].tolist()):
            missing = value is None or (isinstance(value, float) and np.isnan(value))
            if missing or (col == "text" and (not isinstance(value, str) or not value.strip())):
                problem = "null or absent" if missing else f"empty or not text (got {value!r})"
                raise ValueError(
                    f"{where[i]}: column {name!r} is {problem}; every prompt needs a non-empty text and a tier"
                )


def validate_prompts(
    frame: pd.DataFrame, seed: int = 0, select_fraction: float = 0.5
) -> tuple[pd.DataFrame, list[str]]:
    """Check tiers and splits; returns the frame (with ``split`` made if absent) and notes for the report.

    Every tier must be present. If the ``split`` column is missing (or lacks one of select/eval), a seeded
    split stratified by tier is made, and a note says so.
    """
    notes: list[str] = []
    for col in ("text", "tier"):
        if col not in frame.columns:
            raise KeyError(f"prompts: missing column {col!r}; has {list(frame.columns)}")
    frame = frame.reset_index(drop=True).copy()
    for col in ("text", "tier"):
        empty = frame[col].isna() | (frame[col].astype(str).str.strip() == "")
        if empty.any():
            raise ValueError(f"prompts: rows {np.flatnonzero(empty)[:5].tolist()} have no value in column {col!r}")
    frame["id"] = frame["id"].astype(str)
    if frame["id"].duplicated().any():
        raise ValueError(f"prompts: duplicate ids {frame['id'][frame['id'].duplicated()].unique()[:5].tolist()}")
    unknown = sorted(set(frame["tier"]) - set(TIERS))
    if unknown:
        raise ValueError(f"prompts: unknown tiers {unknown}; expected {TIERS} (map them with PromptSource.tier_map)")
    _check_one_tier_per_text(frame)
    absent = [t for t in TIERS if not (frame["tier"] == t).any()]
    if absent:
        raise ValueError(f"prompts: tiers {absent} have no prompts")
    if "split" not in frame.columns or not set(SPLITS) <= set(frame["split"]):
        frame["split"] = stratified_split(frame["tier"].to_numpy(), seed, select_fraction)
        notes.append(
            f"no select/eval split in the source: made a seeded (seed={seed}) split stratified by tier, "
            f"select fraction {select_fraction}"
        )
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


def _check_one_tier_per_text(frame: pd.DataFrame) -> None:
    """The same prompt text under two tiers (e.g. hazard in one split, benign in another) is a labelling error that
    would train and score the audit on contradictory labels."""
    text = frame["text"].astype(str).str.strip()
    tiers = frame.groupby(text)["tier"].nunique()
    clash = tiers[tiers > 1]
    if len(clash):
        rows = frame[text == clash.index[0]]
        where = ", ".join(
            f"id {r.id} tier {r.tier!r}" + (f" split {r.split!r}" if "split" in frame else "")
            for r in rows.itertuples()
        )
        raise ValueError(
            f"prompts: {len(clash)} prompt text(s) carry two tiers, first {clash.index[0][:80]!r} "
            f"({where}); give each text one tier (fix the labels or drop the duplicates)"
        )


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


def check_format(
    frame: pd.DataFrame, tokenizer=None, threshold: float = 0.75, on_confound: str = "warn"
) -> FormatCheck:
    """Length statistics per tier; warn or raise (``on_confound``: "warn" | "error") on a length confound.

    Lengths are in tokens when a tokenizer is given, otherwise in words; both are reported when possible.
    """
    words = frame["text"].str.split().str.len().to_numpy()
    tokens = (
        np.array([len(tokenizer(t, add_special_tokens=False)["input_ids"]) for t in frame["text"]])
        if tokenizer is not None
        else words
    )
    tiers = frame["tier"].to_numpy()
    per_tier = {
        tier: {
            "n": int((tiers == tier).sum()),
            "tokens_mean": float(tokens[tiers == tier].mean()),
            "tokens_std": float(tokens[tiers == tier].std()),
            "tokens_min": int(tokens[tiers == tier].min()),
            "tokens_max": int(tokens[tiers == tier].max()),
            "words_mean": float(words[tiers == tier].mean()),
            "words_std": float(words[tiers == tier].std()),
        }
        for tier in TIERS
    }
    length_auc = _length_auroc(tokens, tiers, "hazard")
    separation = max(length_auc, 1 - length_auc)
    check = FormatCheck(
        per_tier, length_auc, _length_auroc(tokens, tiers, "dual_use"), separation, threshold, separation > threshold
    )
    if check.confounded:
        message = (
            f"tier-format confound: prompt length alone separates hazard from benign with AUROC "
            f"{separation:.2f} > {threshold} (per-tier lengths: "
            f"{ {t: round(s['tokens_mean'], 1) for t, s in per_tier.items()} })"
        )
        if on_confound == "error":
            raise FormatConfoundError(message)
        warnings.warn(message, stacklevel=2)
    return check


def _length_auroc(lengths: np.ndarray, tiers: np.ndarray, positive: str) -> float:
    keep = np.isin(tiers, [positive, "benign"])
    return auroc(lengths[keep], tiers[keep] == positive)
