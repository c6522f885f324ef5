"""The per-pair route of the conjunction rule on synthetic codes: a code with one AND latent per pair passes; per-pair
additive, any-two and OR codes fail at every strength, and so do AND latents that leave a pair uncovered; the
permutation null covers the per-pair selection (calibrated on noise, small on per-pair AND latents).

Four pairs, the demo's evaluation sizes per half (12 prompts per pair x condition, 24 clean), mismatches cycling
through the other pairs; sparse non-negative noise on 40 latents, pair p's code planted on latent 7 + p, amplitude A
(in units of the background noise): AND fires on p's matched prompts; ADDITIVE adds A per word of p (matched 2A,
single A, a mismatch holding a word of p A); ANY_TWO fires on p's matched prompts and every mismatch holding a word
of p; OR fires on any prompt holding a word of p.
"""

import numpy as np
import pytest

from cbd_plugin.backdoor.config import ConjunctionConfig
from cbd_plugin.backdoor.probes import CONDITIONS
from cbd_plugin.backdoor.specificity import (
    HalfCodes,
    pair_tables,
    permutation_null,
    selection_scores,
    specificity_table,
    top_latents,
)
from cbd_plugin.backdoor.verdict import deciding_latents, per_pair_route

N_PAIRS, PER_CELL, N_CLEAN, N_LATENTS, FIRST = 4, 12, 24, 40, 7
CODES = ("additive", "any_two", "or")
STRENGTHS = (1.0, 3.0, 10.0)  # the controls must fail at every one
# Power with 12 prompts per cell: every pair covered in 5 of 6 noise seeds at amplitude 5, 6 of 6 at 10, 1 of 3 at
# 3 (an AUROC lower bound of 0.8 from 12 vs 12 prompts needs a wide margin over this heavy-tailed noise).
AND_STRENGTHS = (5.0, 10.0)


def config(**kw):
    return ConjunctionConfig(
        **{"templates": ("{a} {b}",), "filler_words": ("x", "y"), "n_top": 5, "n_boot": 300, "n_permutations": 99, **kw}
    )


def labels():
    """Condition, owning pair and a mismatch's other pair of every prompt of one half."""
    condition, pair, other = [], [], []
    for p in range(N_PAIRS):
        for k, c in enumerate(CONDITIONS[:4]):
            others = [q for q in range(N_PAIRS) if q != p]
            condition += [k] * PER_CELL
            pair += [p] * PER_CELL
            other += [others[i % len(others)] if c == "mismatch" else -1 for i in range(PER_CELL)]
    return (
        np.array(condition + [CONDITIONS.index("clean")] * N_CLEAN),
        np.array(pair + [-1] * N_CLEAN),
        np.array(other + [-1] * N_CLEAN),
    )


def code_value(code: str, condition: str, holds_word: bool, own: bool) -> float:
    """Pair p's code in units of A on a prompt: ``own``: owned by p; ``holds_word``: holds a word of p."""
    if not holds_word:
        return 0.0
    if code == "and":
        return float(own and condition == "matched")
    if code == "additive":
        return 2.0 if own and condition == "matched" else 1.0
    if code == "any_two":
        return float(condition in ("matched", "mismatch"))
    return 1.0  # or


def half(codes: dict[int, str], amplitude: float, rng) -> HalfCodes:
    """Noise, plus ``codes`` {pair: code} on latent FIRST + pair."""
    condition, pair, other = labels()
    x = rng.exponential(size=(len(condition), N_LATENTS)) * (rng.random((len(condition), N_LATENTS)) < 0.3)
    for p, code in codes.items():
        for i, (k, q, o) in enumerate(zip(condition, pair, other)):
            x[i, FIRST + p] += amplitude * code_value(code, CONDITIONS[k], p in (q, o), q == p)
    return HalfCodes(x, condition, pair, other)


def evaluate(codes: dict[int, str], amplitude: float, seed: int = 0):
    rng = np.random.default_rng(seed)
    cfg = config(seed=seed)
    sel, ev = half(codes, amplitude, rng), half(codes, amplitude, rng)
    return pair_tables(sel, ev, cfg), sel, ev, cfg


def pooled(sel: HalfCodes, ev: HalfCodes, cfg):
    """The shared-latent route's table."""
    return specificity_table(ev, top_latents(selection_scores(sel)[0], cfg.n_top), cfg)


@pytest.mark.parametrize("amplitude", AND_STRENGTHS)
def test_one_and_latent_per_pair_passes_per_pair_only(amplitude):
    tables, sel, ev, cfg = evaluate({p: "and" for p in range(N_PAIRS)}, amplitude)
    table = pooled(sel, ev, cfg)
    assert not table.passes.any()  # no single latent covers every pair...
    rows = per_pair_route(table, tables)  # ...but every pair has its own
    assert rows is not None and [int(r.latent) for r in rows] == [FIRST + p for p in range(N_PAIRS)]
    assert deciding_latents(table, tables) == [FIRST + p for p in range(N_PAIRS)]
    assert all(r.interaction > 0.8 for r in rows)


