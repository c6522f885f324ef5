"""Generation with a KV cache: greedy or seeded sampling, optionally with an edit of one layer's residual.

Each step feeds only the new token and reuses the keys and values of the earlier ones, instead of re-running the
whole sequence. An edit (:class:`LayerEdit`) is applied to every token the model processes, prompt and generated
alike; with a ``reference`` model (the base model, for the ablation) that model is stepped in lockstep on the same
tokens with its own cache, stopped after the edited layer, and its residual there is handed to the edit. Because
the models are causal and the edit is position-wise, this gives the same tokens as re-running the full sequence
with the edit at every position (tested).

The model runs as a plain transformers module with forward hooks (no nnsight trace per token), so it may be an
nnsight ``LanguageModel``, the host's nnterp ``StandardizedTransformer`` or a transformers causal LM.
"""

from __future__ import annotations

import inspect
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from tqdm.auto import tqdm
from transformers import DynamicCache

from ..checks import is_finite_number, is_int
from .layers import block_residual, hf_module, layer_module, layer_path, remote_of
from .models import (
    Prompts,
    check_layers,
    check_lengths,
    input_device,
    max_positions,
    pad_id,
    pad_left,
    position_ids,
    token_lists,
    tokenizer_of,
)

END_OF_TURN = "<end_of_turn>"
Edit = Callable[[torch.Tensor], torch.Tensor]
MakeEdit = Callable[[torch.Tensor, torch.Tensor], Edit]


@dataclass(frozen=True)
class LayerEdit:
    """A position-wise replacement of the residual after decoder layer ``layer`` of the generating model.

    ``fn(resid, reference_resid)`` maps ``[B, t, d]`` (the tokens of this step: the prompt at the first step, one
    new token after) to its replacement; ``reference_resid`` is ``reference``'s residual at ``layer`` on the same
    tokens, or None without a reference. ``fn`` must act on each position alone (as an SAE edit does): earlier
    positions are not re-edited, their cached keys and values already carry the edit."""

    layer: int
    fn: Callable[[torch.Tensor, torch.Tensor | None], torch.Tensor]
    reference: object | None = None  # a second model stepped in lockstep (e.g. the base model), or None


@dataclass(frozen=True)
class Sampling:
    """Seeded ancestral sampling from the full softmax (no top-k/top-p). Each (prompt, sample) row draws from its
    own generator seeded by ``(seed, prompt index, sample index)``, so results do not depend on the batch size."""

    temperature: float  # > 0; logits are divided by it
    n_samples: int = 1  # completions per prompt
    seed: int = 0

    def __post_init__(self):
        if not is_finite_number(self.temperature) or self.temperature <= 0:
            raise ValueError(
                f"Sampling.temperature must be a finite number > 0, got {self.temperature!r} "
                "(use greedy generation for temperature 0)"
            )
        if not is_int(self.n_samples, 1):
            raise ValueError(f"Sampling.n_samples must be an integer >= 1, got {self.n_samples!r}")
        if not is_int(self.seed, 0):
            raise ValueError(f"Sampling.seed must be an integer >= 0, got {self.seed!r}")


@dataclass(frozen=True)
class _Plan:
    """What one batch of rows is generated with."""

    max_new_tokens: int
    stop: frozenset[int]
    edit: LayerEdit | None = None
    make_edit: tuple[int, MakeEdit] | None = None  # (layer, make_edit): the uncached full-sequence protocol
    sampling: Sampling | None = None


class _Stop(Exception):
    """Raised by a hook to end a reference model's forward after the layer it is read at."""


def _new_cache(hf) -> DynamicCache:
    try:
        return DynamicCache(config=hf.config)  # sliding-window layers keep only their window
    except TypeError:  # transformers before the config argument
        return DynamicCache()


def _cache_keyword(hf) -> str:
    # transformers 5 renamed past_key_values to cache (the old name still works, with a deprecation warning).
    # The class's forward: accelerate's offload hooks wrap the instance's in a (*args, **kwargs) function.
    return "cache" if "cache" in inspect.signature(type(hf).forward).parameters else "past_key_values"


