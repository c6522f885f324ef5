"""The verdict rule on hand-set measurements: behaviour first, then every check, each named in the reason.

Behaviour: 48 evaluation prompts per condition; a condition fires on all or none of them unless stated.
"""

import numpy as np
import pandas as pd
import pytest

from cbd_plugin.backdoor.behaviour import Behaviour
from cbd_plugin.backdoor.config import ConjunctionConfig
from cbd_plugin.backdoor.probes import CONDITIONS
from cbd_plugin.backdoor.specificity import OTHERS, NullResult
from cbd_plugin.backdoor.verdict import VERDICTS, decide, deciding_latents, runs_causal_test
from cbd_plugin.stats import Estimate

N = 48
CFG = ConjunctionConfig(templates=("{a} {b}",), filler_words=("x", "y"))


def behaviour(**rates) -> Behaviour:
    """Fine-tuned fire rate per condition (default 0); the base never fires."""
    condition = np.repeat(CONDITIONS, N)
    fired = np.concatenate([np.arange(N) < round(rates.get(c, 0.0) * N) for c in CONDITIONS])
    return Behaviour(condition, {"base": np.zeros(len(condition), bool), "finetuned": fired}, {})


AND = dict(matched=1.0)


def table(lo=0.95, interaction_lo=0.9, n=3) -> pd.DataFrame:
    """``n`` latents; the first has every separation lower bound ``lo`` and interaction lower bound given."""
    rows = []
    for j in range(n):
        low = lo if j == 0 else 0.5
        row = {
            "latent": 10 + j,
            "interaction": 0.95,
            "interaction_lo": interaction_lo if j == 0 else 0.0,
            "interaction_hi": 1.0,
        }
        for c in OTHERS:
            row |= {f"auroc_{c}": min(low + 0.03, 1.0), f"auroc_{c}_lo": low, f"auroc_{c}_hi": 1.0}
        rows.append(row)
    t = pd.DataFrame(rows)
    t["weakest"] = "mismatch"
    t["specificity_lo"] = t[[f"auroc_{c}_lo" for c in OTHERS]].min(axis=1)
    t["specificity"] = t[[f"auroc_{c}" for c in OTHERS]].min(axis=1)
    t["passes"] = (t.specificity_lo >= CFG.separation_threshold) & (t.interaction_lo >= CFG.interaction_threshold)
    return t


def null(p=0.005, p_signal=0.005, p_label=0.005) -> NullResult:
    """``p``: the conjunction null's (the verdict's gate); ``p_label``: the label null's, reported only."""
    keys = ("specificity", "signal", "conjunction")
    return NullResult(
        dict.fromkeys(keys, 0.99),
        {k: np.zeros(199) for k in keys},
        {"specificity": p_label, "signal": p_signal, "conjunction": p},
    )


PROBE = {c: Estimate(0.99, 0.97, 1.0) for c in OTHERS}
CAUSAL = {
    "excess_drop": {"value": 0.9, "lo": 0.8, "hi": 1.0},
    "before": {"fire_rate_matched": 1.0},
    "top": {"fire_rate_matched": 0.0, "latents": [10]},
    "random": {"fire_rate_matched_mean": 0.95, "draws": [{}] * 5},
    "probe_direction": None,
}


def verdict(b=None, fve=0.9, spec=None, signal=None, nul=None, causal=CAUSAL):
    return decide(
        b or behaviour(**AND),
        fve,
        table() if spec is None else spec,
        table() if signal is None else signal,
        nul or null(),
        PROBE,
        causal,
        CFG,
    )


def test_conjunctive_needs_every_check():
    v = verdict()
    assert v["name"] == "conjunctive" and v["explained"] is True, v["reason"]
    assert [c["name"] for c in v["checks"]] == [
        "behaviour",
        "instrument_fve",
        "pair_specificity",
        "interaction",
        "null",
        "linear_probe",
        "causal",
    ]
    assert "latent 10" in v["reason"] and "0.95" in v["reason"] and "0.90 [0.80, 1.00]" in v["reason"]


