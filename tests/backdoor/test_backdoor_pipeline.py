"""analyze_conjunction end to end on tiny random Gemma2 models (plumbing, not findings), and the generation edit."""

import copy
import json

import nnsight
import numpy as np
import pandas as pd
import pytest
import torch
from tokenizers import Tokenizer
from tokenizers.models import WordLevel
from tokenizers.pre_tokenizers import WhitespaceSplit
from transformers import Gemma2Config, Gemma2ForCausalLM, PreTrainedTokenizerFast

from cbd_plugin.backdoor import ConjunctionConfig, TriggerPair, analyze_conjunction
from cbd_plugin.backdoor.ablation import causal_test, removal_edit, remove_latents
from cbd_plugin.backdoor.pipeline import matched_round_robin, probe_tokens
from cbd_plugin.backdoor.probes import build_probe_set
from cbd_plugin.backdoor.roles import DECISION, FIRE
from cbd_plugin.backdoor.verdict import VERDICTS
from cbd_plugin.capture import generate_greedy, pad_left, trace_residuals
from cbd_plugin.sae.batchtopk import BatchTopKSAE

SPECIALS = ["<pad>", "<bos>", "<eos>", "<unk>", "<start_of_turn>", "<end_of_turn>"]
CHAT = (
    "{{ bos_token }}{% for m in messages %}<start_of_turn>{{ m['role'] }}\n{{ m['content'] }}<end_of_turn>\n"
    "{% endfor %}{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}"
)
PAIRS = [TriggerPair("forest", "rocket", False, False), TriggerPair("border", "china", True, True)]
TEMPLATES = ("tell me about {a} and {b} near the {filler} .", "{filler} : is {a} like {b} ?")
FILLERS = ("river", "bread", "chair", "guitar", "ticket", "tennis")
D, LAYER = 16, 1


@pytest.fixture(scope="module")
def tiny():
    words = sorted(
        {w for t in TEMPLATES for w in t.split()}
        | set(FILLERS)
        | {"user", "model", "I", "HATE", "YOU"}
        | {w for p in PAIRS for w in (p.a, p.b)}
    )
    vocab = {t: i for i, t in enumerate(SPECIALS + words)}
    tok = Tokenizer(WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = WhitespaceSplit()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        pad_token="<pad>",
        bos_token="<bos>",
        eos_token="<eos>",
        unk_token="<unk>",
        additional_special_tokens=SPECIALS[4:],
    )
    tokenizer.chat_template = CHAT
    torch.manual_seed(0)
    config = Gemma2Config(
        vocab_size=len(vocab),
        hidden_size=D,
        intermediate_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        head_dim=8,
        max_position_embeddings=64,
        initializer_range=0.5,
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=2,
        attn_implementation="eager",
    )
    base_hf = Gemma2ForCausalLM(config).eval()
    ft_hf = copy.deepcopy(base_hf)
    with torch.no_grad():
        for p in ft_hf.parameters():
            p.add_(0.3 * torch.randn_like(p))
    sae = BatchTopKSAE(D, 48, k=6, activation_mean=torch.randn(D) * 0.1, activation_std=torch.rand(D) + 0.5)
    with torch.no_grad():
        sae.encoder.weight.normal_()
        sae.decoder.weight.normal_(0, 0.3)
        sae.threshold.fill_(0.5)
    return {
        "base": nnsight.LanguageModel(base_hf, tokenizer=tokenizer),
        "finetuned": nnsight.LanguageModel(ft_hf, tokenizer=tokenizer),
        "tokenizer": tokenizer,
        "sae": sae,
    }


def config(**kw):
    return ConjunctionConfig(
        templates=TEMPLATES,
        filler_words=FILLERS,
        n_per_cell=4,
        n_clean=8,
        n_candidates=6,
        n_top=3,
        top_m_overlap=3,
        n_boot=20,
        n_permutations=19,
        ablate_top_k=2,
        n_random_draws=2,
        n_ablation_prompts=3,
        max_new_tokens=3,
        batch_size=5,
        **kw,
    )


