"""Model access: loading (dtype, device map), layer checks, token ids and left padding.

Three kinds of model are accepted: a plugin-loaded ``nnsight.LanguageModel``, the host's nnterp
``StandardizedTransformer`` and, for generation, a plain transformers causal LM; :mod:`.layers` finds their decoder
blocks, whatever the architecture.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass

import nnsight
import torch

from ..checks import is_int
from .layers import SETTINGS_ATTR, hf_module, num_layers, remote_of, text_config

Prompts = Sequence[str] | Sequence[Sequence[int]]


DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclass(frozen=True)
class ModelSettings:
    """How a model is loaded and run. The captured residuals are cast to float32 whatever ``dtype`` is, so SAE
    arithmetic is always float32. ``model_record`` reads back what a loaded model actually got."""

    dtype: str = "float32"  # weights and activations: "float32", "bfloat16" or "float16"
    device_map: str | dict = "cpu"  # "cpu", "cuda", "auto" (accelerate: GPUs, then CPU, then disk) or a module map
    max_memory: dict | None = None  # device_map="auto": budget per device, e.g. {0: "70GiB", "cpu": "200GiB"}
    offload_folder: str | None = None  # device_map="auto": where the layers that fit on no device are kept
    remote: bool | str = False  # True: traces run on NDIF (nnsight remote); "local": nnsight's local simulation of it
    trust_remote_code: bool = False  # run a hub repository's own modelling code (only for repositories you trust)

    def __post_init__(self):
        names = {v: k for k, v in DTYPES.items()}
        if isinstance(self.dtype, torch.dtype) and self.dtype in names:  # torch.bfloat16 is recorded as "bfloat16"
            object.__setattr__(self, "dtype", names[self.dtype])
        if self.dtype not in DTYPES:
            raise ValueError(f"ModelSettings.dtype={self.dtype!r}: expected one of {list(DTYPES)}")
        if self.remote not in (False, True, "local"):
            raise ValueError(f"ModelSettings.remote={self.remote!r}: expected False, True (NDIF) or 'local'")
        if (self.max_memory is not None or self.offload_folder is not None) and self.device_map != "auto":
            raise ValueError(
                "ModelSettings: max_memory and offload_folder apply only with device_map='auto', got "
                f"device_map={self.device_map!r}"
            )


def load_language_model(
    model_id_or_path: str, settings: ModelSettings | None = None, **fields
) -> nnsight.LanguageModel:
    """Load a causal LM (hub id, HF-cache id or local folder) as an nnsight model with ``settings``, or with
    ``ModelSettings`` fields given by name (``load_language_model(id, dtype="bfloat16", device_map="auto")``); eager
    attention so that padded and unpadded prompts give the same activations. A remote model is not loaded here: only
    its config (weights on the meta device), the server holds the weights."""
    if settings is not None and not isinstance(settings, ModelSettings):
        raise TypeError(f"settings must be a ModelSettings, got {type(settings).__name__}")
    unknown = sorted(set(fields) - {f.name for f in dataclasses.fields(ModelSettings)})
    if unknown:
        raise TypeError(
            f"load_language_model: unknown setting(s) {unknown}; ModelSettings has "
            f"{[f.name for f in dataclasses.fields(ModelSettings)]}"
        )
    settings = dataclasses.replace(settings or ModelSettings(), **fields)
    kwargs = {
        k: v
        for k, v in (("max_memory", settings.max_memory), ("offload_folder", settings.offload_folder))
        if v is not None
    }
    model = nnsight.LanguageModel(
        model_id_or_path,
        dtype=DTYPES[settings.dtype],
        device_map=settings.device_map,
        dispatch=not settings.remote,
        attn_implementation="eager",
        trust_remote_code=settings.trust_remote_code,
        **kwargs,
    )
    setattr(model, SETTINGS_ATTR, asdict(settings))
    return model


def model_record(model) -> dict:
    """What a loaded model runs with, for a report: dtype of its weights, device map (accelerate's module map when
    spread over devices, else its one device) and the remote setting."""
    hf = hf_module(model)
    remote = remote_of(model)
    device_map = getattr(hf, "hf_device_map", None)
    if remote:  # the weights are on the server (or nnsight's local simulation of it), not here
        device_map = "ndif" if remote is True else "ndif local simulation"
    elif device_map:
        device_map = {k: str(v) for k, v in device_map.items()}
    else:
        device_map = str(hf.device)
    return {
        "dtype": str(next(hf.parameters()).dtype).removeprefix("torch."),
        "device_map": device_map,
        "remote": remote,
    }


def model_name(model) -> str:
    """What a model is called in messages: its hub id or folder, else its class."""
    config = getattr(hf_module(model), "config", None)
    return getattr(config, "_name_or_path", None) or type(hf_module(model)).__name__


def hidden_size(model) -> int | None:
    hf = hf_module(model)
    return getattr(text_config(hf), "hidden_size", None) if getattr(hf, "config", None) is not None else None


def check_finite_weights(model, role: str) -> None:
    """Raise ``ValueError`` naming the model (its ``role`` and name) and the first weight holding NaN/Inf."""
    for key, tensor in hf_module(model).state_dict().items():
        # NaN/Inf always make the sum non-finite; a sum that overflows on finite values falls to the exact check.
        if tensor.is_floating_point() and tensor.device.type != "meta" and not bool(torch.isfinite(tensor.sum())):
            bad = int((~torch.isfinite(tensor)).sum())
            if bad:
                raise ValueError(
                    f"{role} model {model_name(model)!r}: weight {key!r} holds {bad} NaN/Inf value(s) "
                    f"of {tensor.numel()}: the checkpoint is broken (a diverged fine-tune?); "
                    f"re-export or retrain it"
                )


def check_model_pair(base, finetuned) -> None:
    """Base and fine-tuned must be diffable: the same hidden size (naming both) and finite weights (naming which)."""
    widths = hidden_size(base), hidden_size(finetuned)
    if None not in widths and widths[0] != widths[1]:
        raise ValueError(
            f"base model {model_name(base)!r} has hidden size {widths[0]} but fine-tuned model "
            f"{model_name(finetuned)!r} has {widths[1]}: a model diff needs a fine-tune of the same base "
            f"architecture; check the two model ids"
        )
    check_finite_weights(base, "base")
    check_finite_weights(finetuned, "fine-tuned")


def check_layers(model, layers: Iterable) -> list[int]:
    """Sorted distinct layer indices, each an integer in range (``1.7`` or ``"3"`` is refused, not truncated)."""
    layers = list(layers)
    if not layers:
        raise ValueError("layers is empty")
    for layer in layers:
        if not is_int(layer, None):  # the range is checked below
            raise TypeError(
                f"layer {layer!r} is not an integer ({type(layer).__name__}); give layer indices "
                "such as 0, 1, 2 (a fraction of the depth must be converted by the caller)"
            )
    layers = sorted(set(int(l) for l in layers))  # ascending: nnsight must visit modules in execution order
    n = num_layers(model)
    for layer in layers:
        if not 0 <= layer < n:
            raise ValueError(f"layer {layer} is out of range: the model has {n} layers (valid: 0..{n - 1})")
    return layers


def max_positions(model) -> int | None:
    """The model's position limit (``max_position_embeddings``), or None when its config has none."""
    limit = getattr(text_config(hf_module(model)), "max_position_embeddings", None)
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
            raise ValueError(
                f"prompt {i} has {len(ids)} tokens{more}, more than the model's {limit} positions "
                "(max_position_embeddings): shorten or split it"
            )


