"""The ``provenance`` block of every ``report.json``: what exactly was analysed, so that a result can be traced.

* models: the id each was loaded by, the revision it resolved to (the hub cache's snapshot folder name, which is
  the commit hash for hub models, or, for a local folder outside a hub cache, a sha256 over its weight files),
  dtype, device map and class;
* the SAE: where it was loaded from (path, or hub id + revision + file), the sha256 of its weights file (of its
  state dict when it has no file), its class, width and the model/hook/layer it records;
* the prompt set: its source and a sha256 of its content; the seeds; the resolved config;
* package versions and the plugin's version and git commit (None when not run from a checkout).

Nothing here loads a model or reaches the network; a fact that cannot be established is ``None``, never a failure.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import json
import os
import platform
import re
import subprocess
from dataclasses import asdict, is_dataclass
from pathlib import Path

import torch

PACKAGES = ("torch", "transformers", "nnsight", "nnterp", "sae-lens", "safetensors", "numpy", "huggingface-hub")
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".gguf")
_SNAPSHOT = re.compile(r"models--(?P<owner>[^/]+?)--(?P<name>[^/]+)/snapshots/(?P<revision>[^/]+)$")


def sha256_bytes_of(path: str | Path) -> str:
    """sha256 of one file, cached per (path, size, mtime): a report does not re-read gigabytes it just hashed."""
    stat = os.stat(path)
    return _sha256_cached(str(Path(path).resolve()), stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=256)
def _sha256_cached(path: str, size: int, mtime_ns: int) -> str:
    from .sae.folder import sha256_file

    return sha256_file(path)


def folder_content_sha256(folder: Path) -> str | None:
    """sha256 over ``name:sha256`` of every weight file directly in ``folder`` (sorted); None if it holds none."""
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix in WEIGHT_SUFFIXES)
    if not files:
        return None
    return hashlib.sha256("\n".join(f"{p.name}:{sha256_bytes_of(p)}" for p in files).encode()).hexdigest()


def hub_snapshot(path: Path) -> dict | None:
    """``{"hub_id", "revision"}`` when ``path`` is a hub cache snapshot folder (``models--o--n/snapshots/<rev>``)."""
    match = _SNAPSHOT.search(path.resolve().as_posix())
    return {"hub_id": f"{match['owner']}/{match['name']}", "revision": match["revision"]} if match else None


def resolve_revision(model_id: str | None, requested: str | None = None) -> dict:
    """How ``model_id`` resolves: ``{"revision", "revision_kind", "hub_id"}``.

    A local folder inside a hub cache gives its snapshot name; another local folder a content hash of its weight
    files; a hub id the snapshot the local cache resolves ``requested`` (default ``main``) to, as ``from_pretrained``
    does offline.
    """
    if not model_id:
        return {"revision": None, "revision_kind": "in-memory model (no id)", "hub_id": None}
    path = Path(model_id).expanduser()
    if path.is_dir():
        snapshot = hub_snapshot(path)
        if snapshot:
            return {**snapshot, "revision_kind": "hub cache snapshot"}
        return {
            "revision": folder_content_sha256(path),
            "revision_kind": "sha256 of the folder's weight files",
            "hub_id": None,
        }
    from huggingface_hub import try_to_load_from_cache

    try:
        cached = try_to_load_from_cache(model_id, "config.json", revision=requested or "main")
    except Exception:
        cached = None
    if isinstance(cached, str):
        return {"revision": Path(cached).parent.name, "revision_kind": "hub cache snapshot", "hub_id": model_id}
    return {"revision": requested, "revision_kind": "requested (not found in the local hub cache)", "hub_id": model_id}


def _hf_module(model):
    """The transformers module under an nnsight/nnterp model, without dispatching it (the config is enough)."""
    return getattr(model, "_model", model)


def model_name(model) -> str | None:
    """The id or path a model was loaded by (None for an in-memory model built from a config)."""
    hf = _hf_module(model)
    name = getattr(model, "repo_id", None) or getattr(getattr(hf, "config", None), "_name_or_path", None)
    return name if isinstance(name, str) and name else None


def model_provenance(model) -> dict | None:
    """Id, resolved revision, dtype, device map and class of a loaded model (nnsight, nnterp or transformers)."""
    if model is None:
        return None
    hf, model_id = _hf_module(model), model_name(model)
    requested = getattr(model, "revision", None)
    requested = requested if isinstance(requested, str) else None
    params = next(iter(hf.parameters()), None) if isinstance(hf, torch.nn.Module) else None
    device_map = getattr(hf, "hf_device_map", None)
    if device_map is None and params is not None:
        device_map = {"": str(params.device)}
    return {
        "id": model_id,
        "requested_revision": requested,
        **resolve_revision(model_id, requested),
        "dtype": str(params.dtype).removeprefix("torch.") if params is not None else None,
        "device_map": {str(k): str(v) for k, v in device_map.items()} if device_map else None,
        "class": type(hf).__name__,
    }


def state_sha256(module: torch.nn.Module) -> str:
    """sha256 over a state dict's names, dtypes, shapes and bytes (for an SAE that has no weights file)."""
    digest = hashlib.sha256()
    for key, tensor in sorted(module.state_dict().items()):
        t = tensor.detach().to("cpu").contiguous()
        digest.update(f"{key}:{t.dtype}:{tuple(t.shape)}\n".encode())
        digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return digest.hexdigest()


