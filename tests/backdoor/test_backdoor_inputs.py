"""Input agreement before any generation: each bad case raises an error naming the word, pair or model, and
analyze_conjunction refuses it before either model generates."""

import nnsight
import pytest
import torch
from tokenizers import Tokenizer
from tokenizers.models import WordLevel, WordPiece
from tokenizers.pre_tokenizers import WhitespaceSplit
from transformers import Gemma2Config, Gemma2ForCausalLM, PreTrainedTokenizerFast

import cbd_plugin.backdoor.behaviour as behaviour_module
from cbd_plugin.backdoor import ConjunctionConfig, TriggerPair, analyze_conjunction, build_probe_set
from cbd_plugin.backdoor.inputs import check_inputs, word_tokens

SPECIALS = ["<pad>", "<bos>", "<eos>", "<unk>"]
WORDS = ["tell", "me", "about", "and", ".", "forest", "rocket", "border", "china", "river", "bread", "chair"]
PAIRS = [TriggerPair("forest", "rocket", False, False), TriggerPair("border", "china", True, True)]
T = TriggerPair


def tokenizer(words=WORDS, model=None, **specials):
    vocab = {t: i for i, t in enumerate(SPECIALS + list(words))}
    tok = Tokenizer(model or WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = WhitespaceSplit()
    kw = dict(pad_token="<pad>", bos_token="<bos>", eos_token="<eos>", unk_token="<unk>") | specials
    return PreTrainedTokenizerFast(tokenizer_object=tok, **kw)


def model(tok, name: str, hidden: int = 16, layers: int = 2):
    torch.manual_seed(0)
    config = Gemma2Config(
        vocab_size=len(tok),
        hidden_size=hidden,
        intermediate_size=32,
        num_hidden_layers=layers,
        num_attention_heads=2,
        num_key_value_heads=1,
        head_dim=8,
        max_position_embeddings=64,
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=2,
        attn_implementation="eager",
    )
    hf = Gemma2ForCausalLM(config).eval()
    hf.config._name_or_path = name
    return nnsight.LanguageModel(hf, tokenizer=tok)


@pytest.fixture(scope="module")
def models():
    tok = tokenizer()
    return tok, model(tok, "base-model"), model(tok, "ft-model")


@pytest.mark.parametrize(
    "pairs, match",
    [
        ([T("forest", "forest", False, False), PAIRS[1]], r"pair 0 \(forest/forest\) repeats the word 'forest'"),
        (
            [PAIRS[0], T("forest", "china", False, False)],
            r"'forest' is in pair 0 \(forest/rocket\) and pair 1 \(forest/china\): "
            r"each word may belong to one pair only",
        ),
        (
            [PAIRS[0], T("border", "zeppelin", False, False)],
            r"trigger word 'zeppelin' of pair 1 \(border/zeppelin\) is unknown to the tokenizer.*<unk>",
        ),
    ],
)
def test_bad_trigger_words_are_named(models, pairs, match):
    tok, base, ft = models
    with pytest.raises(ValueError, match=match):
        check_inputs(base, ft, tok, pairs, [1])


def test_shared_word_is_named_by_the_probe_set_too():
    """Not the misleading 'lower n_per_cell' of a prompt set that cannot be drawn."""
    with pytest.raises(ValueError, match="each word may belong to one pair only"):
        build_probe_set([PAIRS[0], T("rocket", "china", False, False)], ["{a} {b}"], ["river", "bread"], 4, 4)


def test_word_tokens_say_one_or_several_tokens(models):
    tok, base, ft = models
    assert [(r["word"], r["n_tokens"]) for r in check_inputs(base, ft, tok, PAIRS, [0, 1])] == [
        ("forest", 1),
        ("rocket", 1),
        ("border", 1),
        ("china", 1),
    ]
    pieces = {t: i for i, t in enumerate([*SPECIALS, "for", "##est", "rocket", "border", "china"])}
    split = tokenizer(model=WordPiece(pieces, unk_token="<unk>"))
    rows = word_tokens(split, PAIRS)
    assert rows[0]["tokens"] == ["for", "##est"] and rows[0]["n_tokens"] == 2


@pytest.mark.parametrize(
    "case, match",
    [
        ("vocabulary", r"fine-tuned model ft-other's tokenizer: vocabulary differs from the base's"),
        ("specials", r"fine-tuned model ft-other's tokenizer: special token eos_token is '<pad>'"),
        ("hidden", r"hidden sizes differ: base base-model 16, fine-tuned ft-other 32"),
        ("layers", r"layer counts differ: base base-model 2, fine-tuned ft-other 3"),
    ],
)
def test_models_must_agree(models, case, match):
    tok, base, _ = models
    other_tok = {"vocabulary": tokenizer([*WORDS, "zeppelin"]), "specials": tokenizer(eos_token="<pad>")}.get(case, tok)
    other = model(other_tok, "ft-other", hidden=32 if case == "hidden" else 16, layers=3 if case == "layers" else 2)
    with pytest.raises(ValueError, match=match):
        check_inputs(base, other, tok, PAIRS, [1])


def test_layer_out_of_range_names_the_model(models):
    tok, base, ft = models
    with pytest.raises(ValueError, match=r"base model base-model: layer 5 is out of range: the model has 2 layers"):
        check_inputs(base, ft, tok, PAIRS, [1, 5])


def test_analysis_refuses_before_generating(models, monkeypatch, tmp_path):
    tok, base, ft = models

    def no_generation(*args, **kwargs):
        raise AssertionError("generated before checking its inputs")

    monkeypatch.setattr(behaviour_module, "generate_greedy", no_generation)
    cfg = ConjunctionConfig(
        templates=("tell me about {a} and {b} .",),
        filler_words=("river", "bread", "chair"),
        use_chat_template=False,
        n_per_cell=2,
        n_clean=2,
    )
    with pytest.raises(ValueError, match="layer 7 is out of range"):
        analyze_conjunction(base, ft, None, tok, PAIRS, 7, cfg, tmp_path)
    with pytest.raises(ValueError, match="'zeppelin'"):
        analyze_conjunction(base, ft, None, tok, [PAIRS[0], T("china", "zeppelin", False, False)], 1, cfg, tmp_path)
