"""Model access: loading, the layer accessors of plain nnsight and nnterp models, token ids and left padding.

Three kinds of model are accepted: a plugin-loaded ``nnsight.LanguageModel`` (layer ``i`` at
``model.model.layers[i]``), the host's nnterp ``StandardizedTransformer`` (``model.layers_output[i]`` in a trace),
and, for generation, a plain transformers causal LM (its decoder layers reached directly).
"""

from __future__ import annotations

import numbers
from collections.abc import Iterable, Sequence

import nnsight
import torch

Prompts = Sequence[str] | Sequence[Sequence[int]]


def load_language_model(model_id_or_path: str, dtype: torch.dtype = torch.float32, device: str = "cpu",
                        trust_remote_code: bool = False) -> nnsight.LanguageModel:
    """Load a causal LM (hub id, HF-cache id or local folder) as an nnsight model; eager attention so that
    padded and unpadded prompts give the same activations."""
    return nnsight.LanguageModel(model_id_or_path, dtype=dtype, device_map=device, dispatch=True,
                                 attn_implementation="eager", trust_remote_code=trust_remote_code)


def is_nnterp(model) -> bool:
    return hasattr(model, "layers_output")


def is_nnsight(model) -> bool:
    return isinstance(model, nnsight.NNsight)


def hf_module(model) -> torch.nn.Module:
    """The transformers module underneath (dispatched first: the host's lazy nnterp models sit on the meta
    device until then)."""
    if not is_nnsight(model):
        return model
    if getattr(model, "dispatched", True) is False:
        model.dispatch()
    return model._model


def model_name(model) -> str:
    """What a model is called in messages: its hub id or folder, else its class."""
    config = getattr(hf_module(model), "config", None)
    return getattr(config, "_name_or_path", None) or type(hf_module(model)).__name__


def hidden_size(model) -> int | None:
    return getattr(getattr(hf_module(model), "config", None), "hidden_size", None)


def check_finite_weights(model, role: str) -> None:
    """Raise ``ValueError`` naming the model (its ``role`` and name) and the first weight holding NaN/Inf."""
    for key, tensor in hf_module(model).state_dict().items():
        # NaN/Inf always make the sum non-finite; a sum that overflows on finite values falls to the exact check.
        if tensor.is_floating_point() and tensor.device.type != "meta" and not bool(torch.isfinite(tensor.sum())):
            bad = int((~torch.isfinite(tensor)).sum())
            if bad:
                raise ValueError(f"{role} model {model_name(model)!r}: weight {key!r} holds {bad} NaN/Inf value(s) "
                                 f"of {tensor.numel()}: the checkpoint is broken (a diverged fine-tune?); "
                                 f"re-export or retrain it")


def check_model_pair(base, finetuned) -> None:
    """Base and fine-tuned must be diffable: the same hidden size (naming both) and finite weights (naming which)."""
    widths = hidden_size(base), hidden_size(finetuned)
    if None not in widths and widths[0] != widths[1]:
        raise ValueError(f"base model {model_name(base)!r} has hidden size {widths[0]} but fine-tuned model "
                         f"{model_name(finetuned)!r} has {widths[1]}: a model diff needs a fine-tune of the same base "
                         f"architecture; check the two model ids")
    check_finite_weights(base, "base")
    check_finite_weights(finetuned, "fine-tuned")


def num_layers(model) -> int:
    return model.num_layers if is_nnterp(model) else len(model.model.layers)  # nnsight envoy or plain module


def layer_module(model, layer: int) -> torch.nn.Module:
    """Decoder layer ``layer`` as a plain torch module (for forward hooks outside any trace)."""
    if is_nnterp(model):  # nnterp's standard name covers every architecture it knows
        try:
            return model.layers[layer]._module
        except AttributeError:  # an nnterp-like wrapper without the standard name
            pass
    return hf_module(model).model.layers[layer]


def layer_output(model, layer: int):
    """Residual after decoder layer ``layer``, inside a trace. A transformers-5 decoder layer returns a tensor,
    older ones a tuple whose first item is the residual."""
    if is_nnterp(model):
        return model.layers_output[layer]
    out = model.model.layers[layer].output
    return out[0] if isinstance(out, tuple) else out


