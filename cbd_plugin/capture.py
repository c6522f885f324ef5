"""Residual-stream capture and greedy generation with nnsight, shared by both methods.

* Capture: decoder-layer outputs at any set of layers, for one model or for a base and a fine-tuned model on
  the same tokens, in left-padded batches; padding is dropped and every kept token carries metadata
  (``prompt_id``, ``position`` within its unpadded prompt, ``token_id``, plus caller labels).
* Shards: bounded-memory streaming of captures to safetensors files, with a manifest written last so that an
  interrupted run never reads as complete.
* Generation: greedy decoding, optionally with an edit of the layer-L residual at every step.

Works on a plugin-loaded ``nnsight.LanguageModel`` (layer ``i`` at ``model.model.layers[i]``) and on the
host's nnterp ``StandardizedTransformer`` (``model.layers_output[i]``).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import nnsight
import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import save_file
from tqdm.auto import tqdm

Prompts = Sequence[str] | Sequence[Sequence[int]]
Edit = Callable[[torch.Tensor], torch.Tensor]
MakeEdit = Callable[[torch.Tensor, torch.Tensor], Edit]

MANIFEST = "manifest.json"
SHARD_FORMAT = "cbd_plugin.capture.shards/1"
END_OF_TURN = "<end_of_turn>"


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
        return TokenActivations({l: torch.cat([p.acts[l] for p in parts]) for l in parts[0].acts},
                                {k: np.concatenate([p.meta[k] for p in parts]) for k in parts[0].meta})


# ---------------------------------------------------------------- model access (nnterp or plain nnsight)

def load_language_model(model_id_or_path: str, dtype: torch.dtype = torch.float32, device: str = "cpu",
                        trust_remote_code: bool = False) -> nnsight.LanguageModel:
    """Load a causal LM (hub id, HF-cache id or local folder) as an nnsight model; eager attention so that
    padded and unpadded prompts give the same activations."""
    return nnsight.LanguageModel(model_id_or_path, dtype=dtype, device_map=device, dispatch=True,
                                 attn_implementation="eager", trust_remote_code=trust_remote_code)


def _is_nnterp(model) -> bool:
    return hasattr(model, "layers_output")


def num_layers(model) -> int:
    return model.num_layers if _is_nnterp(model) else len(model.model.layers)


def _layer_output(model, layer: int):
    """Residual after decoder layer ``layer``, inside a trace. A transformers-5 decoder layer returns a tensor,
    older ones a tuple whose first item is the residual."""
    if _is_nnterp(model):
        return model.layers_output[layer]
    out = model.model.layers[layer].output
    return out[0] if isinstance(out, tuple) else out


def _set_layer_output(model, layer: int, value) -> None:
    if _is_nnterp(model):
        model.layers_output[layer] = value
        return
    envoy = model.model.layers[layer]
    out = envoy.output
    envoy.output = (value, *out[1:]) if isinstance(out, tuple) else value


def _embedding_rows(model) -> int:
    return model._model.get_input_embeddings().num_embeddings


def _check_layers(model, layers: Iterable[int]) -> list[int]:
    layers = sorted(set(int(l) for l in layers))  # ascending: nnsight must visit modules in execution order
    if not layers:
        raise ValueError("layers is empty")
    n = num_layers(model)
    for layer in layers:
        if not 0 <= layer < n:
            raise ValueError(f"layer {layer} is out of range: the model has {n} layers (valid: 0..{n - 1})")
    return layers


# ---------------------------------------------------------------- tokens and padding

def _token_lists(model, prompts: Prompts, add_special_tokens: bool) -> list[list[int]]:
    """Token ids per prompt, checked against the model's embedding matrix."""
    if len(prompts) == 0:
        raise ValueError("prompts is empty")
    rows = _embedding_rows(model)
    if isinstance(prompts[0], str):
        if getattr(model, "tokenizer", None) is None:
            raise ValueError("string prompts need a model with a tokenizer; pass token-id lists instead")
        if len(model.tokenizer) > rows:
            raise ValueError(f"tokenizer has {len(model.tokenizer)} tokens but the model's embedding has {rows} rows "
                             "(tokenizer of another model?)")
        token_lists = model.tokenizer(list(prompts), add_special_tokens=add_special_tokens)["input_ids"]
    else:
        token_lists = [list(map(int, p)) for p in prompts]
    for i, ids in enumerate(token_lists):
        if not ids:
            raise ValueError(f"prompt {i} has no tokens")
        if not 0 <= min(ids) <= max(ids) < rows:
            raise ValueError(f"prompt {i} has token ids outside [0, {rows}), the model's embedding rows "
                             f"(min {min(ids)}, max {max(ids)}): tokenizer of another model?")
    return token_lists


