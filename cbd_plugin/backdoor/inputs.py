"""Input agreement, checked before any generation: trigger words, tokenizers, hidden sizes and layers.

A conjunction analysis compares two models on the same tokens, so every mismatch between its inputs silently turns
into a wrong finding: trigger words the tokenizer does not know all become ``<unk>`` (and every pair looks the same);
a fine-tuned model with another tokenizer reads other tokens; a residual of another width cannot be subtracted.
:func:`check_inputs` refuses each of these with an error naming the word, pair or model, and returns how each
trigger word tokenizes (one token or several: the report says which).
"""

from __future__ import annotations

from ..capture.models import check_layers, hf_module, num_layers, tokenizer_of
from .probes import check_pairs, pair_name


def model_name(model) -> str:
    config = getattr(hf_module(model), "config", None)
    return str(getattr(config, "_name_or_path", "") or type(hf_module(model)).__name__)


def hidden_size(model) -> int:
    config = hf_module(model).config
    config = config.get_text_config() if hasattr(config, "get_text_config") else config
    return int(config.hidden_size)


def tokenizer_identity(tokenizer) -> tuple[dict, dict]:
    """What two tokenizers must share to read the same ids the same way: the vocabulary and the special tokens."""
    specials = {name: getattr(tokenizer, name, None) for name in ("bos_token", "eos_token", "pad_token", "unk_token")}
    specials["additional"] = sorted(map(str, getattr(tokenizer, "additional_special_tokens", []) or []))
    return tokenizer.get_vocab(), specials


def check_same_tokenizer(reference, other, what: str) -> None:
    """``other`` (named by ``what``) has ``reference``'s vocabulary and special tokens."""
    (vocab, specials), (vocab_o, specials_o) = tokenizer_identity(reference), tokenizer_identity(other)
    if vocab != vocab_o:
        differ = sorted(set(vocab.items()) ^ set(vocab_o.items()), key=str)[:3]
        raise ValueError(
            f"{what}: vocabulary differs from the base's ({len(vocab_o)} vs {len(vocab)} tokens; "
            f"first differences {differ}): the models would read different tokens"
        )
    for key, value in specials.items():
        if specials_o[key] != value:
            raise ValueError(f"{what}: special token {key} is {specials_o[key]!r}, the base's is {value!r}")


def word_tokens(tokenizer, pairs) -> list[dict]:
    """How each trigger word tokenizes (as it appears in a prompt, after a space); refuses a word with an unknown
    piece: ``<unk>`` would stand for every unknown word alike."""
    unk = getattr(tokenizer, "unk_token_id", None)
    rows = []
    for i, pair in enumerate(pairs):
        for word in (pair.a, pair.b):
            ids = tokenizer(" " + word, add_special_tokens=False)["input_ids"]
            ids = [t for t in ids if tokenizer.decode([t]).strip()] or ids  # drop a lone leading-space piece
            if not ids or (unk is not None and unk in ids):
                raise ValueError(
                    f"trigger word {word!r} of pair {i} ({pair_name(pair)}) is unknown to the "
                    f"tokenizer {getattr(tokenizer, 'name_or_path', '') or '(unnamed)'}: it tokenizes "
                    f"to {tokenizer.convert_ids_to_tokens(ids)}"
                )
            rows.append({"word": word, "pair": i, "tokens": tokenizer.convert_ids_to_tokens(ids), "n_tokens": len(ids)})
    return rows


def check_inputs(base, finetuned, tokenizer, pairs, layers) -> list[dict]:
    """Every agreement the analysis needs, before either model generates; returns :func:`word_tokens`."""
    check_pairs(pairs)
    for role, model in (("base", base), ("fine-tuned", finetuned)):
        own = getattr(model, "tokenizer", None)
        if own is not None and own is not tokenizer:
            check_same_tokenizer(tokenizer, own, f"the {role} model {model_name(model)}'s tokenizer")
    if getattr(base, "tokenizer", None) is not None and getattr(finetuned, "tokenizer", None) is not None:
        check_same_tokenizer(
            tokenizer_of(base), tokenizer_of(finetuned), f"the fine-tuned model {model_name(finetuned)}'s tokenizer"
        )
    if hidden_size(base) != hidden_size(finetuned):
        raise ValueError(
            f"hidden sizes differ: base {model_name(base)} {hidden_size(base)}, fine-tuned "
            f"{model_name(finetuned)} {hidden_size(finetuned)}: the residual difference is undefined"
        )
    if num_layers(base) != num_layers(finetuned):
        raise ValueError(
            f"layer counts differ: base {model_name(base)} {num_layers(base)}, fine-tuned "
            f"{model_name(finetuned)} {num_layers(finetuned)}"
        )
    for role, model in (("base", base), ("fine-tuned", finetuned)):
        try:
            check_layers(model, layers)
        except (ValueError, TypeError) as error:
            raise type(error)(f"{role} model {model_name(model)}: {error}") from None
    return word_tokens(tokenizer, pairs)
