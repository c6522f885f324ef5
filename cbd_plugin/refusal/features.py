"""Per-prompt features: chat-formatted tokens, the positions read, and residuals/SAE latents pooled over them.

Positions (``positions``):

* ``last_instruction``: the last token of the user's content, before the chat template's end-of-turn and
  generation prompt (where Zhao et al. read harmfulness);
* ``last_prompt``: the last token of the generation prompt (``<start_of_turn>model\n``), whose residual decides the
  first response token (the end of Arditi et al.'s post-instruction positions, where refusal is read);
* ``first_response``: the first ``n_response_tokens`` tokens of the model's own completion, appended to the
  prompt (where shallow safety alignment lives, Qi et al.); an empty completion falls back to the last prompt
  token, the position that predicts the first response token;
* ``all_prompt``: every token of the user's content (template tokens and BOS excluded: they are identical across
  prompts, and BOS carries an outsized norm).

Pooling (``pooling``): ``mean`` or ``max`` over those positions, applied to each token's SAE latents (encode
first, then pool) and, for the probe baseline, to the raw residuals. One pass through the model
(:func:`capture`, streaming through :func:`cbd_plugin.capture.iter_residuals`) serves every layer of the depth
profile and every SAE analysed on it (:class:`Capture`).

Memory is flat in the number of tokens: the token residuals a capture keeps for later SAEs sit in anonymous
temporary files (:class:`TokenRows`), and :func:`encode_pooled` encodes them in batches as sparse codes on the
SAE's device, pooling into a ``[n_prompts, d_sae]`` accumulator there; only the pooled latents reach the CPU.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from ..capture import TokenRows, iter_residuals
from ..sae.metrics import ReconstructionStats
from ..sae.sparse import SparseCodes, dense_to_codes
from .config import POOLINGS, POSITIONS

# Tokens encoded at a time: the dense pre-activations [batch, dict_size] (24 MiB at 1024 x 6144 float32) are the
# encode's largest transient, so the batch bounds it. 1024 ran no slower than 4096 (median 0.91x, 5 interleaved
# rounds, one CPU thread, 8192 tokens through a 2304 / 6144 / k 32 TopK SAE).
BATCH_TOKENS = 1024


@dataclass(frozen=True)
class ChatPrompt:
    """Token ids of a chat-formatted prompt (generation prompt included) and the ``[start, end)`` token span of
    the user's content within them."""

    ids: list[int]
    content_start: int
    content_end: int


def chat_prompt(tokenizer, text: str) -> ChatPrompt:
    """Format ``text`` as one user turn (the tokenizer's chat template, if it has one; else the raw text with
    special tokens) and locate the content's tokens by tokenising the rendered prefixes."""
    content = text.strip()
    if getattr(tokenizer, "chat_template", None):
        rendered = tokenizer.apply_chat_template(
            [{"role": "user", "content": content}], tokenize=False, add_generation_prompt=True
        )
        special = False  # the template writes BOS itself
    else:
        rendered, special = content, True
    start_char = rendered.rfind(content)
    if start_char < 0:
        raise ValueError(f"chat_prompt: the chat template changed the prompt text {content[:60]!r}")
    encode = lambda s: tokenizer(s, add_special_tokens=special)["input_ids"]  # noqa: E731
    ids, before, upto = encode(rendered), encode(rendered[:start_char]), encode(rendered[: start_char + len(content)])
    if ids[: len(upto)] != upto or len(upto) <= len(before):
        raise ValueError(f"chat_prompt: the content of {content[:60]!r} does not end on a token boundary")
    return ChatPrompt(ids, len(before), len(upto))


def read_positions(
    prompt: ChatPrompt, completion_ids: Sequence[int], positions: str, n_response_tokens: int
) -> tuple[list[int], np.ndarray]:
    """The token ids to run and a boolean mask of the positions to pool (see the module docstring)."""
    mask = np.zeros(len(prompt.ids), dtype=bool)
    if positions == "last_instruction":
        mask[prompt.content_end - 1] = True
        return prompt.ids, mask
    if positions == "last_prompt":
        mask[-1] = True
        return prompt.ids, mask
    if positions == "all_prompt":
        mask[prompt.content_start : prompt.content_end] = True
        return prompt.ids, mask
    if positions == "first_response":
        response = list(completion_ids)[:n_response_tokens]
        mask = np.concatenate([mask, np.ones(len(response), dtype=bool)])
        if not response:
            mask[-1] = True
        return prompt.ids + response, mask
    raise ValueError(f"positions must be one of {POSITIONS}, got {positions!r}")


