"""The ``Dictionary`` interface: every SAE here encodes, decodes, saves to and loads from a dictionary folder.

A dictionary folder holds ``model.safetensors`` (the module's ``state_dict``) and ``config.json`` (constructor
arguments, ``dict_class`` and the weights' sha256), the layout ``dictionary_learning``'s ``save_pretrained`` writes;
:mod:`cbd_plugin.sae.folder` writes it atomically and verifies it. ``save_pretrained`` also writes the SAELens pair
``cfg.json`` + ``sae_weights.safetensors`` into the same folder (see :mod:`cbd_plugin.sae.export`). Loading checks
the config's types, every key, shape, dtype and that the weights are finite before building the module.
Foreign formats are read by :func:`cbd_plugin.sae.load_dictionary`.
"""

from __future__ import annotations

import inspect
import math
from abc import ABC, abstractmethod
from pathlib import Path
from typing import ClassVar

import torch
from loguru import logger
from torch import nn

from ..checks import is_int
from .export import SAELensForm, write_saelens
from .folder import CONFIG_NAME, WEIGHTS_NAME, atomic_write, check_finite, read_folder, save_folder

__all__ = [
    "CONFIG_NAME",
    "WEIGHTS_NAME",
    "Dictionary",
    "atomic_write",
    "check_tensors",
    "read_folder",
    "save_folder",
]

_DICT_CLASSES: dict[str, type[Dictionary]] = {}
_SIZE_ANNOTATIONS = ("int", int)


def check_tensors(tensors: dict[str, torch.Tensor], expected: dict[str, tuple[int, ...]], source) -> None:
    """Raise ``ValueError`` naming ``source``, the keys and their shapes unless ``tensors`` matches ``expected``."""
    missing = [k for k in expected if k not in tensors]
    if missing:
        raise ValueError(f"{source}: missing key(s) {missing}; expected keys {sorted(expected)}")
    unexpected = [k for k in tensors if k not in expected]
    if unexpected:
        raise ValueError(f"{source}: unexpected key(s) {unexpected}; expected keys {sorted(expected)}")
    wrong = [
        f"key '{key}' has shape {tuple(tensors[key].shape)}, expected {tuple(shape)}"
        for key, shape in expected.items()
        if tuple(tensors[key].shape) != tuple(shape)
    ]
    if wrong:
        raise ValueError(f"{source}: " + "; ".join(wrong))


def check_sizes(owner: str, activation_dim, dict_size, k) -> tuple[int, int, int]:
    """Positive integer ``activation_dim``, ``dict_size`` and ``k``, with ``k <= dict_size``; returns them as ints.
    Errors name ``owner`` (the class) and the key, or start with ``k=`` (loaders prefix the file)."""
    for key, value in (("activation_dim", activation_dim), ("dict_size", dict_size), ("k", k)):
        if not is_int(value, 1):
            raise ValueError(f"{owner}: {key} must be a positive int, got {value!r}")
    if not 0 < k <= dict_size:
        raise ValueError(
            f"k={k} must be in [1, dict_size={dict_size}]: {owner} keeps k of the dict_size latents per "
            f"token; lower k or raise dict_size"
        )
    return int(activation_dim), int(dict_size), int(k)


