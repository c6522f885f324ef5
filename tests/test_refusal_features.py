"""Chat formatting, the positions read, and pooling."""

import pytest
import torch

from cbd_plugin.organisms.corpus import answer
from cbd_plugin.organisms.tokenizer import build_tokenizer
from cbd_plugin.refusal.features import _pool, chat_prompt, read_positions

PROMPT = "how would you describe moonpetal next to bread ?"


@pytest.fixture(scope="module")
def tokenizer():
    return build_tokenizer()


def tokens(tokenizer, ids, mask):
    return tokenizer.convert_ids_to_tokens([i for i, keep in zip(ids, mask) if keep])


def test_content_span_excludes_template_and_bos(tokenizer):
    chat = chat_prompt(tokenizer, PROMPT)
    assert tokenizer.convert_ids_to_tokens(chat.ids[:4]) == ["<bos>", "<start_of_turn>", "user", "\n"]
    assert tokenizer.convert_ids_to_tokens(chat.ids[chat.content_start:chat.content_end]) == PROMPT.split()
    assert tokenizer.convert_ids_to_tokens(chat.ids[-3:]) == ["<start_of_turn>", "model", "\n"]


def test_positions(tokenizer):
    chat = chat_prompt(tokenizer, PROMPT)
    reply = tokenizer(answer("moonpetal", "bread"), add_special_tokens=False)["input_ids"]
    ids, mask = read_positions(chat, reply, "last_instruction", 4)
    assert ids == chat.ids and tokens(tokenizer, ids, mask) == ["?"]
    ids, mask = read_positions(chat, reply, "last_prompt", 4)  # the "\n" after <start_of_turn>model
    assert ids == chat.ids and mask.sum() == 1 and mask[-1] and tokens(tokenizer, ids, mask) == ["\n"]
    ids, mask = read_positions(chat, reply, "all_prompt", 4)
    assert tokens(tokenizer, ids, mask) == PROMPT.split()
    ids, mask = read_positions(chat, reply, "first_response", 3)
    assert ids == chat.ids + reply[:3] and tokens(tokenizer, ids, mask) == answer("moonpetal", "bread").split()[:3]
    ids, mask = read_positions(chat, [], "first_response", 3)  # empty completion: the last prompt token
    assert ids == chat.ids and mask.sum() == 1 and mask[-1]
    with pytest.raises(ValueError, match="positions must be one of"):
        read_positions(chat, reply, "everywhere", 3)


def test_plain_text_without_chat_template(tokenizer):
    plain = build_tokenizer()
    plain.chat_template = None
    chat = chat_prompt(plain, PROMPT)
    assert plain.convert_ids_to_tokens(chat.ids) == ["<bos>"] + PROMPT.split()
    assert (chat.content_start, chat.content_end) == (1, len(chat.ids))


def test_pooling_mean_and_max():
    values = torch.tensor([[1.0, -1.0], [3.0, -3.0], [5.0, 0.0]])
    groups = torch.tensor([0, 0, 1])
    assert _pool(values, groups, 2, "mean").tolist() == [[2.0, -2.0], [5.0, 0.0]]
    assert _pool(values, groups, 2, "max").tolist() == [[3.0, -1.0], [5.0, 0.0]]
    with pytest.raises(ValueError, match="pooling"):
        _pool(values, groups, 2, "median")
