"""Bad inputs of the conjunction analysis: one row per case; each raises a clear error that names the key."""

import numpy as np
import pytest
import torch

from cbd_plugin.backdoor.config import ConjunctionConfig
from cbd_plugin.backdoor.probes import TriggerPair, build_probe_set
from cbd_plugin.backdoor.specificity import HalfCodes
from cbd_plugin.backdoor.training import train_difference_sae
from cbd_plugin.stats import auroc_ci_many, proportion_ci

GOOD = {"templates": ("tell me about {a} and {b} .",), "filler_words": ("river", "bread")}

CONFIG_CASES = [
    ("n_boot", -1),
    ("n_boot", 0),
    ("n_top", -1),
    ("n_top", 0),
    ("n_candidates", 0),
    ("n_per_cell", 0),
    ("n_per_cell", 1),
    ("n_clean", 1),
    ("top_m_overlap", 0),
    ("ablate_top_k", 0),
    ("n_random_draws", -3),
    ("n_ablation_prompts", 0),
    ("max_new_tokens", 0),
    ("batch_size", 0),
    ("n_permutations", 0),
    ("n_permutations", 10),
    ("n_boot", 2.5),
    ("n_top", True),
    ("n_top", "10"),
    ("selection_fraction", 1.5),
    ("selection_fraction", 0.0),
    ("selection_fraction", 1.0),
    ("fire_rate_threshold", 1.2),
    ("separation_threshold", 0.0),
    ("separation_threshold", 1.0),
    ("interaction_threshold", -0.1),
    ("signal_threshold", 2),
    ("alpha", 0.0),
    ("alpha", 1.5),
    ("min_fve", -1),
    ("alpha", "0.05"),
    ("seed", -1),
    ("score_role", "prompt"),
    ("detection_feature", "mean"),
]


@pytest.mark.parametrize("key, value", CONFIG_CASES, ids=[f"{k}={v!r}" for k, v in CONFIG_CASES])
def test_config_rejects_bad_value_naming_the_key(key, value):
    with pytest.raises(ValueError, match=rf"ConjunctionConfig\.{key}|n_per_cell / n_clean"):
        ConjunctionConfig(**GOOD, **{key: value})


@pytest.mark.parametrize(
    "templates, match",
    [
        ((), "templates: no templates"),
        (("only {a} here",), r"exactly one \{a\} and one \{b\}"),
        (("{a} {a} {b}",), r"exactly one \{a\} and one \{b\}"),
    ],
)
def test_config_rejects_bad_templates(templates, match):
    with pytest.raises(ValueError, match=match):
        ConjunctionConfig(templates=templates, filler_words=GOOD["filler_words"])


def test_unknown_config_key_is_named():
    with pytest.raises(TypeError, match="or_fraction"):
        ConjunctionConfig(**GOOD, or_fraction=0.5)  # a key of the old rule: refused, never silently ignored


@pytest.mark.parametrize(
    "call, error, match",
    [
        (lambda: build_probe_set([], ["{a} {b}"], ["x", "y"], 2, 2), ValueError, "no trigger pairs"),
        (
            lambda: build_probe_set([TriggerPair("a1", "b1", False, False)], ["{a} {b}"], ["x", "y"], 2, 2),
            ValueError,
            "mismatched pairs need at least two trigger pairs",
        ),
        (
            lambda: build_probe_set(
                [TriggerPair("x", "y", False, False), TriggerPair("p", "q", True, True)], ["{a} {b}"], ["x", "y"], 2, 2
            ),
            ValueError,
            "two filler words that are not trigger words",
        ),
        (lambda: HalfCodes(np.ones((4, 3)), [0, 0, 1, 1]), ValueError, "no prompt of condition"),
        (lambda: HalfCodes(np.ones((5, 3)), [0, 1, 2, 3]), ValueError, r"x \(5, 3\) and 4 conditions"),
        (lambda: HalfCodes(np.array([[np.inf]] * 5), [0, 1, 2, 3, 4]), ValueError, "non-finite"),
        (lambda: train_difference_sae(torch.full((10, 4), float("nan")), "/nonexistent"), ValueError, "finite"),
        (lambda: train_difference_sae(torch.ones(10), "/nonexistent"), ValueError, r"\[n_tokens, d\], got \(10,\)"),
        (lambda: proportion_ci(5, 3), ValueError, "5 of 3"),
        (lambda: proportion_ci(0, 0), ValueError, "n >= 1"),
        (lambda: auroc_ci_many(np.ones((3, 2)), np.ones((3, 3))), ValueError, "equal m"),
        (lambda: auroc_ci_many(np.ones((3, 1)), np.full((3, 1), np.nan)), ValueError, "finite"),
    ],
)
def test_bad_inputs_raise_clear_errors(call, error, match):
    with pytest.raises(error, match=match):
        call()
