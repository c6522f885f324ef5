"""Correctness of cbd_plugin.capture on a tiny random Gemma2 and a word-level tokenizer built here."""

import copy
import json

import nnsight
import numpy as np
import pytest
import torch
from tokenizers import Tokenizer
from tokenizers.models import WordLevel
from tokenizers.pre_tokenizers import WhitespaceSplit
from tokenizers.processors import TemplateProcessing
from transformers import Gemma2Config, Gemma2ForCausalLM, PreTrainedTokenizerFast

from cbd_plugin import capture as cap

SPECIALS = ["<pad>", "<bos>", "<eos>", "<unk>", "<end_of_turn>"]
VOCAB = 100
N_LAYERS = 3
PROMPTS = ["w1 w2 w3 w4 w5 w6 w7", "w8 w9", "w10 w11 w12 w13", "w14"]


def make_tokenizer(words):
    vocab = {t: i for i, t in enumerate(SPECIALS + words)}
    tok = Tokenizer(WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = WhitespaceSplit()
    tok.post_processor = TemplateProcessing(single="<bos> $A", special_tokens=[("<bos>", 1)])
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="<pad>", bos_token="<bos>", eos_token="<eos>", unk_token="<unk>"
    )


def make_gemma(seed):
    torch.manual_seed(seed)
    config = Gemma2Config(
        vocab_size=VOCAB,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=N_LAYERS,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=16,
        max_position_embeddings=64,
        initializer_range=0.2,
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=2,
        attn_implementation="eager",
    )
    return Gemma2ForCausalLM(config).eval()


class _LayersOutput:
    """The slice of nnterp's accessor that capture relies on (nnterp is not installed here)."""

    def __init__(self, model):
        self.model = model

    def __getitem__(self, layer):
        return self.model.model.layers[layer].output

    def __setitem__(self, layer, value):
        self.model.model.layers[layer].output = value


class NnterpLike(nnsight.LanguageModel):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.num_layers = len(self.model.layers)
        self.layers_output = _LayersOutput(self)


@pytest.fixture(scope="module")
def tiny():
    tokenizer = make_tokenizer([f"w{i}" for i in range(VOCAB - len(SPECIALS))])
    hf = make_gemma(0)
    finetuned_hf = copy.deepcopy(hf)
    with torch.no_grad():
        for p in finetuned_hf.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return {
        "tokenizer": tokenizer,
        "hf": hf,
        "model": nnsight.LanguageModel(hf, tokenizer=tokenizer),
        "finetuned": nnsight.LanguageModel(finetuned_hf, tokenizer=tokenizer),
        "nnterp_like": NnterpLike(hf, tokenizer=tokenizer),
    }


def reference_residuals(hf, tokenizer, prompt):
    """Unpadded plain-transformers forward: decoder-layer outputs via forward hooks, plus output_hidden_states."""
    outs = {}
    hooks = [
        layer.register_forward_hook(lambda m, i, o, k=k: outs.__setitem__(k, o[0] if isinstance(o, tuple) else o))
        for k, layer in enumerate(hf.model.layers)
    ]
    try:
        with torch.no_grad():
            ids = tokenizer(prompt, return_tensors="pt")["input_ids"]
            hidden = hf(input_ids=ids, output_hidden_states=True).hidden_states
    finally:
        for h in hooks:
            h.remove()
    return {k: v[0] for k, v in outs.items()}, [h[0] for h in hidden]


@pytest.mark.parametrize("batch_size", [1, 4])  # 1: no padding; 4: prompts of 2..8 tokens padded together
def test_capture_equals_transformers_forward(tiny, batch_size):
    layers = list(range(N_LAYERS))
    got = cap.capture_residuals(tiny["model"], PROMPTS, layers, batch_size=batch_size)
    for pid, prompt in enumerate(PROMPTS):
        hooked, hidden = reference_residuals(tiny["hf"], tiny["tokenizer"], prompt)
        rows = got.meta["prompt_id"] == pid
        for layer in layers:
            torch.testing.assert_close(got.acts[layer][rows], hooked[layer], atol=1e-5, rtol=0)
            if layer < N_LAYERS - 1:  # hidden_states[i + 1] is decoder layer i's output ...
                torch.testing.assert_close(got.acts[layer][rows], hidden[layer + 1], atol=1e-5, rtol=0)
        # ... except the last, which HF Gemma2 reports after the final norm.
        with torch.no_grad():
            torch.testing.assert_close(
                tiny["hf"].model.norm(got.acts[N_LAYERS - 1][rows]), hidden[-1], atol=1e-5, rtol=0
            )