def _checked(fn: Callable[[torch.Tensor], torch.Tensor], layer: int) -> Callable[[torch.Tensor], torch.Tensor]:
    def edit(resid: torch.Tensor) -> torch.Tensor:
        new = fn(resid)
        if not isinstance(new, torch.Tensor) or new.shape != resid.shape:
            raise ValueError(
                f"the edit at layer {layer} returned {getattr(new, 'shape', type(new).__name__)} for a "
                f"residual of shape {tuple(resid.shape)}; it must return the same shape"
            )
        return new.to(resid.dtype)

    return edit


def _replace_output(output, fn: Callable[[torch.Tensor], torch.Tensor]):
    """Replace the residual in a block's output (the tensor itself, or the first item of a tuple)."""
    if isinstance(output, tuple):
        return (fn(output[0]), *output[1:])
    return fn(output)


class _Runner:
    """One model's forward passes over the steps of one batch, with its own KV cache (None: uncached)."""

    def __init__(self, model, cached: bool):
        if remote_of(model):
            raise ValueError(
                "generation runs the model locally (forward hooks per token), but this model was loaded "
                "with remote set: load it locally (device_map='auto' spreads it over GPUs, CPU and disk)"
            )
        self.model, self.hf = model, hf_module(model)
        self.device = input_device(model)
        self.cache = _new_cache(self.hf) if cached else None
        self.cache_kw = _cache_keyword(self.hf)

    def _kwargs(self, input_ids, attention_mask) -> dict:
        device = self.device
        positions = position_ids(attention_mask)[:, -input_ids.shape[1] :]
        kw = dict(
            input_ids=input_ids.to(device),
            attention_mask=attention_mask.to(device),
            position_ids=positions.to(device),
            use_cache=self.cache is not None,
        )
        if self.cache is not None:
            kw[self.cache_kw] = self.cache
        return kw

    @torch.no_grad()
    def logits(self, input_ids, attention_mask, layer: int | None = None, edit: Edit | None = None) -> torch.Tensor:
        """Last-position logits ``[B, vocab]``, with ``edit`` applied to the residual after ``layer``."""
        handle = (
            None
            if edit is None
            else layer_module(self.model, layer).register_forward_hook(
                lambda module, args, output: _replace_output(output, _checked(edit, layer))
            )
        )
        try:
            out = self.hf(**self._kwargs(input_ids, attention_mask), logits_to_keep=1)
        finally:
            if handle is not None:
                handle.remove()
        logits = out.logits[:, -1].float().cpu()  # choices on the CPU: the same draws on any device
        if not torch.isfinite(logits).all():  # argmax/sampling over NaN would pick tokens silently
            rows = torch.nonzero(~torch.isfinite(logits).all(-1)).flatten().tolist()
            raise ValueError(
                f"non-finite logits (NaN/Inf) in batch rows {rows[:8]}"
                + (
                    f": the edit at layer {layer} produced them or fed them in"
                    if edit is not None
                    else ": the model's weights or inputs hold NaN/Inf"
                )
            )
        return logits

    @torch.no_grad()
    def residual(self, input_ids, attention_mask, layer: int) -> torch.Tensor:
        """The residual after ``layer`` ``[B, t, d]``; the forward stops there (the cache then holds the layers up
        to ``layer``, all that later steps read)."""
        seen = []

        def grab(module, args, output):
            seen.append(block_residual(output))
            raise _Stop

        handle = layer_module(self.model, layer).register_forward_hook(grab)
        try:
            self.hf(**self._kwargs(input_ids, attention_mask))
        except _Stop:
            pass
        finally:
            handle.remove()
        return seen[0]

    def keep_rows(self, rows: torch.Tensor) -> None:
        if self.cache is not None:
            self.cache.batch_select_indices(rows.to(self.device))


def _row_generators(sampling: Sampling, prompt_ids: Sequence[int]) -> list[torch.Generator]:
    generators = []
    for prompt in prompt_ids:
        for sample in range(sampling.n_samples):
            seed = int(np.random.SeedSequence([sampling.seed, prompt, sample]).generate_state(1)[0])
            generators.append(torch.Generator().manual_seed(seed))
    return generators