def _pad_id(model) -> int:
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


def _model_inputs(model, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> dict:
    # Positions count real tokens only, as model.generate does: a left-padded prompt then sees the positions it
    # would see alone (RoPE models tolerate a shift up to rounding; absolute-position models do not).
    position_ids = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)
    if getattr(model, "dispatched", True) is False:
        # Models loaded lazily (the host's nnterp models) sit on the meta device until dispatched.
        model.dispatch()
    return {k: v.to(model.device) for k, v in
            dict(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids).items()}


# ---------------------------------------------------------------- capture

def trace_residuals(model, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                    layers: Iterable[int]) -> dict[int, torch.Tensor]:
    """Padded residuals ``{layer: [B, T, d]}`` (model dtype and device) for an already padded batch; stops the
    forward pass after the last requested layer. Usable inside a ``make_edit`` to read another model."""
    layers = _check_layers(model, layers)
    saved = {}
    with torch.no_grad(), model.trace(_model_inputs(model, input_ids, attention_mask)) as tracer:
        for layer in layers:
            saved[layer] = _layer_output(model, layer).save()
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
        for start in tqdm(starts, desc=desc, disable=None):
            yield list(range(start, min(start + self.batch_size, len(self.token_lists))))

    def meta(self, prompt_ids: list[int]) -> dict[str, np.ndarray]:
        lengths = [len(self.token_lists[i]) for i in prompt_ids]
        meta = {"prompt_id": np.repeat(np.asarray(prompt_ids, dtype=np.int64), lengths),
                "position": np.concatenate([np.arange(n, dtype=np.int64) for n in lengths]),
                "token_id": np.concatenate([np.asarray(self.token_lists[i], dtype=np.int64) for i in prompt_ids])}
        meta |= {name: np.repeat(values[prompt_ids], lengths) for name, values in self.labels.items()}
        meta |= {name: np.concatenate([values[i] for i in prompt_ids]) for name, values in self.token_labels.items()}
        return meta


def _per_prompt_labels(labels: Mapping[str, Sequence], n_prompts: int) -> dict[str, np.ndarray]:
    arrays = {name: np.asarray(values) for name, values in labels.items()}
    for name, values in arrays.items():
        if len(values) != n_prompts:
            raise ValueError(f"labels[{name!r}] has {len(values)} values for {n_prompts} prompts")
    return arrays


def _per_token_labels(token_labels: Mapping[str, Sequence[Sequence]],
                      token_lists: list[list[int]]) -> dict[str, list[np.ndarray]]:
    arrays = {}
    for name, values in token_labels.items():
        if len(values) != len(token_lists):
            raise ValueError(f"token_labels[{name!r}] has {len(values)} sequences for {len(token_lists)} prompts")
        arrays[name] = [np.asarray(v) for v in values]
        for i, (v, ids) in enumerate(zip(arrays[name], token_lists)):
            if len(v) != len(ids):
                raise ValueError(f"token_labels[{name!r}][{i}] has {len(v)} values but prompt {i} has {len(ids)} tokens")
    return arrays


def _job(model, prompts: Prompts, layers: Iterable[int], batch_size: int, labels: Mapping | None,
         token_labels: Mapping | None, add_special_tokens: bool) -> _Job:
    token_lists = _token_lists(model, prompts, add_special_tokens)
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    labels, token_labels = labels or {}, token_labels or {}
    for name in [*labels, *token_labels]:
        if name in ("prompt_id", "position", "token_id"):
            raise ValueError(f"label name {name!r} is reserved for metadata")
    return _Job(token_lists, _check_layers(model, layers), batch_size, _per_prompt_labels(labels, len(token_lists)),
                _per_token_labels(token_labels, token_lists))


def _capture_batch(model, job: _Job, prompt_ids: list[int], input_ids, attention_mask) -> TokenActivations:
    padded = trace_residuals(model, input_ids, attention_mask, job.layers)
    keep = attention_mask.bool()  # row-major: prompt by prompt, positions in order, as in job.meta
    acts = {l: a[keep.to(a.device)].float().cpu() for l, a in padded.items()}
    return TokenActivations(acts, job.meta(prompt_ids))


