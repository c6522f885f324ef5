"""Residual capture: decoder-layer outputs at any set of layers, for one model or for a base and a fine-tuned
model on the same tokens, in left-padded batches. Padding is dropped and every kept token carries metadata
(``prompt_id``, ``position`` within its unpadded prompt, ``token_id``, plus caller labels)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from tqdm.auto import tqdm

from .layers import is_nnterp, layer_envoys
from .models import (
    Prompts,
    check_layers,
    check_lengths,
    check_model_pair,
    model_inputs,
    model_name,
    pad_id,
    pad_left,
    remote_of,
    token_lists,
)

RESERVED_META = ("prompt_id", "position", "token_id")


@dataclass
class TokenActivations:
    """Per-token residuals of one model: ``acts[layer]`` is ``[n_tokens, d]`` float32 on CPU, padding removed;
    ``meta[name]`` is a 1-D array of length ``n_tokens`` (``prompt_id``, ``position``, ``token_id``, labels)."""

    acts: dict[int, torch.Tensor]
    meta: dict[str, np.ndarray]

    def __len__(self) -> int:
        return len(self.meta["prompt_id"])

    def take(self, rows: slice) -> TokenActivations:
        return TokenActivations({l: a[rows] for l, a in self.acts.items()}, {k: v[rows] for k, v in self.meta.items()})

    @staticmethod
    def concat(parts: Sequence[TokenActivations]) -> TokenActivations:
        if not parts:
            raise ValueError("TokenActivations.concat: nothing to concatenate")
        return TokenActivations(
            {l: torch.cat([p.acts[l] for p in parts]) for l in parts[0].acts},
            {k: np.concatenate([p.meta[k] for p in parts]) for k in parts[0].meta},
        )


def trace_residuals(
    model, input_ids: torch.Tensor, attention_mask: torch.Tensor, layers: Iterable[int]
) -> dict[int, torch.Tensor]:
    """Padded residuals ``{layer: [B, T, d]}`` (model dtype and device) for an already padded batch; stops the
    forward pass after the last requested layer. Usable inside a ``make_edit`` to read another model. A model loaded
    with ``remote`` set runs the trace on nnsight's remote backend (the body calls no plugin code, so it serialises).
    """
    layers = check_layers(model, layers)
    envoys = None if is_nnterp(model) else layer_envoys(model)
    saved = {}
    remote = remote_of(model)
    trace_kwargs = {"remote": remote} if remote else {}
    # Two with statements, not one parenthesised: nnsight finds the traced block by parsing this source, and its
    # parser does not read the parenthesised form.
    with torch.no_grad():
        with model.trace(model_inputs(model, input_ids, attention_mask), **trace_kwargs) as tracer:
            for layer in layers:
                out = model.layers_output[layer] if envoys is None else envoys[layer].output
                if isinstance(out, tuple):  # older transformers blocks return (residual, ...)
                    out = out[0]
                saved[layer] = out.save()
            tracer.stop()  # the remaining layers and the unembedding are not needed
    return saved


@dataclass
class _Job:
    """Validated capture request: token ids, batching, and the per-token metadata to attach."""

    token_lists: list[list[int]]
    layers: list[int]
    batch_size: int
    labels: dict[str, np.ndarray]
    token_labels: dict[str, list[np.ndarray]]

    def batches(self, desc: str) -> Iterator[list[int]]:
        starts = range(0, len(self.token_lists), self.batch_size)
        for start in tqdm(starts, desc=desc, unit="batch", disable=None):
            yield list(range(start, min(start + self.batch_size, len(self.token_lists))))

    def meta(self, prompt_ids: list[int]) -> dict[str, np.ndarray]:
        lengths = [len(self.token_lists[i]) for i in prompt_ids]
        meta = {
            "prompt_id": np.repeat(np.asarray(prompt_ids, dtype=np.int64), lengths),
            "position": np.concatenate([np.arange(n, dtype=np.int64) for n in lengths]),
            "token_id": np.concatenate([np.asarray(self.token_lists[i], dtype=np.int64) for i in prompt_ids]),
        }
        meta |= {name: np.repeat(values[prompt_ids], lengths) for name, values in self.labels.items()}
        meta |= {name: np.concatenate([values[i] for i in prompt_ids]) for name, values in self.token_labels.items()}
        return meta


def _per_prompt_labels(labels: Mapping[str, Sequence], n_prompts: int) -> dict[str, np.ndarray]:
    arrays = {name: np.asarray(values) for name, values in labels.items()}
    for name, values in arrays.items():
        if values.ndim != 1:
            raise ValueError(f"labels[{name!r}] has shape {values.shape}; expected one value per prompt")
        if len(values) != n_prompts:
            raise ValueError(f"labels[{name!r}] has {len(values)} values for {n_prompts} prompts")
    return arrays


def _per_token_labels(
    token_labels: Mapping[str, Sequence[Sequence]], ids: list[list[int]]
) -> dict[str, list[np.ndarray]]:
    arrays = {}
    for name, values in token_labels.items():
        if len(values) != len(ids):
            raise ValueError(f"token_labels[{name!r}] has {len(values)} sequences for {len(ids)} prompts")
        arrays[name] = [np.asarray(v) for v in values]
        for i, (v, row) in enumerate(zip(arrays[name], ids)):
            if len(v) != len(row):
                raise ValueError(
                    f"token_labels[{name!r}][{i}] has {len(v)} values but prompt {i} has {len(row)} tokens"
                )
    return arrays


def _job(
    model,
    prompts: Prompts,
    layers: Iterable[int],
    batch_size: int,
    labels: Mapping | None,
    token_labels: Mapping | None,
    add_special_tokens: bool,
) -> _Job:
    ids = token_lists(model, prompts, add_special_tokens)
    check_lengths(model, ids)
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be an integer >= 1, got {batch_size!r}")
    labels, token_labels = labels or {}, token_labels or {}
    for name in [*labels, *token_labels]:
        if name in RESERVED_META:
            raise ValueError(f"label name {name!r} is reserved for metadata")
    return _Job(
        ids,
        check_layers(model, layers),
        batch_size,
        _per_prompt_labels(labels, len(ids)),
        _per_token_labels(token_labels, ids),
    )


def _capture_batch(model, job: _Job, prompt_ids: list[int], input_ids, attention_mask) -> TokenActivations:
    padded = trace_residuals(model, input_ids, attention_mask, job.layers)
    keep = attention_mask.bool()  # row-major: prompt by prompt, positions in order, as in job.meta
    acts = {l: a[keep.to(a.device)].float().cpu() for l, a in padded.items()}
    meta = job.meta(prompt_ids)
    for layer, a in acts.items():
        bad = ~torch.isfinite(a).all(-1)
        if bad.any():  # e.g. float16 overflow: refuse here rather than let NaN reach an SAE or a statistic
            row = int(torch.nonzero(bad)[0])
            raise ValueError(
                f"model {model_name(model)!r}: layer {layer} residuals hold NaN/Inf on {int(bad.sum())} "
                f"of {len(a)} tokens, first at "
                f"prompt {meta['prompt_id'][row]} position {meta['position'][row]}: the model's weights "
                "hold NaN/Inf or its dtype overflows (load it in bfloat16 or float32)"
            )
    return TokenActivations(acts, meta)


def iter_residuals(
    model,
    prompts: Prompts,
    layers: Iterable[int],
    *,
    batch_size: int = 16,
    labels: Mapping[str, Sequence] | None = None,
    token_labels: Mapping[str, Sequence[Sequence]] | None = None,
    add_special_tokens: bool = True,
) -> Iterator[TokenActivations]:
    """Stream residuals one batch at a time. ``prompts``: chat-formatted strings or token-id lists.
    ``labels``: per-prompt values broadcast to tokens; ``token_labels``: per-token values, one sequence per
    prompt with that prompt's token count. Inputs are validated here, before the first batch runs."""
    job = _job(model, prompts, layers, batch_size, labels, token_labels, add_special_tokens)

    def stream() -> Iterator[TokenActivations]:
        for prompt_ids in job.batches("capture"):
            input_ids, attention_mask = pad_left([job.token_lists[i] for i in prompt_ids], pad_id(model))
            yield _capture_batch(model, job, prompt_ids, input_ids, attention_mask)

    return stream()


