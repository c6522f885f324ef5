"""Prompt sets drawn from several datasets, each giving one tier, all rendered by one template.

A source (:class:`DatasetSource`) uses the keys of the host's ``dataset:`` block (``id``, ``subset``, ``splits``)
and is read with ``datasets.load_dataset``: a hub id, or a local folder laid out like a hub dataset repo (parquet
or jsonl files, configs in its README), or a local file. Its rows become prompts through a ``template`` over the
row's columns; a list column (``choices``) renders as lettered options ``A. ...``. Tiers are then balanced
(``n_per_tier`` rows each, optionally length-matched so prompt length cannot separate the tiers) and split into
select/eval, both seeded.

Shipped presets live in ``data/presets/<name>.yaml`` (``wmdp_mmlu_bio``: hazard = WMDP-bio, benign = MMLU biology,
dual_use = MMLU virology and medical genetics).
"""

from __future__ import annotations

import string
import tempfile
from dataclasses import dataclass, field, fields
from pathlib import Path

import numpy as np
import pandas as pd

from ..vocab import EVAL, SELECT, TIERS

LETTERS = "ABCDEFGHIJ"
# resolve(): a strict editable install links each module file, so the package data is found beside the source
PRESETS_DIR = Path(__file__).resolve().parent / "data" / "presets"
LENGTH_BIN_RATIO = 1.1  # length matching: bins of word counts 10% wide (tight enough that length cannot separate)


@dataclass
class DatasetSource:
    """One dataset (or several configs of it) giving prompts of one tier."""

    id: str  # hub id (owner/name) or a local folder/file
    tier: str  # benign | dual_use | hazard: the tier of every row
    subset: str | list[str] | None = None  # config name(s); a list is read config by config and pooled
    splits: list[str] = field(default_factory=lambda: ["test"])  # splits read and pooled
    template: str = "{question}"  # str.format over the row's columns; list columns as A./B./...
    id_column: str | None = None  # row id column; default "<id>/<subset>/<split>/<row>"

    def __post_init__(self):
        if self.tier not in TIERS:
            raise ValueError(f"prompt source {self.id!r}: tier {self.tier!r} is not one of {TIERS}")
        if isinstance(self.splits, str):
            self.splits = [self.splits]
        fields_used = [name for _, name, _, _ in string.Formatter().parse(self.template) if name]
        if not fields_used:
            raise ValueError(f"prompt source {self.id!r}: template {self.template!r} uses no column")

    @property
    def subsets(self) -> list[str | None]:
        return list(self.subset) if isinstance(self.subset, (list, tuple)) else [self.subset]


@dataclass
class PromptSetSpec:
    """Several sources, balanced per tier and split into select/eval."""

    sources: list[DatasetSource]
    n_per_tier: int | None = None  # rows per tier; None: the smallest tier's (matched) size
    match_length: bool = True  # draw tiers with the same length distribution (format check)
    select_fraction: float = 0.5  # share of each tier in the select split
    seed: int = 0  # sampling and split
    data_dir: str | None = None  # local copies: id owner/name is read from <data_dir>/owner/name

    def __post_init__(self):
        self.sources = [
            s if isinstance(s, DatasetSource) else source_from_dict(s, i) for i, s in enumerate(self.sources)
        ]
        missing = [t for t in TIERS if t not in {s.tier for s in self.sources}]
        if missing:
            raise ValueError(f"prompt set: no source gives tier(s) {missing}; every tier of {TIERS} needs one")
        if not 0 < self.select_fraction < 1:
            raise ValueError(f"prompt set: select_fraction {self.select_fraction} must be in (0, 1)")
        if self.n_per_tier is not None and self.n_per_tier < 2:
            raise ValueError(f"prompt set: n_per_tier {self.n_per_tier} must be >= 2 (one select, one eval)")


def source_from_dict(values: dict, index: int = 0) -> DatasetSource:
    known = {f.name for f in fields(DatasetSource)}
    unknown = set(values) - known
    if unknown:
        raise KeyError(f"prompt set sources[{index}]: unknown keys {sorted(unknown)}; allowed {sorted(known)}")
    missing = {"id", "tier"} - set(values)
    if missing:
        raise KeyError(f"prompt set sources[{index}]: missing {sorted(missing)}")
    return DatasetSource(**values)


def preset(name: str) -> dict:
    """The shipped preset ``name`` as a mapping (keys of :class:`PromptSetSpec`)."""
    import yaml  # pyyaml comes with hydra/omegaconf

    available = sorted(p.stem for p in PRESETS_DIR.glob("*.yaml"))
    if name not in available:
        raise KeyError(f"prompt set preset {name!r} not found; shipped presets: {available}")
    return yaml.safe_load((PRESETS_DIR / f"{name}.yaml").read_text(encoding="utf-8"))


def render(row: dict, template: str) -> str:
    """``template`` filled from ``row``; list values become lettered options, one per line."""
    values = {}
    for key, value in row.items():
        if isinstance(value, (list, tuple, np.ndarray)):
            value = "\n".join(f"{LETTERS[i]}. {str(v).strip()}" for i, v in enumerate(value))
        values[key] = value.strip() if isinstance(value, str) else value
    return template.format(**values).strip()


def _dataset_path(source: DatasetSource, data_dir: str | None) -> str:
    if data_dir is not None and not Path(source.id).exists():
        local = Path(data_dir).expanduser() / source.id
        if not local.exists():
            raise FileNotFoundError(f"prompt source {source.id!r}: data_dir is set but {local} does not exist")
        return str(local)
    return source.id


