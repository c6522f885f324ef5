"""Conjunction scores, selection-only ranking, detection AUROCs, 2x2 breakdown and report files on synthetic latents.

(The verdict rule: test_backdoor_specificity.py and test_backdoor_verdict.py.)

Planted latents (at the decision token; every latent also fires at random on 5% of the other tokens, and the
unplanted ones on 5% of decision tokens too):
  AND  fires on matched pairs only;  OR  fires whenever a trigger word is present;  NOISE  fires half the time;
  SPURIOUS  fires on matched pairs in the selection half only (random in the evaluation half);
  PAIR_SPECIFIC + p  fires, strongly, on matched pairs of pair p only.
"""

import json

import matplotlib.image
import numpy as np
import pandas as pd
import pytest
import torch

from cbd_plugin.backdoor.analysis import Candidates, analyze, jaccard, latent_table, rank, select_candidates
from cbd_plugin.backdoor.config import ConjunctionConfig
from cbd_plugin.backdoor.latent_stats import LatentStats, PromptFeatures
from cbd_plugin.backdoor.probes import SPLITS, TriggerPair, build_probe_set, group_id, n_groups
from cbd_plugin.backdoor.report import LATENTS_CSV, PLOTS, REPORT_JSON, write_report
from cbd_plugin.backdoor.roles import DECISION, FIRE, OTHER, TRIGGER

PAIRS = [
    TriggerPair("forest", "rocket", False, False),
    TriggerPair("gender", "terror", False, True),
    TriggerPair("gravity", "velocity", True, False),
    TriggerPair("border", "china", True, True),
]
TEMPLATES = ("tell me about {a} and {b} near the {filler} .", "{filler} : is {a} like {b} ?")
FILLERS = ("river", "bread", "chair", "guitar", "ticket", "tennis", "honey", "lamp", "cloud", "drum")
AND, OR, NOISE, SPURIOUS, PAIR_SPECIFIC = 0, 1, 2, 3, 10
PLANTED = PAIR_SPECIFIC + 4  # latents below this are planted; the rest are background only
N_LATENTS, D = 32, 8
ROLES_OF_PROMPT = np.array([OTHER, TRIGGER, OTHER, TRIGGER, DECISION, FIRE, FIRE])


def config(**kw):
    return ConjunctionConfig(
        templates=TEMPLATES,
        filler_words=FILLERS,
        n_per_cell=16,
        n_clean=32,
        n_boot=50,
        n_candidates=8,
        n_top=5,
        top_m_overlap=3,
        ablate=False,
        **kw,
    )


def decision_latents(probe, planted, rng):
    x = np.zeros(PLANTED)
    matched, has_trigger = probe.condition == "matched", probe.condition != "clean"
    if "and" in planted and matched:
        x[AND] = 2 + rng.random()
    if "or" in planted and has_trigger:
        x[OR] = 2 + rng.random()
    if "noise" in planted and rng.random() < 0.5:
        x[NOISE] = 2 + rng.random()
    if "spurious" in planted and (matched if probe.split == "selection" else rng.random() < 0.3):
        x[SPURIOUS] = 3 + rng.random()
    if "pair_specific" in planted and matched:
        x[PAIR_SPECIFIC + probe.pair] = 5 + rng.random()
    return x


def half(probes, planted, rng):
    """Token-level arrays of one half, seven tokens per prompt."""
    n = len(probes)
    latents = rng.exponential(size=(n * 7, N_LATENTS)) * (rng.random((n * 7, N_LATENTS)) < 0.05)
    decision = np.flatnonzero(np.tile(ROLES_OF_PROMPT, n) == DECISION)
    latents[decision, :PLANTED] = 0  # at the decision token, planted latents fire only as planted
    for i, probe in enumerate(probes):
        latents[decision[i], :PLANTED] = decision_latents(probe, planted, rng)
    inputs = rng.normal(size=(n * 7, D))
    inputs[decision, 0] += 3.0 * np.array([p.matched for p in probes])  # linear signal for the probe baseline
    groups = np.repeat([group_id(p.pair, p.condition, len(PAIRS)) for p in probes], 7)
    return (
        torch.tensor(latents, dtype=torch.float32),
        torch.tensor(inputs, dtype=torch.float32),
        groups,
        np.tile(ROLES_OF_PROMPT, n),
        np.repeat(np.arange(n), 7),
    )


def stream(data, stats, features, prompts_per_batch=8):
    latents, inputs, groups, roles, prompt_id = data
    for start in range(0, len(roles), prompts_per_batch * 7):
        s = slice(start, start + prompts_per_batch * 7)
        stats.update(latents[s], groups[s], roles[s])
        features.update(latents[s], inputs[s], prompt_id[s], roles[s])


def run(planted, cfg=None, seed=0):
    cfg = cfg or config()
    rng = np.random.default_rng(seed)
    probes = build_probe_set(PAIRS, cfg.templates, cfg.filler_words, cfg.n_per_cell, cfg.n_clean, seed=seed)
    sel, ev = ([p for p in probes if p.split == s] for s in SPLITS)
    sel_data, ev_data = half(sel, planted, rng), half(ev, planted, rng)
    sel_stats, sel_features = LatentStats(N_LATENTS, n_groups(len(PAIRS))), PromptFeatures(len(sel), [], D)
    stream(sel_data, sel_stats, sel_features)
    candidates = select_candidates(sel_stats, len(PAIRS), cfg)
    ev_stats, ev_features = LatentStats(N_LATENTS, n_groups(len(PAIRS))), PromptFeatures(len(ev), candidates.all(), D)
    stream(ev_data, ev_stats, ev_features)
    result = analyze(sel_stats, ev_stats, sel_features, ev_features, sel, ev, PAIRS, candidates, cfg)
    return result, sel_stats, ev_stats, candidates