def test_metadata_and_labels(tiny):
    token_lists = tiny["tokenizer"](PROMPTS)["input_ids"]
    flags = [[int(t % 2) for t in ids] for ids in token_lists]
    got = cap.capture_residuals(
        tiny["model"],
        PROMPTS,
        [1],
        batch_size=3,
        labels={"group": ["a", "b", "a", "c"], "score": [0.5, 1.5, 2.5, 3.5]},
        token_labels={"odd": flags},
    )
    assert len(got) == sum(map(len, token_lists)) == got.acts[1].shape[0]
    np.testing.assert_array_equal(got.meta["token_id"], np.concatenate(token_lists))
    np.testing.assert_array_equal(got.meta["position"], np.concatenate([np.arange(len(t)) for t in token_lists]))
    np.testing.assert_array_equal(got.meta["prompt_id"], np.repeat(np.arange(4), list(map(len, token_lists))))
    np.testing.assert_array_equal(got.meta["group"], np.repeat(["a", "b", "a", "c"], list(map(len, token_lists))))
    np.testing.assert_array_equal(got.meta["score"], np.repeat([0.5, 1.5, 2.5, 3.5], list(map(len, token_lists))))
    np.testing.assert_array_equal(got.meta["odd"], np.concatenate(flags))


def test_token_id_prompts_and_nnterp_accessor(tiny):
    by_text = cap.capture_residuals(tiny["model"], PROMPTS, [0, 2], batch_size=4)
    by_ids = cap.capture_residuals(tiny["nnterp_like"], tiny["tokenizer"](PROMPTS)["input_ids"], [2, 0], batch_size=2)
    for layer in (0, 2):
        torch.testing.assert_close(by_ids.acts[layer], by_text.acts[layer], atol=1e-5, rtol=0)
    np.testing.assert_array_equal(by_ids.meta["token_id"], by_text.meta["token_id"])


def test_paired_capture(tiny):
    pairs = list(
        cap.iter_paired_residuals(
            tiny["model"], tiny["finetuned"], PROMPTS, [1], batch_size=3, labels={"group": [0, 1, 0, 1]}
        )
    )
    assert len(pairs) == 2
    for base, ft in pairs:
        assert base.meta.keys() == ft.meta.keys()
        for key in base.meta:
            np.testing.assert_array_equal(base.meta[key], ft.meta[key])
        assert not torch.allclose(base.acts[1], ft.acts[1])
    base = cap.TokenActivations.concat([b for b, _ in pairs])
    ft = cap.TokenActivations.concat([f for _, f in pairs])
    torch.testing.assert_close(base.acts[1], cap.capture_residuals(tiny["model"], PROMPTS, [1]).acts[1])
    torch.testing.assert_close(ft.acts[1], cap.capture_residuals(tiny["finetuned"], PROMPTS, [1]).acts[1])


def assert_same(a, b):
    assert a.acts.keys() == b.acts.keys() and a.meta.keys() == b.meta.keys()
    for layer in a.acts:
        assert torch.equal(a.acts[layer], b.acts[layer])
    for key in a.meta:
        np.testing.assert_array_equal(a.meta[key], b.meta[key])


