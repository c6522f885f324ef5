"""Plotly figures of a conjunction analysis, drawn from its CSVs and report.json (the dashboard's Conjunction tab).

Host-free and Streamlit-free: each function takes a table or report entry and returns a ``plotly`` figure.
"""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go

from .specificity import OTHERS


def _error_bars(table: pd.DataFrame, value: str, lo: str, hi: str) -> dict:
    return {
        "type": "data",
        "symmetric": False,
        "array": table[hi] - table[value],
        "arrayminus": table[value] - table[lo],
    }


def behaviour_figure(table: pd.DataFrame) -> go.Figure:
    """Fire rate per condition and model, pooled over pairs (``behaviour.csv``'s rows with pair "all")."""
    if "pair" in table:
        table = table[table.pair == "all"]
    fig = go.Figure()
    for model, rows in table.groupby("model", sort=False):
        fig.add_bar(x=rows.condition, y=rows.fire_rate, name=model, error_y=_error_bars(rows, "fire_rate", "lo", "hi"))
    fig.update_layout(barmode="group", yaxis={"title": "fire rate", "range": [0, 1.05]}, xaxis_title="condition")
    return fig


def pair_behaviour_figure(table: pd.DataFrame) -> go.Figure:
    """The fine-tuned model's fire rate per declared pair and condition (``behaviour.csv``'s per-pair rows)."""
    rows = table[(table.pair != "all") & (table.model == "finetuned")] if "pair" in table else table.iloc[:0]
    fig = go.Figure()
    for condition, cell in rows.groupby("condition", sort=False):
        fig.add_bar(x=cell.pair, y=cell.fire_rate, name=condition, error_y=_error_bars(cell, "fire_rate", "lo", "hi"))
    fig.update_layout(
        barmode="group", yaxis={"title": "fire rate (fine-tuned)", "range": [0, 1.05]}, xaxis_title="declared pair"
    )
    return fig


def depth_figure(profile: pd.DataFrame, threshold: float | None = None) -> go.Figure:
    """The conjunction depth profile (``depth_profile.csv``): each series per layer with its interval."""
    fig = go.Figure()
    for _, rows in profile.groupby("series", sort=False):
        rows = rows.sort_values("layer")
        fig.add_scatter(
            x=rows.layer,
            y=rows.value,
            mode="lines+markers",
            name=rows.label.iloc[0],
            error_y=_error_bars(rows, "value", "lo", "hi"),
        )
    if threshold is not None:
        fig.add_hline(y=threshold, line_dash="dot", annotation_text="separation threshold")
    fig.update_layout(xaxis={"title": "layer (output of decoder block)", "dtick": 1}, yaxis_title="value (95% CI)")
    return fig


def specificity_figure(table: pd.DataFrame, threshold: float | None) -> go.Figure:
    fig = go.Figure()
    labels = [f"latent {int(j)}" for j in table.latent]
    for c in OTHERS:
        fig.add_scatter(
            x=table[f"auroc_{c}"],
            y=labels,
            mode="markers",
            name=f"vs {c}",
            error_x=_error_bars(table, f"auroc_{c}", f"auroc_{c}_lo", f"auroc_{c}_hi"),
        )
    if threshold is not None:
        fig.add_vline(x=threshold, line_dash="dot", annotation_text="threshold on the lower bound")
    fig.update_layout(
        xaxis={"title": "AUROC of matched pairs vs the condition", "range": [0, 1.02]}, yaxis={"autorange": "reversed"}
    )
    return fig


def null_figure(null: pd.DataFrame, observed: dict) -> go.Figure:
    fig = go.Figure()
    for key in null.columns:
        fig.add_histogram(x=null[key], name=f"{key} under shuffled labels", opacity=0.6)
        if key in observed:
            fig.add_vline(x=observed[key], annotation_text=f"observed {key}")
    fig.update_layout(barmode="overlay", xaxis_title="statistic (best evaluation-half AUROC)", yaxis_title="count")
    return fig


def causal_figure(causal: dict) -> go.Figure:
    bars = {
        "no removal": causal["before"]["fire_rate_matched"],
        "top latents": causal["top"]["fire_rate_matched"],
        "rotated (same energy)": causal["random"]["fire_rate_matched_mean"],
    }
    if causal.get("probe_direction"):
        bars["probe direction"] = causal["probe_direction"]["fire_rate_matched"]
    fig = go.Figure(go.Bar(x=list(bars), y=list(bars.values())))
    fig.update_layout(yaxis={"title": "fire rate on matched pairs", "range": [0, 1.05]})
    return fig
