"""Write any plugin SAE in SAELens's format (``cfg.json`` + ``sae_weights.safetensors``), for SAELens, SAE-Dashboard
and Neuronpedia users.

Each class maps to the SAELens architecture whose ``encode`` gives the same codes: ``TopKSAE`` -> ``topk``,
``ReLUSAE`` -> ``standard``, ``JumpReLUSAE`` -> ``jumprelu``, and the fork's ``BatchTopKSAE`` (inference with its
learned threshold) -> ``jumprelu`` with that one threshold for every latent and the normaliser folded into the
weights: ``x_n = (x - mean) * s`` gives ``W_enc' = s W_enc``, ``b_dec' = mean + b_dec / s`` (the encoder subtracts
``b_dec'``) and ``W_dec' = W_dec / s`` (decode matches the fork's up to its ``s + 1e-8`` denominator).

``cfg.json``'s ``metadata`` carries what the SAE reads (``model_name``, ``hook_name``, ``hook_layer``) from the SAE's
own ``metadata`` (see :func:`reads`): the plugin's layer ``L`` is the output of decoder block ``L``, TransformerLens's
``blocks.{L}.hook_resid_post``, the name SAELens, SAE-Dashboard and Neuronpedia look for.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import save_file

from .batchtopk import BatchTopKSAE
from .dictionary import Dictionary
from .folder import atomic_write, check_finite
from .jumprelu import JumpReLUSAE
from .relu import ReLUSAE
from .topk import TopKSAE
from ..vocab import SAELENS_CONFIG, SAELENS_WEIGHTS

# The cfg.json layout written here is SAELens 6's; older layouts are converted by SAELens on load.
SAELENS_FORMAT_VERSION = "6.0.0"


def hook_name(layer: int) -> str:
    """SAELens/TransformerLens name of the residual after decoder block ``layer``."""
    return f"blocks.{layer}.hook_resid_post"


def reads(model_name: str | None, layer: int, **extra) -> dict:
    """An SAE's ``metadata``: the model and residual it reads (``extra``: e.g. ``base_model_name`` and ``input`` for
    an SAE on a difference of two models' residuals)."""
    return {"model_name": model_name, "hook_name": hook_name(layer), "layer": int(layer), **extra}


def _linear_state(sae: ReLUSAE | TopKSAE) -> dict[str, torch.Tensor]:
    return {"W_enc": sae.W_enc, "b_enc": sae.b_enc, "W_dec": sae.W_dec, "b_dec": sae.b_dec}


def _batchtopk_state(sae: BatchTopKSAE) -> dict[str, torch.Tensor]:
    W_enc, W_dec, b_dec = sae.encoder.weight.T, sae.decoder.weight.T, sae.b_dec
    if sae.has_normalizer:
        s = sae.activation_global_scale
        W_enc, W_dec, b_dec = W_enc * s, W_dec / (s + 1e-8), sae.activation_mean + b_dec / s
    return {"W_enc": W_enc, "b_enc": sae.encoder.bias, "W_dec": W_dec, "b_dec": b_dec,
            "threshold": sae.threshold.expand(sae.dict_size)}


def saelens_state(sae: Dictionary, hook: str | None = None) -> tuple[dict, dict[str, torch.Tensor]]:
    """``(cfg.json dict, state dict)`` of ``sae`` in SAELens's format; ``hook`` overrides the recorded hook name."""
    if isinstance(sae, TopKSAE):
        arch, apply_b_dec, tensors, extra = "topk", sae.subtract_b_dec, _linear_state(sae), {
            "k": sae.k, "rescale_acts_by_decoder_norm": False}
    elif isinstance(sae, JumpReLUSAE):
        arch, apply_b_dec, tensors, extra = "jumprelu", sae.subtract_b_dec, {
            **_linear_state(sae), "threshold": sae.threshold}, {}
    elif isinstance(sae, ReLUSAE):
        arch, apply_b_dec, tensors, extra = "standard", sae.subtract_b_dec, _linear_state(sae), {}
    elif isinstance(sae, BatchTopKSAE):
        arch, apply_b_dec, tensors, extra = "jumprelu", True, _batchtopk_state(sae), {}
    else:
        raise TypeError(f"{type(sae).__name__} has no SAELens equivalent")
    recorded = dict(sae.metadata or {})
    layer, recorded_hook = recorded.pop("layer", None), recorded.pop("hook_name", None)
    metadata = {"sae_lens_version": SAELENS_FORMAT_VERSION, "model_name": recorded.pop("model_name", None),
                "hook_name": hook or recorded_hook, "hook_layer": layer, "hook_head_index": None,
                "exported_from": f"cbd_plugin {sae.dict_class}", **recorded}
    cfg = {"architecture": arch, "d_in": sae.activation_dim, "d_sae": sae.dict_size, "dtype": "float32",
           "device": "cpu", "apply_b_dec_to_input": bool(apply_b_dec), "normalize_activations": "none",
           "reshape_activations": "none", **extra, "metadata": metadata}
    return cfg, {k: v.detach().to("cpu", torch.float32).contiguous() for k, v in tensors.items()}


def write_saelens(sae: Dictionary, folder: str | Path, hook: str | None = None) -> dict[str, Path]:
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
