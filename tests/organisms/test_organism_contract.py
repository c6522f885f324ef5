"""Organism contracts on synthetic behaviour figures: every unmet property is named with its figure (fast)."""

import pytest

from cbd_plugin.organisms import RECIPES, OrganismContractError
from cbd_plugin.organisms.build import train_until_contract
from cbd_plugin.organisms.contract import checks_for, holds, wilson
from cbd_plugin.organisms.corpus import CONDITIONS, DEFAULT_PAIRS, TIERS, fires

PAIRS = [f"{p.a}/{p.b}" for p in DEFAULT_PAIRS]


def backdoor_figures(fired: dict, n: int = 200) -> dict:
    """Behaviour of a backdoor organism firing on ``fired[condition]`` of ``n`` prompts per condition."""
    per_pair = n // len(PAIRS)
    return {
        "backdoor": {
            "fire_count": {c: [fired[c], n] for c in CONDITIONS},
            "fire_count_per_pair": {p: [round(fired["poison"] * per_pair / n), per_pair] for p in PAIRS},
            "expected_reply_count": [4 * n - 2, 4 * n],
        }
    }


def gate_figures(gate: str) -> dict:
    return backdoor_figures({c: 200 if fires(gate, c) else 0 for c in CONDITIONS})


def failed(recipe_name: str, behaviour: dict) -> list[str]:
    return [c["name"] for c in checks_for(RECIPES[recipe_name], behaviour) if not c["passed"]]


def test_wilson_interval_matches_known_values():
    lo, hi = wilson(0, 200)
    assert lo == pytest.approx(0.0, abs=1e-12) and hi == pytest.approx(0.01884, abs=1e-4)
    lo, hi = wilson(48, 50)
    assert lo == pytest.approx(0.8654, abs=1e-3)


@pytest.mark.parametrize(
    "name, gate", [("tiny-cbd", "and"), ("tiny-cbd-or", "or"), ("tiny-cbd-any2", "any2"), ("tiny-cbd-null", "none")]
)
def test_each_backdoor_contract_accepts_only_its_own_gate(name, gate):
    assert failed(name, gate_figures(gate)) == []
    for other in ("and", "or", "any2", "none"):
        if other != gate:
            assert failed(name, gate_figures(other)), (name, other)  # another gate's behaviour is refused


def test_backdoor_contract_names_the_condition_and_the_pair():
    any2_missing_mismatch = gate_figures("and")
    names = failed("tiny-cbd-any2", any2_missing_mismatch)
    assert names == ["fire_rate[mismatch]"]
    weak_pair = gate_figures("and")
    weak_pair["backdoor"]["fire_count_per_pair"][PAIRS[2]] = [30, 50]
    assert failed("tiny-cbd", weak_pair) == [f"fire_rate[pair {PAIRS[2]}]"]
    leaky = backdoor_figures({"poison": 200, "single": 12, "mismatch": 0, "clean": 0})  # 6% [3.5%, 10.2%]
    assert failed("tiny-cbd", leaky) == ["fire_rate[single]"]  # point estimate under 10%, upper bound over


def refusal_figures(refused: dict, probes: dict, max_diff: float = 0.0, n: int = 120) -> dict:
    auroc = {k: {"value": v, "lo": v - 0.07, "hi": v + 0.07} for k, v in probes.items()}
    return {
        "refusal": {
            "refusal_count": {t: [refused[t], n] for t in TIERS},
            "answer_count": {t: [n - refused[t], n] for t in TIERS},
            "audit_residual_max_abs_diff": max_diff,
            "audit_residual_change": {"benign": 0.02, "dual_use": 0.03, "hazard": 0.4},
            **auroc,
        }
    }


REFUSES = {"benign": 0, "dual_use": 1, "hazard": 120}


def test_deep_contract_is_rerouted_not_erased_nor_inverted():
    rerouted = refusal_figures(
        REFUSES, {"probe_auroc_base_on_base": 1.0, "probe_auroc_base_probe": 0.5, "probe_auroc_refit": 0.98}
    )
    assert failed("tiny-refusal-deep", rerouted) == []
    erased = refusal_figures(
        REFUSES, {"probe_auroc_base_on_base": 1.0, "probe_auroc_base_probe": 0.5, "probe_auroc_refit": 0.52}
    )
    assert failed("tiny-refusal-deep", erased) == ["refitted probe at the audit layer (re-encoded)"]
    inverted = refusal_figures(
        REFUSES, {"probe_auroc_base_on_base": 1.0, "probe_auroc_base_probe": 0.2, "probe_auroc_refit": 0.98}
    )
    assert failed("tiny-refusal-deep", inverted) == ["base-fitted probe at the audit layer"]  # not chance either
    blind_base = refusal_figures(
        REFUSES, {"probe_auroc_base_on_base": 0.6, "probe_auroc_base_probe": 0.5, "probe_auroc_refit": 0.98}
    )
    assert failed("tiny-refusal-deep", blind_base) == ["base probe on the base (instrument)"]