def capture_residuals(model, prompts: Prompts, layers: Iterable[int], **kw) -> TokenActivations:
    """All of :func:`iter_residuals` in memory."""
    return TokenActivations.concat(list(iter_residuals(model, prompts, layers, **kw)))


def iter_paired_residuals(
    base,
    finetuned,
    prompts: Prompts,
    layers: Iterable[int],
    *,
    batch_size: int = 16,
    labels: Mapping[str, Sequence] | None = None,
    token_labels: Mapping[str, Sequence[Sequence]] | None = None,
    add_special_tokens: bool = True,
) -> Iterator[tuple[TokenActivations, TokenActivations]]:
    """Base and fine-tuned residuals on identical tokens, batch by batch, with identical metadata.
    Raises if the two tokenizers disagree on any prompt."""
    check_model_pair(base, finetuned)
    job = _job(base, prompts, layers, batch_size, labels, token_labels, add_special_tokens)
    ft_token_lists = token_lists(finetuned, prompts, add_special_tokens)
    check_layers(finetuned, job.layers)
    check_lengths(finetuned, ft_token_lists)
    for i, (ids_base, ids_ft) in enumerate(zip(job.token_lists, ft_token_lists)):
        if ids_base != ids_ft:
            raise ValueError(
                f"base and fine-tuned tokenisations differ on prompt {i}: "
                f"{ids_base[:12]}... vs {ids_ft[:12]}... (different tokenizers?)"
            )

    def stream() -> Iterator[tuple[TokenActivations, TokenActivations]]:
        for prompt_ids in job.batches("paired capture"):
            input_ids, attention_mask = pad_left([job.token_lists[i] for i in prompt_ids], pad_id(base))
            yield (
                _capture_batch(base, job, prompt_ids, input_ids, attention_mask),
                _capture_batch(finetuned, job, prompt_ids, input_ids, attention_mask),
            )

    return stream()
