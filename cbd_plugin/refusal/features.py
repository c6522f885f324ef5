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
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from ..capture import iter_residuals
from ..sae.metrics import ReconstructionStats
from .config import POOLINGS, POSITIONS


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
        rendered = tokenizer.apply_chat_template([{"role": "user", "content": content}], tokenize=False,
                                                 add_generation_prompt=True)
        special = False  # the template writes BOS itself
    else:
        rendered, special = content, True
    start_char = rendered.rfind(content)
    if start_char < 0:
        raise ValueError(f"chat_prompt: the chat template changed the prompt text {content[:60]!r}")
    encode = lambda s: tokenizer(s, add_special_tokens=special)["input_ids"]  # noqa: E731
    ids, before, upto = encode(rendered), encode(rendered[:start_char]), encode(rendered[:start_char + len(content)])
    if ids[:len(upto)] != upto or len(upto) <= len(before):
        raise ValueError(f"chat_prompt: the content of {content[:60]!r} does not end on a token boundary")
    return ChatPrompt(ids, len(before), len(upto))


def read_positions(prompt: ChatPrompt, completion_ids: Sequence[int], positions: str,
                   n_response_tokens: int) -> tuple[list[int], np.ndarray]:
    """The token ids to run and a boolean mask of the positions to pool (see the module docstring)."""
    mask = np.zeros(len(prompt.ids), dtype=bool)
    if positions == "last_instruction":
        mask[prompt.content_end - 1] = True
        return prompt.ids, mask
    if positions == "last_prompt":
        mask[-1] = True
        return prompt.ids, mask
    if positions == "all_prompt":
        mask[prompt.content_start:prompt.content_end] = True
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
    SAE is trained on: its dead fraction is measured there). Memory: O(tokens kept x d) per SAE layer.
    """

    pooled: dict[int, np.ndarray]
    read_acts: dict[int, torch.Tensor]
    read_prompt: np.ndarray
    prompt_acts: dict[int, torch.Tensor]
    n_positions: np.ndarray


def _pool(values: torch.Tensor, groups: torch.Tensor, n_groups: int, pooling: str) -> torch.Tensor:
    """Mean or max of ``values`` rows per group id in ``[0, n_groups)`` (every group non-empty)."""
    out = torch.zeros(n_groups, values.shape[1], dtype=values.dtype)
    index = groups[:, None].expand_as(values)
    if pooling == "mean":
        counts = torch.bincount(groups, minlength=n_groups).clamp(min=1).to(values.dtype)
        return out.scatter_add_(0, index, values) / counts[:, None]
    if pooling == "max":
        return out.fill_(-torch.inf).scatter_reduce_(0, index, values, reduce="amax")
    raise ValueError(f"pooling must be one of {POOLINGS}, got {pooling!r}")


@torch.no_grad()
def capture(model, inputs: Sequence[Sequence[int]], masks: Sequence[np.ndarray], layers: Sequence[int],
            sae_layers: Sequence[int], pooling: str = "mean", batch_size: int = 16,
            prompt_masks: Sequence[np.ndarray] | None = None) -> Capture:
    """Run ``inputs`` (token-id lists) through ``model`` once: pool the residual over the masked positions at
    every layer in ``layers``, and keep the masked tokens (and the ``prompt_masks`` tokens, if given) at
    ``sae_layers``."""
    n = len(inputs)
    all_layers = sorted(set(layers) | set(sae_layers))
    labels = {"read": list(masks)} | ({"prompt": list(prompt_masks)} if prompt_masks is not None else {})
    pooled = {layer: [None] * n for layer in all_layers}
    read_acts, prompt_acts = {l: [] for l in sae_layers}, {l: [] for l in sae_layers}
    read_prompt = []
    for batch in iter_residuals(model, [list(ids) for ids in inputs], all_layers, batch_size=batch_size,
                                token_labels=labels):
        keep = batch.meta["read"].astype(bool)
        prompt_ids = batch.meta["prompt_id"][keep]
        present, groups = np.unique(prompt_ids, return_inverse=True)
        groups_t = torch.from_numpy(groups)
        read_prompt.append(prompt_ids)
        for layer in all_layers:
            x = batch.acts[layer][torch.from_numpy(keep)]
            for row, value in zip(present, _pool(x, groups_t, len(present), pooling).numpy()):
                pooled[layer][row] = value
            if layer in read_acts:
                read_acts[layer].append(x)
                if prompt_masks is not None:
                    prompt_acts[layer].append(batch.acts[layer][torch.from_numpy(batch.meta["prompt"].astype(bool))])
    return Capture({l: np.stack(v) for l, v in pooled.items()}, {l: torch.cat(v) for l, v in read_acts.items()},
                   np.concatenate(read_prompt),
                   {l: torch.cat(v) for l, v in prompt_acts.items() if v},
                   np.array([int(m.sum()) for m in masks]))


@torch.no_grad()
def _encode(sae, acts: torch.Tensor, stats: ReconstructionStats, batch_size: int = 4096) -> torch.Tensor:
    device = next(sae.parameters()).device
    codes = []
    for start in range(0, len(acts), batch_size):
        x = acts[start:start + batch_size]
        f = sae.encode(x.to(device))
        stats.update(x, sae.decode(f).float().cpu(), f)
        codes.append(f.float().cpu())
    return torch.cat(codes) if codes else torch.zeros(0, sae.dict_size)


def encode_pooled(sae, acts: torch.Tensor, prompt_of_token: np.ndarray, n_prompts: int,
                  pooling: str) -> tuple[np.ndarray, dict]:
    """Encode token residuals with ``sae`` (encode first, then pool per prompt); returns the pooled latents
    [n_prompts, d_sae] and the SAE's FVE / L0 / dead fraction on those tokens."""
    stats = ReconstructionStats(sae.dict_size)
    codes = _encode(sae, acts, stats)
    groups = torch.from_numpy(np.asarray(prompt_of_token, dtype=np.int64))
    return _pool(codes, groups, n_prompts, pooling).numpy(), stats.result()


def reconstruction(sae, acts: torch.Tensor) -> dict:
    """FVE / L0 / dead fraction of ``sae`` on token residuals ``acts``."""
    stats = ReconstructionStats(sae.dict_size)
    _encode(sae, acts, stats)
    return stats.result()
