"""Bad input to the refusal audit fails fast with an error naming the key, file or shape (issue 12)."""

import pandas as pd
import pytest
import torch

from cbd_plugin.refusal import AuditConfig
from cbd_plugin.refusal.audit import check_inputs

BAD_CONFIGS = [
    ({"threshold_quantile": 1.5}, "threshold_quantile"),
    ({"threshold_quantile": 0.0}, "threshold_quantile"),
    ({"n_boot": -1}, "n_boot"),
    ({"n_boot": 10}, "n_boot"),  # too few replicates for a 95% percentile interval
    ({"n_boot": 100.0}, "n_boot"),  # not an integer
    ({"n_perm": 50}, "n_perm"),  # p floor 1/51 cannot resolve alpha 0.05
    ({"n_perm": 500, "alpha": 0.01}, "n_perm"),  # ...nor 1/501 alpha 0.01
    ({"n_perm": True}, "n_perm"),
    ({"alpha": 0.0}, "alpha"),
    ({"alpha": 0.7}, "alpha"),
    ({"temperature": -0.5}, "temperature"),
    ({"temperature": float("nan")}, "temperature"),
    ({"temperature": "hot"}, "temperature"),
    ({"n_samples": 4}, "n_samples"),  # greedy gives one sample
    ({"temperature": 0.7, "n_samples": 0}, "n_samples"),
    ({"positions": "last_token"}, "positions"),
    ({"pooling": "median"}, "pooling"),
    ({"selection": "t-test"}, "selection"),
    ({"on_format_confound": "ignore"}, "on_format_confound"),
    ({"n_latents": 0}, "n_latents"),
    ({"max_new_tokens": 0}, "max_new_tokens"),
    ({"batch_size": 0}, "batch_size"),
    ({"n_response_tokens": -2}, "n_response_tokens"),
    ({"separation_auroc": 0.4}, "separation_auroc"),
    ({"separation_auroc": 1.0}, "separation_auroc"),
    ({"min_refusal_change": 0}, "min_refusal_change"),
    ({"max_auroc_change": 0.6}, "max_auroc_change"),
    ({"min_fve": 1.0}, "min_fve"),
    ({"max_error_norm_fraction": 0}, "max_error_norm_fraction"),
    ({"min_mean_l0": -1}, "min_mean_l0"),
    ({"n_random_instruments": 5}, "n_random_instruments"),  # fewer than ceil(1/alpha) - 1: its max is no quantile
    ({"profile_positions": "yes"}, "profile_positions"),
    ({"format_threshold": 0.3}, "format_threshold"),
    ({"select_fraction": 1.0}, "select_fraction"),
    ({"seed": -1}, "seed"),
    ({"profile_layers": "every"}, "profile_layers"),
    ({"profile_layers": [1, 1]}, "profile_layers"),
    ({"profile_layers": [-1]}, "profile_layers"),
]


@pytest.mark.parametrize("values,key", BAD_CONFIGS, ids=[str(v) for v, _ in BAD_CONFIGS])
def test_bad_config_names_the_key(values, key):
    with pytest.raises(ValueError, match=rf"AuditConfig\.{key}\b"):
        AuditConfig(**values)


def test_unknown_and_renamed_keys():
    with pytest.raises(KeyError, match="n_hazard"):
        AuditConfig.from_dict({"n_hazard": 3})
    with pytest.raises(KeyError, match=r"deep_max_auroc \(now separation_auroc\)"):
        AuditConfig.from_dict({"deep_max_auroc": 0.65})
    assert AuditConfig.from_dict({"temperature": 0.7, "n_samples": 4}).n_samples == 4


def test_profile_layers_beyond_the_model():
    cfg = AuditConfig(profile_layers=[0, 7])
    with pytest.raises(ValueError, match=r"profile_layers: \[7\]"):
        cfg.layers_to_profile(n_layers=4, audit_layer=1)
    assert AuditConfig().layers_to_profile(4, 1) == [0, 1, 2, 3]
    assert AuditConfig().layers_to_profile(26, 12) == [0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24]
    assert AuditConfig(profile_layers=[3]).layers_to_profile(4, 1) == [1, 3]


class TinySAE(torch.nn.Module):
    def __init__(self, d):
        super().__init__()
        self.activation_dim, self.dict_size = d, 8
        self.w = torch.nn.Parameter(torch.zeros(d, 8))


def test_sae_width_must_match_the_residual():
    with pytest.raises(ValueError, match=r"SAE activation_dim 64 .* hidden size 32"):
        check_inputs(TinySAE(64), layer=0, n_layers=2, hidden_size=32)


def test_layer_must_exist():
    with pytest.raises(ValueError, match=r"layer=5 .* 2 layers"):
        check_inputs(TinySAE(32), layer=5, n_layers=2, hidden_size=32)


def test_prompts_without_both_tiers_in_a_split_fail_before_generation():
    from cbd_plugin.organisms.tokenizer import build_tokenizer
    from cbd_plugin.refusal.audit import prepare_prompts

    words = ("river", "garden", "music", "bread", "window", "coffee")  # one tier per text
    frame = pd.DataFrame(
        {
            "id": range(6),
            "text": [f"a b {w}" for w in words],
            "tier": ["hazard", "benign", "dual_use", "hazard", "dual_use", "dual_use"],
            "split": ["select", "select", "select", "eval", "eval", "eval"],
        }
    )
    with pytest.raises(ValueError, match=r"split 'eval' has no benign"):
        prepare_prompts(frame, build_tokenizer(), AuditConfig())
