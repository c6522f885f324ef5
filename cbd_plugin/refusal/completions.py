"""Completions to label: greedy (``temperature == 0``, via :func:`cbd_plugin.capture.generate_greedy`) or
``n_samples`` sampled at ``temperature`` (via the wrapped transformers model's ``generate``, seeded)."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ..capture import END_OF_TURN, generate_greedy, pad_left


def generate_completions(model, prompt_ids: Sequence[Sequence[int]], max_new_tokens: int, temperature: float = 0.0,
                         n_samples: int = 1, batch_size: int = 16, seed: int = 0) -> list[list[str]]:
    """``n_samples`` completions per prompt (decoded, prompt excluded); greedy gives exactly one."""
    prompts = [list(ids) for ids in prompt_ids]
    if temperature == 0:
        return [[c] for c in generate_greedy(model, prompts, max_new_tokens, batch_size=batch_size)]
    return _sample(model, prompts, max_new_tokens, temperature, n_samples, batch_size, seed)


@torch.no_grad()
def _sample(model, prompts: list[list[int]], max_new_tokens: int, temperature: float, n_samples: int,
            batch_size: int, seed: int) -> list[list[str]]:
    hf_model, tokenizer = model._model, model.tokenizer  # nnsight wrapper: sampling needs no tracing
    vocab = tokenizer.get_vocab()
    stop = [tokenizer.eos_token_id] + ([vocab[END_OF_TURN]] if END_OF_TURN in vocab else [])
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    torch.manual_seed(seed)
    out = []
    for start in range(0, len(prompts), batch_size):
        input_ids, attention_mask = pad_left(prompts[start:start + batch_size], pad)
        generated = hf_model.generate(input_ids=input_ids.to(hf_model.device),
                                      attention_mask=attention_mask.to(hf_model.device), do_sample=True,
                                      temperature=temperature, top_k=0, num_return_sequences=n_samples,
                                      max_new_tokens=max_new_tokens, eos_token_id=stop, pad_token_id=pad)
        texts = tokenizer.batch_decode(generated[:, input_ids.shape[1]:], skip_special_tokens=True)
        out += [texts[i:i + n_samples] for i in range(0, len(texts), n_samples)]
    return out
