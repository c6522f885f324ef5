"""The conjunction rule on synthetic codes: only an AND code passes; additive, any-two and OR codes fail at every
strength; the permutation null is calibrated on noise and small on a planted AND latent.

Codes at the decision token, per prompt, amplitude A (in units of the background noise), plus sparse non-negative
noise on every latent: AND fires on matched pairs; ADDITIVE adds A per trigger word of any pair (matched 2A,
single A, mismatch 2A); PAIR_ADDITIVE adds A per word of the prompt's own pair (mismatch A); ANY_TWO fires on
matched and mismatched pairs; OR fires whenever a trigger word is present.
"""

import numpy as np
import pytest

from cbd_plugin.backdoor.config import ConjunctionConfig
from cbd_plugin.backdoor.probes import CONDITIONS
from cbd_plugin.backdoor.specificity import (
    HalfCodes,
    interaction,
    permutation_null,
    selection_scores,
    specificity_table,
    top_latents,
)

PER_CONDITION = {"matched": 24, "single_a": 24, "single_b": 24, "mismatch": 24, "clean": 16}
CODES = ("and", "additive", "pair_additive", "any_two", "or")
STRENGTHS = (1.0, 3.0, 10.0)  # the controls must fail at every one
AND_STRENGTHS = (3.0, 10.0)  # amplitude 1 in this noise is too weak to call (an honest failure, not tested)
N_LATENTS = 40


def config(**kw):
    return ConjunctionConfig(
        templates=("{a} {b}",), filler_words=("x", "y"), n_top=5, n_boot=300, n_permutations=99, **kw
    )


def code_value(code: str, condition: str) -> float:
    """The code's activation in units of A."""
    words = {"matched": 2, "single_a": 1, "single_b": 1, "mismatch": 2, "clean": 0}[condition]
    own_words = {"matched": 2, "single_a": 1, "single_b": 1, "mismatch": 1, "clean": 0}[condition]
    return {
        "and": float(condition == "matched"),
        "additive": float(words),
        "pair_additive": float(own_words),
        "any_two": float(words == 2),
        "or": float(words > 0),
    }[code]


def half(codes: dict[int, tuple[str, float]], rng) -> HalfCodes:
    """Sparse exponential noise on every latent; ``codes`` {latent: (code, amplitude)} planted on top."""
    condition = np.concatenate([[CONDITIONS.index(c)] * n for c, n in PER_CONDITION.items()])
    x = rng.exponential(size=(len(condition), N_LATENTS)) * (rng.random((len(condition), N_LATENTS)) < 0.3)
    for latent, (code, amplitude) in codes.items():
        x[:, latent] += amplitude * np.array([code_value(code, CONDITIONS[k]) for k in condition])
    return HalfCodes(x, condition)


def evaluate(code: str, amplitude: float, seed: int = 0):
    rng = np.random.default_rng(seed)
    cfg = config(seed=seed)
    sel, ev = half({7: (code, amplitude)}, rng), half({7: (code, amplitude)}, rng)
    conjunction, _ = selection_scores(sel)
    return specificity_table(ev, top_latents(conjunction, cfg.n_top), cfg), sel, ev, cfg


@pytest.mark.parametrize("amplitude", AND_STRENGTHS)
def test_and_code_passes(amplitude):
    table, *_ = evaluate("and", amplitude)
    row = table.set_index("latent").loc[7]
    assert row.passes, row.to_dict()
    assert row.interaction > 0.8 and row.specificity > 0.9


@pytest.mark.parametrize("amplitude", STRENGTHS)
@pytest.mark.parametrize("code", CODES[1:])
def test_non_conjunctive_codes_fail(code, amplitude):
    table, *_ = evaluate(code, amplitude)
    assert not table.passes.any(), table[["latent", "specificity_lo", "interaction_lo", "weakest"]].to_string()


def test_why_each_code_fails():
    """Each non-AND code fails for its own reason, at the strongest amplitude."""

    def planted(code):
        _, _, ev, cfg = evaluate(code, 10.0)
        return specificity_table(ev, np.array([7]), cfg).iloc[0]

    assert planted("additive").auroc_mismatch_hi < 0.7  # 2A on mismatched pairs too
    additive = planted("pair_additive")
    assert additive.specificity_lo >= 0.8  # separates every condition by rank...
    assert abs(additive.interaction) < 0.15 and additive.interaction_hi < 0.5  # ...but is the sum of its words
    assert planted("any_two").auroc_mismatch_hi < 0.7
    assert planted("or").auroc_single_a_hi < 0.7 and planted("or").interaction < -0.5


def test_interaction_share_values():
    means = {
        "matched": np.array([2.0, 2.0, 1.0, 0.0]),
        "single_a": np.array([0.0, 1.0, 1.0, 0.0]),
        "single_b": np.array([0.0, 1.0, 1.0, 0.0]),
        "clean": np.zeros(4),
    }
    # AND 1; additive 0; OR (1 everywhere) clipped to -1; no response to matched pairs -1.
    assert interaction(means).tolist() == [1.0, 0.0, -1.0, -1.0]


def test_bootstrap_interval_brackets_the_point_and_narrows_with_strength():
    weak, strong = evaluate("and", 0.5)[0].set_index("latent"), evaluate("and", 10.0)[0].set_index("latent")
    for table in (weak, strong):
        for c in ("single_a", "mismatch", "clean"):
            assert (table[f"auroc_{c}_lo"] <= table[f"auroc_{c}"] + 1e-12).all()
            assert (table[f"auroc_{c}"] <= table[f"auroc_{c}_hi"] + 1e-12).all()
    if 7 in weak.index:
        assert (
            weak.loc[7, "auroc_single_a_hi"] - weak.loc[7, "auroc_single_a_lo"]
            > strong.loc[7, "auroc_single_a_hi"] - strong.loc[7, "auroc_single_a_lo"]
        )


def test_null_p_value_small_for_and_latent():
    _, sel, ev, cfg = evaluate("and", 3.0)
    null = permutation_null(sel, ev, cfg)
    assert null.p_value["specificity"] == pytest.approx(1 / (cfg.n_permutations + 1))
    assert null.p_value["signal"] == pytest.approx(1 / (cfg.n_permutations + 1))
    assert len(null.null["specificity"]) == cfg.n_permutations


def test_null_is_calibrated_on_noise():
    """Without a planted code, p <= 0.05 in about 5% of seeds (not more than 3 of 20), and p is spread out."""
    p = []
    for seed in range(20):
        rng = np.random.default_rng(100 + seed)
        cfg = config(seed=seed)
        p.append(permutation_null(half({}, rng), half({}, rng), cfg).p_value["specificity"])
    p = np.array(p)
    assert (p <= 0.05).sum() <= 3, p
    assert 0.3 <= np.median(p) <= 0.7, p


def test_half_codes_errors_name_the_problem():
    with pytest.raises(ValueError, match="no prompt of condition"):
        HalfCodes(np.zeros((3, 2)), [0, 1, 2])
    with pytest.raises(ValueError, match="non-finite"):
        HalfCodes(np.full((5, 2), np.nan), [0, 1, 2, 3, 4])