def sae_provenance(sae) -> dict | None:
    """Source (path, or hub id + revision + file), sha256 of the weights, class, sizes and recorded metadata."""
    if sae is None:
        return None
    origin = dict(getattr(sae, "origin", None) or {})
    weights = origin.get("weights_file") or getattr(sae, "source", None)
    has_file = bool(weights) and Path(str(weights)).is_file()
    params = next(iter(sae.parameters()), None)
    return {
        "source": getattr(sae, "source", None),
        "spec": origin.get("spec"),
        "hub_id": origin.get("hub_id"),
        "requested_revision": origin.get("requested_revision"),
        "revision": origin.get("revision"),
        "file": origin.get("path_in_repo"),
        "weights_file": str(weights) if has_file else None,
        "weights_sha256": sha256_bytes_of(weights) if has_file else None,
        "state_sha256": None if has_file else state_sha256(sae),
        "dict_class": getattr(sae, "dict_class", type(sae).__name__),
        "activation_dim": getattr(sae, "activation_dim", None),
        "dict_size": getattr(sae, "dict_size", None),
        "dtype": str(params.dtype).removeprefix("torch.") if params is not None else None,
        "metadata": getattr(sae, "metadata", None),
    }


def prompt_set_provenance(source: str, rows: list[dict]) -> dict:
    """``{"source", "n_prompts", "sha256"}``: the hash covers the rows in order, as canonical JSON lines."""
    text = "\n".join(json.dumps(row, sort_keys=True, ensure_ascii=False, default=str) for row in rows)
    return {"source": source, "n_prompts": len(rows), "sha256": hashlib.sha256(text.encode()).hexdigest()}


def seeds_in(config: dict, prefix: str = "") -> dict:
    """Every ``seed`` / ``*_seed`` entry of a (nested) config dict, by dotted key."""
    found = {}
    for key, value in config.items():
        if isinstance(value, dict):
            found.update(seeds_in(value, f"{prefix}{key}."))
        elif key == "seed" or str(key).endswith("_seed"):
            found[f"{prefix}{key}"] = value
    return found


def package_versions() -> dict[str, str | None]:
    versions = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


@functools.lru_cache(maxsize=1)
def plugin_provenance() -> dict:
    """The plugin's version, and its git commit and dirty flag when the package runs from a checkout."""
    from . import __version__

    package = Path(__file__).resolve().parent
    out = {"version": __version__, "path": str(package), "git_commit": None, "git_dirty": None}

    def git(*args) -> str:
        return subprocess.run(
            ["git", "-C", str(package), *args], capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()

    try:
        # Only the checkout that holds this package: not a repository that merely contains a site-packages.
        if Path(git("rev-parse", "--show-toplevel")).resolve() != package.parent:
            return out
        out["git_commit"] = git("rev-parse", "HEAD")
        out["git_dirty"] = bool(git("status", "--porcelain", "--untracked-files=no"))
    except (OSError, subprocess.SubprocessError):
        pass
    return out


def build_provenance(models: dict, sae, prompts: dict, config) -> dict:
    """The ``provenance`` block: ``models`` {role: model}, the SAE, the prompt set (``prompt_set_provenance``) and
    the config (a dataclass or dict); seeds are read from the config."""
    resolved = asdict(config) if is_dataclass(config) else dict(config or {})
    return {
        "models": {role: model_provenance(m) for role, m in models.items()},
        "sae": sae_provenance(sae),
        "prompts": prompts,
        "seeds": seeds_in(resolved),
        "config": resolved,
        "packages": package_versions(),
        "plugin": plugin_provenance(),
    }
