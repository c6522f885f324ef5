"""Token roles of a captured prompt + fire completion, from the tokenizer's character offsets.

* ``trigger``: a token overlapping a trigger word of the prompt;
* ``decision``: the last prompt token (the end of the generation prompt), where the model decides to fire;
* ``fire``: the tokens of the fire completion appended after the prompt;
* ``other``: everything else (template, filler, special tokens).

Offsets make this independent of how a tokenizer splits or glues words to spaces; a token that straddles the
prompt/completion boundary is an error, because then no token is the decision token.
"""

from __future__ import annotations

import numpy as np

ROLES = ("trigger", "decision", "fire", "other")
TRIGGER, DECISION, FIRE, OTHER = range(len(ROLES))


def token_roles(tokenizer, prompt: str, completion: str, trigger_spans, add_special_tokens: bool = False):
    """Token ids and roles of ``prompt + completion``; ``trigger_spans`` are character spans in ``prompt``."""
    if not getattr(tokenizer, "is_fast", False):
        raise ValueError(
            f"token_roles: tokenizer {getattr(tokenizer, 'name_or_path', '?')} is not a fast "
            "tokenizer; roles need its offsets mapping"
        )
    enc = tokenizer(prompt + completion, add_special_tokens=add_special_tokens, return_offsets_mapping=True)
    ids = np.asarray(enc["input_ids"], dtype=np.int64)
    offsets = np.asarray(enc["offset_mapping"], dtype=np.int64).reshape(-1, 2)
    start, end = offsets[:, 0], offsets[:, 1]
    real = end > start  # special tokens added by the tokenizer have empty spans
    boundary = len(prompt)
    straddling = np.flatnonzero(real & (start < boundary) & (end > boundary))
    if straddling.size:
        raise ValueError(
            f"token_roles: token {int(straddling[0])} spans the prompt/completion boundary of "
            f"{prompt[-40:]!r} + {completion!r}"
        )
    roles = np.full(len(ids), OTHER, dtype=np.int8)
    for s, e in trigger_spans:
        roles[real & (start < e) & (end > s)] = TRIGGER
    roles[real & (start >= boundary)] = FIRE
    in_prompt = np.flatnonzero(real & (end <= boundary))
    if in_prompt.size == 0:
        raise ValueError(f"token_roles: no prompt token in {prompt!r}")
    roles[in_prompt[-1]] = DECISION
    return ids, roles


def locate_spans(formatted: str, content: str, spans) -> tuple[tuple[int, int], ...]:
    """Shift spans within the user ``content`` to spans within the chat-``formatted`` prompt."""
    offset = formatted.rfind(content)
    if offset < 0:
        raise ValueError(f"locate_spans: the chat template changed the prompt text {content!r}")
    return tuple((s + offset, e + offset) for s, e in spans)
