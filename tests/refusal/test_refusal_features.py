"""Chat formatting, the positions read, and pooling (the streamed sparse path against the dense one)."""

import numpy as np
import pytest
import torch

from cbd_plugin.capture import TokenRows
from cbd_plugin.organisms.corpus import answer
from cbd_plugin.organisms.tokenizer import build_tokenizer
from cbd_plugin.refusal.features import _pool, chat_prompt, encode_pooled, read_positions, reconstruction
from cbd_plugin.sae import ReconstructionStats, ReLUSAE, TopKSAE

PROMPT = "how would you describe moonpetal next to bread ?"


@pytest.fixture(scope="module")
def tokenizer():
    return build_tokenizer()


def tokens(tokenizer, ids, mask):
    return tokenizer.convert_ids_to_tokens([i for i, keep in zip(ids, mask) if keep])


def test_content_span_excludes_template_and_bos(tokenizer):
    chat = chat_prompt(tokenizer, PROMPT)
    assert tokenizer.convert_ids_to_tokens(chat.ids[:4]) == ["<bos>", "<start_of_turn>", "user", "\n"]
    assert tokenizer.convert_ids_to_tokens(chat.ids[chat.content_start : chat.content_end]) == PROMPT.split()
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
    assert plain.convert_ids_to_tokens(chat.ids) == ["<bos>", *PROMPT.split()]
    assert (chat.content_start, chat.content_end) == (1, len(chat.ids))


def test_pooling_mean_and_max():
    values = torch.tensor([[1.0, -1.0], [3.0, -3.0], [5.0, 0.0]])
    groups = torch.tensor([0, 0, 1])
    assert _pool(values, groups, 2, "mean").tolist() == [[2.0, -2.0], [5.0, 0.0]]
    assert _pool(values, groups, 2, "max").tolist() == [[3.0, -1.0], [5.0, 0.0]]
    with pytest.raises(ValueError, match="pooling"):
        _pool(values, groups, 2, "median")


# ---------------------------------------------------------------- streamed sparse encode + pool vs the dense path


@torch.no_grad()
def dense_reference(sae, acts, groups, n_prompts, pooling):
    """The former path: every token's dense codes at once, pooled per prompt, stats on the dense codes."""
    stats = ReconstructionStats(sae.dict_size)
    codes = sae.encode(acts)
    stats.update(acts, sae.decode(codes), codes)
    return _pool(codes.float(), torch.as_tensor(groups), n_prompts, pooling).numpy(), stats.result()


class DenseOnly(torch.nn.Module):
    """An SAE with only encode/decode, whose codes can be negative (the fallbacks of the sparse path)."""

    def __init__(self, d, dict_size):
        super().__init__()
        self.dict_size = dict_size
        self.W = torch.nn.Parameter(torch.randn(d, dict_size, generator=torch.Generator().manual_seed(1)))

    def encode(self, x):
        pre = x @ self.W
        return torch.where(pre.abs() > 1.5, pre, torch.zeros_like(pre))  # sparse, either sign

    def decode(self, f):
        return f @ self.W.T / self.dict_size


def saes():
    torch.manual_seed(0)
    topk = TopKSAE(16, 48, 4)
    relu = ReLUSAE(16, 48)
    with torch.no_grad():
        relu.W_enc.normal_()
        relu.W_dec.normal_()
        relu.b_enc.fill_(-1.0)
    return {"topk": topk, "relu": relu, "dense_only_signed": DenseOnly(16, 48)}


@pytest.mark.parametrize("name", ["topk", "relu", "dense_only_signed"])
@pytest.mark.parametrize("pooling", ["mean", "max"])
def test_streamed_sparse_pooling_equals_the_dense_path(name, pooling):
    sae = saes()[name]
    lengths = [1, 5, 3, 9, 0, 2, 7]  # prompt 4 reads no token; batches of 4 split prompts 1, 3 and 6
    groups = np.repeat(np.arange(len(lengths)), lengths)
    acts = torch.randn(len(groups), 16, generator=torch.Generator().manual_seed(2))
    want, want_stats = dense_reference(sae, acts, groups, len(lengths), pooling)
    for batch_size in (4, 1, 1000):
        got, got_stats = encode_pooled(sae, acts, groups, len(lengths), pooling, batch_size=batch_size)
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)
        assert got_stats["n_tokens"] == want_stats["n_tokens"] and got_stats["mean_l0"] == want_stats["mean_l0"]
        assert got_stats["dead_fraction"] == want_stats["dead_fraction"]
        assert got_stats["fve"] == pytest.approx(want_stats["fve"], rel=1e-6, abs=1e-6)
        assert reconstruction(sae, acts, batch_size=batch_size) == got_stats
    if name == "dense_only_signed":
        assert (want < 0).any() and np.isneginf(want[4]).all() == (pooling == "max")


def test_sparse_pooling_rejects_an_unknown_pooling():
    with pytest.raises(ValueError, match="pooling"):
        encode_pooled(saes()["topk"], torch.randn(3, 16), np.array([0, 0, 1]), 2, "median")


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_token_rows_on_disk_read_back_bit_for_bit(dtype):
    parts = [torch.randn(n, 16).to(dtype) for n in (3, 0, 5, 1)]
    rows = TokenRows(16, dtype)
    for part in parts:
        rows.append(part)
    whole = torch.cat(parts)
    assert len(rows) == 9
    for sl in (slice(0, 9), slice(2, 7), slice(8, 20), slice(5, 5), slice(None)):
        assert torch.equal(rows[sl], whole[sl])
    with pytest.raises(ValueError, match="expected"):
        rows.append(torch.zeros(2, 8, dtype=dtype))
    with pytest.raises(IndexError):
        rows[::2]


def test_encoding_token_rows_equals_encoding_the_tensor():
    sae = saes()["topk"]
    acts, groups = torch.randn(11, 16), np.array([0] * 4 + [1] * 7)
    rows = TokenRows(16, torch.float32)
    rows.append(acts[:6])
    rows.append(acts[6:])
    for pooling in ("mean", "max"):
        got, got_stats = encode_pooled(sae, rows, groups, 2, pooling, batch_size=3)
        want, want_stats = encode_pooled(sae, acts, groups, 2, pooling, batch_size=3)
        assert np.array_equal(got, want) and got_stats == want_stats
