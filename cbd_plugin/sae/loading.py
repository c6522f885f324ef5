"""``load_dictionary``: one entry point for any SAE, a local folder or file, or a hub id, in any format we read.

A folder holding per-layer folders (``layer_13/``, ``layers.13/``, ``blocks.13.hook_resid_post/``) needs the layer;
without one the error lists the layers found. See :mod:`cbd_plugin.sae.formats` for the formats and
:mod:`cbd_plugin.sae.hub` for the hub forms.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from ..checks import is_int
from .dictionary import Dictionary
from .formats import SAE_FILES, LoadOptions, detect, load_file_spec, load_folder_sae, looks_like
from .hub import bad_id_hint, download, id_from_url, is_hub_id, is_url, parse_hub_spec, repo_listing

_LAYER_FOLDER = re.compile(r"(?:layer_|layers\.|model\.layers\.|blocks\.)(\d+)(?:[._].*)?")


def layer_folders(folder: Path) -> dict[int, list[Path]]:
    """``{layer: [subfolders]}`` for subfolders named after a layer."""
    found: dict[int, list[Path]] = {}
    for sub in sorted(p for p in folder.iterdir() if p.is_dir()):
        match = _LAYER_FOLDER.fullmatch(sub.name)
        if match:
            found.setdefault(int(match.group(1)), []).append(sub)
    return found


def saes_below(folder: Path, depth: int = 3) -> list[str]:
    """Relative paths of folders below ``folder`` (up to ``depth`` levels) that hold a recognised SAE."""
    found = []
    for level in range(1, depth + 1):
        for sub in sorted(folder.glob("/".join(["*"] * level))):
            if sub.is_dir() and detect(sub) is not None:
                found.append(str(sub.relative_to(folder)))
    return found


def snapshot_of(local: Path) -> Path:
    """The snapshot folder (``.../snapshots/<commit>``) that holds ``local``."""
    return next(p for p in (local, *local.parents) if p.parent.name == "snapshots")


def load_local(path: Path, options: LoadOptions) -> Dictionary:
    if path.is_file():
        return load_file_spec(path, options)
    if not path.is_dir():
        raise FileNotFoundError(f"{path}: no such file or folder")
    layers = layer_folders(path)
    if (detect(path) is not None or looks_like(path)) and (options.layer is None or not layers):
        return load_folder_sae(path, options)
    if layers:
        names = [p.name for subs in layers.values() for p in subs]
        if options.layer is None:
            raise ValueError(
                f"{path} holds SAEs for layers {sorted(layers)} ({names}), no SAE itself: give the "
                f"layer (the method's layers / load_dictionary(..., layer=L)) or point at one of them"
            )
        if options.layer not in layers:
            raise FileNotFoundError(
                f"{path}: no SAE for layer {options.layer}; it holds layers {sorted(layers)} ({names})"
            )
        if len(layers[options.layer]) > 1:
            raise ValueError(
                f"{path}: several folders for layer {options.layer}: "
                f"{[p.name for p in layers[options.layer]]}; point at one"
            )
        return load_local(layers[options.layer][0], options)
    below = saes_below(path)
    if below:
        raise FileNotFoundError(f"{path} holds no SAE itself; SAEs below it: {below[:20]}; point at one")
    return load_folder_sae(path, options)  # raises, naming what the folder holds


def load_dictionary(
    spec: str | Path,
    layer: int | None = None,
    d_model: int | None = None,
    device=None,
    k: int | None = None,
    revision: str | None = None,
) -> Dictionary:
    """Load any SAE we read, as a :class:`Dictionary`.

    ``spec``: a local folder or file, or a hub id (``owner/name``, ``owner/name/subfolder``, ``owner/name:file``)
    when it is not an existing local path. ``layer`` picks ``layer_{L}/`` (or ``layers.{L}/``,
    ``blocks.{L}.*/``) under a parent folder and is checked against a layer the files record. ``d_model`` is
    checked against the SAE's input width. ``k`` is used only by formats that do not store it (the seed ``.pt``;
    default the BioRefusalAudit card's 32). ``revision`` pins a hub id's branch, tag or commit (as
    ``owner/name@revision`` does). The SAE's ``origin`` records the spec, the weights file and, for a hub id, the
    repo, the requested and the resolved revision (the snapshot's commit) and the path in the repo.
    """
    if not isinstance(spec, (str, os.PathLike)) or not str(spec).strip():
        raise ValueError(f"load_dictionary: spec={spec!r}: expected a local path or a hub id (owner/name)")
    if layer is not None and (not is_int(layer, 0)):
        raise ValueError(f"layer={layer!r}: expected a non-negative integer")
    if d_model is not None and (not is_int(d_model, 1)):
        raise ValueError(f"d_model={d_model!r}: expected a positive integer (the model's hidden size)")
    options = LoadOptions(layer=layer, k=k)
    if is_url(spec):
        spec = id_from_url(spec)
    if is_hub_id(spec):
        hub_spec = parse_hub_spec(spec, revision)
        local = download(hub_spec, layer)
        try:
            sae = load_local(local, options)
        except FileNotFoundError as err:
            raise FileNotFoundError(
                f"hub repo {hub_spec.repo_id!r}, path {hub_spec.path or '/'!r} "
                f"(only {list(SAE_FILES)} are fetched): {err}; "
                f"{repo_listing(hub_spec.repo_id, local)}"
            ) from err
        snapshot, weights = snapshot_of(local), Path(sae.source)
        sae.origin = {
            "spec": str(spec),
            "weights_file": sae.source,
            "hub_id": hub_spec.repo_id,
            "requested_revision": hub_spec.revision,
            "revision": snapshot.name,
            "path_in_repo": weights.relative_to(snapshot).as_posix() if weights.is_relative_to(snapshot) else None,
        }
        sae.source = f"{spec} ({sae.source})"
    elif isinstance(spec, str) and not os.path.exists(spec) and bad_id_hint(spec):
        raise FileNotFoundError(f"{spec}: no such file or folder{bad_id_hint(spec)}")
    else:
        if revision is not None:
            raise ValueError(f"load_dictionary: revision={revision!r} applies to hub ids; {spec!r} is a local path")
        sae = load_local(Path(spec).expanduser(), options)
        sae.origin = {"spec": str(spec), "weights_file": sae.source}
    if d_model is not None:
        sae.check_compatible(d_model)
    return sae.to(device) if device is not None else sae
