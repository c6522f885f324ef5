"""The ``arch`` option of the organism recipes (fast: no training)."""

import pytest
import torch
from transformers import AutoTokenizer

from cbd_plugin.capture.layers import layer_path
from cbd_plugin.organisms.recipes import ARCHS, BaseRecipe, ModelShape, backdoor_recipe, recipe_hash, refusal_recipe
from cbd_plugin.organisms.tokenizer import build_tokenizer
from cbd_plugin.organisms.train import freeze_through, new_model

# The Gemma-2 recipes' hashes from before the arch field existed: their cached builds must stay valid.
GEMMA2_HASHES = {
    "tiny-base": "5b7654e4360754d9435b626f6cd5f794c8f5537e",
    "tiny-cbd": "e55160b5c963953383946d465bc4af0bd28680b9",
}


def test_default_arch_keeps_the_recipe_hashes():
    assert recipe_hash(BaseRecipe()) == GEMMA2_HASHES["tiny-base"]
    assert recipe_hash(backdoor_recipe("and")) == GEMMA2_HASHES["tiny-cbd"]


def test_arch_names_and_hashes_differ():
    recipes = [backdoor_recipe("and", arch=a) for a in ARCHS]
    assert [r.name for r in recipes] == ["tiny-cbd", "tiny-cbd-gpt_neox", "tiny-cbd-qwen3"]
    assert [r.base.name for r in recipes] == ["tiny-base", "tiny-base-gpt_neox", "tiny-base-qwen3"]
    assert len({recipe_hash(r) for r in recipes}) == 3
    shallow = refusal_recipe("shallow", arch="qwen3")
    assert shallow.name == "tiny-refusal-shallow-qwen3" and shallow.base.shape.arch == "qwen3"
    assert shallow.training == refusal_recipe("shallow").training  # the same schedule on every arch


def test_unknown_arch_names_the_field():
    with pytest.raises(ValueError, match=r"ModelShape.arch='llama': expected one of"):
        ModelShape(arch="llama")


@pytest.mark.parametrize(
    "arch, cls, path",
    [
        ("gemma2", "Gemma2ForCausalLM", "model.layers"),
        ("gpt_neox", "GPTNeoXForCausalLM", "gpt_neox.layers"),
        ("qwen3", "Qwen3ForCausalLM", "model.layers"),
    ],
)
def test_new_model_on_each_arch_at_the_same_size(arch, cls, path, tmp_path):
    tokenizer = build_tokenizer()
    shape = ModelShape(arch=arch)
    model = new_model(shape, tokenizer, seed=0)
    assert type(model).__name__ == cls and layer_path(model) == path
    config = model.config
    assert (config.hidden_size, config.num_hidden_layers, config.intermediate_size) == (128, 4, 256)
    assert config.tie_word_embeddings and config._attn_implementation == "eager"
    freeze_through(model, 1)
    frozen = {n for n, p in model.named_parameters() if not p.requires_grad}
    assert frozen and all(p.requires_grad for n, p in model.named_parameters() if n not in frozen)
    # blocks 0 and 1 and the (tied) embedding are frozen; blocks 2 and 3 train
    blocks = dict(model.named_modules())[path]
    assert not any(p.requires_grad for b in blocks[:2] for p in b.parameters())
    assert all(p.requires_grad for b in blocks[2:] for p in b.parameters())
    assert not model.get_input_embeddings().weight.requires_grad
    with torch.no_grad():
        assert model(input_ids=torch.tensor([[1, 5, 6]])).logits.shape == (1, 3, len(tokenizer))
    # Saved as a build saves it, the folder loads back the same tokenizer (AutoTokenizer overrides the saved class
    # for some model types, e.g. qwen2, which is why that arch is not offered).
    model.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    text = "<start_of_turn>user\nsure and travel and food<end_of_turn>"
    assert AutoTokenizer.from_pretrained(tmp_path)(text)["input_ids"] == tokenizer(text)["input_ids"]
