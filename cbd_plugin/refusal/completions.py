"""Completions to label: greedy (``temperature == 0``) or ``n_samples`` sampled at ``temperature`` (seeded, one
generator per prompt and sample, so the draws do not depend on the batch size); both with the KV cache of
:mod:`cbd_plugin.capture.generation`."""

from __future__ import annotations

from collections.abc import Sequence

from ..capture import Sampling, generate_greedy, generate_sampled


def generate_completions(
    model,
    prompt_ids: Sequence[Sequence[int]],
    max_new_tokens: int,
    temperature: float = 0.0,
    n_samples: int = 1,
    batch_size: int = 16,
    seed: int = 0,
) -> list[list[str]]:
    """``n_samples`` completions per prompt (decoded, prompt excluded); greedy gives exactly one."""
    prompts = [list(ids) for ids in prompt_ids]
    if temperature == 0:
        return [[c] for c in generate_greedy(model, prompts, max_new_tokens, batch_size=batch_size)]
    return generate_sampled(
        model, prompts, max_new_tokens, Sampling(temperature, n_samples, seed), batch_size=batch_size
    )