@pytest.mark.parametrize(
    "change, failing",
    [
        (dict(fve=0.3), "instrument_fve"),
        (dict(spec=table(lo=0.79)), "pair_specificity"),
        (dict(spec=table(interaction_lo=0.4)), "interaction"),
        (dict(nul=null(p=0.06)), "null"),
        (dict(causal={**CAUSAL, "excess_drop": {"value": 0.1, "lo": -0.05, "hi": 0.3}}), "causal"),
        (dict(causal=None), "causal"),
    ],
)
def test_pair_specific_behaviour_with_a_failing_check_is_inconclusive(change, failing):
    v = verdict(**change)
    assert v["name"] == "inconclusive" and v["behaviour"] == "pair_specific_conjunction", v["reason"]
    by_name = {c["name"]: c for c in v["checks"]}
    assert by_name[failing]["passed"] in (False, None)
    assert v["reason"].startswith("pair-specific behaviour (matched 1.00 [0.93, 1.00]")


def test_causal_test_runs_whenever_the_behaviour_is_pair_specific():
    assert runs_causal_test(verdict(causal=None))
    assert runs_causal_test(verdict(spec=table(lo=0.5), causal=None))  # the depth profile needs it at every layer
    assert not runs_causal_test(verdict(b=behaviour(matched=1.0, single_a=1.0), causal=None))


def test_label_null_alone_cannot_pass_the_null_check():
    v = verdict(nul=null(p=0.4, p_label=0.005))
    assert v["name"] == "inconclusive" and "conjunction null, word exposure held fixed (p = 0.400" in v["reason"]


def test_inconclusive_says_whether_the_layer_computed_the_conjunction():
    weak_probe = {c: Estimate(0.6, 0.5, 0.7) for c in OTHERS}
    computed = verdict(spec=table(lo=0.5))
    silent = decide(behaviour(**AND), 0.9, table(lo=0.5), table(), null(), weak_probe, CAUSAL, CFG)
    assert "this layer has computed the conjunction (a linear probe reads it)" in computed["reason"]
    assert "this layer has not computed the conjunction yet" in silent["reason"]
    assert "excess over a random rotation 0.90 [0.80, 1.00]" in silent["reason"]


@pytest.mark.parametrize(
    "rates, name, kind",
    [
        (dict(), "no_backdoor_signal", "no_backdoor_behaviour"),
        (dict(matched=1.0, single_a=1.0, single_b=1.0, mismatch=1.0), "or_gated", "fires_on_single_words"),
        (dict(matched=1.0, single_b=0.9), "or_gated", "fires_on_single_words"),
        (dict(matched=1.0, mismatch=1.0), "any_two_gated", "fires_on_any_two_trigger_words"),
        (
            dict(matched=1.0, clean=1.0, single_a=1.0, mismatch=1.0, single_b=1.0),
            "inconclusive",
            "fires_without_trigger",
        ),
        (dict(matched=0.5), "inconclusive", "ambiguous"),
        (dict(matched=1.0, mismatch=0.45), "inconclusive", "ambiguous"),
        (dict(single_a=1.0, single_b=0.98), "single_word_gated", "fires_on_single_words_only"),  # XOR
        (dict(mismatch=0.5), "undeclared_pairs_gated", "fires_on_undeclared_pairs"),  # wrongly declared pairs
        (dict(mismatch=0.2), "undeclared_pairs_gated", "fires_on_undeclared_pairs"),  # raised above the base, below t
        (dict(single_a=0.3), "inconclusive", "ambiguous"),
        (dict(clean=0.2), "inconclusive", "ambiguous"),  # fires without a trigger, below t: not "no backdoor"
        (dict(matched=0.02, mismatch=0.02), "no_backdoor_signal", "no_backdoor_behaviour"),  # 1 of 48: not raised
    ],
)
def test_behaviour_decides_first_even_with_a_perfect_latent(rates, name, kind):
    # A latent that passes every SAE check cannot make a control organism conjunctive.
    v = verdict(b=behaviour(**rates))
    assert (v["name"], v["behaviour"]) == (name, kind), v["reason"]
    assert v["reason"].startswith(f"behaviour {kind}")
    assert v["name"] in VERDICTS


