"""Bounded-memory streaming of captures to safetensors shards, with integrity.

A capture is written into a temporary sibling folder, shard by shard, each shard's sha256 recorded in
``manifest.json``, written last; only then is the folder swapped in for ``out_dir`` (:mod:`cbd_plugin.artifacts`):
a capture that fails or is killed leaves an earlier complete capture in ``out_dir`` untouched, and a folder without
a manifest is refused by the readers. One writer per ``out_dir`` at a time. Readers verify every shard's sha256
before using it, so a flipped byte, a truncated file or two swapped shards raise an error naming the shard.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from tqdm.auto import tqdm

from ..artifacts import ArtifactKind, OutputLock, atomic_write, finish_folder, remove_path, start_folder
from ..checks import is_int
from ..sae.folder import read_json_object, sha256_file
from .residuals import TokenActivations

MANIFEST = "manifest.json"
SHARD_FORMAT = "cbd_plugin.capture.shards/2"  # /2 adds a sha256 per shard
UNCHECKED_FORMAT = "cbd_plugin.capture.shards/1"  # written before checksums: read with a warning

Streams = TokenActivations | tuple[TokenActivations, ...]


def _as_streams(batch: Streams) -> tuple[TokenActivations, ...]:
    return (batch,) if isinstance(batch, TokenActivations) else tuple(batch)


def _meta_tensors(meta: dict[str, np.ndarray]) -> tuple[dict[str, torch.Tensor], dict[str, list[str]]]:
    """Numeric/bool metadata as tensors; string labels go to the safetensors header as JSON."""
    tensors, strings = {}, {}
    for name, values in meta.items():
        if values.dtype.kind in "biuf":
            tensors[f"meta.{name}"] = torch.from_numpy(np.ascontiguousarray(values))
        elif values.dtype.kind in "US":
            strings[name] = values.astype(str).tolist()
        else:
            raise TypeError(f"metadata {name!r} has dtype {values.dtype}; use numbers, bools or strings")
    return tensors, strings


def _is_capture_file(name: str) -> bool:
    return name == MANIFEST or (name.startswith("shard_") and name.endswith(".safetensors"))


CAPTURE_FOLDER = ArtifactKind(
    "a capture (shard) folder", _is_capture_file, lambda folder: any(_is_capture_file(p.name) for p in folder.iterdir())
)


@dataclass
class ShardWriter:
    """Writes batches (one ``TokenActivations``, or a tuple of them for paired models) to ``out_dir`` in
    shards of ``shard_tokens`` tokens. Use as a context manager: the capture replaces ``out_dir`` only on a clean
    exit (``close()``); on an error the new shards are removed and an earlier capture in ``out_dir`` stays."""

    out_dir: Path | str
    model_ids: Sequence[str]  # one per stream, e.g. (base_id, finetuned_id)
    shard_tokens: int = 1 << 16
    dtype: torch.dtype = torch.float32
    _pending: list[tuple[TokenActivations, ...]] = field(default_factory=list, init=False)
    _n_pending: int = field(default=0, init=False)
    _shards: list[dict] = field(default_factory=list, init=False)
    _layers: list[int] | None = field(default=None, init=False)
    manifest: dict | None = field(default=None, init=False)  # set by close()
    _lock: OutputLock | None = field(default=None, init=False)
    _tmp: Path | None = field(default=None, init=False)  # the new capture, until close() swaps it in

    def __post_init__(self):
        if isinstance(self.model_ids, str) or not self.model_ids or not all(isinstance(m, str) for m in self.model_ids):
            raise ValueError(f"model_ids must be a non-empty list of strings, one per stream; got {self.model_ids!r}")
        if not is_int(self.shard_tokens, 1):
            raise ValueError(f"shard_tokens must be an integer >= 1, got {self.shard_tokens!r}")
        self.out_dir = Path(self.out_dir)
        self._lock = OutputLock(self.out_dir).__enter__()
        try:
            self._tmp = start_folder(self.out_dir, CAPTURE_FOLDER)
        except BaseException:
            self.abort()
            raise

    def __enter__(self) -> ShardWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    def abort(self) -> None:
        """Drop the new shards and release ``out_dir``; an earlier capture there is kept."""
        if self._tmp is not None:
            remove_path(self._tmp)
            self._tmp = None
        if self._lock is not None:
            self._lock.__exit__(None, None, None)
            self._lock = None

    def add(self, batch: Streams) -> None:
        streams = _as_streams(batch)
        if len(streams) != len(self.model_ids):
            raise ValueError(f"batch has {len(streams)} streams but model_ids names {len(self.model_ids)}")
        for other in streams[1:]:
            if other.meta.keys() != streams[0].meta.keys() or not all(
                np.array_equal(other.meta[k], streams[0].meta[k]) for k in other.meta
            ):
                raise ValueError("paired batch: streams have different metadata (not the same tokens)")
        self._layers = self._layers or sorted(streams[0].acts)
        self._pending.append(streams)
        self._n_pending += len(streams[0])
        while self._n_pending >= self.shard_tokens:
            self._flush(self.shard_tokens)

    def _flush(self, n_tokens: int) -> None:
        merged = [TokenActivations.concat([p[s] for p in self._pending]) for s in range(len(self.model_ids))]
        self._write_shard([m.take(slice(0, n_tokens)) for m in merged])
        rest = tuple(m.take(slice(n_tokens, None)) for m in merged)
        self._n_pending = len(rest[0])
        self._pending = [rest] if self._n_pending else []

    def _write_shard(self, streams: list[TokenActivations]) -> None:
        name = f"shard_{len(self._shards):05d}.safetensors"
        tensors, strings = _meta_tensors(streams[0].meta)
        for s, stream in enumerate(streams):
            if sorted(stream.acts) != self._layers:
                raise ValueError(f"{name}: stream {s} has layers {sorted(stream.acts)}, expected {self._layers}")
            tensors |= {f"acts.{s}.{l}": a.to(self.dtype).contiguous() for l, a in stream.acts.items()}
        if self._tmp is None:
            raise ValueError(f"{self.out_dir}: this ShardWriter is closed")
        path = atomic_write(
            self._tmp / name, lambda tmp: save_file(tensors, str(tmp), metadata={"string_meta": json.dumps(strings)})
        )
        self._shards.append({"file": name, "n_tokens": len(streams[0]), "sha256": sha256_file(path)})

    def close(self) -> dict:
        """Write the last shard and the manifest, then swap the new capture in for ``out_dir``."""
        try:
            if self._n_pending:
                self._flush(self._n_pending)
            if not self._shards:
                raise ValueError(f"{self.out_dir}: nothing was written (no batches); an earlier capture there is kept")
            manifest = {
                "format": SHARD_FORMAT,
                "model_ids": list(self.model_ids),
                "layers": self._layers,
                "dtype": str(self.dtype).removeprefix("torch."),
                "n_tokens": sum(s["n_tokens"] for s in self._shards),
                "shards": self._shards,
            }
            atomic_write(self._tmp / MANIFEST, lambda tmp: tmp.write_text(json.dumps(manifest, indent=1)))
            finish_folder(self._tmp, self.out_dir, CAPTURE_FOLDER)
        finally:
            self.abort()
        self.manifest = manifest
        return manifest


def write_shards(
    batches: Iterable[Streams],
    out_dir: Path | str,
    *,
    model_ids: Sequence[str],
    shard_tokens: int = 1 << 16,
    dtype: torch.dtype = torch.float32,
) -> dict:
    """Stream ``batches`` (from :func:`iter_residuals` or :func:`iter_paired_residuals`) to disk; returns the
    manifest. If ``batches`` raises, nothing in ``out_dir`` changes."""
    with ShardWriter(out_dir, model_ids, shard_tokens, dtype) as writer:
        for batch in batches:
            writer.add(batch)
    return writer.manifest


def _check_manifest(path: Path, manifest: dict) -> None:
    """Every key a reader relies on, with its type; errors name the manifest and the key."""

    def bad(key: str, expected: str):
        return ValueError(
            f"{path}: key {key!r} must be {expected}, got {manifest.get(key)!r:.80}; the manifest "
            "is corrupt: re-capture this folder"
        )

    if (
        not isinstance(manifest.get("model_ids"), list)
        or not manifest["model_ids"]
        or not all(isinstance(m, str) for m in manifest["model_ids"])
    ):
        raise bad("model_ids", "a non-empty list of strings")
    if (
        not isinstance(manifest.get("layers"), list)
        or not manifest["layers"]
        or not all(is_int(l) for l in manifest["layers"])
    ):
        raise bad("layers", "a non-empty list of integers")
    if not isinstance(manifest.get("shards"), list) or not manifest["shards"]:
        raise bad("shards", "a non-empty list of {file, n_tokens, sha256}")
    checked = manifest["format"] == SHARD_FORMAT
    for i, entry in enumerate(manifest["shards"]):
        if (
            not isinstance(entry, dict)
            or not isinstance(entry.get("file"), str)
            or not is_int(entry.get("n_tokens"))
            or entry["n_tokens"] < 1
            or (checked and not isinstance(entry.get("sha256"), str))
        ):
            raise ValueError(
                f"{path}: shards[{i}] must be {{file, n_tokens >= 1, sha256}}, got {entry!r:.120}; "
                "the manifest is corrupt: re-capture this folder"
            )
        if Path(entry["file"]).name != entry["file"] or entry["file"] in (".", ".."):
            raise ValueError(f"{path}: shards[{i}].file {entry['file']!r} must be a file name inside the folder")
    if sum(e["n_tokens"] for e in manifest["shards"]) != manifest.get("n_tokens"):
        raise bad("n_tokens", f"the sum of the shards' n_tokens ({sum(e['n_tokens'] for e in manifest['shards'])})")


def read_manifest(out_dir: Path | str) -> dict:
    path = Path(out_dir) / MANIFEST
    if not path.is_file():
        raise FileNotFoundError(
            f"{out_dir}: no {MANIFEST}, so this is not a complete shard folder "
            "(the capture was interrupted or never written)"
        )
    manifest = read_json_object(path)
    if manifest.get("format") not in (SHARD_FORMAT, UNCHECKED_FORMAT):
        raise ValueError(f"{path}: format {manifest.get('format')!r}, expected {SHARD_FORMAT!r}")
    _check_manifest(path, manifest)
    if manifest["format"] == UNCHECKED_FORMAT:
        warnings.warn(
            f"{path}: written before shard checksums ({UNCHECKED_FORMAT}); the shards are read "
            "unverified. Re-capture to get verified shards.",
            stacklevel=3,
        )
    return manifest


def _verify(path: Path, entry: dict, manifest: dict) -> None:
    actual = sha256_file(path)
    if actual == entry["sha256"]:
        return
    owner = next((e["file"] for e in manifest["shards"] if e["sha256"] == actual), None)
    why = (
        f"it holds the content recorded for {owner} (shards swapped or renamed?)"
        if owner is not None
        else "the file is corrupt, truncated or was changed after the capture"
    )
    raise ValueError(
        f"{path}: sha256 {actual[:16]}... differs from {entry['sha256'][:16]}... recorded in "
        f"{MANIFEST}: {why}; re-capture this folder"
    )


def _read_shard(path: Path, entry: dict, manifest: dict, layers: list[int]) -> tuple[TokenActivations, ...]:
    try:
        with safe_open(str(path), framework="pt") as f:
            keys = set(f.keys())
            wanted = [f"acts.{s}.{l}" for s in range(len(manifest["model_ids"])) for l in layers]
            missing = [k for k in wanted if k not in keys]
            if missing:
                raise ValueError(f"{path}: tensors {missing[:4]} listed by {MANIFEST} are missing; re-capture")
            meta = {k.removeprefix("meta."): f.get_tensor(k).numpy() for k in sorted(keys) if k.startswith("meta.")}
            meta |= {k: np.asarray(v) for k, v in json.loads((f.metadata() or {})["string_meta"]).items()}
            streams = tuple(
                TokenActivations({l: f.get_tensor(f"acts.{s}.{l}").float() for l in layers}, meta)
                for s in range(len(manifest["model_ids"]))
            )
    except (SafetensorError, OSError, KeyError, json.JSONDecodeError) as err:
        raise ValueError(f"{path}: unreadable shard, truncated or corrupt? ({type(err).__name__}: {err})") from err
    if "prompt_id" not in meta or any(
        len(v) != entry["n_tokens"] for v in [*meta.values(), *(a for s in streams for a in s.acts.values())]
    ):
        raise ValueError(f"{path}: token count differs from the {entry['n_tokens']} in {MANIFEST}")
    return streams


def iter_shards(out_dir: Path | str, layers: Iterable[int] | None = None, *, verify: bool = True) -> Iterator[Streams]:
    """Shard by shard, as written: a ``TokenActivations`` per shard, or a tuple per shard for paired captures.
    ``layers`` loads a subset. Each shard's sha256 (unless ``verify=False``) and token count are checked against
    the manifest before it is yielded."""
    out_dir = Path(out_dir)
    manifest = read_manifest(out_dir)  # checked now, before the first shard is asked for
    layers = manifest["layers"] if layers is None else sorted(set(layers))
    missing = set(layers) - set(manifest["layers"])
    if missing:
        raise ValueError(f"{out_dir}: layers {sorted(missing)} were not captured (have {manifest['layers']})")

    def stream() -> Iterator[Streams]:
        for entry in tqdm(manifest["shards"], desc="read shards", unit="shard", disable=None):
            path = out_dir / entry["file"]
            if not path.is_file():
                raise FileNotFoundError(f"{path}: listed in {MANIFEST} but missing")
            if verify and "sha256" in entry:
                _verify(path, entry, manifest)
            streams = _read_shard(path, entry, manifest, layers)
            yield streams[0] if len(streams) == 1 else streams

    return stream()


def read_shards(out_dir: Path | str, layers: Iterable[int] | None = None, *, verify: bool = True) -> Streams:
    """Everything in a shard folder, concatenated (same shape as :func:`iter_shards` yields)."""
    shards = [_as_streams(s) for s in iter_shards(out_dir, layers, verify=verify)]
    merged = tuple(TokenActivations.concat([s[i] for s in shards]) for i in range(len(shards[0])))
    return merged[0] if len(merged) == 1 else merged