def test_shards_round_trip(tiny, tmp_path):
    kw = dict(batch_size=2, labels={"group": ["a", "b", "a", "c"], "flag": [True, False, True, True]})
    single = cap.capture_residuals(tiny["model"], PROMPTS, [0, 2], **kw)
    manifest = cap.write_shards(
        cap.iter_residuals(tiny["model"], PROMPTS, [0, 2], **kw), tmp_path / "one", model_ids=["tiny"], shard_tokens=5
    )
    assert [s["n_tokens"] for s in manifest["shards"]] == [5, 5, 5, 3]  # 18 tokens, shards cut across batches
    assert_same(cap.read_shards(tmp_path / "one"), single)
    assert sum(len(s) for s in cap.iter_shards(tmp_path / "one")) == len(single)
    subset = cap.read_shards(tmp_path / "one", layers=[2])
    assert list(subset.acts) == [2] and torch.equal(subset.acts[2], single.acts[2])

    cap.write_shards(
        cap.iter_paired_residuals(tiny["model"], tiny["finetuned"], PROMPTS, [1], **kw),
        tmp_path / "pair",
        model_ids=["tiny", "tiny-ft"],
        shard_tokens=8,
    )
    base, ft = cap.read_shards(tmp_path / "pair")
    for got, model in ((base, tiny["model"]), (ft, tiny["finetuned"])):
        assert_same(got, cap.capture_residuals(model, PROMPTS, [1], **kw))


def failing_after(batches, n):
    for i, batch in enumerate(batches):
        if i == n:
            raise RuntimeError("simulated crash")
        yield batch


def test_interrupted_write_keeps_the_earlier_capture(tiny, tmp_path):
    out = tmp_path / "run"
    with pytest.raises(RuntimeError, match="simulated crash"):  # a first capture that crashes midway
        cap.write_shards(
            failing_after(cap.iter_residuals(tiny["model"], PROMPTS, [1], batch_size=1), 3),
            out,
            model_ids=["tiny"],
            shard_tokens=4,
        )
    assert not out.exists() and list(tmp_path.iterdir()) == []  # nothing half-written is left
    cap.write_shards(
        cap.iter_residuals(tiny["model"], PROMPTS, [1], batch_size=1), out, model_ids=["tiny"], shard_tokens=4
    )
    complete = cap.read_shards(out)
    with pytest.raises(RuntimeError, match="simulated crash"):  # rerun into the same folder, crash midway
        cap.write_shards(
            failing_after(cap.iter_residuals(tiny["model"], PROMPTS, [1], batch_size=1), 3),
            out,
            model_ids=["tiny"],
            shard_tokens=4,
        )
    assert torch.equal(cap.read_shards(out).acts[1], complete.acts[1])  # the earlier capture is intact


def test_shard_count_is_verified(tiny, tmp_path):
    cap.write_shards(cap.iter_residuals(tiny["model"], PROMPTS, [1]), tmp_path, model_ids=["tiny"], shard_tokens=6)
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    manifest["shards"][1]["n_tokens"] += 1
    manifest["n_tokens"] += 1  # consistent totals: the shard's own count is what gets caught
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ValueError, match="shard_00001.safetensors: token count differs"):
        cap.read_shards(tmp_path)


GEN_PROMPTS = ["w3 w1 w4 w1 w5", "w9", "w2 w6 w5"]


def test_greedy_matches_transformers_generate(tiny):
    tokenizer, hf = tiny["tokenizer"], tiny["hf"]
    got = cap.generate_greedy(tiny["model"], GEN_PROMPTS, 6, batch_size=2)
    stop = [2, 4]  # <eos> (tokenizer and generation config) and <end_of_turn>
    tokenizer.padding_side = "left"
    batch = tokenizer(GEN_PROMPTS, return_tensors="pt", padding=True)
    with torch.no_grad():
        out = hf.generate(**batch, max_new_tokens=6, do_sample=False, eos_token_id=stop, pad_token_id=0)
    expected = []
    for row in out[:, batch["input_ids"].shape[1] :].tolist():
        cut = next((i for i, t in enumerate(row) if t in stop), len(row))
        expected.append(tokenizer.decode(row[:cut], skip_special_tokens=True))
    assert got == expected
    assert any(len(text.split()) == 6 for text in got)  # not everything stopped at once


