"""Crash-safe files and folders for SAEs: atomic writes with fsync, sha256 checksums, finite-weight checks.

A dictionary folder holds ``model.safetensors`` and ``config.json``; ``config.json`` records the sha256 of every
weights file in the folder under ``"sha256"`` and loading verifies it. Saving builds the complete new folder under a
temporary name beside the target, fsyncs it, then swaps it in with two renames (old -> ``.<name>.old-*``, new ->
``<name>``), so at every instant either the old or the new SAE is complete on disk; the rules (locks, refusals,
cleaning of killed writers' temporaries) are :mod:`cbd_plugin.artifacts`'.
"""

from __future__ import annotations

import hashlib
import json
import pickle
import zipfile
from collections.abc import Callable, Iterable
from pathlib import Path

import torch
from loguru import logger
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from ..artifacts import ArtifactKind, atomic_write, publish_folder  # noqa: F401 (atomic_write: re-exported)
from ..vocab import PLUGIN_CONFIG, PLUGIN_WEIGHTS, SAELENS_CONFIG, SAELENS_WEIGHTS, SPARSIFY_WEIGHTS

CONFIG_NAME, WEIGHTS_NAME = PLUGIN_CONFIG, PLUGIN_WEIGHTS
CHECKSUM_KEY = "sha256"
# Files a save may write (ours and the SAELens export); never carried over from the folder a save replaces.
SAE_FILE_NAMES = frozenset({CONFIG_NAME, WEIGHTS_NAME, SAELENS_CONFIG, SAELENS_WEIGHTS})
# Files of formats that Dictionary.from_pretrained does not read (load_dictionary does), for its hint.
FOREIGN_FILES = {
    SAELENS_WEIGHTS: "SAELens",
    SPARSIFY_WEIGHTS: "sparsify",
    "params.npz": "Gemma Scope",
    "ae.pt": "dictionary_learning",
    SAELENS_CONFIG: "SAELens or sparsify",
}


def sha256_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def check_finite(tensors: dict[str, torch.Tensor], source, nan_sentinel_keys: Iterable[str] = ()) -> None:
    """Raise ``ValueError`` naming ``source`` and the key of the first tensor holding NaN or Inf.

    Keys in ``nan_sentinel_keys`` may be entirely NaN (a format's "absent" marker), never partly.
    """
    sentinels = set(nan_sentinel_keys)
    for key, tensor in tensors.items():
        # Fast path (30x cheaper than isfinite on a 2304x4096 matrix, measured): NaN/Inf always make the sum
        # non-finite; a sum that overflows on finite values falls through to the exact check.
        if not tensor.is_floating_point() or bool(torch.isfinite(tensor.sum())):
            continue
        finite = torch.isfinite(tensor)
        if bool(finite.all()) or (key in sentinels and bool(tensor.isnan().all())):
            continue
        bad = int((~finite).sum())
        raise ValueError(
            f"{source}: key '{key}' holds {bad} non-finite value(s) (NaN/Inf) of {tensor.numel()}; "
            f"this SAE is broken (e.g. training diverged): retrain it or use another file"
        )


SAE_FOLDER = ArtifactKind(
    "an SAE folder",
    SAE_FILE_NAMES.__contains__,
    lambda folder: any((folder / name).is_file() for name in SAE_FILE_NAMES),
)


def save_folder(
    folder: str | Path,
    tensors: dict[str, torch.Tensor],
    config: dict,
    extra: Callable[[Path], dict[str, Path]] | None = None,
) -> Path:
    """Write ``tensors`` to ``model.safetensors`` and ``config`` (+ checksums) to ``config.json`` as one new folder.

    ``extra(tmp_folder)`` may write more weights files into the new folder; it returns ``{name: path}`` of those to
    checksum. An existing SAE folder is replaced whole and atomically; files in it that the new SAE does not write
    (e.g. notes a user put there) are carried over as hard links. A file, or a folder of other files, is refused.
    """
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}

    def write(tmp: Path) -> None:
        save_file(tensors, str(tmp / WEIGHTS_NAME), metadata={"format": "pt"})
        weights = {WEIGHTS_NAME: tmp / WEIGHTS_NAME, **(extra(tmp) if extra is not None else {})}
        checksums = {name: sha256_file(path) for name, path in sorted(weights.items())}
        (tmp / CONFIG_NAME).write_text(json.dumps({**config, CHECKSUM_KEY: checksums}, indent=2, sort_keys=True))

    return publish_folder(folder, write, SAE_FOLDER)