def read_source(source: DatasetSource, data_dir: str | None = None) -> pd.DataFrame:
    """Rows of one source as ``id``, ``text``, ``tier``, ``origin`` (dataset/subset/split), rendered."""
    import datasets  # lazy: only prompt sets from datasets need it

    path = _dataset_path(source, data_dir)
    builder_files = _local_file_builder(path)
    columns_used = [name for _, name, _, _ in string.Formatter().parse(source.template) if name]
    frames = []
    for subset in source.subsets:
        for split in source.splits:
            where = f"{source.id}" + (f" (subset {subset})" if subset else "") + f" split {split}"
            try:
                rows = _load_split(datasets, path, subset, split, builder_files)
            except (ValueError, FileNotFoundError, OSError) as err:
                raise type(err)(f"prompt source {where}: could not be read ({err})") from err
            missing = [c for c in columns_used + ([source.id_column] if source.id_column else []) if c not in rows]
            if missing:
                raise KeyError(
                    f"prompt source {where}: template/id columns {missing} not in its columns {list(rows.columns)}"
                )
            for i, row in enumerate(rows[columns_used].to_dict("records")):
                empty = [c for c in columns_used if _is_empty(row[c])]
                if empty:
                    raise ValueError(f"prompt source {where}: row {i} has no value in column(s) {empty}")
            texts = [render(row, source.template) for row in rows[columns_used].to_dict("records")]
            ids = (
                rows[source.id_column].astype(str)
                if source.id_column
                else [f"{source.id}/{subset or 'default'}/{split}/{i}" for i in range(len(rows))]
            )
            frames.append(
                pd.DataFrame(
                    {
                        "id": list(ids),
                        "text": texts,
                        "tier": source.tier,
                        "origin": f"{source.id}/{subset or 'default'}/{split}",
                    }
                )
            )
    return pd.concat(frames, ignore_index=True)


def _load_split(datasets, path: str, subset: str | None, split: str, builder_files) -> pd.DataFrame:
    """One split as a frame. Local data is read through a throwaway cache: ``datasets`` keys the cache of a local
    folder by its name and config, so a second folder named like the first (or an edited copy) would silently
    return the first one's rows."""
    if not Path(path).exists():
        return datasets.load_dataset(path, subset, split=split).to_pandas()
    with tempfile.TemporaryDirectory(prefix="cbd_prompts_") as cache:
        if builder_files:
            data = datasets.load_dataset(
                builder_files[0], data_files={split: builder_files[1]}, split=split, cache_dir=cache
            )
        else:
            data = datasets.load_dataset(path, subset, split=split, cache_dir=cache)
        return data.to_pandas()


def _is_empty(value) -> bool:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return True
    return isinstance(value, str) and not value.strip()


def _local_file_builder(path: str) -> tuple[str, str] | None:
    """(builder, file) for a single local data file; None for folders and hub ids."""
    suffix = Path(path).suffix.lower()
    builders = {".jsonl": "json", ".json": "json", ".parquet": "parquet", ".csv": "csv"}
    return (builders[suffix], path) if Path(path).is_file() and suffix in builders else None


def balance(frame: pd.DataFrame, n_per_tier: int | None, match_length: bool, seed: int) -> pd.DataFrame:
    """The same number of rows per tier (and, with ``match_length``, the same word-length distribution)."""
    rng = np.random.default_rng(seed)
    words = frame["text"].str.split().str.len().to_numpy()
    if match_length:
        # log-width bins of word counts; within a bin each tier gives as many rows as the scarcest tier has
        bins = np.round(np.log(np.maximum(words, 1)) / np.log(LENGTH_BIN_RATIO)).astype(int)
    else:
        bins = np.zeros(len(frame), dtype=int)
    keep: dict[str, list[int]] = {t: [] for t in TIERS}
    for b in np.unique(bins):
        rows = {t: np.flatnonzero((bins == b) & (frame["tier"].to_numpy() == t)) for t in TIERS}
        k = min(len(r) for r in rows.values())
        for t in TIERS:
            keep[t].extend(rng.choice(rows[t], size=k, replace=False).tolist())
    available = min(len(v) for v in keep.values())
    n = available if n_per_tier is None else n_per_tier
    if n > available:
        detail = "after length matching " if match_length else ""
        raise ValueError(
            f"prompt set: n_per_tier={n} but only {available} rows per tier are available {detail}"
            f"(per tier before balancing: {frame['tier'].value_counts().to_dict()})"
        )
    chosen = [i for t in TIERS for i in rng.choice(np.array(keep[t]), size=n, replace=False)]
    return frame.iloc[sorted(chosen)].reset_index(drop=True)


def load_prompt_set(spec: PromptSetSpec) -> pd.DataFrame:
    """Read, render, balance and split every source: columns ``id``, ``text``, ``tier``, ``split``."""
    frame = pd.concat([read_source(s, spec.data_dir) for s in spec.sources], ignore_index=True)
    duplicated = frame["id"].duplicated()
    if duplicated.any():
        raise ValueError(
            f"prompt set: duplicate ids across sources, e.g. {frame['id'][duplicated].iloc[0]!r}; "
            "give each source a distinct id_column or leave it unset"
        )
    frame = balance(frame, spec.n_per_tier, spec.match_length, spec.seed)
    frame["split"] = stratified_split(frame["tier"].to_numpy(), spec.seed, spec.select_fraction)
    return frame[["id", "text", "tier", "split"]]


def stratified_split(tiers: np.ndarray, seed: int, select_fraction: float) -> np.ndarray:
    """'select'/'eval' per row, the same fraction within each tier (at least one of each where possible)."""
    rng = np.random.default_rng(seed)
    split = np.full(len(tiers), EVAL, dtype=object)
    for tier in np.unique(tiers):
        rows = rng.permutation(np.flatnonzero(tiers == tier))
        n_select = min(max(1, round(select_fraction * len(rows))), max(len(rows) - 1, 1))
        split[rows[:n_select]] = SELECT
    return split
