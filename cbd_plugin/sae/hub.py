"""Fetch SAEs named by Hugging Face hub id, only the files needed, through the normal HF cache.

Forms (``spec`` is a hub id only when it is not an existing local path):

* ``owner/name``: the SAE at the repo's root, or, given a layer, in ``layer_{L}/`` (the fork's layout),
  ``layers.{L}/`` (sparsify) or ``blocks.{L}.*/`` (SAELens hook folders);
* ``owner/name/sub/folder``: the same under a subfolder (e.g. Gemma Scope's
  ``google/gemma-scope-2b-pt-res/layer_20/width_16k/average_l0_71``);
* ``owner/name:path/in/repo``: one file (a ``.pt`` seed checkpoint, a ``params.npz``) or, for a file of a folder
  format (``layer_13/config.json``), its folder;
* ``owner/name@<revision>`` in any of these forms (``owner/name@v1.0/layer_20``, ``owner/name@<commit>:file.pt``)
  pins a branch, tag or commit (``load_dictionary(..., revision=...)`` does the same and also takes revisions with
  a ``/``, such as ``refs/pr/1``); the default is ``main``.

A hub web address (``https://huggingface.co/owner/name[/tree/main/sub]`` or ``.../blob/main/file``) is converted to
these forms by :func:`id_from_url`. Only files named in :data:`cbd_plugin.sae.formats.SAE_FILES` are downloaded.
``HF_HUB_OFFLINE=1`` reads the cache only.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from .formats import DL_WEIGHT_NAMES, SAE_FILES

_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+(@[\w.-]+)?(/[^:@]+)?(:.+)?")


@dataclass(frozen=True)
class HubSpec:
    """A parsed hub id."""

    repo_id: str  # owner/name
    path: str  # folder or file inside the repo; "" for the root
    is_file: bool  # the ``owner/name:file`` form
    revision: str | None = None  # branch, tag or commit; None: main

    def __str__(self) -> str:
        repo = f"{self.repo_id}@{self.revision}" if self.revision else self.repo_id
        return f"{repo}:{self.path}" if self.is_file else "/".join(p for p in (repo, self.path) if p)


def is_hub_id(spec) -> bool:
    """A string shaped like a hub id that is not an existing local path (``Path`` objects are always local)."""
    if not isinstance(spec, str) or os.path.exists(spec) or spec.startswith((".", "/", "~")):
        return False
    return _HUB_ID.fullmatch(spec) is not None


_URL = re.compile(r"https?://(www\.)?(huggingface\.co|hf\.co)/(?P<rest>.*)")


def is_url(spec) -> bool:
    return isinstance(spec, str) and re.match(r"[a-z]+://", spec) is not None


def id_from_url(url: str) -> str:
    """The hub id of a ``https://huggingface.co/...`` model address; other addresses are refused, naming the form."""
    match = _URL.fullmatch(url.strip())
    form = "owner/name, owner/name/sub/folder or owner/name:path/to/file"
    if match is None:
        raise ValueError(f"{url!r}: not a Hugging Face model address; pass a local path or a hub id ({form})")
    parts = [p for p in match["rest"].split("?")[0].split("#")[0].split("/") if p]
    if parts[:1] in (["datasets"], ["spaces"]):
        raise ValueError(
            f"{url!r}: a {parts[0][:-1]} address, not a model repo; SAEs are read from model repos ({form})"
        )
    if len(parts) < 2:
        raise ValueError(f"{url!r}: no repo in the address; expected https://huggingface.co/owner/name ({form})")
    repo, rest = "/".join(parts[:2]), parts[2:]
    if not rest:
        return repo
    if rest[0] not in ("tree", "blob", "resolve") or len(rest) < 2:
        raise ValueError(
            f"{url!r}: expected https://huggingface.co/{repo}[/tree/main/<folder>] or "
            f"/blob/main/<file>; or pass the hub id ({form})"
        )
    # The address's revision becomes the id's @revision (a branch name with "/" cannot be told from the path).
    pinned = repo if rest[1] == "main" else f"{repo}@{rest[1]}"
    path = "/".join(rest[2:])
    if rest[0] == "tree":
        return f"{pinned}/{path}" if path else pinned
    if not path:
        raise ValueError(f"{url!r}: no file after /{rest[0]}/{rest[1]}/; pass the hub id {pinned}:<file>")
    return f"{pinned}:{path}"