def read_json_object(path: Path) -> dict:
    """A JSON file that must hold an object; errors name the file."""
    try:
        value = json.loads(path.read_text())
    except UnicodeDecodeError as err:
        raise ValueError(f"{path}: not UTF-8 text ({err})") from err
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not valid JSON ({err})") from err
    if not isinstance(value, dict):
        raise ValueError(f"{path}: expected a JSON object {{...}}, got a JSON {type(value).__name__}")
    return value


def read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    try:
        return load_file(str(path))
    except (SafetensorError, OSError) as err:
        raise ValueError(f"{path}: unreadable safetensors file, truncated or corrupt? ({err})") from err


def verify_checksums(folder: Path, config: dict, names: Iterable[str]) -> None:
    """Check the files ``names`` (those about to be read) against ``config.json``'s sha256 entries; a folder saved
    before checksums only gets a note."""
    recorded = config.get(CHECKSUM_KEY)
    if recorded is None:
        logger.info(f"{folder / CONFIG_NAME}: no sha256 recorded (saved by an older version); loading unchecked")
        return
    if not isinstance(recorded, dict):
        raise ValueError(f"{folder / CONFIG_NAME}: key '{CHECKSUM_KEY}' must map file names to sha256 hex digests")
    for name in names:
        path, expected = folder / name, recorded.get(name)
        if expected is None:
            raise ValueError(f"{folder / CONFIG_NAME}: records sha256 of {sorted(recorded)} but not of {name}")
        actual = sha256_file(path)
        if actual != expected:
            raise ValueError(
                f"{path}: sha256 {actual[:16]}... differs from {expected[:16]}... recorded in "
                f"{CONFIG_NAME}: the file is corrupt or was changed after saving; restore or "
                f"re-download it"
            )


def read_folder(folder: str | Path) -> tuple[dict, dict[str, torch.Tensor], Path]:
    """Read and verify ``config.json`` and ``model.safetensors``; returns ``(config, tensors, weights_path)``."""
    folder = Path(folder)
    config_path, weights_path = folder / CONFIG_NAME, folder / WEIGHTS_NAME
    if not folder.is_dir():
        backups = sorted(folder.parent.glob(f".{folder.name}.old-*")) if folder.parent.is_dir() else []
        hint = f"; an interrupted save left the previous SAE at {backups[0]}: rename it to {folder}" if backups else ""
        raise FileNotFoundError(
            f"{folder}: not a directory; pass the folder holding {CONFIG_NAME} and {WEIGHTS_NAME}{hint}"
        )
    if not config_path.is_file():
        below = sorted(p.parent.name for p in folder.glob(f"*/{CONFIG_NAME}"))
        foreign = next((fmt for name, fmt in FOREIGN_FILES.items() if (folder / name).is_file()), None)
        hint = (
            f"; it holds SAE folders {below}: pick one (for layer folders: load_dictionary(folder, layer=L))"
            if below
            else f"; it holds a {foreign} SAE: read it with "
            f"cbd_plugin.sae.load_dictionary({str(folder)!r}), which reads every format"
            if foreign
            else ""
        )
        raise FileNotFoundError(f"{config_path} is missing: the folder is incomplete or not a dictionary folder{hint}")
    if not weights_path.is_file():
        raise FileNotFoundError(f"{weights_path} is missing although {CONFIG_NAME} exists")
    config = read_json_object(config_path)
    verify_checksums(folder, config, [WEIGHTS_NAME])
    return config, read_safetensors(weights_path), weights_path


_TORCH_BOILERPLATE = ("Weights only load failed", "Check the documentation", "Please file an issue")


def load_torch_state(path: str | Path) -> dict:
    """``torch.load(weights_only=True)`` of a state dict; a truncated, empty or non-tensor file names the file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    if path.stat().st_size == 0:
        raise ValueError(f"{path}: the file is empty (0 bytes): an interrupted download or save?")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        # torch's message is a page of boilerplate around one informative paragraph.
        paragraphs = [p.strip() for p in str(err).split("\n\n") if p.strip()]
        why = next((p for p in paragraphs if not p.startswith(_TORCH_BOILERPLATE)), paragraphs[0] if paragraphs else "")
        raise ValueError(
            f"{path}: torch.load(weights_only=True) refused it: not a plain tensor checkpoint (corrupt, "
            f"or it pickles code or objects): {why}"
        ) from err
    except (RuntimeError, EOFError, OSError, zipfile.BadZipFile, ValueError) as err:
        raise ValueError(
            f"{path}: not a readable torch checkpoint (truncated or corrupt?): {type(err).__name__}: {err}"
        ) from err
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{path}: expected a state dict of tensors, got {type(state).__name__}")
    return state
