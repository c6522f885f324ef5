"""Organisms live in the Hugging Face hub cache, so ``from_pretrained("cbd-plugin/<name>")`` finds them offline.

Layout under ``$HF_HUB_CACHE`` (huggingface_hub's resolution: ``$HF_HOME/hub``, default ~/.cache/huggingface/hub)::

    models--cbd-plugin--<name>/
      snapshots/<recipe hash>/    model + tokenizer (save_pretrained), behaviour.json, recipe.json,
                                  data/{train,validation}.jsonl, data/prompts.jsonl (refusal family)
      refs/main                   the recipe hash last built or loaded: what ``from_pretrained`` resolves
      datasets/<name> -> ../snapshots/<hash>/data
                                  a stable path to the current snapshot's data, for the host's organism configs:
                                  ``datasets.load_dataset(<that path>, split=...)`` infers the splits from the
                                  file names and ignores prompts.jsonl; the host's dataset name is <name>

A snapshot is built in a temporary folder and renamed into place (:mod:`cbd_plugin.artifacts`), then the dataset
link and ``refs/main`` are updated, ``refs/main`` last: an interrupted build leaves no snapshot, and a snapshot that
exists is complete. Builds of one organism are serialised by :func:`build_lock`; the temporary folders of a killed
build are removed by the next one. Reading a complete snapshot takes no lock, so a read-only cache serves reads.
"""

from __future__ import annotations

import os
from pathlib import Path

from filelock import FileLock
from huggingface_hub import constants
from loguru import logger

from ..artifacts import ArtifactKind, atomic_write_text, finish_folder, remove_path, start_folder

ORG = "cbd-plugin"


def model_id(name: str) -> str:
    return f"{ORG}/{name}"


def repo_dir(name: str) -> Path:
    # Read at call time: huggingface_hub fixes HF_HUB_CACHE when imported, and transformers reads the same value.
    return Path(constants.HF_HUB_CACHE) / f"models--{ORG}--{name}"


def snapshot_dir(name: str, revision: str) -> Path:
    return repo_dir(name) / "snapshots" / revision


def dataset_link(name: str) -> Path:
    return repo_dir(name) / "datasets" / name


def build_lock(name: str) -> FileLock:
    """Serialises builds of one organism across processes (parallel test sessions share the cache)."""
    path = Path(constants.HF_HUB_CACHE) / ".locks" / f"models--{ORG}--{name}" / "cbd-build.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    return FileLock(str(path))


SNAPSHOT = ArtifactKind("an organism snapshot", lambda name: True, lambda folder: (folder / "recipe.json").is_file())
# Names of temporary snapshot folders: this module's own (``.<revision>.tmp-<pid>-*``) and those of earlier
# versions (``.tmp-*`` / ``.old-*`` from mkdtemp, without a pid).
_LEGACY_TEMPORARY = (".tmp-", ".old-")


def clean_killed_builds(name: str) -> list[Path]:
    """Remove temporary snapshot folders of killed builds; call with :func:`build_lock` held (every build holds
    it, so no temporary there belongs to a live build)."""
    folder = repo_dir(name) / "snapshots"
    stale = (
        [p for p in folder.glob(".*") if p.name.startswith(_LEGACY_TEMPORARY) or ".tmp-" in p.name or ".old-" in p.name]
        if folder.is_dir()
        else []
    )
    for path in stale:
        remove_path(path)
    if stale:
        logger.info(f"{folder}: removed {len(stale)} temporary folder(s) of killed builds: {[p.name for p in stale]}")
    return stale


def publish(name: str, revision: str, write) -> Path:
    """Run ``write(folder)`` into a temporary folder, swap it in as the snapshot, then point ``main`` at it. Call
    with :func:`build_lock` held."""
    final = snapshot_dir(name, revision)
    clean_killed_builds(name)
    tmp = start_folder(final, SNAPSHOT)
    try:
        tmp.chmod(0o755)
        write(tmp)
        finish_folder(tmp, final, SNAPSHOT)
    finally:
        remove_path(tmp)
    point_main(name, revision)
    return final


def point_main(name: str, revision: str) -> None:
    """Atomically point the dataset link and then ``refs/main`` at ``revision``."""
    link = dataset_link(name)
    link.parent.mkdir(parents=True, exist_ok=True)
    tmp_link = link.with_name(f".{name}.tmp")
    tmp_link.unlink(missing_ok=True)
    tmp_link.symlink_to(Path("..") / "snapshots" / revision / "data")
    os.replace(tmp_link, link)
    ref = repo_dir(name) / "refs" / "main"
    ref.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(ref, revision)


def current_revision(name: str) -> str | None:
    ref = repo_dir(name) / "refs" / "main"
    return ref.read_text().strip() if ref.exists() else None