def check_layers(model, layers: Iterable) -> list[int]:
    """Sorted distinct layer indices, each an integer in range (``1.7`` or ``"3"`` is refused, not truncated)."""
    layers = list(layers)
    if not layers:
        raise ValueError("layers is empty")
    for layer in layers:
        if not isinstance(layer, numbers.Integral) or isinstance(layer, bool):
            raise TypeError(f"layer {layer!r} is not an integer ({type(layer).__name__}); give layer indices "
                            "such as 0, 1, 2 (a fraction of the depth must be converted by the caller)")
    layers = sorted(set(int(l) for l in layers))  # ascending: nnsight must visit modules in execution order
    n = num_layers(model)
    for layer in layers:
        if not 0 <= layer < n:
            raise ValueError(f"layer {layer} is out of range: the model has {n} layers (valid: 0..{n - 1})")
    return layers


def max_positions(model) -> int | None:
    """The model's position limit (``max_position_embeddings``), or None when its config has none."""
    config = hf_module(model).config
    limit = getattr(config.get_text_config() if hasattr(config, "get_text_config") else config,
                    "max_position_embeddings", None)
    return int(limit) if limit else None


def check_lengths(model, token_lists: Sequence[Sequence[int]], extra: int = 0) -> None:
    """Refuse a prompt (plus ``extra`` tokens to generate) longer than the model's positions: activations at
    positions the model was never built for are not evidence of anything."""
    limit = max_positions(model)
    if limit is None:
        return
    for i, ids in enumerate(token_lists):
        if len(ids) + extra > limit:
            more = f" + {extra} new tokens" if extra else ""
            raise ValueError(f"prompt {i} has {len(ids)} tokens{more}, more than the model's {limit} positions "
                             "(max_position_embeddings): shorten or split it")


def embedding_rows(model) -> int:
    return hf_module(model).get_input_embeddings().num_embeddings


def tokenizer_of(model):
    tokenizer = getattr(model, "tokenizer", None)
    if tokenizer is None:
        raise ValueError("this model has no tokenizer: pass token-id lists, or wrap a transformers model as "
                         "nnsight.LanguageModel(model, tokenizer=tokenizer)")
    return tokenizer


def token_lists(model, prompts: Prompts, add_special_tokens: bool) -> list[list[int]]:
    """Token ids per prompt, checked against the model's embedding matrix."""
    if len(prompts) == 0:
        raise ValueError("prompts is empty")
    rows = embedding_rows(model)
    if isinstance(prompts[0], str):
        tokenizer = tokenizer_of(model)
        if len(tokenizer) > rows:
            raise ValueError(f"tokenizer has {len(tokenizer)} tokens but the model's embedding has {rows} rows "
                             "(tokenizer of another model?)")
        ids = tokenizer(list(prompts), add_special_tokens=add_special_tokens)["input_ids"]
    else:
        ids = [list(map(int, p)) for p in prompts]
    for i, row in enumerate(ids):
        if not row:
            raise ValueError(f"prompt {i} has no tokens")
        if not 0 <= min(row) <= max(row) < rows:
            raise ValueError(f"prompt {i} has token ids outside [0, {rows}), the model's embedding rows "
                             f"(min {min(row)}, max {max(row)}): tokenizer of another model?")
    return ids


def pad_id(model) -> int:
    tokenizer = getattr(model, "tokenizer", None)
    pad = None if tokenizer is None else tokenizer.pad_token_id
    return 0 if pad is None else pad  # its value never matters: padding is masked out


def pad_left(token_lists: Sequence[Sequence[int]], pad_id: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """``input_ids`` and ``attention_mask`` ``[B, T]``, left-padded (as generation needs)."""
    width = max(len(ids) for ids in token_lists)
    input_ids = torch.full((len(token_lists), width), pad_id, dtype=torch.long)
    attention_mask = torch.zeros_like(input_ids)
    for row, ids in enumerate(token_lists):
        input_ids[row, width - len(ids):] = torch.tensor(ids, dtype=torch.long)
        attention_mask[row, width - len(ids):] = 1
    return input_ids, attention_mask


def position_ids(attention_mask: torch.Tensor) -> torch.Tensor:
    # Positions count real tokens only, as model.generate does: a left-padded prompt then sees the positions it
    # would see alone (RoPE models tolerate a shift up to rounding; absolute-position models do not).
    return (attention_mask.long().cumsum(-1) - 1).clamp(min=0)


def model_inputs(model, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> dict:
    device = hf_module(model).device
    return {k: v.to(device) for k, v in dict(input_ids=input_ids, attention_mask=attention_mask,
                                             position_ids=position_ids(attention_mask)).items()}