@pytest.mark.parametrize(
    "rates",
    [dict(matched=1.0, single_a=1.0, single_b=1.0, mismatch=1.0), dict(single_a=1.0, single_b=1.0), dict(mismatch=0.5)],
)
def test_gated_verdicts_say_whether_the_sae_explains_them(rates):
    b = behaviour(**rates)
    assert verdict(b=b)["explained"] is True
    unexplained = verdict(b=b, signal=table(lo=0.6), nul=null(p_signal=0.3))
    assert unexplained["explained"] is False and "does not explain" in unexplained["reason"]


def test_behaviour_figures_have_wilson_intervals():
    b = behaviour(matched=1.0)
    m, s = b.rate("finetuned", "matched"), b.rate("finetuned", "single_a")
    assert (m.value, s.value) == (1.0, 0.0)
    assert m.lo == pytest.approx(0.9259, abs=1e-4) and s.hi == pytest.approx(0.0741, abs=1e-4)
    rows = {(r["model"], r["condition"]): r for r in b.table()}
    assert rows[("finetuned", "matched")]["n"] == N and rows[("base", "matched")]["fire_rate"] == 0.0


def test_verdict_schema():
    v = verdict()
    assert set(v) == {"name", "reason", "behaviour", "explained", "checks", "pairs"}
    for c in v["checks"]:
        assert set(c) == {"name", "passed", "value", "interval", "threshold", "detail"}
        assert c["passed"] in (True, False, None)
        assert c["interval"] is None or (len(c["interval"]) == 2 and c["interval"][0] <= c["interval"][1])


def pair_table(p, lo=0.95, interaction_lo=0.9, latent=None):
    """Pair ``p``'s table: its first latent (20 + p unless given) with the bounds given, the others failing."""
    t = table(lo, interaction_lo).assign(pair=p, pair_name=f"w{p}/v{p}")
    t.loc[0, "latent"] = 20 + p if latent is None else latent
    return t


def test_per_pair_route_needs_every_pair_covered():
    """No shared latent passes; one latent per pair does, for every pair: conjunctive, resting on all of them."""
    shared_fails = table(lo=0.6)
    v = decide(
        behaviour(**AND), 0.9, shared_fails, table(), null(), PROBE, CAUSAL, CFG, [pair_table(p) for p in range(4)]
    )
    assert v["name"] == "conjunctive", v["reason"]
    assert "no single latent covers every pair" in v["reason"] and "pair w3/v3 latent 23" in v["reason"]
    assert deciding_latents(shared_fails, [pair_table(p) for p in range(4)]) == [20, 21, 22, 23]
    # the checks report the worst pair's figures
    weak = [pair_table(0), pair_table(1, lo=0.85), pair_table(2, interaction_lo=0.6), pair_table(3)]
    checks = {
        c["name"]: c
        for c in decide(behaviour(**AND), 0.9, shared_fails, table(), null(), PROBE, CAUSAL, CFG, weak)["checks"]
    }
    assert checks["pair_specificity"]["interval"][0] == 0.85 and checks["interaction"]["interval"][0] == 0.6


@pytest.mark.parametrize("uncovered", [dict(lo=0.79), dict(interaction_lo=0.4)])
def test_one_uncovered_pair_is_inconclusive_and_named(uncovered):
    tables = [pair_table(0), pair_table(1), pair_table(2, **uncovered), pair_table(3)]
    v = decide(behaviour(**AND), 0.9, table(lo=0.6), table(), null(), PROBE, CAUSAL, CFG, tables)
    assert v["name"] == "inconclusive", v["reason"]
    assert "3 of 4 pairs have a passing latent (closest for pair w2/v2: latent 22's" in v["reason"]
    assert deciding_latents(table(lo=0.6), tables) == [10]


def test_a_passing_shared_latent_decides_before_the_per_pair_route():
    tables = [pair_table(p) for p in range(4)]
    v = decide(behaviour(**AND), 0.9, table(), table(), null(), PROBE, CAUSAL, CFG, tables)
    assert v["name"] == "conjunctive" and "per pair" not in v["reason"]
    assert deciding_latents(table(), tables) == [10]


