"""The Conjunction tab's plotly figures (cbd_plugin.backdoor.figures; the page itself: test_dashboard.py)."""

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("plotly")

from cbd_plugin.backdoor import figures

CONDITIONS = ("matched", "single_a", "single_b", "mismatch", "clean")


def behaviour_csv():
    return pd.DataFrame(
        [
            {"model": m, "condition": c, "fire_rate": r, "lo": max(r - 0.07, 0), "hi": min(r + 0.07, 1), "n": 48}
            for m in ("base", "finetuned")
            for c in CONDITIONS
            for r in [float(m == "finetuned" and c == "matched")]
        ]
    )


def specificity_csv():
    rows = {"latent": [3, 9]}
    for c in figures.OTHERS:
        rows |= {f"auroc_{c}": [0.99, 0.6], f"auroc_{c}_lo": [0.95, 0.5], f"auroc_{c}_hi": [1.0, 0.7]}
    return pd.DataFrame(rows)


def test_behaviour_figure_has_both_models_with_intervals():
    fig = figures.behaviour_figure(behaviour_csv())
    assert [t.name for t in fig.data] == ["base", "finetuned"]
    finetuned = fig.data[1]
    assert list(finetuned.x) == list(CONDITIONS) and finetuned.y[0] == 1.0
    assert finetuned.error_y.arrayminus[0] == pytest.approx(0.07)


def test_specificity_figure_one_series_per_condition_and_threshold_line():
    fig = figures.specificity_figure(specificity_csv(), 0.8)
    assert [t.name for t in fig.data] == [f"vs {c}" for c in figures.OTHERS]
    assert list(fig.data[0].y) == ["latent 3", "latent 9"]
    assert fig.layout.shapes[0].x0 == 0.8


def test_null_and_causal_figures():
    null = figures.null_figure(pd.DataFrame({"specificity": np.linspace(0.4, 0.6, 50)}), {"specificity": 0.99})
    assert null.data[0].name.startswith("specificity") and null.layout.shapes[0].x0 == 0.99
    causal = {
        "before": {"fire_rate_matched": 1.0},
        "top": {"fire_rate_matched": 0.0},
        "random": {"fire_rate_matched_mean": 0.9},
        "probe_direction": {"fire_rate_matched": 0.1},
        "excess_drop": {"value": 0.9, "lo": 0.8, "hi": 1.0},
    }
    fig = figures.causal_figure(causal)
    assert list(fig.data[0].x) == ["no removal", "top latents", "rotated (same energy)", "probe direction"]


def test_pair_rows_plot_per_pair_and_never_in_the_pooled_figure():
    pooled = behaviour_csv().assign(pair="all")
    per_pair = pd.DataFrame(
        [
            {"model": "finetuned", "pair": p, "condition": c, "fire_rate": r, "lo": 0.0, "hi": 1.0, "n": 12}
            for p, r in (("a/b", 1.0), ("c/d", 0.0))
            for c in CONDITIONS[:4]
        ]
    )
    table = pd.concat([pooled, per_pair])
    assert list(figures.behaviour_figure(table).data[1].x) == list(CONDITIONS)
    fig = figures.pair_behaviour_figure(table)
    assert [t.name for t in fig.data] == list(CONDITIONS[:4]) and list(fig.data[0].x) == ["a/b", "c/d"]
    assert list(fig.data[0].y) == [1.0, 0.0]


def test_depth_figure_one_trace_per_series():
    profile = pd.DataFrame(
        [
            {"layer": k, "series": s, "label": s, "value": 0.5, "lo": 0.4, "hi": 0.6}
            for k in (1, 2, 3)
            for s in ("probe", "latent")
        ]
    )
    fig = figures.depth_figure(profile, 0.8)
    assert [t.name for t in fig.data] == ["probe", "latent"] and list(fig.data[0].x) == [1, 2, 3]
