"""The conjunction null holds word exposure fixed: it says no to word-identity structure and yes to an AND code.

Synthetic codes on two pairs (words a0 b0 a1 b1) with the prompts' real word content: WORDS plants one latent per
pair that adds A for each word of its pair (the trace a fine-tune on the trigger words without a gate leaves: the
label-permutation null calls it significant, since it separates each pair's matched prompts by rank); AND plants
one latent that fires on either pair's matched prompts only.
"""

import numpy as np
import pytest

from cbd_plugin.backdoor.config import ConjunctionConfig
from cbd_plugin.backdoor.probes import CONDITIONS
from cbd_plugin.backdoor.specificity import ExposureFit, HalfCodes, firing_signal, permutation_null

N_CELL, N_CLEAN, N_LATENTS, N_TEMPLATES = 16, 16, 30, 3
WORDS = ("a0", "b0", "a1", "b1")


def prompts(rng):
    """(condition, pair, other pair, words present) per prompt."""
    rows = []
    for p in (0, 1):
        q = 1 - p
        own, other = WORDS[2 * p : 2 * p + 2], WORDS[2 * q : 2 * q + 2]
        rows += [("matched", p, -1, set(own))] * N_CELL
        rows += [("single_a", p, -1, {own[0]})] * N_CELL + [("single_b", p, -1, {own[1]})] * N_CELL
        rows += [("mismatch", p, q, {own[rng.integers(2)], other[rng.integers(2)]}) for _ in range(N_CELL)]
    return rows + [("clean", -1, -1, set())] * N_CLEAN


def half(code: str, amplitude: float, rng) -> HalfCodes:
    rows = prompts(rng)
    present = np.array([[w in words for w in WORDS] for *_, words in rows], dtype=float)
    template = np.eye(N_TEMPLATES)[rng.integers(N_TEMPLATES, size=len(rows))]
    x = rng.exponential(size=(len(rows), N_LATENTS)) * (rng.random((len(rows), N_LATENTS)) < 0.3)
    if code == "words":
        x[:, 7] += amplitude * present[:, :2].sum(1)
        x[:, 8] += amplitude * present[:, 2:].sum(1)
    elif code == "single":
        x[:, 7] += amplitude * (present.sum(1) == 1)
    elif code == "and":
        x[:, 7] += amplitude * ((present[:, :2].sum(1) == 2) | (present[:, 2:].sum(1) == 2))
    return HalfCodes(
        x,
        [CONDITIONS.index(c) for c, *_ in rows],
        [p for _, p, *_ in rows],
        [o for _, _, o, _ in rows],
        np.column_stack([present, template]),
    )


def config(seed: int) -> ConjunctionConfig:
    return ConjunctionConfig(
        templates=("{a} {b}",), filler_words=("x", "y"), n_top=5, n_boot=100, n_permutations=39, seed=seed
    )


def nulls(code: str, amplitude: float, seed: int):
    rng = np.random.default_rng(seed)
    return permutation_null(half(code, amplitude, rng), half(code, amplitude, rng), config(seed)).p_value


@pytest.mark.parametrize("amplitude", (3.0, 10.0))
def test_word_identity_passes_the_label_null_but_not_the_conjunction_null(amplitude):
    p = [nulls("words", amplitude, seed) for seed in range(3)]
    assert all(q["specificity"] <= 0.05 for q in p), p  # the old null answers "yes"
    assert all(q["conjunction"] > 0.05 for q in p), p  # the conjunction null says no


@pytest.mark.parametrize("amplitude", (3.0, 10.0))
def test_and_code_beats_the_conjunction_null(amplitude):
    p = [nulls("and", amplitude, seed) for seed in range(3)]
    assert all(q["conjunction"] == pytest.approx(0.025) for q in p), p


def test_conjunction_null_is_not_small_on_noise():
    p = np.array([nulls("none", 0.0, 100 + seed)["conjunction"] for seed in range(10)])
    assert (p <= 0.05).sum() <= 2, p
    assert 0.2 <= np.median(p) <= 0.8, p


def test_exposure_fit_reproduces_an_additive_code_exactly():
    rng = np.random.default_rng(0)
    h = half("words", 5.0, rng)
    h = h.with_x(np.column_stack([h.exposure @ np.arange(1.0, h.exposure.shape[1] + 1)] * 2))
    fit = ExposureFit.of(h)
    assert np.abs(fit.residual).max() < 1e-9
    assert np.allclose(fit.resampled(rng).x, h.x)


def test_exposure_design_errors():
    with pytest.raises(ValueError, match="exposure"):
        HalfCodes(np.zeros((5, 2)), range(5), [0, 0, 0, 0, -1], None, np.zeros((4, 3)))
    with pytest.raises(ValueError, match="no exposure design"):
        ExposureFit.of(HalfCodes(np.zeros((5, 2)), range(5)))


def test_firing_signal_reads_the_conditions_that_fire():
    """An XOR-like code (single words, never two): the latent is found for single words vs clean, and noise is not."""
    rng = np.random.default_rng(0)
    found = firing_signal(half("single", 5.0, rng), half("single", 5.0, rng), ("single_a", "single_b"), config(0))
    assert found["latent"] == 7 and found["lo"] > 0.9 and found["p"] == pytest.approx(0.025), found
    noise = [
        firing_signal(half("none", 0.0, rng), half("none", 0.0, rng), ("mismatch",), config(s))["p"] for s in range(6)
    ]
    assert sum(p <= 0.05 for p in noise) <= 1, noise