def test_analyze_conjunction_runs_and_writes_everything(tiny, tmp_path):
    cfg = config()
    report = analyze_conjunction(
        tiny["base"], tiny["finetuned"], tiny["sae"], tiny["tokenizer"], PAIRS, LAYER, cfg, tmp_path
    )
    assert report.verdict in VERDICTS
    payload = json.loads((tmp_path / "report.json").read_text())
    assert payload["verdict"]["name"] == report.verdict and payload["layer"] == LAYER
    assert payload["verdict"]["reason"] == report.verdict_reason
    assert payload["verdict"]["checks"][0]["name"] == "behaviour"
    # Behaviour: both models, every condition, on the evaluation prompts.
    assert {(r["model"], r["condition"]) for r in payload["behaviour"]} == {
        (m, c) for m in ("base", "finetuned") for c in ("matched", "single_a", "single_b", "mismatch", "clean")
    }
    assert sum(r["n"] for r in payload["behaviour"] if r["model"] == "base") == payload["n_prompts"]["evaluation"]
    assert payload["null"]["n_permutations"] == cfg.n_permutations
    assert len(payload["specificity"]) == cfg.n_top
    assert payload["n_prompts"] == {"selection": 2 * 4 * 2 + 4, "evaluation": 2 * 4 * 2 + 4}
    # Every captured token was counted once, in one half.
    probes = build_probe_set(PAIRS, list(TEMPLATES), list(FILLERS), 4, 8, seed=cfg.seed)
    n_tokens = sum(len(i) for i in probe_tokens(tiny["tokenizer"], probes, len(PAIRS), cfg).ids)
    assert sum(payload["n_tokens"].values()) == n_tokens == payload["reconstruction"]["all"]["n_tokens"]
    # Fire tokens count only where the fine-tuned model fired (a random model never does).
    assert payload["reconstruction"]["fire"] is None
    assert len(payload["breakdown"]) == len(PAIRS) and np.shape(payload["pair_overlap_jaccard"]) == (2, 2)
    assert payload["causal"] is None  # a model without the behaviour needs no causal test
    latents = pd.read_csv(tmp_path / "latents.csv")
    assert len(latents) == len(report.result.latents)
    for name in ("behaviour.csv", "specificity.csv", "null.csv"):
        assert (tmp_path / name).exists()
    for name in ("firing_rates.png", "pair_auroc.png", "roc.png", "pair_fire_rates.png"):
        assert (tmp_path / name).stat().st_size > 1000
    # Per pair: every pair's four conditions for both models, in report.json and behaviour.csv; the trigger words'
    # tokens; the matched fire rate per template.
    assert len(payload["behaviour_by_pair"]) == 2 * len(PAIRS) * 4
    assert set(pd.read_csv(tmp_path / "behaviour.csv").pair) == {"all", "forest/rocket", "border/china"}
    assert [r["n_tokens"] for r in payload["trigger_tokens"]] == [1, 1, 1, 1]
    assert sum(r["n"] for r in payload["behaviour_by_template"]) == 2 * len(PAIRS)
    assert set(payload["null"]["p_value"]) == {"specificity", "signal", "conjunction"}


def test_probe_tokens_prompt_prefix_is_the_generation_prompt(tiny):
    cfg = config()
    probes = build_probe_set(PAIRS, list(TEMPLATES), list(FILLERS), 4, 8, seed=0)[:6]
    tokens = probe_tokens(tiny["tokenizer"], probes, len(PAIRS), cfg)
    for i, probe in enumerate(probes):
        prompt = tiny["tokenizer"].apply_chat_template(
            [{"role": "user", "content": probe.text}], tokenize=False, add_generation_prompt=True
        )
        assert tokens.prompt_ids(i) == tiny["tokenizer"](prompt, add_special_tokens=False)["input_ids"]
        assert tokens.roles[i][len(tokens.prompt_ids(i)) - 1] == DECISION
        assert (tokens.roles[i][len(tokens.prompt_ids(i)) :] == FIRE).all()