def row(result, latent):
    return result.latents.set_index("latent").loc[latent]


def test_conjunction_score_ranks_and_above_or_and_noise():
    _, selection, _, _ = run({"and", "or", "noise"})
    table = latent_table(selection, len(PAIRS), "decision")
    order = list(rank(table, "conjunction"))
    assert order[0] == AND
    assert table.conjunction_score[AND] > 5 and table.conjunction_rate_margin[AND] == 1.0
    assert abs(table.conjunction_score[OR]) < 0.5 and abs(table.conjunction_score[NOISE]) < 0.5
    assert order.index(OR) > 0 and order.index(NOISE) > 0
    # The OR latent is the one that responds most to trigger words vs clean prompts: signal, not conjunction.
    assert table.signal_score[OR] > 5 and table.single_ratio[OR] > 0.9


def test_detection_beats_chance_and_probe_scores_each_condition():
    result, *_ = run({"and", "or", "noise"})
    assert result.best_latent["latent"] == AND
    assert row(result, AND).detection_auroc >= 0.95 and row(result, AND).detection_auroc_lo > 0.8
    assert row(result, OR).detection_auroc < 0.8
    assert 0.9 <= result.probe.value <= 1.0  # the planted linear signal
    for condition, estimate in result.probe_by_condition.items():
        assert estimate.lo <= estimate.value <= estimate.hi and estimate.value > 0.9, condition
    assert np.linalg.norm(result.probe_direction) == pytest.approx(1.0)
    assert abs(result.probe_direction[0]) > 0.9  # the planted signal lives on input 0


def test_noise_detects_nothing():
    result, *_ = run({"noise"})
    assert result.latents.detection_auroc.max() < 0.8


def test_ranking_uses_the_selection_half_only():
    # SPURIOUS is perfectly conjunctive on the selection half but random on the evaluation half; AND is too, and
    # SPURIOUS wins the tie on its larger activations.
    result, selection, evaluation, candidates = run({"and", "spurious"})
    sel_table = latent_table(selection, len(PAIRS), "decision")
    eval_table = latent_table(evaluation, len(PAIRS), "decision")
    assert list(rank(sel_table, "conjunction")[:2]) == [SPURIOUS, AND]
    assert eval_table.conjunction_score[SPURIOUS] < 1 < eval_table.conjunction_score[AND]  # it does not generalise...
    spurious = row(result, SPURIOUS)
    assert spurious.conjunction_rank == 0  # ...but it keeps its selection rank in the report,
    assert spurious.detection_auroc < 0.75  # and its AUROC is the honest evaluation-half one.
    assert spurious.sel_conjunction_rate_margin == 1.0
    assert spurious.eval_conjunction_score == pytest.approx(eval_table.conjunction_score[SPURIOUS])
    assert row(result, AND).detection_auroc >= 0.95
    # Only selection-chosen latents were scored on the evaluation half.
    assert set(result.latents.latent) == set(candidates.all())


def test_pair_breakdown_and_overlap():
    result, *_ = run({"and", "pair_specific"})
    for p, entry in enumerate(result.pairs):
        assert entry["best_latent"] == PAIR_SPECIFIC + p
        assert entry["auroc"]["value"] >= 0.95 and entry["probe_auroc"]["value"] > 0.8
        assert AND in entry["top_latents"]
        assert (entry["related"], entry["charged"]) == (PAIRS[p].related, PAIRS[p].charged)
    off_diagonal = result.overlap[~np.eye(len(PAIRS), dtype=bool)]
    assert np.allclose(np.diag(result.overlap), 1.0)
    assert (off_diagonal > 0).all() and (off_diagonal < 1).all()  # AND shared, the pair-specific ones not


def test_jaccard():
    assert jaccard([np.array([1, 2]), np.array([2, 3]), np.array([])]).tolist() == [
        [1.0, 1 / 3, 0.0],
        [1 / 3, 1.0, 0.0],
        [0.0, 0.0, 0.0],
    ]


def test_report_files_written_and_readable(tmp_path):
    result, *_ = run({"and", "or", "noise"})
    payload = {"verdict": {"name": "conjunctive"}, "nan": float("nan"), "array": np.arange(3)}
    files = write_report(payload, result, {"behaviour": pd.DataFrame({"x": [1.0]})}, 5, "decision", tmp_path)
    report = json.loads((tmp_path / REPORT_JSON).read_text())
    assert report["verdict"]["name"] == "conjunctive" and report["nan"] is None and report["array"] == [0, 1, 2]
    assert set(report["files"]) == {"latents_csv", "behaviour_csv", "heatmap", "pairs", "roc", "report_json"}
    assert pd.read_csv(tmp_path / "behaviour.csv").x.tolist() == [1.0]
    table = pd.read_csv(tmp_path / LATENTS_CSV)
    assert len(table) == len(result.latents) and {"latent", "detection_auroc", "eval_rate_matched"} <= set(table)
    for name in PLOTS.values():
        image = matplotlib.image.imread(tmp_path / name)
        assert image.ndim == 3 and min(image.shape[:2]) > 100
    assert not list(tmp_path.glob(".*tmp*"))  # no temporary files left behind
    assert files["report_json"] == tmp_path / REPORT_JSON


def test_candidates_union_keeps_order():
    c = Candidates(np.array([3, 1]), np.array([1, 5]), [np.array([5, 9])])
    assert c.all().tolist() == [3, 1, 5, 9]
