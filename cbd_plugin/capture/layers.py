"""Layer access for any decoder-only transformer: where its decoder blocks live, as torch modules and as nnsight
envoys, and the residual a block outputs.

The residual "at layer L" is the output of decoder block L (transformers' ``hidden_states[L + 1]`` for every block
but the last, where transformers applies the final norm first). Capture reads it inside an nnsight trace, while
generation and layer edits hook the block's torch module, so both must find the same block.

Chosen: a short table of layer-list paths per family with one fallback search, not nnterp's
``StandardizedTransformer``. nnterp is not a dependency of the host-free core (it pins ``nnsight<0.8`` and renames
modules on import), generation needs the plain torch blocks anyway (forward hooks, no trace per token), and a
model's block list is one attribute path: ``model.layers`` (Llama, Mistral, Qwen2/3, Gemma-2/3 text, Phi-3,
OLMo-2), ``model.language_model.layers`` (Gemma-3 and other multimodal wrappers), ``transformer.h`` (GPT-2, GPT-J,
BLOOM, Falcon), ``gpt_neox.layers`` (GPT-NeoX/Pythia), ``model.decoder.layers`` (OPT). A model matching none of them
is searched for its one ``ModuleList`` holding ``num_hidden_layers`` modules. The host's nnterp models are still
accepted: they keep their own accessors (``layers_output``), which cover the same blocks.

A model this cannot handle (an encoder-only or encoder-decoder model, or no unique block list) raises one
:class:`UnsupportedModelError` naming its class and what is missing.
"""

from __future__ import annotations

import nnsight
import torch

# (attribute path of the decoder-block list, families that use it), tried in order.
LAYER_PATHS = (
    ("model.layers", "Llama, Mistral, Qwen2/Qwen3, Gemma-2, Gemma-3 text, Phi-3, OLMo-2"),
    ("model.language_model.layers", "Gemma-3 and other multimodal wrappers (text tower)"),
    ("transformer.h", "GPT-2, GPT-J, BLOOM, Falcon"),
    ("gpt_neox.layers", "GPT-NeoX, Pythia"),
    ("model.decoder.layers", "OPT"),
)


# Where load_language_model records a model's ModelSettings, as a plain dict: a remote trace pickles the model, and
# NDIF's servers (like nnsight's local simulation of them) cannot import plugin classes.
SETTINGS_ATTR = "cbd_settings"


class UnsupportedModelError(TypeError):
    """The model is not a decoder-only transformer whose decoder blocks can be found."""

    def __init__(self, model_class: str, missing: str):
        paths = ", ".join(p for p, _ in LAYER_PATHS)
        super().__init__(
            f"{model_class} is not supported: {missing}. Supported: decoder-only causal LMs whose decoder "
            f"blocks sit at one of {paths}, or in a single ModuleList of num_hidden_layers blocks"
        )


def is_nnterp(model) -> bool:
    return hasattr(model, "layers_output")


def is_nnsight(model) -> bool:
    return isinstance(model, nnsight.NNsight)


def remote_of(model) -> bool | str:
    """The ``remote`` setting a model was loaded with (False unless loaded for NDIF or its local simulation)."""
    settings = getattr(model, SETTINGS_ATTR, None)
    return False if settings is None else settings["remote"]


def hf_module(model) -> torch.nn.Module:
    """The transformers module underneath (dispatched first: the host's lazy nnterp models sit on the meta
    device until then; a remote model stays there, its weights live on the server)."""
    if not is_nnsight(model):
        return model
    if getattr(model, "dispatched", True) is False and not remote_of(model):
        model.dispatch()
    return model._model


def text_config(hf: torch.nn.Module):
    """The language model's config (a multimodal wrapper keeps it under ``text_config``)."""
    config = hf.config
    return config.get_text_config() if hasattr(config, "get_text_config") else config


def _get_path(root, path: str):
    for part in path.split("."):
        root = getattr(root, part, None)
        if root is None:
            return None
    return root


def _search(hf: torch.nn.Module, n_layers: int | None) -> str | None:
    found = [
        name
        for name, module in hf.named_modules()
        if isinstance(module, torch.nn.ModuleList) and n_layers is not None and len(module) == n_layers
    ]
    return found[0] if len(found) == 1 else None


def layer_path(model) -> str:
    """Attribute path of the decoder-block list from the transformers module (e.g. ``"gpt_neox.layers"``)."""
    hf = hf_module(model)
    name = type(hf).__name__
    config = getattr(hf, "config", None)
    if config is None:
        raise UnsupportedModelError(
            name,
            "it has no transformers config (give a transformers causal LM, or an nnsight LanguageModel around one)",
        )
    if getattr(config, "is_encoder_decoder", False):
        raise UnsupportedModelError(name, "it is an encoder-decoder model, not decoder-only")
    if not hf.can_generate():
        raise UnsupportedModelError(
            name, "it is not a causal language model (can_generate() is False: an encoder-only or headless model?)"
        )
    for path, _ in LAYER_PATHS:
        if isinstance(_get_path(hf, path), torch.nn.ModuleList):
            return path
    n_layers = getattr(text_config(hf), "num_hidden_layers", None)
    path = _search(hf, n_layers)
    if path is None:
        raise UnsupportedModelError(
            name,
            f"no decoder-block list found at the known paths, and not exactly one "
            f"ModuleList of num_hidden_layers={n_layers} modules",
        )
    return path


def decoder_layers(model) -> torch.nn.ModuleList:
    """The decoder blocks as torch modules (for forward hooks outside any trace)."""
    return _get_path(hf_module(model), layer_path(model))


def num_layers(model) -> int:
    return model.num_layers if is_nnterp(model) else len(decoder_layers(model))


def layer_module(model, layer: int) -> torch.nn.Module:
    """Decoder block ``layer`` as a plain torch module."""
    if is_nnterp(model):  # nnterp's standard name covers every architecture it knows
        try:
            return model.layers[layer]._module
        except AttributeError:  # an nnterp-like wrapper without the standard name
            pass
    return decoder_layers(model)[layer]


def block_residual(output) -> torch.Tensor:
    """A block returns the residual (transformers 5) or a tuple starting with it (older, and some families)."""
    return output[0] if isinstance(output, tuple) else output


def layer_envoys(model) -> list:
    """Each decoder block's nnsight envoy of a plain nnsight model, resolved before a trace, so that the trace body
    calls no plugin code (it then serialises for remote execution)."""
    envoys = _get_path(model, layer_path(model))
    return [envoys[i] for i in range(len(decoder_layers(model)))]