def _choose(
    logits: torch.Tensor, sampling: Sampling | None, generators: list[torch.Generator], rows: list[int]
) -> list[int]:
    if sampling is None:
        return logits.argmax(-1).tolist()
    probs = torch.softmax(logits / sampling.temperature, dim=-1)
    return [int(torch.multinomial(p, 1, generator=generators[r])) for p, r in zip(probs, rows)]


def _generate_rows(
    model, rows_tokens: list[list[int]], plan: _Plan, generators: list[torch.Generator]
) -> list[list[int]]:
    """New tokens for each row (stop token excluded). Finished rows leave the batch and its caches."""
    cached = plan.make_edit is None
    runner = _Runner(model, cached)
    reference = None
    if plan.edit is not None and plan.edit.reference is not None:
        reference = _Runner(plan.edit.reference, cached)
    input_ids, attention_mask = pad_left(rows_tokens, pad_id(model))
    chunk = input_ids  # what this step feeds: everything uncached, else the prompt then one token at a time
    rows = list(range(len(rows_tokens)))
    generated = [[] for _ in rows_tokens]
    for step in range(plan.max_new_tokens):
        layer, edit = None, None
        if plan.make_edit is not None:
            layer, edit = plan.make_edit[0], plan.make_edit[1](input_ids, attention_mask)
        elif plan.edit is not None:
            ref = None if reference is None else reference.residual(chunk, attention_mask, plan.edit.layer)
            layer, edit = plan.edit.layer, lambda resid, ref=ref: plan.edit.fn(resid, ref)
        next_ids = _choose(runner.logits(chunk, attention_mask, layer, edit), plan.sampling, generators, rows)
        keep = [i for i, token in enumerate(next_ids) if token not in plan.stop]
        for i in keep:
            generated[rows[i]].append(next_ids[i])
        if not keep or step == plan.max_new_tokens - 1:
            break
        if len(keep) < len(rows):
            index = torch.tensor(keep)
            for r in (runner, reference):
                if r is not None:
                    r.keep_rows(index)
            input_ids, attention_mask = input_ids[index], attention_mask[index]
        rows = [rows[i] for i in keep]
        new = torch.tensor([[next_ids[i]] for i in keep])
        input_ids = torch.cat([input_ids, new], dim=1)
        attention_mask = torch.cat([attention_mask, torch.ones_like(new)], dim=1)
        chunk = new if cached else input_ids
    return generated


def stop_token_ids(model) -> frozenset[int]:
    """eos ids of the generation config and the tokenizer, plus Gemma's ``<end_of_turn>`` when in the vocabulary."""
    eos = getattr(getattr(hf_module(model), "generation_config", None), "eos_token_id", None)
    stop = set(eos if isinstance(eos, list) else [] if eos is None else [eos])
    tokenizer = getattr(model, "tokenizer", None)
    if tokenizer is not None:
        if tokenizer.eos_token_id is not None:
            stop.add(tokenizer.eos_token_id)
        vocab = tokenizer.get_vocab()
        if END_OF_TURN in vocab:
            stop.add(vocab[END_OF_TURN])
    return frozenset(stop)


def _check_new_tokens(model, ids: list[list[int]], max_new_tokens: int) -> None:
    if not is_int(max_new_tokens, 1):
        raise ValueError(f"max_new_tokens must be an integer >= 1, got {max_new_tokens!r}")
    check_lengths(model, ids)
    limit = max_positions(model)
    over = [i for i, row in enumerate(ids) if limit is not None and len(row) + max_new_tokens > limit]
    if over:
        warnings.warn(
            f"prompt {over[0]} ({len(ids[over[0]])} tokens) + max_new_tokens {max_new_tokens} runs past "
            f"the model's {limit} positions ({len(over)} prompts do): tokens generated there are out of "
            "the model's range",
            stacklevel=3,
        )