def bad_id_hint(spec: str) -> str:
    """Why a missing local ``spec`` shaped like an attempted hub id is not one (empty if it does not look like one)."""
    head = spec.partition(":")[0]
    if "/" not in head or spec.startswith((".", "/", "~")) or is_hub_id(spec):
        return ""
    return (
        f"; nor is it a hub id: owner/name allows letters, digits, '-', '_' and '.', then /sub/folder or "
        f":path/to/file (got {spec!r})"
    )


def parse_hub_spec(spec: str, revision: str | None = None) -> HubSpec:
    """Parse a hub id; ``revision`` (e.g. ``load_dictionary``'s argument) must agree with an ``@revision`` in it."""
    repo_part, colon, file_part = spec.partition(":")
    parts = repo_part.strip("/").split("/")
    name, _, pinned = parts[1].partition("@")
    if pinned and revision and pinned != revision:
        raise ValueError(f"{spec}: pins revision {pinned!r} but revision={revision!r} was given; give one")
    repo_id, sub, revision = f"{parts[0]}/{name}", "/".join(parts[2:]), pinned or revision
    if colon:
        return HubSpec(repo_id, str(PurePosixPath(sub, file_part)) if sub else file_part, True, revision)
    return HubSpec(repo_id, sub, False, revision)


def _patterns(spec: HubSpec, layer: int | None) -> list[str]:
    """``allow_patterns`` for the files the spec needs, and nothing else."""
    if spec.is_file:
        file = PurePosixPath(spec.path)
        if file.suffix in (".pt", ".npz") and file.name not in DL_WEIGHT_NAMES:
            return [spec.path]
        folders = [str(file.parent)]
    else:
        folders = [spec.path]
        if layer is not None:
            folders += [
                str(PurePosixPath(spec.path, sub)) for sub in (f"layer_{layer}", f"layers.{layer}", f"blocks.{layer}.*")
            ]
    return [str(PurePosixPath(folder, name)) for folder in folders for name in SAE_FILES]


def repo_listing(repo_id: str, snapshot: Path | None, limit: int = 40) -> str:
    """What the repo holds: the hub's file list when online, else what the local cache holds."""
    from huggingface_hub import HfApi, constants

    files, where = None, "the hub"
    if not constants.HF_HUB_OFFLINE:
        try:
            files = HfApi().list_repo_files(repo_id)
        except Exception:
            files = None
    if files is None:
        where = "the local cache"
        files = [str(p.relative_to(snapshot)) for p in snapshot.rglob("*") if p.is_file()] if snapshot else []
    if not files:
        return f"{where} holds no files of it"
    shown = sorted(files)[:limit]
    more = f" and {len(files) - limit} more" if len(files) > limit else ""
    return f"{where} lists {shown}{more}"


def download(spec: HubSpec, layer: int | None) -> Path:
    """Download (or find in the cache) what ``spec`` needs; returns the local path of ``spec.path`` (inside the
    snapshot folder, named after the resolved commit)."""
    from huggingface_hub import constants, snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError, RepositoryNotFoundError, RevisionNotFoundError

    patterns = _patterns(spec, layer)
    try:
        root = Path(snapshot_download(spec.repo_id, revision=spec.revision, allow_patterns=patterns))
    except RepositoryNotFoundError as err:
        raise FileNotFoundError(
            f"{spec}: not a local path, and the hub has no repo {spec.repo_id!r} you can read "
            f"(a typo? private or gated: log in with `hf auth login`)"
        ) from err
    except RevisionNotFoundError as err:
        raise FileNotFoundError(
            f"{spec}: the hub repo {spec.repo_id!r} has no revision {spec.revision or 'main'!r}"
        ) from err
    except LocalEntryNotFoundError as err:
        offline = " (HF_HUB_OFFLINE=1)" if constants.HF_HUB_OFFLINE else " and the hub could not be reached"
        at = f" at revision {spec.revision!r}" if spec.revision else ""
        pin = f" --revision {spec.revision}" if spec.revision else ""
        raise FileNotFoundError(
            f"{spec}: not a local path, and hub repo {spec.repo_id!r}{at} is not in the Hugging Face cache "
            f"{constants.HF_HUB_CACHE}{offline}; fetch it once online, e.g. `hf download {spec.repo_id}{pin} "
            f"--include {' '.join(repr(p) for p in patterns[:3])}`"
        ) from err
    local = root / spec.path if spec.path else root
    if not local.exists():
        raise FileNotFoundError(
            f"hub repo {spec.repo_id!r}: no {spec.path!r} (tried {patterns[:4]}...); {repo_listing(spec.repo_id, root)}"
        )
    return local
