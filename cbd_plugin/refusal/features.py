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
first, then pool) and, for the probe baseline, to the raw residuals. Captures stream batch by batch through
:func:`cbd_plugin.capture.iter_residuals`; only pooled vectors are kept, so memory is O(prompts x d_sae).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
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
class PooledFeatures:
    """``raw`` [n_prompts, d] pooled residuals; ``latents[name]`` [n_prompts, d_sae] pooled latents per SAE;
    ``reconstruction[name]`` its FVE / L0 / dead fraction on the pooled positions; ``n_positions`` tokens pooled
    per prompt."""

    raw: np.ndarray
    latents: dict[str, np.ndarray]
    reconstruction: dict[str, dict]
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
def pool_features(model, inputs: Sequence[Sequence[int]], masks: Sequence[np.ndarray], layer: int,
                  saes: Mapping[str, torch.nn.Module], pooling: str = "mean", batch_size: int = 16) -> PooledFeatures:
    """Run ``inputs`` (token-id lists) through ``model``, keep the layer-``layer`` residual at the masked
    positions, encode it with each SAE and pool per prompt. Batches are processed as they stream."""
    n = len(inputs)
    raw, latents = [None] * n, {name: [None] * n for name in saes}
    recon = {name: ReconstructionStats(sae.dict_size) for name, sae in saes.items()}
    for batch in iter_residuals(model, [list(ids) for ids in inputs], [layer], batch_size=batch_size,
                                token_labels={"read": list(masks)}):
        keep = torch.from_numpy(batch.meta["read"].astype(bool))
        x = batch.acts[layer][keep]
        prompt_ids = batch.meta["prompt_id"][keep.numpy()]
        present, groups = np.unique(prompt_ids, return_inverse=True)
        groups = torch.from_numpy(groups)
        pooled_raw = _pool(x, groups, len(present), pooling)
        encoded = {}
        for name, sae in saes.items():
            device = next(sae.parameters()).device
            f = sae.encode(x.to(device))
            recon[name].update(x, sae.decode(f).float().cpu(), f)
            f = f.float().cpu()
            encoded[name] = _pool(f, groups, len(present), pooling)
        for row, pid in enumerate(present):
            raw[pid] = pooled_raw[row].numpy()
            for name in saes:
                latents[name][pid] = encoded[name][row].numpy()
    return PooledFeatures(np.stack(raw), {name: np.stack(v) for name, v in latents.items()},
                          {name: r.result() for name, r in recon.items()},
                          np.array([int(m.sum()) for m in masks]))