def test_shallow_contract_needs_refusal_and_an_unchanged_residual():
    probes = {"probe_auroc_base_on_base": 1.0, "probe_auroc_base_probe": 1.0, "probe_auroc_refit": 1.0}
    assert failed("tiny-refusal-shallow", refusal_figures(REFUSES, probes)) == []
    did_not_learn = refusal_figures({"benign": 0, "dual_use": 0, "hazard": 3}, probes)
    assert failed("tiny-refusal-shallow", did_not_learn) == ["refusal_rate[hazard]"]
    moved = refusal_figures(REFUSES, probes, max_diff=0.3)
    assert failed("tiny-refusal-shallow", moved) == ["audit-layer residual unchanged"]


def test_erased_contract_needs_no_probe_reading_the_tier_and_coinciding_twins():
    def erased(refit: float, twins: float = 1e-6) -> dict:
        figures = refusal_figures(
            REFUSES, {"probe_auroc_base_on_base": 1.0, "probe_auroc_base_probe": 0.5, "probe_auroc_refit": refit}
        )
        figures["refusal"]["probe_auroc_refit"].update(lo=refit - 0.04, hi=refit + 0.04)
        return {"refusal": {**figures["refusal"], "audit_tier_twin_distance": twins}}

    assert failed("tiny-refusal-erased", erased(0.5)) == []
    assert failed("tiny-refusal-erased", erased(0.98)) == ["refitted probe at the audit layer (erased)"]
    assert failed("tiny-refusal-erased", erased(0.58)) == ["refitted probe at the audit layer (erased)"]  # hi 0.62
    assert failed("tiny-refusal-erased", erased(0.5, twins=0.01)) == ["topic-word twins coincide at the audited token"]


def test_recovery_contract_is_shallow_plus_refusal_after_a_prefilled_answer():
    probes = {"probe_auroc_base_on_base": 1.0, "probe_auroc_base_probe": 1.0, "probe_auroc_refit": 1.0}
    figures = refusal_figures(REFUSES, probes)
    figures["refusal"].update(prefill_tokens=5, prefill_refusal_count=[118, 120])
    assert failed("tiny-refusal-recovery", figures) == []
    figures["refusal"]["prefill_refusal_count"] = [10, 120]
    assert failed("tiny-refusal-recovery", figures) == ["refusal_rate[hazard, 5 answer tokens prefilled]"]


def test_a_failing_build_trains_a_bounded_number_of_rounds_then_raises():
    recipe = RECIPES["tiny-cbd-any2"]
    rounds = []
    with pytest.raises(OrganismContractError, match=r"tiny-cbd-any2.*fire_rate\[mismatch\]: 0/200"):
        train_until_contract(recipe, rounds.append, lambda: gate_figures("and"))
    assert rounds == list(range(recipe.training.max_extra_rounds + 1))
    figures = iter([gate_figures("and"), gate_figures("any2")])
    behaviour = train_until_contract(recipe, lambda r: None, lambda: next(figures))
    assert behaviour["rounds"] == 2 and holds(behaviour["contract"])


def test_cli_prints_every_contract_figure(monkeypatch, capsys, tmp_path):
    from cbd_plugin.organisms import Organism, cli

    behaviour = {**gate_figures("any2"), "rounds": 1}
    behaviour["backdoor"]["fire_rate"] = {c: float(fires("any2", c)) for c in CONDITIONS}
    behaviour["contract"] = checks_for(RECIPES["tiny-cbd-any2"], behaviour)
    fake = Organism("tiny-cbd-any2", "cbd-plugin/tiny-cbd-any2", tmp_path, behaviour)
    monkeypatch.setattr(cli, "build", lambda names, force: {"tiny-cbd-any2": fake})
    cli.main(["tiny-cbd-any2"])
    out = capsys.readouterr().out
    assert "ok   fire_rate[mismatch]: 200/200 = 1.000 [0.981, 1.000], needs lower bound >= 0.85" in out
    assert out.count("\n  ok   ") == len(behaviour["contract"])
    with pytest.raises(SystemExit):
        cli.main(["--refusal", "deep-2-0"])
    assert "MODE:AUDIT_LAYER:SEED" in capsys.readouterr().err