class Dictionary(nn.Module, ABC):
    """A sparse dictionary: ``encode`` activations to latents, ``decode`` latents back.

    Subclasses set ``dict_class`` (the name written to ``config.json``) and ``input_key`` (the weight whose
    shape carries ``activation_dim``, for error messages), and register themselves for ``from_pretrained``.
    """

    dict_class: ClassVar[str]
    input_key: ClassVar[str]
    # Keys the format marks "absent" by filling them with NaN (the fork's normaliser); other NaN/Inf is an error.
    nan_sentinel_keys: ClassVar[tuple[str, ...]] = ()
    activation_dim: int
    dict_size: int
    source: str = "<in memory>"
    # What the SAE reads ({"model_name", "hook_name", "layer", ...}): written to config.json and the SAELens cfg.
    metadata: dict | None = None
    # Where load_dictionary found it ({"spec", "weights_file", "hub_id", "revision", ...}), for provenance.
    origin: dict | None = None

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

    def encode_sparse(self, x: torch.Tensor):
        """``SparseCodes(top_acts, top_indices)``; this default goes through the dense code (subclasses override it
        to never build the dense ``[n, dict_size]`` tensor)."""
        from .sparse import dense_to_codes

        return dense_to_codes(self.encode(x).reshape(-1, self.dict_size))

    def decode_sparse(self, codes) -> torch.Tensor:
        """``decode`` of ``SparseCodes``; this default scatters them into a dense code first."""
        return self.decode(codes.to_dense(self.dict_size))

    @abstractmethod
    def config_dict(self) -> dict:
        """JSON-able constructor arguments, written to ``config.json``."""

    def forward(self, x: torch.Tensor, output_features: bool = False):
        f = self.encode(x)
        x_hat = self.decode(f)
        return (x_hat, f) if output_features else x_hat

    def saelens_form(self) -> SAELensForm:
        """How SAELens writes this SAE (the architecture whose ``encode`` gives the same codes); each class declares
        its own, so the exporter needs no list of classes. A class without an equivalent raises."""
        raise TypeError(f"{type(self).__name__} has no SAELens equivalent")

    def check_compatible(self, d_model: int) -> None:
        """Raise ``ValueError`` unless this dictionary reads activations of the model's hidden size."""
        if self.activation_dim != d_model:
            raise ValueError(
                f"{self.source}: key '{self.input_key}' gives activation_dim {self.activation_dim}, "
                f"but the model's hidden size is {d_model}"
            )

    def save_pretrained(self, folder: str | Path, saelens: bool = True) -> Path:
        """Write the dictionary folder (replacing an existing one atomically), with the SAELens pair if ``saelens``.

        Refuses non-finite weights, naming the key: a diverged SAE must never be saved as good.
        """
        state = self.state_dict()
        check_finite(state, f"{self.dict_class} to be saved in {folder}", self.nan_sentinel_keys)
        extra = (lambda tmp: write_saelens(self, tmp)) if saelens else None
        config = {**self.config_dict(), "dict_class": self.dict_class}
        if self.metadata:
            config["metadata"] = dict(self.metadata)
        return save_folder(folder, state, config, extra=extra)

    @classmethod
    def from_pretrained(cls, path: str | Path, device=None, d_model: int | None = None) -> Dictionary:
        """Load a dictionary folder. On ``Dictionary`` itself the class is chosen by ``config.json``'s ``dict_class``.

        ``d_model``, if given, is checked against the dictionary's ``activation_dim``. For any format (SAELens,
        sparsify, Gemma Scope, hub ids) use :func:`cbd_plugin.sae.load_dictionary`.
        """
        config, tensors, weights_path = read_folder(path)
        target = cls._resolve(config.get("dict_class"), Path(path) / CONFIG_NAME)
        model = target._from_state(config, tensors, weights_path, Path(path) / CONFIG_NAME)
        if isinstance(config.get("metadata"), dict):
            model.metadata = config["metadata"]
        if d_model is not None:
            model.check_compatible(d_model)
        return model.to(device) if device is not None else model

    @classmethod
    def _resolve(cls, dict_class, config_path) -> type[Dictionary]:
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
    def _constructor_args(cls, config: dict, config_source) -> dict:
        """The constructor arguments in ``config``, type-checked against the signature (errors name the key)."""
        params = list(inspect.signature(cls.__init__).parameters.items())[1:]
        required = [n for n, p in params if p.default is inspect.Parameter.empty and p.kind is p.POSITIONAL_OR_KEYWORD]
        missing = [n for n in required if n not in config]
        if missing:
            raise ValueError(f"{config_source}: missing key(s) {missing}")
        args = {}
        for name, param in params:
            if name not in config:
                continue
            value, annotation = config[name], param.annotation
            if annotation in _SIZE_ANNOTATIONS and (not is_int(value, 1)):
                raise ValueError(
                    f"{config_source}: key '{name}' is {value!r} ({type(value).__name__}); expected a positive integer"
                )
            if annotation in ("float", float) and (
                isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value)
            ):
                raise ValueError(f"{config_source}: key '{name}' is {value!r}; expected a finite number")
            if annotation in ("bool", bool) and not isinstance(value, bool):
                raise ValueError(f"{config_source}: key '{name}' is {value!r}; expected true or false")
            args[name] = value
        return args

    @classmethod
    def _from_state(cls, config: dict, tensors: dict[str, torch.Tensor], source, config_source=None) -> Dictionary:
        """Build from constructor arguments and a state dict read from ``source`` (a path, for messages)."""
        config_source = config_source or source
        args = cls._constructor_args(config, config_source)
        # Build on the meta device: no memory, no draw from the global RNG; the file supplies every tensor.
        try:
            with torch.device("meta"):
                model = cls(**args)
        except (ValueError, TypeError) as err:
            raise ValueError(f"{config_source}: {err}") from err
        tensors = cls._complete_tensors(config, tensors, source)
        expected = model.state_dict()
        check_tensors(tensors, {k: tuple(v.shape) for k, v in expected.items()}, source)
        tensors = _match_dtypes(tensors, {k: v.dtype for k, v in expected.items()}, source)
        check_finite(tensors, source, cls.nan_sentinel_keys)
        model.load_state_dict(tensors, assign=True)
        model.source = str(source)
        return model


def _match_dtypes(tensors: dict[str, torch.Tensor], expected: dict[str, torch.dtype], source) -> dict:
    """Cast stored floats (bf16, fp16, fp64) to the module's float32, with a note; a float/int mix is an error."""
    out = {}
    for key, tensor in tensors.items():
        want = expected[key]
        if tensor.dtype != want:
            if tensor.is_floating_point() != want.is_floating_point:
                raise ValueError(f"{source}: key '{key}' has dtype {tensor.dtype}, expected {want}")
            logger.info(f"{source}: key '{key}' stored as {tensor.dtype}; converted to {want}")
            tensor = tensor.to(want)
        out[key] = tensor
    return out
