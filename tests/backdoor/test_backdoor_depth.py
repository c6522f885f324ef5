"""The conjunction depth profile from per-layer report payloads: every series at every layer, written as CSV+PNG."""

import pandas as pd

from cbd_plugin.backdoor.depth import depth_profile, write_depth_profile
from cbd_plugin.backdoor.specificity import OTHERS


def payload(layer: int, probe: float, latent: float, causal: bool) -> dict:
    row = {
        "latent": 4,
        "weakest": "mismatch",
        "specificity_lo": latent - 0.1,
        "interaction": 0.9,
        "interaction_lo": 0.8,
        "interaction_hi": 1.0,
        "passes": True,
    }
    for c in OTHERS:
        row |= {f"auroc_{c}": latent, f"auroc_{c}_lo": latent - 0.1, f"auroc_{c}_hi": min(latent + 0.05, 1.0)}
    weak = {"value": 0.6, "lo": 0.5, "hi": 0.7}
    rows = [row, {**row, "specificity_lo": 0.0}, {**row, "specificity_lo": 0.99, "passes": False}]
    return {
        "layer": layer,
        "verdict": {"name": "inconclusive"},
        "specificity": rows,
        "linear_probe_by_condition": {
            c: ({"value": probe, "lo": probe - 0.05, "hi": 1.0} if c != "clean" else weak) for c in OTHERS
        },
        "causal": {"excess_drop": {"value": 0.5, "lo": 0.3, "hi": 0.7}} if causal else None,
    }


def test_every_series_at_every_layer_whatever_the_verdict(tmp_path):
    payloads = [payload(3, 1.0, 0.98, True), payload(1, 0.9, 0.55, False), payload(2, 0.95, 0.8, True)]
    frame = depth_profile(payloads)
    assert frame.layer.tolist()[:3] == [1, 1, 1]  # sorted by layer
    probe = frame[frame.series == "probe"].set_index("layer")
    assert probe.loc[1, "value"] == 0.6 and probe.loc[1, "lo"] == 0.5  # the weakest condition (clean here)
    latent = frame[frame.series == "latent"].set_index("layer")
    assert latent.loc[3, "value"] == 0.98 and latent.loc[3, "lo"] == 0.88
    assert frame[frame.series == "ablation"].layer.tolist() == [2, 3]  # only where the causal test ran
    files = write_depth_profile(payloads, tmp_path, 0.8, "test")
    assert files["png"].stat().st_size > 0
    assert pd.read_csv(files["csv"]).shape == frame.shape