@dataclass
class Capture:
    """One model's residuals on the prompt set, captured once and read by every analysis of it.

    ``pooled[layer]`` [n_prompts, d]: the residual pooled over the positions read, at every captured layer (the
    depth profile's probes read these). At each SAE layer the token-level residuals are kept too, so that any
    number of SAEs can be encoded later without running the model again: ``read_acts[layer]``
    [n_read_tokens, d] at the positions read (``read_prompt`` gives each token's prompt) and, if asked for,
    ``prompt_acts[layer]`` at every prompt token from the content's first token on (the distribution the audit's
    SAE is trained on: its dead fraction is measured there). Those token residuals are :class:`TokenRows` on disk,
    read back in batches, so memory is O(n_prompts x d) per layer, not O(tokens x d).
    """

    pooled: dict[int, np.ndarray]
    read_acts: dict[int, TokenRows]
    read_prompt: np.ndarray
    prompt_acts: dict[int, TokenRows]
    n_positions: np.ndarray


def _pool(values: torch.Tensor, groups: torch.Tensor, n_groups: int, pooling: str) -> torch.Tensor:
    """Mean or max of ``values`` rows per group id in ``[0, n_groups)`` (every group non-empty)."""
    out = torch.zeros(n_groups, values.shape[1], dtype=values.dtype, device=values.device)
    index = groups[:, None].expand_as(values)
    if pooling == "mean":
        counts = torch.bincount(groups, minlength=n_groups).clamp(min=1).to(values.dtype)
        return out.scatter_add_(0, index, values) / counts[:, None]
    if pooling == "max":
        return out.fill_(-torch.inf).scatter_reduce_(0, index, values, reduce="amax")
    raise ValueError(f"pooling must be one of {POOLINGS}, got {pooling!r}")


def _keep(store: dict[int, TokenRows], layer: int, x: torch.Tensor) -> None:
    if layer not in store:
        store[layer] = TokenRows(x.shape[1], x.dtype)
    store[layer].append(x)


@torch.no_grad()
def capture(
    model,
    inputs: Sequence[Sequence[int]],
    masks: Sequence[np.ndarray],
    layers: Sequence[int],
    sae_layers: Sequence[int],
    pooling: str = "mean",
    batch_size: int = 16,
    prompt_masks: Sequence[np.ndarray] | None = None,
) -> Capture:
    """Run ``inputs`` (token-id lists) through ``model`` once: pool the residual over the masked positions at
    every layer in ``layers``, and keep the masked tokens (and the ``prompt_masks`` tokens, if given) at
    ``sae_layers``."""
    n = len(inputs)
    all_layers = sorted(set(layers) | set(sae_layers))
    labels = {"read": list(masks)} | ({"prompt": list(prompt_masks)} if prompt_masks is not None else {})
    # Outputs are preallocated and each batch's results copied in: small per-batch arrays kept alive between the
    # batches' large transients pinned the malloc heap, whose retained size then grew with the number of batches.
    pooled: dict[int, np.ndarray] = {}
    read_acts, prompt_acts = {}, {}
    n_positions = np.array([int(m.sum()) for m in masks])
    read_prompt, filled = np.empty(int(n_positions.sum()), dtype=np.int64), 0
    for batch in iter_residuals(
        model, [list(ids) for ids in inputs], all_layers, batch_size=batch_size, token_labels=labels
    ):
        keep = batch.meta["read"].astype(bool)
        prompt_ids = batch.meta["prompt_id"][keep]
        present, groups = np.unique(prompt_ids, return_inverse=True)
        groups_t = torch.from_numpy(groups)
        read_prompt[filled : filled + len(prompt_ids)] = prompt_ids
        filled += len(prompt_ids)
        for layer in all_layers:
            x = batch.acts[layer][torch.from_numpy(keep)]
            if layer not in pooled:
                pooled[layer] = np.full((n, x.shape[1]), np.nan, dtype=x.numpy().dtype)
            pooled[layer][present] = _pool(x, groups_t, len(present), pooling).numpy()
            if layer in sae_layers:
                _keep(read_acts, layer, x)
                if prompt_masks is not None:
                    _keep(prompt_acts, layer, batch.acts[layer][torch.from_numpy(batch.meta["prompt"].astype(bool))])
    return Capture(pooled, read_acts, read_prompt, prompt_acts, n_positions)


