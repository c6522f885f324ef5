"""A word-level tokenizer over the corpus vocabulary, with Gemma's special tokens and chat template.

Word-level makes every trigger and topic word exactly one token, so token positions line up across
format-matched prompts. Like Gemma's tokenizer it prepends ``<bos>`` to plain text; the chat template writes
``<bos>`` itself, so chat strings are encoded with ``add_special_tokens=False``.
"""

from __future__ import annotations

from tokenizers import Regex, Tokenizer, models, pre_tokenizers, processors
from transformers import PreTrainedTokenizerFast

from .corpus import vocabulary

PAD, EOS, BOS, UNK = "<pad>", "<eos>", "<bos>", "<unk>"
START_OF_TURN, END_OF_TURN = "<start_of_turn>", "<end_of_turn>"
SPECIAL_TOKENS = (PAD, EOS, BOS, UNK, START_OF_TURN, END_OF_TURN)

# Gemma-2's template, trimmed of its multimodal branches: no system role, strictly alternating turns.
CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% if messages[0]['role'] == 'system' %}{{ raise_exception('System role not supported') }}{% endif %}"
    "{% for message in messages %}"
    "{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}"
    "{% endif %}"
    "{% if message['role'] == 'assistant' %}{% set role = 'model' %}"
    "{% else %}{% set role = message['role'] %}{% endif %}"
    "{{ '<start_of_turn>' + role + '\n' + message['content'] | trim + '<end_of_turn>\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<start_of_turn>model\n' }}{% endif %}"
)


def build_tokenizer() -> PreTrainedTokenizerFast:
    words = ["\n", "user", "model"] + [w for w in vocabulary() if w not in ("user", "model")]
    vocab = {tok: i for i, tok in enumerate(SPECIAL_TOKENS + tuple(words))}
    tok = Tokenizer(models.WordLevel(vocab, unk_token=UNK))
    # Words, single punctuation marks and newlines are tokens; other whitespace separates them.
    tok.pre_tokenizer = pre_tokenizers.Split(Regex(r"\n|\w+|[^\w\s]"), behavior="removed", invert=True)
    tok.post_processor = processors.TemplateProcessing(single=f"{BOS} $A", special_tokens=[(BOS, vocab[BOS])])
    tok.add_special_tokens(list(SPECIAL_TOKENS))
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=BOS,
        eos_token=EOS,
        unk_token=UNK,
        pad_token=PAD,
        additional_special_tokens=[START_OF_TURN, END_OF_TURN],
        chat_template=CHAT_TEMPLATE,
        padding_side="left",  # generation pads on the left; training builds its own batches
    )