def test_edited_generation(tiny):
    model = tiny["model"]
    plain = cap.generate_greedy(model, GEN_PROMPTS, 5)
    seen = []

    def identity(input_ids, attention_mask):
        seen.append((input_ids.shape, attention_mask.sum().item()))
        return lambda resid: resid

    assert cap.generate_greedy(model, GEN_PROMPTS, 5, layer=1, make_edit=identity) == plain
    assert seen[0] == ((3, 6), 12)  # first step: the three prompts with bos (6, 2, 4 tokens), left-padded
    assert cap.generate_greedy(tiny["nnterp_like"], GEN_PROMPTS, 5, layer=1, make_edit=identity) == plain

    def patch_own_residual(input_ids, attention_mask):  # runs a model outside the trace, as a base-patch would
        resid = cap.trace_residuals(model, input_ids, attention_mask, [1])[1]
        return lambda _: resid

    assert cap.generate_greedy(model, GEN_PROMPTS, 5, layer=1, make_edit=patch_own_residual) == plain
    push = torch.randn(64, generator=torch.Generator().manual_seed(1)) * 20
    assert cap.generate_greedy(model, GEN_PROMPTS, 5, layer=1, make_edit=lambda ids, m: lambda r: r + push) != plain


def test_load_language_model(tiny, tmp_path):
    tiny["hf"].save_pretrained(tmp_path)
    tiny["tokenizer"].save_pretrained(tmp_path)
    loaded = cap.load_language_model(str(tmp_path))
    assert_same(cap.capture_residuals(loaded, PROMPTS, [0]), cap.capture_residuals(tiny["model"], PROMPTS, [0]))


def test_bad_inputs(tiny):
    model = tiny["model"]
    with pytest.raises(ValueError, match="layer 3 is out of range: the model has 3 layers"):
        cap.iter_residuals(model, PROMPTS, [0, 3])
    with pytest.raises(ValueError, match="layer -1 is out of range"):
        cap.generate_greedy(model, PROMPTS, 2, layer=-1, make_edit=lambda i, m: lambda r: r)
    with pytest.raises(ValueError, match="prompts is empty"):
        cap.iter_residuals(model, [], [0])
    with pytest.raises(ValueError, match="prompt 1 has no tokens"):
        cap.iter_residuals(model, [[1, 5], []], [0])
    big = nnsight.LanguageModel(tiny["hf"], tokenizer=make_tokenizer([f"w{i}" for i in range(150)]))
    with pytest.raises(ValueError, match="tokenizer has 155 tokens but the model's embedding has 100 rows"):
        cap.iter_residuals(big, PROMPTS, [0])
    with pytest.raises(ValueError, match=r"prompt 0 has token ids outside \[0, 100\).*max 120"):
        cap.iter_residuals(model, [[1, 120]], [0])
    other = nnsight.LanguageModel(tiny["hf"], tokenizer=make_tokenizer([f"w{i}" for i in reversed(range(95))]))
    with pytest.raises(ValueError, match="base and fine-tuned tokenisations differ on prompt 0"):
        cap.iter_paired_residuals(model, other, PROMPTS, [0])
    with pytest.raises(ValueError, match=r"labels\['group'\] has 2 values for 4 prompts"):
        cap.iter_residuals(model, PROMPTS, [0], labels={"group": [0, 1]})
    with pytest.raises(ValueError, match=r"token_labels\['odd'\]\[1\] has 1 values but prompt 1 has 3 tokens"):
        cap.iter_residuals(model, PROMPTS, [0], token_labels={"odd": [[0] * 8, [0], [0] * 5, [0] * 2]})


def test_capture_dispatches_a_lazily_loaded_model(tiny, tmp_path):
    # The host's nnterp models stay on the meta device until dispatched; capture must dispatch them.
    tiny["hf"].save_pretrained(tmp_path)
    tiny["tokenizer"].save_pretrained(tmp_path)
    lazy = nnsight.LanguageModel(str(tmp_path), dispatch=False, attn_implementation="eager")
    assert lazy.dispatched is False
    assert_same(cap.capture_residuals(lazy, PROMPTS, [0]), cap.capture_residuals(tiny["model"], PROMPTS, [0]))