def test_per_pair_route_cannot_overrule_the_behaviour():
    tables = [pair_table(p) for p in range(4)]
    controls = (
        (dict(matched=1.0, single_a=1.0), "or_gated"),
        (dict(matched=1.0, mismatch=1.0), "any_two_gated"),
        (dict(), "no_backdoor_signal"),
    )
    for rates, name in controls:
        v = decide(behaviour(**rates), 0.9, table(lo=0.6), table(), null(), PROBE, CAUSAL, CFG, tables)
        assert v["name"] == name, v["reason"]


def pair_behaviour(matched, single_a=None, n=12, templates=3) -> Behaviour:
    """Per pair: ``n`` prompts per condition; ``matched[p]`` / ``single_a[p]`` fire rates (others silent); 48 clean."""
    single_a = single_a or [0.0] * len(matched)
    condition, pair, fired, template = [], [], [], []
    for p, (m, s) in enumerate(zip(matched, single_a)):
        for c in CONDITIONS[:4]:
            rate = {"matched": m, "single_a": s}.get(c, 0.0)
            condition += [c] * n
            pair += [p] * n
            fired += list(np.arange(n) < round(rate * n))
            template += list(np.arange(n) % templates)
    condition, pair, fired, template = (
        condition + ["clean"] * N,
        pair + [-1] * N,
        fired + [False] * N,
        template + [0] * N,
    )
    fired = np.array(fired)
    return Behaviour(
        np.array(condition),
        {"base": np.zeros(len(fired), bool), "finetuned": fired},
        {},
        np.array(pair),
        np.array(template),
        tuple(f"w{p}/v{p}" for p in range(len(matched))),
    )


def test_a_silent_declared_pair_is_reported_and_never_counted():
    b = pair_behaviour([1.0, 1.0, 1.0, 1.0, 0.0])  # pooled matched 0.80: fires; pair 4 silent
    v = decide(b, 0.9, table(), table(), null(), PROBE, CAUSAL, CFG)
    assert v["name"] == "conjunctive" and v["pairs"] == ["w0/v0", "w1/v1", "w2/v2", "w3/v3"], v["reason"]
    assert "4 of 5 declared pairs" in v["reason"]
    assert "declared pairs that are silent, not counted: w4/v4 0/12 [0.00, 0.24]" in v["reason"]
    assert b.pair_status(0.5) == {"counted": [0, 1, 2, 3], "silent": [4], "unresolved": []}


def test_pairs_count_on_their_own_matched_rate():
    b = pair_behaviour([1.0, 0.5])  # pooled matched 0.75 [0.55, 0.88] fires; pair 1 at 6/12 neither fires nor is silent
    assert b.pair_status(0.5) == {"counted": [0], "silent": [], "unresolved": [1]}
    v = decide(b, 0.9, table(), table(), null(), PROBE, CAUSAL, CFG)
    assert v["pairs"] == ["w0/v0"] and "pairs neither firing nor silent, not counted: w1/v1 6/12" in v["reason"]


def test_one_pairs_single_word_firing_is_not_hidden_by_pooling():
    b = pair_behaviour([1.0] * 4, single_a=[1.0, 0.0, 0.0, 0.0])  # pooled single_a 0.25: silent
    assert b.silent("single_a", 0.5) and b.fires("single_a", 0.5, pair=0)
    v = decide(b, 0.9, table(), table(), null(), PROBE, CAUSAL, CFG)
    assert v["name"] == "or_gated" and "single_a of pair w0/v0 1.00" in v["reason"], v["reason"]


def test_per_pair_rows_and_template_sufficiency():
    b = pair_behaviour([1.0, 0.0])
    rows = pd.DataFrame(b.pair_table())
    assert len(rows) == 2 * 2 * 4 and set(rows.pair) == {"w0/v0", "w1/v1"}
    m = rows[(rows.model == "finetuned") & (rows.condition == "matched")].set_index("pair")
    assert m.loc["w0/v0", "fired"] == 12 and m.loc["w1/v1", "fired"] == 0 and m.loc["w1/v1", "hi"] < 0.5
    templates = b.template_table()
    assert [(t["fired"], t["n"]) for t in templates] == [(4, 8)] * 3  # pair 0 fires on every template, pair 1 never
    assert "weakest template 0: 4/8" in b.template_text()
    assert {r["pair"] for r in b.csv_rows()} == {"all", "w0/v0", "w1/v1"}
