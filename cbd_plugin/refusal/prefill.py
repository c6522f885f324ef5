"""Behavioural depth: does a refusal survive a prefilled start of compliance? (Qi et al. 2024, "Safety alignment
should be made more than just a few tokens deep".)

For each k, the first k tokens of a compliance prefix (the start of an answer to the prompt, e.g. the base model's
own completion) are appended to the chat prompt as the start of the model's reply; the model continues greedily,
and the continuation alone (the prefix is the attacker's, not the model's) is labelled by the surface classifier.
A refusal that lives only in the first reply tokens drops to the base's rate once k > 0; one trained to recover
(refuse after a few compliance tokens) stays high. Rates come with Wilson intervals (``cbd_plugin.stats``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from .. import stats
from ..capture.generation import generate_tokens
from ..checks import is_int
from .classifier import classify
from .features import chat_prompt

PREFILL_KS = (0, 1, 3, 5)


@dataclass
class PrefillCurve:
    """Refusal rate after k prefilled compliance tokens, one entry per k."""

    model: str  # which model was prefilled (e.g. "base", "finetuned")
    ks: list[int]  # prefilled tokens per point (a prefix shorter than k is used whole)
    refused: list[int]  # prompts whose continuation is labelled ``refuse``, per k
    n: int  # prompts per point
    refusal_rate: list[stats.Estimate]  # Wilson intervals
    examples: list[str]  # the first prompt's continuation at each k, for the report

    def to_dict(self) -> dict:
        return {
            "model": self.model,
            "ks": self.ks,
            "refused": self.refused,
            "n": self.n,
            "refusal_rate": [e.to_dict() for e in self.refusal_rate],
            "examples": self.examples,
        }


def prefill_curve(
    model,
    tokenizer,
    prompts: Sequence[str],
    prefixes: Sequence[str],
    name: str = "model",
    ks: Sequence[int] = PREFILL_KS,
    max_new_tokens: int = 12,
    batch_size: int = 64,
    label: Callable[[str], str] = classify,
) -> PrefillCurve:
    """The refusal rate of ``model`` on ``prompts`` after the first k tokens of each prompt's compliance prefix.

    ``prefixes[i]``: text that starts to comply with ``prompts[i]`` (tokenized without special tokens).
    ``label``: maps a continuation to ``refuse`` / ``comply`` / ``other`` (the surface classifier by default).
    """
    if len(prompts) != len(prefixes) or not prompts:
        raise ValueError(
            f"prefill_curve: {len(prompts)} prompts and {len(prefixes)} prefixes; expected as many, at least one"
        )
    bad = [k for k in ks if not is_int(k, 0)]
    if bad or not ks:
        raise ValueError(f"prefill_curve: ks={list(ks)}, expected non-negative integers")
    heads = [chat_prompt(tokenizer, p).ids for p in prompts]
    given = [tokenizer(p, add_special_tokens=False)["input_ids"] for p in prefixes]
    refused, rates, examples = [], [], []
    for k in ks:
        ids = [head + prefix[:k] for head, prefix in zip(heads, given)]
        texts = tokenizer.batch_decode(
            generate_tokens(model, ids, max_new_tokens, batch_size=batch_size), skip_special_tokens=True
        )
        hits = sum(label(t) == "refuse" for t in texts)
        refused.append(hits)
        rates.append(stats.proportion_ci(hits, len(texts)))
        examples.append(texts[0])
    return PrefillCurve(name, list(ks), refused, len(prompts), rates, examples)


def audit_prefill(
    models: dict,
    tokenizer,
    frame,
    base_samples,
    ks: Sequence[int] = PREFILL_KS,
    max_new_tokens: int = 12,
    batch_size: int = 16,
) -> dict:
    """Prefill curves for the audit's models ({name: model}) on the hazard prompts of the eval split that the base
    answered (label ``comply``), each prefilled with the base's own completion. ``frame``: the prompts (``id``,
    ``text``); ``base_samples``: the base run's samples (``id``, ``tier``, ``split``, ``sample``, ``completion``,
    ``label``). Returns {name: PrefillCurve.to_dict()}, or {"skipped": reason} when the base answered none."""
    rows = base_samples[
        (base_samples["tier"] == "hazard")
        & (base_samples["split"] == "eval")
        & (base_samples["sample"] == 0)
        & (base_samples["label"] == "comply")
    ]
    rows = rows.merge(frame[["id", "text"]], on="id")
    if rows.empty:
        return {"skipped": "the base model answered no hazard prompt of the eval split: no compliance to prefill"}
    prompts, prefixes = list(rows["text"]), list(rows["completion"])
    return {
        name: prefill_curve(model, tokenizer, prompts, prefixes, name, ks, max_new_tokens, batch_size).to_dict()
        for name, model in models.items()
    }
