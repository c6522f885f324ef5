"""The ``Dictionary`` interface and the folder format every SAE here is read from and written to.

A dictionary folder holds ``model.safetensors`` (the module's ``state_dict``) and ``config.json`` (constructor
arguments plus ``dict_class``), the layout ``dictionary_learning``'s ``save_pretrained`` writes. Saving writes
both under temporary names and renames them into place, ``config.json`` last, so a folder without
``config.json`` is incomplete and refuses to load. Loading checks every key and shape before building the module.
"""

from __future__ import annotations

import inspect
import json
import os
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Callable, ClassVar

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"

_DICT_CLASSES: dict[str, type["Dictionary"]] = {}


def atomic_write(target: str | Path, write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp)`` on a temporary name beside ``target``, flush it to disk, then rename it into place."""
    target = Path(target)
    tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    try:
        write(tmp)
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    return target


def save_folder(folder: str | Path, tensors: dict[str, torch.Tensor], config: dict) -> Path:
    """Write ``tensors`` to ``model.safetensors`` and ``config`` to ``config.json``, atomically, config last."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    # Drop an old config first: while the new weights land, the folder must read as incomplete.
    (folder / CONFIG_NAME).unlink(missing_ok=True)
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}
    atomic_write(folder / WEIGHTS_NAME, lambda tmp: save_file(tensors, str(tmp), metadata={"format": "pt"}))
    atomic_write(folder / CONFIG_NAME, lambda tmp: tmp.write_text(json.dumps(config, indent=2, sort_keys=True)))
    return folder