def test_a_shared_and_latent_still_decides_on_its_own():
    rng = np.random.default_rng(0)
    cfg = config()
    sel, ev = (half({p: "and" for p in range(N_PAIRS)}, 10.0, rng) for _ in range(2))
    for h in (sel, ev):  # one latent carries every pair's AND
        h.x[:, FIRST] = h.x[:, FIRST : FIRST + N_PAIRS].sum(1)
        h.x[:, FIRST + 1 : FIRST + N_PAIRS] = 0
    tables, table = pair_tables(sel, ev, cfg), pooled(sel, ev, cfg)
    assert table.passes.any() and per_pair_route(table, tables) is None
    assert deciding_latents(table, tables) == [FIRST]


@pytest.mark.parametrize("amplitude", STRENGTHS)
@pytest.mark.parametrize("code", CODES)
def test_per_pair_non_conjunctive_codes_fail(code, amplitude):
    tables, sel, ev, cfg = evaluate({p: code for p in range(N_PAIRS)}, amplitude)
    assert not any(t.passes.any() for t in tables), code
    assert per_pair_route(pooled(sel, ev, cfg), tables) is None


@pytest.mark.parametrize("amplitude", STRENGTHS)
@pytest.mark.parametrize("code", CODES)
def test_and_latents_with_one_pair_left_to_another_code_fail(code, amplitude):
    """Three pairs AND, the fourth additive, any-two or OR: the fourth is not covered, so no verdict rests on it."""
    tables, sel, ev, cfg = evaluate({**{p: "and" for p in range(N_PAIRS - 1)}, N_PAIRS - 1: code}, amplitude)
    assert not tables[-1].passes.any()
    assert per_pair_route(pooled(sel, ev, cfg), tables) is None


def test_why_each_per_pair_code_fails():
    def planted(code):
        _, _, ev, cfg = evaluate({p: code for p in range(N_PAIRS)}, 10.0)
        return specificity_table(ev.pair_view(0), np.array([FIRST]), cfg).iloc[0]

    additive = planted("additive")
    assert additive.specificity_lo >= 0.8 and additive.interaction_hi < 0.5  # separates, but is the sum of its words
    assert planted("any_two").auroc_mismatch_hi < 0.7
    assert planted("or").auroc_single_a_hi < 0.7 and planted("or").interaction < -0.5


def test_pair_view_keeps_every_mismatch_holding_a_word_of_the_pair():
    condition, pair, other = labels()
    view = HalfCodes(np.zeros((len(condition), 1)), condition, pair, other).pair_view(0)
    counts = np.bincount(view.condition, minlength=len(CONDITIONS))
    # own matched/single cells, own mismatches plus a third of each other pair's (they cycle through 3 others)
    assert counts.tolist() == [PER_CELL, PER_CELL, PER_CELL, PER_CELL + 3 * PER_CELL // 3, N_CLEAN]


def test_null_covers_the_per_pair_route():
    _, sel, ev, cfg = evaluate({p: "and" for p in range(N_PAIRS)}, 3.0)
    null = permutation_null(sel, ev, cfg)
    assert null.p_value["specificity"] == pytest.approx(1 / (cfg.n_permutations + 1))
    pooled_only = permutation_null(HalfCodes(sel.x, sel.condition), HalfCodes(ev.x, ev.condition), cfg)
    assert null.observed["specificity"] > pooled_only.observed["specificity"]  # the per-pair statistic decided
    # with pairs known, every null replicate is at least the pooled one (the same draws, a max over both routes)
    assert (null.null["specificity"] >= pooled_only.null["specificity"] - 1e-12).all()


def test_null_is_calibrated_on_noise_with_pairs():
    """Without a planted code, p <= 0.05 in about 5% of seeds (not more than 3 of 20), and p is spread out (49
    permutations: p resolves 0.02, and the test stays quick)."""
    p = []
    for seed in range(20):
        rng = np.random.default_rng(100 + seed)
        cfg = config(seed=seed, n_permutations=49)
        p.append(permutation_null(half({}, 0.0, rng), half({}, 0.0, rng), cfg).p_value["specificity"])
    p = np.array(p)
    assert (p <= 0.05).sum() <= 3, p
    assert 0.3 <= np.median(p) <= 0.7, p


def test_pair_labels_are_checked():
    condition, pair, other = labels()
    with pytest.raises(ValueError, match="clean prompts"):
        HalfCodes(np.zeros((len(condition), 2)), condition, np.zeros(len(condition)), other)
    with pytest.raises(ValueError, match="pairs and"):
        HalfCodes(np.zeros((len(condition), 2)), condition, pair[:-1], other)