def embedding_rows(model) -> int:
    return hf_module(model).get_input_embeddings().num_embeddings


def tokenizer_of(model):
    tokenizer = getattr(model, "tokenizer", None)
    if tokenizer is None:
        raise ValueError(
            "this model has no tokenizer: pass token-id lists, or wrap a transformers model as "
            "nnsight.LanguageModel(model, tokenizer=tokenizer)"
        )
    return tokenizer


def token_lists(model, prompts: Prompts, add_special_tokens: bool) -> list[list[int]]:
    """Token ids per prompt, checked against the model's embedding matrix."""
    if len(prompts) == 0:
        raise ValueError("prompts is empty")
    rows = embedding_rows(model)
    if isinstance(prompts[0], str):
        tokenizer = tokenizer_of(model)
        if len(tokenizer) > rows:
            raise ValueError(
                f"tokenizer has {len(tokenizer)} tokens but the model's embedding has {rows} rows "
                "(tokenizer of another model?)"
            )
        ids = tokenizer(list(prompts), add_special_tokens=add_special_tokens)["input_ids"]
    else:
        ids = [list(map(int, p)) for p in prompts]
    for i, row in enumerate(ids):
        if not row:
            raise ValueError(f"prompt {i} has no tokens")
        if not 0 <= min(row) <= max(row) < rows:
            raise ValueError(
                f"prompt {i} has token ids outside [0, {rows}), the model's embedding rows "
                f"(min {min(row)}, max {max(row)}): tokenizer of another model?"
            )
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
        input_ids[row, width - len(ids) :] = torch.tensor(ids, dtype=torch.long)
        attention_mask[row, width - len(ids) :] = 1
    return input_ids, attention_mask


def position_ids(attention_mask: torch.Tensor) -> torch.Tensor:
    # Positions count real tokens only, as model.generate does: a left-padded prompt then sees the positions it
    # would see alone (RoPE models tolerate a shift up to rounding; absolute-position models do not).
    return (attention_mask.long().cumsum(-1) - 1).clamp(min=0)


def input_device(model) -> torch.device:
    """Where a forward pass takes its inputs: the embedding's device (accelerate moves them on between devices);
    the CPU for a remote model, whose inputs are sent to the server."""
    if remote_of(model):
        return torch.device("cpu")
    device = hf_module(model).get_input_embeddings().weight.device
    return torch.device("cpu") if device.type == "meta" else device  # offloaded to disk: accelerate's hook loads it


def model_inputs(model, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> dict:
    device = input_device(model)
    return {
        k: v.to(device)
        for k, v in dict(
            input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids(attention_mask)
        ).items()
    }