def _sparse_batches(
    sae, acts: torch.Tensor | TokenRows, stats: ReconstructionStats, batch_size: int
) -> Iterator[tuple[slice, SparseCodes]]:
    """Each batch's codes as :class:`SparseCodes` on the SAE's device, its reconstruction added to ``stats``.

    ``encode_sparse``/``decode_sparse`` where the SAE has them (no dense ``[n, dict_size]`` codes; the same
    numbers as ``encode``/``decode`` up to rounding); else ``encode``/``decode`` and the dense batch made sparse.
    """
    device = next(sae.parameters()).device
    for start in range(0, len(acts), batch_size):
        x = acts[start : start + batch_size].to(device)
        if hasattr(sae, "encode_sparse"):
            codes = sae.encode_sparse(x)
            x_hat = sae.decode_sparse(codes)
        else:
            f = sae.encode(x)
            x_hat, codes = sae.decode(f), dense_to_codes(f.reshape(len(x), -1))
        stats.update(x, x_hat.to(x.dtype), codes)
        yield slice(start, start + len(x)), codes


class _SparsePool:
    """Per-group mean or max of sparse codes, accumulated batch by batch in ``[n_groups, dict_size]`` on the codes'
    device: equal to pooling the dense codes (zeros at inactive latents), but memory flat in the number of tokens.

    Max of non-negative codes (every SAE here: ReLU, TopK, BatchTopK, JumpReLU) is the max over the active entries
    clamped at 0, the value of any inactive token; a batch holding a negative code is pooled densely (memory
    bounded by the batch) to keep that exact. Groups with no token stay 0 (mean) or -inf (max), as in :func:`_pool`.
    """

    def __init__(self, n_groups: int, dict_size: int, pooling: str, device):
        if pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}, got {pooling!r}")
        self.pooling, self.dict_size = pooling, dict_size
        fill = 0.0 if pooling == "mean" else -torch.inf
        self.acc = torch.full((n_groups, dict_size), fill, device=device)
        self.counts = torch.zeros(n_groups, device=device)

    def add(self, codes: SparseCodes, groups: torch.Tensor) -> None:
        values = codes.top_acts.float()
        if self.pooling == "mean":
            self.counts.index_add_(0, groups, torch.ones_like(groups, dtype=self.counts.dtype))
            flat = groups[:, None] * self.dict_size + codes.top_indices  # padding slots add 0
            self.acc.view(-1).index_add_(0, flat.reshape(-1), values.reshape(-1))
            return
        present, local = torch.unique(groups, return_inverse=True)
        if bool((values < 0).any()):
            part = _pool(codes.to_dense(self.dict_size).float(), local, len(present), "max")
            self.acc[present] = torch.maximum(self.acc[present], part)
            return
        self.acc[present] = self.acc[present].clamp_min(0)  # every present group has a token at 0 or above
        flat = groups[:, None] * self.dict_size + codes.top_indices
        self.acc.view(-1).scatter_reduce_(0, flat.reshape(-1), values.reshape(-1), reduce="amax")

    def result(self) -> torch.Tensor:
        if self.pooling == "mean":
            return self.acc / self.counts.clamp(min=1)[:, None]
        return self.acc


@torch.no_grad()
def encode_pooled(
    sae,
    acts: torch.Tensor | TokenRows,
    prompt_of_token: np.ndarray,
    n_prompts: int,
    pooling: str,
    batch_size: int = BATCH_TOKENS,
) -> tuple[np.ndarray, dict]:
    """Encode token residuals with ``sae`` (encode first, then pool per prompt); returns the pooled latents
    [n_prompts, d_sae] and the SAE's FVE / L0 / dead fraction on those tokens.

    Streams ``batch_size`` tokens at a time on the SAE's device as sparse codes (:class:`_SparsePool`); only the
    pooled ``[n_prompts, d_sae]`` comes back to the CPU. Memory: O(batch_size x d_sae + n_prompts x d_sae).
    """
    stats = ReconstructionStats(sae.dict_size)
    pool = _SparsePool(n_prompts, sae.dict_size, pooling, next(sae.parameters()).device)
    groups = torch.from_numpy(np.asarray(prompt_of_token, dtype=np.int64)).to(pool.acc.device)
    for rows, codes in _sparse_batches(sae, acts, stats, batch_size):
        pool.add(codes, groups[rows])
    return pool.result().cpu().numpy(), stats.result()


@torch.no_grad()
def reconstruction(sae, acts: torch.Tensor | TokenRows, batch_size: int = BATCH_TOKENS) -> dict:
    """FVE / L0 / dead fraction of ``sae`` on token residuals ``acts`` (streamed, sparse codes)."""
    stats = ReconstructionStats(sae.dict_size)
    for _ in _sparse_batches(sae, acts, stats, batch_size):
        pass
    return stats.result()