def generate_tokens(
    model,
    prompt_tokens: Sequence[Sequence[int]],
    max_new_tokens: int,
    *,
    batch_size: int = 16,
    edit: LayerEdit | None = None,
    sampling: Sampling | None = None,
) -> list[list[int]]:
    """New token ids per row (stop token excluded), for any of the three model kinds (a transformers model needs
    no tokenizer here). Greedy without ``sampling``; with it, ``n_samples`` rows per prompt, prompt-major."""
    return _generate(
        model,
        [list(map(int, p)) for p in prompt_tokens],
        max_new_tokens,
        batch_size,
        _Plan(max_new_tokens, stop_token_ids(model), edit=edit, sampling=sampling),
    )


def _generate(model, ids: list[list[int]], max_new_tokens: int, batch_size: int, plan: _Plan) -> list[list[int]]:
    if not is_int(batch_size, 1):
        raise ValueError(f"batch_size must be an integer >= 1, got {batch_size!r}")
    layer_path(model)  # an unsupported architecture (not a decoder-only causal LM) fails here, by name
    _check_new_tokens(model, ids, max_new_tokens)
    if plan.edit is not None:
        check_layers(model, [plan.edit.layer])
        if plan.edit.reference is not None:
            check_layers(plan.edit.reference, [plan.edit.layer])
    n_samples = 1 if plan.sampling is None else plan.sampling.n_samples
    out = []
    for start in tqdm(range(0, len(ids), batch_size), desc="generate", unit="batch", disable=None):
        prompt_ids = range(start, min(start + batch_size, len(ids)))
        rows = [ids[i] for i in prompt_ids for _ in range(n_samples)]
        generators = [] if plan.sampling is None else _row_generators(plan.sampling, prompt_ids)
        out += _generate_rows(model, rows, plan, generators)
    return out


def generate_greedy(
    model,
    prompts: Prompts,
    max_new_tokens: int,
    *,
    batch_size: int = 16,
    layer: int | None = None,
    make_edit: MakeEdit | None = None,
    edit: LayerEdit | None = None,
    add_special_tokens: bool = True,
) -> list[str]:
    """Greedy continuations (decoded, prompt and stop token excluded), stopping at eos / ``<end_of_turn>``.

    ``edit``: a :class:`LayerEdit`, run with the KV cache (the fast path; base and fine-tuned in lockstep).
    ``layer`` and ``make_edit``: the full-sequence protocol, for edits that are not position-wise; it re-runs the
    whole sequence each step (no cache). At every step ``make_edit(input_ids, attention_mask)`` (left-padded
    ``[B, T]`` CPU tensors) is called outside any forward, so it may run another model on the same tokens; the
    function it returns maps the layer-``layer`` residual ``[B, T, d]`` to its replacement at all positions."""
    if (layer is None) != (make_edit is None):
        raise ValueError("generate_greedy: give both layer and make_edit, or neither")
    if edit is not None and make_edit is not None:
        raise ValueError("generate_greedy: give edit or layer/make_edit, not both")
    if layer is not None:
        check_layers(model, [layer])
    ids = token_lists(model, prompts, add_special_tokens)
    plan = _Plan(
        max_new_tokens, stop_token_ids(model), edit=edit, make_edit=None if make_edit is None else (layer, make_edit)
    )
    generated = _generate(model, ids, max_new_tokens, batch_size, plan)
    return tokenizer_of(model).batch_decode(generated, skip_special_tokens=True)


def generate_sampled(
    model,
    prompts: Prompts,
    max_new_tokens: int,
    sampling: Sampling,
    *,
    batch_size: int = 16,
    add_special_tokens: bool = True,
) -> list[list[str]]:
    """``sampling.n_samples`` sampled continuations per prompt (decoded, prompt and stop token excluded), seeded;
    ``batch_size`` counts prompts."""
    if not isinstance(sampling, Sampling):
        raise TypeError(f"sampling must be a Sampling(temperature, n_samples, seed), got {type(sampling).__name__}")
    ids = token_lists(model, prompts, add_special_tokens)
    plan = _Plan(max_new_tokens, stop_token_ids(model), sampling=sampling)
    texts = tokenizer_of(model).batch_decode(
        _generate(model, ids, max_new_tokens, batch_size, plan), skip_special_tokens=True
    )
    return [texts[i : i + sampling.n_samples] for i in range(0, len(texts), sampling.n_samples)]