def iter_residuals(model, prompts: Prompts, layers: Iterable[int], *, batch_size: int = 16,
                   labels: Mapping[str, Sequence] | None = None,
                   token_labels: Mapping[str, Sequence[Sequence]] | None = None,
                   add_special_tokens: bool = True) -> Iterator[TokenActivations]:
    """Stream residuals one batch at a time. ``prompts``: chat-formatted strings or token-id lists.
    ``labels``: per-prompt values broadcast to tokens; ``token_labels``: per-token values, one sequence per
    prompt with that prompt's token count. Inputs are validated here, before the first batch runs."""
    job = _job(model, prompts, layers, batch_size, labels, token_labels, add_special_tokens)

    def stream() -> Iterator[TokenActivations]:
        for prompt_ids in job.batches("capture"):
            input_ids, attention_mask = pad_left([job.token_lists[i] for i in prompt_ids], _pad_id(model))
            yield _capture_batch(model, job, prompt_ids, input_ids, attention_mask)

    return stream()


def capture_residuals(model, prompts: Prompts, layers: Iterable[int], **kw) -> TokenActivations:
    """All of :func:`iter_residuals` in memory."""
    return TokenActivations.concat(list(iter_residuals(model, prompts, layers, **kw)))


def iter_paired_residuals(base, finetuned, prompts: Prompts, layers: Iterable[int], *, batch_size: int = 16,
                          labels: Mapping[str, Sequence] | None = None,
                          token_labels: Mapping[str, Sequence[Sequence]] | None = None,
                          add_special_tokens: bool = True) -> Iterator[tuple[TokenActivations, TokenActivations]]:
    """Base and fine-tuned residuals on identical tokens, batch by batch, with identical metadata.
    Raises if the two tokenizers disagree on any prompt."""
    job = _job(base, prompts, layers, batch_size, labels, token_labels, add_special_tokens)
    ft_token_lists = _token_lists(finetuned, prompts, add_special_tokens)
    _check_layers(finetuned, job.layers)
    for i, (ids_base, ids_ft) in enumerate(zip(job.token_lists, ft_token_lists)):
        if ids_base != ids_ft:
            raise ValueError(f"base and fine-tuned tokenisations differ on prompt {i}: "
                             f"{ids_base[:12]}... vs {ids_ft[:12]}... (different tokenizers?)")

    def stream() -> Iterator[tuple[TokenActivations, TokenActivations]]:
        for prompt_ids in job.batches("paired capture"):
            input_ids, attention_mask = pad_left([job.token_lists[i] for i in prompt_ids], _pad_id(base))
            yield (_capture_batch(base, job, prompt_ids, input_ids, attention_mask),
                   _capture_batch(finetuned, job, prompt_ids, input_ids, attention_mask))

    return stream()


# ---------------------------------------------------------------- shards on disk

Streams = TokenActivations | tuple[TokenActivations, ...]


def _as_streams(batch: Streams) -> tuple[TokenActivations, ...]:
    return (batch,) if isinstance(batch, TokenActivations) else tuple(batch)


def _meta_tensors(meta: dict[str, np.ndarray]) -> tuple[dict[str, torch.Tensor], dict[str, list[str]]]:
    """Numeric/bool metadata as tensors; string labels go to the safetensors header as JSON."""
    tensors, strings = {}, {}
    for name, values in meta.items():
        if values.dtype.kind in "biuf":
            tensors[f"meta.{name}"] = torch.from_numpy(np.ascontiguousarray(values))
        elif values.dtype.kind in "US":
            strings[name] = values.astype(str).tolist()
        else:
            raise TypeError(f"metadata {name!r} has dtype {values.dtype}; use numbers, bools or strings")
    return tensors, strings