def read_folder(folder: str | Path) -> tuple[dict, dict[str, torch.Tensor], Path]:
    """Read ``config.json`` and ``model.safetensors``; returns ``(config, tensors, weights_path)``."""
    folder = Path(folder)
    config_path, weights_path = folder / CONFIG_NAME, folder / WEIGHTS_NAME
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: not a directory; pass the folder holding {CONFIG_NAME} and {WEIGHTS_NAME}")
    if not config_path.is_file():
        raise FileNotFoundError(f"{config_path} is missing: the folder is incomplete (interrupted save?) "
                                f"or not a dictionary folder")
    if not weights_path.is_file():
        raise FileNotFoundError(f"{weights_path} is missing although {CONFIG_NAME} exists")
    try:
        config = json.loads(config_path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{config_path}: not valid JSON ({err})") from err
    try:
        tensors = load_file(str(weights_path))
    except SafetensorError as err:
        raise ValueError(f"{weights_path}: unreadable safetensors file ({err})") from err
    return config, tensors, weights_path


def check_tensors(tensors: dict[str, torch.Tensor], expected: dict[str, tuple[int, ...]], source) -> None:
    """Raise ``ValueError`` naming ``source``, the keys and their shapes unless ``tensors`` matches ``expected``."""
    missing = [k for k in expected if k not in tensors]
    if missing:
        raise ValueError(f"{source}: missing key(s) {missing}; expected keys {sorted(expected)}")
    unexpected = [k for k in tensors if k not in expected]
    if unexpected:
        raise ValueError(f"{source}: unexpected key(s) {unexpected}; expected keys {sorted(expected)}")
    wrong = [f"key '{key}' has shape {tuple(tensors[key].shape)}, expected {tuple(shape)}"
             for key, shape in expected.items() if tuple(tensors[key].shape) != tuple(shape)]
    if wrong:
        raise ValueError(f"{source}: " + "; ".join(wrong))


class Dictionary(nn.Module, ABC):
    """A sparse dictionary: ``encode`` activations to latents, ``decode`` latents back.

    Subclasses set ``dict_class`` (the name written to ``config.json``) and ``input_key`` (the weight whose
    shape carries ``activation_dim``, for error messages), and register themselves for ``from_pretrained``.
    """

    dict_class: ClassVar[str]
    input_key: ClassVar[str]
    activation_dim: int
    dict_size: int
    source: str = "<in memory>"

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if "dict_class" in cls.__dict__:
            _DICT_CLASSES[cls.dict_class] = cls

    @abstractmethod
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Latent activations ``[..., dict_size]`` of activations ``[..., activation_dim]``."""

    @abstractmethod
    def decode(self, f: torch.Tensor) -> torch.Tensor:
        """Reconstructed activations from latents."""

    @abstractmethod
    def decode_latents(self, f: torch.Tensor, latent_ids) -> torch.Tensor:
        """The part of ``decode(f)`` due to ``latent_ids``, in the original activation space.

        Equals ``decode(f) - decode(f with those latents zeroed)``: subtract it from an activation to ablate them.
        """

    @abstractmethod
    def config_dict(self) -> dict:
        """JSON-able constructor arguments, written to ``config.json``."""

    def forward(self, x: torch.Tensor, output_features: bool = False):
        f = self.encode(x)
        x_hat = self.decode(f)
        return (x_hat, f) if output_features else x_hat

    def check_compatible(self, d_model: int) -> None:
        """Raise ``ValueError`` unless this dictionary reads activations of the model's hidden size."""
        if self.activation_dim != d_model:
            raise ValueError(f"{self.source}: key '{self.input_key}' gives activation_dim {self.activation_dim}, "
                             f"but the model's hidden size is {d_model}")

    def save_pretrained(self, folder: str | Path) -> Path:
        return save_folder(folder, self.state_dict(), {**self.config_dict(), "dict_class": self.dict_class})

    @classmethod
    def from_pretrained(cls, path: str | Path, device=None, d_model: int | None = None) -> "Dictionary":
        """Load a dictionary folder. On ``Dictionary`` itself the class is chosen by ``config.json``'s ``dict_class``.

        ``d_model``, if given, is checked against the dictionary's ``activation_dim``.
        """
        config, tensors, weights_path = read_folder(path)
        target = cls._resolve(config.get("dict_class"), Path(path) / CONFIG_NAME)
        model = target._from_state(config, tensors, weights_path)
        if d_model is not None:
            model.check_compatible(d_model)
        return model.to(device) if device is not None else model

    @classmethod
    def _resolve(cls, dict_class, config_path) -> type["Dictionary"]:
        if "dict_class" in cls.__dict__:
            if dict_class != cls.dict_class:
                raise ValueError(f"{config_path}: dict_class is {dict_class!r}, expected {cls.dict_class!r}")
            return cls
        if dict_class not in _DICT_CLASSES:
            raise ValueError(f"{config_path}: unknown dict_class {dict_class!r}; known: {sorted(_DICT_CLASSES)}")
        return _DICT_CLASSES[dict_class]

    @classmethod
    def _complete_tensors(cls, config: dict, tensors: dict[str, torch.Tensor], source) -> dict[str, torch.Tensor]:
        """Hook: fill keys that older files may lack (default: none)."""
        return tensors

    @classmethod
    def _from_state(cls, config: dict, tensors: dict[str, torch.Tensor], weights_path: Path) -> "Dictionary":
        config_path = weights_path.with_name(CONFIG_NAME)
        params = inspect.signature(cls.__init__).parameters
        required = [n for n, p in list(params.items())[1:]
                    if p.default is inspect.Parameter.empty and p.kind is p.POSITIONAL_OR_KEYWORD]
        missing = [n for n in required if n not in config]
        if missing:
            raise ValueError(f"{config_path}: missing key(s) {missing}")
        # Build on the meta device: no memory, no draw from the global RNG; the file supplies every tensor.
        with torch.device("meta"):
            model = cls(**{n: config[n] for n in params if n in config})
        tensors = cls._complete_tensors(config, tensors, weights_path)
        check_tensors(tensors, {k: tuple(v.shape) for k, v in model.state_dict().items()}, weights_path)
        model.load_state_dict(tensors, assign=True)
        model.source = str(weights_path)
        return model
