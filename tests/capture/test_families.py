"""Capture, KV-cache generation and layer edits on a random-weight tiny model of each decoder-only family.

References are transformers' own: ``output_hidden_states`` (block L's output is ``hidden_states[L + 1]``, except
the last block, whose ``hidden_states`` entry has the final norm applied: there a forward hook on the block, found by
the path this test states), and greedy decoding by re-running the full unpadded sequence each step (no cache).
"""

import nnsight
import pytest
import torch
from family_models import FAMILIES, N_LAYERS, VOCAB, blocks, build_family
from transformers import BertConfig, BertForMaskedLM, T5Config, T5ForConditionalGeneration

from cbd_plugin import capture as cap
from cbd_plugin.capture.layers import layer_path

PROMPTS = [[1, 7, 9, 11, 13, 15, 17], [1, 20], [1, 30, 31, 32, 33], [1, 40, 41]]
NEW_TOKENS = 6


@torch.no_grad()
def block_outputs(model, family, ids: list[int]) -> list[torch.Tensor]:
    """Each block's output ``[T, d]`` for one unpadded prompt: hidden_states, and a hook for the last block."""
    seen = []
    handle = blocks(model, family)[-1].register_forward_hook(
        lambda module, args, out: seen.append(out[0] if isinstance(out, tuple) else out)
    )
    try:
        hs = model(input_ids=torch.tensor([ids]), output_hidden_states=True).hidden_states
    finally:
        handle.remove()
    return [hs[l + 1][0] for l in range(N_LAYERS - 1)] + [seen[0][0]]


def capture_max_diff(model, family) -> float:
    """max |capture - transformers| over every block and every token of PROMPTS (captured in one padded batch)."""
    lm = nnsight.LanguageModel(model)
    got = cap.capture_residuals(lm, PROMPTS, range(N_LAYERS), batch_size=len(PROMPTS))
    worst = 0.0
    for i, ids in enumerate(PROMPTS):
        rows = torch.from_numpy(got.meta["prompt_id"] == i)
        for layer, want in enumerate(block_outputs(model, family, ids)):
            worst = max(worst, float((got.acts[layer][rows] - want).abs().max()))
    return worst


@torch.no_grad()
def greedy_no_cache(model, family, ids: list[int], stop: frozenset, hook_layer=None, hook=None) -> list[int]:
    """Greedy continuation re-running the whole sequence each step, with ``hook`` on block ``hook_layer``."""
    handle = None if hook is None else blocks(model, family)[hook_layer].register_forward_hook(hook)
    try:
        seq, new = list(ids), []
        for _ in range(NEW_TOKENS):
            token = int(model(input_ids=torch.tensor([seq])).logits[0, -1].argmax())
            if token in stop:
                break
            seq.append(token)
            new.append(token)
        return new
    finally:
        if handle is not None:
            handle.remove()


@pytest.fixture(scope="module", params=list(FAMILIES))
def family_model(request):
    return request.param, build_family(request.param)


def test_layer_path(family_model):
    family, model = family_model
    assert layer_path(model) == FAMILIES[family][2]
    assert cap.num_layers(nnsight.LanguageModel(model)) == N_LAYERS


def test_capture_equals_hidden_states(family_model):
    family, model = family_model
    assert capture_max_diff(model, family) <= 1e-5


def test_kv_cache_generation_equals_full_recompute(family_model):
    family, model = family_model
    lm = nnsight.LanguageModel(model)
    stop = cap.stop_token_ids(lm)
    got = cap.generate_tokens(lm, PROMPTS, NEW_TOKENS, batch_size=len(PROMPTS))
    want = [greedy_no_cache(model, family, ids, stop) for ids in PROMPTS]
    assert got == want
    assert sum(map(len, got)) > 0  # not all stopped at once: the comparison covered cached steps


def test_direction_ablation_edit(family_model):
    """Zero-ablating a direction at block 1 (KV cache) gives the tokens of the same edit hooked onto a full
    recompute, the edited residual has no component along the direction, and the output changes."""
    family, model = family_model
    lm = nnsight.LanguageModel(model)
    acts = cap.capture_residuals(lm, PROMPTS, [1]).acts[1]
    u = acts.mean(0) / acts.mean(0).norm()  # the mean residual's direction: large, so removing it matters

    def ablate(resid, _reference=None):
        return resid - (resid @ u.to(resid.dtype))[..., None] * u.to(resid.dtype)

    got = cap.generate_tokens(lm, PROMPTS, NEW_TOKENS, edit=cap.LayerEdit(1, ablate))

    def hook(module, args, out):
        return (ablate(out[0]), *out[1:]) if isinstance(out, tuple) else ablate(out)

    stop = cap.stop_token_ids(lm)
    assert got == [greedy_no_cache(model, family, ids, stop, 1, hook) for ids in PROMPTS]

    seen = []
    probe = blocks(model, family)[2].register_forward_pre_hook(
        lambda module, args, kwargs: seen.append(args[0] if args else kwargs["hidden_states"]), with_kwargs=True
    )
    edit_hook = blocks(model, family)[1].register_forward_hook(hook)
    try:
        with torch.no_grad():
            edited = model(input_ids=torch.tensor([PROMPTS[0]])).logits
    finally:
        probe.remove()
        edit_hook.remove()
    assert float((seen[0] @ u).abs().max()) < 1e-4  # what block 2 reads has the direction removed
    with torch.no_grad():
        plain = model(input_ids=torch.tensor([PROMPTS[0]])).logits
    assert float((edited - plain).abs().max()) > 1e-2


@pytest.mark.parametrize(
    "make, name",
    [
        (
            lambda: BertForMaskedLM(
                BertConfig(
                    vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64
                )
            ),
            "BertForMaskedLM",
        ),
        (
            lambda: T5ForConditionalGeneration(
                T5Config(vocab_size=VOCAB, d_model=32, d_ff=64, num_layers=2, num_heads=2, d_kv=16)
            ),
            "T5ForConditionalGeneration",
        ),
    ],
)
def test_unsupported_architecture_has_one_clear_error(make, name):
    lm = nnsight.LanguageModel(make())
    for call in (
        lambda: cap.capture_residuals(lm, PROMPTS, [0]),
        lambda: cap.generate_tokens(lm, PROMPTS, 2),
        lambda: cap.num_layers(lm),
    ):
        with pytest.raises(cap.UnsupportedModelError, match=rf"^{name} is not supported: it is"):
            call()


def test_fallback_search_finds_blocks_at_an_unknown_path():
    """A model whose blocks sit at no known path: the one ModuleList of num_hidden_layers modules is taken, and a
    model with two such lists (ambiguous) gets the clear error."""
    model = build_family("llama")
    model.model.blocks = model.model.layers
    del model.model.layers
    assert layer_path(model) == "model.blocks"
    model.model.other = torch.nn.ModuleList(torch.nn.Identity() for _ in range(N_LAYERS))
    with pytest.raises(cap.UnsupportedModelError, match=r"^LlamaForCausalLM is not supported: no decoder-block list"):
        layer_path(model)
