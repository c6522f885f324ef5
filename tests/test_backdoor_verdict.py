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
from cbd_plugin.backdoor.verdict import VERDICTS, decide, needs_causal_test
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
        row = {"latent": 10 + j, "interaction": 0.95, "interaction_lo": interaction_lo if j == 0 else 0.0,
               "interaction_hi": 1.0}
        for c in OTHERS:
            row |= {f"auroc_{c}": min(low + 0.03, 1.0), f"auroc_{c}_lo": low, f"auroc_{c}_hi": 1.0}
        rows.append(row)
    t = pd.DataFrame(rows)
    t["weakest"] = "mismatch"
    t["specificity_lo"] = t[[f"auroc_{c}_lo" for c in OTHERS]].min(axis=1)
    t["specificity"] = t[[f"auroc_{c}" for c in OTHERS]].min(axis=1)
    t["passes"] = (t.specificity_lo >= CFG.separation_threshold) & (t.interaction_lo >= CFG.interaction_threshold)
    return t


def null(p=0.005, p_signal=0.005) -> NullResult:
    return NullResult({"specificity": 0.99, "signal": 0.99}, {"specificity": np.zeros(199), "signal": np.zeros(199)},
                      {"specificity": p, "signal": p_signal})


PROBE = {c: Estimate(0.99, 0.97, 1.0) for c in OTHERS}
CAUSAL = {"excess_drop": {"value": 0.9, "lo": 0.8, "hi": 1.0}, "before": {"fire_rate_matched": 1.0},
          "top": {"fire_rate_matched": 0.0, "latents": [10]},
          "random": {"fire_rate_matched_mean": 0.95, "draws": [{}] * 5}, "probe_direction": None}


def verdict(b=None, fve=0.9, spec=None, signal=None, nul=None, causal=CAUSAL):
    return decide(b or behaviour(**AND), fve, table() if spec is None else spec,
                  table() if signal is None else signal, nul or null(), PROBE, causal, CFG)


def test_conjunctive_needs_every_check():
    v = verdict()
    assert v["name"] == "conjunctive" and v["explained"] is True, v["reason"]
    assert [c["name"] for c in v["checks"]] == ["behaviour", "instrument_fve", "pair_specificity", "interaction",
                                                "null", "linear_probe", "causal"]
    assert "latent 10" in v["reason"] and "0.95" in v["reason"] and "0.90 [0.80, 1.00]" in v["reason"]


@pytest.mark.parametrize("change, failing", [
    (dict(fve=0.3), "instrument_fve"),
    (dict(spec=table(lo=0.79)), "pair_specificity"),
    (dict(spec=table(interaction_lo=0.4)), "interaction"),
    (dict(nul=null(p=0.06)), "null"),
    (dict(causal={**CAUSAL, "excess_drop": {"value": 0.1, "lo": -0.05, "hi": 0.3}}), "causal"),
    (dict(causal=None), "causal"),
])
def test_pair_specific_behaviour_with_a_failing_check_is_inconclusive(change, failing):
    v = verdict(**change)
    assert v["name"] == "inconclusive" and v["behaviour"] == "pair_specific_conjunction", v["reason"]
    by_name = {c["name"]: c for c in v["checks"]}
    assert by_name[failing]["passed"] in (False, None)
    assert v["reason"].startswith("pair-specific behaviour (matched 1.00 [0.93, 1.00]")


def test_causal_test_is_needed_only_when_everything_else_passes():
    assert needs_causal_test(verdict(causal=None))
    assert not needs_causal_test(verdict(spec=table(lo=0.5), causal=None))
    assert not needs_causal_test(verdict(b=behaviour(matched=1.0, single_a=1.0), causal=None))


@pytest.mark.parametrize("rates, name, kind", [
    (dict(), "no_backdoor_signal", "no_backdoor_behaviour"),
    (dict(matched=1.0, single_a=1.0, single_b=1.0, mismatch=1.0), "or_gated", "fires_on_single_words"),
    (dict(matched=1.0, single_b=0.9), "or_gated", "fires_on_single_words"),
    (dict(matched=1.0, mismatch=1.0), "any_two_gated", "fires_on_any_two_trigger_words"),
    (dict(matched=1.0, clean=1.0, single_a=1.0, mismatch=1.0, single_b=1.0), "inconclusive", "fires_without_trigger"),
    (dict(matched=0.5), "inconclusive", "ambiguous"),
    (dict(matched=1.0, mismatch=0.45), "inconclusive", "ambiguous"),
])
def test_behaviour_decides_first_even_with_a_perfect_latent(rates, name, kind):
    # A latent that passes every SAE check cannot make a control organism conjunctive.
    v = verdict(b=behaviour(**rates))
    assert (v["name"], v["behaviour"]) == (name, kind), v["reason"]
    assert v["reason"].startswith(f"behaviour {kind}")
    assert v["name"] in VERDICTS


def test_or_gated_says_whether_the_sae_explains_it():
    b = behaviour(matched=1.0, single_a=1.0, single_b=1.0, mismatch=1.0)
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
    assert set(v) == {"name", "reason", "behaviour", "explained", "checks"}
    for c in v["checks"]:
        assert set(c) == {"name", "passed", "value", "interval", "threshold", "detail"}
        assert c["passed"] in (True, False, None)
        assert c["interval"] is None or (len(c["interval"]) == 2 and c["interval"][0] <= c["interval"][1])