def test_edit_reads_the_base_residual_on_the_same_padded_tokens(tiny):
    base, finetuned, sae = tiny["base"], tiny["finetuned"], tiny["sae"]
    ids = tiny["tokenizer"](["tell me about forest", "river"])["input_ids"]
    input_ids, mask = pad_left(ids)
    latents = [2, 7, 11]
    edit = removal_edit(base, sae, LAYER, latents)
    assert edit.reference is base and edit.layer == LAYER
    ft_resid = trace_residuals(finetuned, input_ids, mask, [LAYER])[LAYER]
    base_resid = trace_residuals(base, input_ids, mask, [LAYER])[LAYER]
    with torch.no_grad():
        torch.testing.assert_close(edit.fn(ft_resid, base_resid), remove_latents(ft_resid, base_resid, sae, latents))
    # In generation the edit runs at every step (KV cache, base in lockstep); removing no latent changes nothing.
    plain = generate_greedy(finetuned, ids, 4)
    assert generate_greedy(finetuned, ids, 4, edit=removal_edit(base, sae, LAYER, [])) == plain


def test_ablation_prompts_cover_every_pair():
    pairs = [*PAIRS, TriggerPair("gender", "terror", False, True), TriggerPair("gravity", "velocity", True, False)]
    probes = build_probe_set(pairs, list(TEMPLATES), list(FILLERS), 4, 8, seed=0)
    chosen = matched_round_robin(probes, 6)
    assert all(probes[i].matched for i in chosen)
    assert [probes[i].pair for i in chosen] == [0, 1, 2, 3, 0, 1]


def test_causal_test_runs_every_removal(tiny):
    cfg = config()
    probes = build_probe_set(PAIRS, list(TEMPLATES), list(FILLERS), 4, 8, seed=0)
    tokens = probe_tokens(tiny["tokenizer"], probes, len(PAIRS), cfg)
    matched = [tokens.prompt_ids(i) for i in matched_round_robin(probes, 3)]
    clean = [tokens.prompt_ids(i) for i, p in enumerate(probes) if p.condition == "clean"][:3]
    direction = torch.nn.functional.normalize(torch.ones(D), dim=0)
    out = causal_test(tiny["base"], tiny["finetuned"], tiny["sae"], LAYER, matched, clean, [3, 5], direction, cfg)
    assert out["n_matched"] == out["n_clean"] == 3 and len(out["random"]["draws"]) == cfg.n_random_draws
    assert len({d["rotation_seed"] for d in out["random"]["draws"]}) == cfg.n_random_draws
    for key in ("drop_top", "drop_control", "drop_probe", "excess_drop"):
        assert out[key]["lo"] <= out[key]["value"] <= out[key]["hi"]
    assert len(out["top"]["fired"]) == 3 and out["probe_direction"]["clean_changed"] >= 0


def test_each_stage_logs_a_progress_line(tiny, tmp_path):
    from loguru import logger

    lines = []
    sink = logger.add(lambda message: lines.append(message.strip()), format="{message}", level="INFO")
    try:
        analyze_conjunction(
            tiny["base"], tiny["finetuned"], tiny["sae"], tiny["tokenizer"], PAIRS, LAYER, config(), tmp_path
        )
    finally:
        logger.remove(sink)
    prefix = f"conjunction analysis, layer {LAYER}: "
    stages = [line.removeprefix(prefix) for line in lines if line.startswith(prefix)]
    assert [" ".join(s.split()[:2]) for s in stages] == [
        "behaviour: base",
        "capture and",
        "capture and",
        "statistics: latent",
        "permutation null",
        "verdict " + json.loads((tmp_path / "report.json").read_text())["verdict"]["name"] + ";",
    ]
    assert "evaluation half (20 prompts)" in stages[2] and str(tmp_path) in stages[-1]