@dataclass
class ShardWriter:
    """Writes batches (one ``TokenActivations``, or a tuple of them for paired models) to ``out_dir`` in
    shards of ``shard_tokens`` tokens. Use as a context manager: the manifest is written only on a clean exit,
    so a folder whose writing was interrupted is refused by the readers."""

    out_dir: Path | str
    model_ids: Sequence[str]  # one per stream, e.g. (base_id, finetuned_id)
    shard_tokens: int = 1 << 16
    dtype: torch.dtype = torch.float32
    _pending: list[tuple[TokenActivations, ...]] = field(default_factory=list, init=False)
    _n_pending: int = field(default=0, init=False)
    _shards: list[dict] = field(default_factory=list, init=False)
    _layers: list[int] | None = field(default=None, init=False)
    manifest: dict | None = field(default=None, init=False)  # set by close()

    def __post_init__(self):
        self.out_dir = Path(self.out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        # Invalidate an earlier complete capture first, so that a failure below cannot leave it half-overwritten.
        (self.out_dir / MANIFEST).unlink(missing_ok=True)
        for stale in self.out_dir.glob("shard_*.safetensors*"):
            stale.unlink()

    def __enter__(self) -> ShardWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()

    def add(self, batch: Streams) -> None:
        streams = _as_streams(batch)
        if len(streams) != len(self.model_ids):
            raise ValueError(f"batch has {len(streams)} streams but model_ids names {len(self.model_ids)}")
        for other in streams[1:]:
            if other.meta.keys() != streams[0].meta.keys() or not all(
                    np.array_equal(other.meta[k], streams[0].meta[k]) for k in other.meta):
                raise ValueError("paired batch: streams have different metadata (not the same tokens)")
        self._layers = self._layers or sorted(streams[0].acts)
        self._pending.append(streams)
        self._n_pending += len(streams[0])
        while self._n_pending >= self.shard_tokens:
            self._flush(self.shard_tokens)

    def _flush(self, n_tokens: int) -> None:
        merged = [TokenActivations.concat([p[s] for p in self._pending]) for s in range(len(self.model_ids))]
        self._write_shard([m.take(slice(0, n_tokens)) for m in merged])
        rest = tuple(m.take(slice(n_tokens, None)) for m in merged)
        self._n_pending = len(rest[0])
        self._pending = [rest] if self._n_pending else []

    def _write_shard(self, streams: list[TokenActivations]) -> None:
        name = f"shard_{len(self._shards):05d}.safetensors"
        tensors, strings = _meta_tensors(streams[0].meta)
        for s, stream in enumerate(streams):
            if sorted(stream.acts) != self._layers:
                raise ValueError(f"{name}: stream {s} has layers {sorted(stream.acts)}, expected {self._layers}")
            tensors |= {f"acts.{s}.{l}": a.to(self.dtype).contiguous() for l, a in stream.acts.items()}
        tmp = self.out_dir / f"{name}.tmp"
        save_file(tensors, str(tmp), metadata={"string_meta": json.dumps(strings)})
        os.replace(tmp, self.out_dir / name)
        self._shards.append({"file": name, "n_tokens": len(streams[0])})

    def close(self) -> dict:
        if self._n_pending:
            self._flush(self._n_pending)
        if not self._shards:
            raise ValueError(f"{self.out_dir}: nothing was written (no batches)")
        manifest = {"format": SHARD_FORMAT, "model_ids": list(self.model_ids), "layers": self._layers,
                    "dtype": str(self.dtype).removeprefix("torch."),
                    "n_tokens": sum(s["n_tokens"] for s in self._shards), "shards": self._shards}
        tmp = self.out_dir / f"{MANIFEST}.tmp"
        tmp.write_text(json.dumps(manifest, indent=1))
        os.replace(tmp, self.out_dir / MANIFEST)
        self.manifest = manifest
        return manifest


def write_shards(batches: Iterable[Streams], out_dir: Path | str, *, model_ids: Sequence[str],
                 shard_tokens: int = 1 << 16, dtype: torch.dtype = torch.float32) -> dict:
    """Stream ``batches`` (from :func:`iter_residuals` or :func:`iter_paired_residuals`) to disk; returns the
    manifest. If ``batches`` raises, no manifest is written."""
    with ShardWriter(out_dir, model_ids, shard_tokens, dtype) as writer:
        for batch in batches:
            writer.add(batch)
    return writer.manifest


def read_manifest(out_dir: Path | str) -> dict:
    path = Path(out_dir) / MANIFEST
    if not path.is_file():
        raise FileNotFoundError(f"{out_dir}: no {MANIFEST}, so this is not a complete shard folder "
                                "(the capture was interrupted or never written)")
    manifest = json.loads(path.read_text())
    if manifest.get("format") != SHARD_FORMAT:
        raise ValueError(f"{path}: format {manifest.get('format')!r}, expected {SHARD_FORMAT!r}")
    return manifest


def iter_shards(out_dir: Path | str, layers: Iterable[int] | None = None) -> Iterator[Streams]:
    """Shard by shard, as written: a ``TokenActivations`` per shard, or a tuple per shard for paired captures.
    ``layers`` loads a subset. Each shard's token count is checked against the manifest."""
    out_dir = Path(out_dir)
    manifest = read_manifest(out_dir)
    layers = manifest["layers"] if layers is None else sorted(set(layers))
    missing = set(layers) - set(manifest["layers"])
    if missing:
        raise ValueError(f"{out_dir}: layers {sorted(missing)} were not captured (have {manifest['layers']})")
    for entry in manifest["shards"]:
        path = out_dir / entry["file"]
        if not path.is_file():
            raise FileNotFoundError(f"{path}: listed in {MANIFEST} but missing")
        with safe_open(str(path), framework="pt") as f:
            meta = {k.removeprefix("meta."): f.get_tensor(k).numpy() for k in f.keys() if k.startswith("meta.")}
            meta |= {k: np.asarray(v) for k, v in json.loads(f.metadata()["string_meta"]).items()}
            streams = tuple(TokenActivations({l: f.get_tensor(f"acts.{s}.{l}").float() for l in layers}, meta)
                            for s in range(len(manifest["model_ids"])))
        if any(len(v) != entry["n_tokens"] for v in [*meta.values(), *(a for s in streams for a in s.acts.values())]):
            raise ValueError(f"{path}: token count differs from the {entry['n_tokens']} in {MANIFEST}")
        yield streams[0] if len(streams) == 1 else streams


def read_shards(out_dir: Path | str, layers: Iterable[int] | None = None) -> Streams:
    """Everything in a shard folder, concatenated (same shape as :func:`iter_shards` yields)."""
    shards = [_as_streams(s) for s in iter_shards(out_dir, layers)]
    merged = tuple(TokenActivations.concat([s[i] for s in shards]) for i in range(len(shards[0])))
    return merged[0] if len(merged) == 1 else merged


# ---------------------------------------------------------------- generation

def _stop_token_ids(model) -> set[int]:
    """eos ids of the tokenizer and generation config, plus Gemma's ``<end_of_turn>`` when in the vocabulary."""
    eos = getattr(getattr(model._model, "generation_config", None), "eos_token_id", None)
    stop = set(eos if isinstance(eos, list) else [] if eos is None else [eos])
    if model.tokenizer.eos_token_id is not None:
        stop.add(model.tokenizer.eos_token_id)
    vocab = model.tokenizer.get_vocab()
    if END_OF_TURN in vocab:
        stop.add(vocab[END_OF_TURN])
    return stop


def _next_tokens(model, input_ids, attention_mask, layer: int | None, edit: Edit | None) -> list[int]:
    inputs = _model_inputs(model, input_ids, attention_mask) | {"logits_to_keep": 1}
    with torch.no_grad(), model.trace(inputs):
        if edit is not None:
            _set_layer_output(model, layer, edit(_layer_output(model, layer)))
        logits = model.output.logits[:, -1].save()
    return logits.argmax(-1).tolist()


def _generate_batch(model, prompt_tokens: list[list[int]], max_new_tokens: int, stop: set[int],
                    layer: int | None, make_edit: MakeEdit | None) -> list[list[int]]:
    """Greedy loop without KV cache: each step reruns the whole (prompt + generated) sequence, which keeps the
    edit a plain function of the full residual and is cheap for our tiny models and short generations.
    Finished sequences leave the batch."""
    generated = [[] for _ in prompt_tokens]
    active = list(range(len(prompt_tokens)))
    for _ in range(max_new_tokens):
        if not active:
            break
        input_ids, attention_mask = pad_left([prompt_tokens[i] + generated[i] for i in active], _pad_id(model))
        edit = make_edit(input_ids, attention_mask) if make_edit is not None else None  # outside the trace
        next_ids = _next_tokens(model, input_ids, attention_mask, layer, edit)
        for i, token in zip(active, next_ids):
            if token not in stop:
                generated[i].append(token)
        active = [i for i, token in zip(active, next_ids) if token not in stop]
    return generated


def generate_greedy(model, prompts: Prompts, max_new_tokens: int, *, batch_size: int = 16,
                    layer: int | None = None, make_edit: MakeEdit | None = None,
                    add_special_tokens: bool = True) -> list[str]:
    """Greedy continuations (decoded, prompt and stop token excluded), stopping at eos / ``<end_of_turn>``.

    With ``layer`` and ``make_edit``: at every step ``make_edit(input_ids, attention_mask)`` (left-padded
    ``[B, T]`` CPU tensors) is called outside the trace, so it may run another model on the same tokens; the
    function it returns maps the layer-``layer`` residual ``[B, T, d]`` to its replacement at all positions."""
    if (layer is None) != (make_edit is None):
        raise ValueError("generate_greedy: give both layer and make_edit, or neither")
    if layer is not None:
        _check_layers(model, [layer])
    token_lists = _token_lists(model, prompts, add_special_tokens)
    stop = _stop_token_ids(model)
    generated = []
    for start in tqdm(range(0, len(token_lists), batch_size), desc="generate", disable=None):
        generated += _generate_batch(model, token_lists[start:start + batch_size], max_new_tokens, stop,
                                     layer, make_edit)
    return [model.tokenizer.decode(ids, skip_special_tokens=True) for ids in generated]
