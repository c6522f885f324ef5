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

A snapshot is built in a temporary folder and renamed into place, then the dataset link and ``refs/main`` are
updated, ``refs/main`` last: an interrupted build leaves no snapshot, and a snapshot that exists is complete.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from filelock import FileLock
from huggingface_hub import constants

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


def publish(name: str, revision: str, write) -> Path:
    """Run ``write(folder)`` into a temporary folder, move it to the snapshot, then point ``main`` at it."""
    final = snapshot_dir(name, revision)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{revision[:8]}-", dir=final.parent))
    tmp.chmod(0o755)  # mkdtemp makes it private; a snapshot is as readable as the rest of the cache
    try:
        write(tmp)
        if final.exists():  # a forced rebuild: move the old snapshot aside so the swap stays a rename
            old = Path(tempfile.mkdtemp(prefix=f".old-{revision[:8]}-", dir=final.parent))
            os.replace(final, old / revision)
            os.replace(tmp, final)
            shutil.rmtree(old)
        else:
            os.replace(tmp, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
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
    tmp_ref = ref.with_name(".main.tmp")
    tmp_ref.write_text(revision)
    os.replace(tmp_ref, ref)


def current_revision(name: str) -> str | None:
    ref = repo_dir(name) / "refs" / "main"
    return ref.read_text().strip() if ref.exists() else None
