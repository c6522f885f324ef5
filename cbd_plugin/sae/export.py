"""Write any plugin SAE in SAELens's format (``cfg.json`` + ``sae_weights.safetensors``), for SAELens, SAE-Dashboard
and Neuronpedia users.

Each SAE class declares its SAELens form (:meth:`~cbd_plugin.sae.Dictionary.saelens_form`: the SAELens architecture
whose ``encode`` gives the same codes, and the state dict in SAELens's names), so this module knows no class.

``cfg.json``'s ``metadata`` carries what the SAE reads (``model_name``, ``hook_name``, ``hook_layer``) from the SAE's
own ``metadata`` (see :func:`reads`): the plugin's layer ``L`` is the output of decoder block ``L``, TransformerLens's
``blocks.{L}.hook_resid_post``, the name SAELens, SAE-Dashboard and Neuronpedia look for.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import NamedTuple

import torch
from safetensors.torch import save_file

from ..vocab import SAELENS_CONFIG, SAELENS_WEIGHTS
from .folder import atomic_write, check_finite

# The cfg.json layout written here is SAELens 6's; older layouts are converted by SAELens on load.
SAELENS_FORMAT_VERSION = "6.0.0"


class SAELensForm(NamedTuple):
    """An SAE as SAELens writes it."""

    architecture: str
    """SAELens's ``architecture``: ``standard``, ``topk`` or ``jumprelu``."""
    apply_b_dec_to_input: bool
    """Whether the encoder subtracts ``b_dec`` from its input."""
    tensors: dict[str, torch.Tensor]
    """The state dict in SAELens's names (``W_enc [d, d_sae]``, ``b_enc``, ``W_dec [d_sae, d]``, ``b_dec``, ...)."""
    cfg: dict | None = None
    """Extra ``cfg.json`` keys of the architecture (e.g. ``k``)."""


def hook_name(layer: int) -> str:
    """SAELens/TransformerLens name of the residual after decoder block ``layer``."""
    return f"blocks.{layer}.hook_resid_post"


def reads(model_name: str | None, layer: int, **extra) -> dict:
    """An SAE's ``metadata``: the model and residual it reads (``extra``: e.g. ``base_model_name`` and ``input`` for
    an SAE on a difference of two models' residuals)."""
    return {"model_name": model_name, "hook_name": hook_name(layer), "layer": int(layer), **extra}


def saelens_state(sae, hook: str | None = None) -> tuple[dict, dict[str, torch.Tensor]]:
    """``(cfg.json dict, state dict)`` of ``sae`` (a :class:`~cbd_plugin.sae.Dictionary`) in SAELens's format;
    ``hook`` overrides the recorded hook name."""
    form = sae.saelens_form()
    recorded = dict(sae.metadata or {})
    layer, recorded_hook = recorded.pop("layer", None), recorded.pop("hook_name", None)
    metadata = {
        "sae_lens_version": SAELENS_FORMAT_VERSION,
        "model_name": recorded.pop("model_name", None),
        "hook_name": hook or recorded_hook,
        "hook_layer": layer,
        "hook_head_index": None,
        "exported_from": f"cbd_plugin {sae.dict_class}",
        **recorded,
    }
    cfg = {
        "architecture": form.architecture,
        "d_in": sae.activation_dim,
        "d_sae": sae.dict_size,
        "dtype": "float32",
        "device": "cpu",
        "apply_b_dec_to_input": bool(form.apply_b_dec_to_input),
        "normalize_activations": "none",
        "reshape_activations": "none",
        **(form.cfg or {}),
        "metadata": metadata,
    }
    return cfg, {k: v.detach().to("cpu", torch.float32).contiguous() for k, v in form.tensors.items()}


def write_saelens(sae, folder: str | Path, hook: str | None = None) -> dict[str, Path]:
    """Write ``cfg.json`` + ``sae_weights.safetensors`` into ``folder`` (each atomically, config last).

    Returns ``{file name: path}`` of the weights, for the caller's checksums.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    cfg, tensors = saelens_state(sae, hook)
    check_finite(tensors, f"SAELens export of {sae.dict_class} to {folder}")
    weights = atomic_write(folder / SAELENS_WEIGHTS, lambda tmp: save_file(tensors, str(tmp)))
    atomic_write(folder / SAELENS_CONFIG, lambda tmp: tmp.write_text(json.dumps(cfg, indent=2)))
    return {SAELENS_WEIGHTS: weights}
