"""Dashboard of ``contrastive_bio_sae``: the refusal-depth audit of the selected run.

The verdict box and static plots come from the shared report page; the interactive figures are built here from
the files the audit writes: ``depth_profile.csv`` (probe and signal AUROC per layer), ``report.json`` (refusal
rates) and ``samples.csv`` (per-prompt signal).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from cbd_plugin.methods.report_page import plot, select_run, show_report
from cbd_plugin.vocab import TIERS

from . import METHOD_FOLDER


def profile_figure(profile: pd.DataFrame, audit_layer: int, threshold: float) -> go.Figure:
    """AUROC per layer and series with 95% bands; the chance band shaded, the audit layer marked."""
    fig = go.Figure()
    fig.add_hrect(
        y0=1 - threshold,
        y1=threshold,
        fillcolor="grey",
        opacity=0.15,
        line_width=0,
        annotation_text="chance band",
        annotation_position="top left",
    )
    for _key, rows in profile.groupby("series", sort=False):
        rows = rows.sort_values("layer")
        label = rows["label"].iloc[0]
        fig.add_trace(
            go.Scatter(
                x=rows["layer"],
                y=rows["auroc"],
                mode="lines+markers",
                name=label,
                error_y={
                    "type": "data",
                    "symmetric": False,
                    "array": rows["hi"] - rows["auroc"],
                    "arrayminus": rows["auroc"] - rows["lo"],
                },
            )
        )
    fig.add_vline(x=audit_layer, line_dash="dash", annotation_text=f"audit layer {audit_layer}")
    fig.update_layout(
        xaxis_title="layer (output of decoder block)",
        yaxis_title="AUROC hazard vs benign (eval)",
        yaxis_range=[0, 1.02],
        xaxis={"dtick": 1},
    )
    return fig


def refusal_figure(report: dict) -> go.Figure:
    fig = go.Figure()
    for name, audit in report.get("models", {}).items():
        rates = [audit["depth"]["refusal_rate"][t] for t in TIERS]
        values = [r["value"] for r in rates]
        fig.add_trace(
            go.Bar(
                x=list(TIERS),
                y=values,
                name=name,
                error_y={
                    "type": "data",
                    "symmetric": False,
                    "array": [r["hi"] - r["value"] for r in rates],
                    "arrayminus": [r["value"] - r["lo"] for r in rates],
                },
            )
        )
    fig.update_layout(barmode="group", yaxis_title="refusal rate (95% CI)", yaxis_range=[0, 1.05])
    return fig


def signal_figure(samples: pd.DataFrame) -> go.Figure:
    per_prompt = samples.drop_duplicates(["model", "id"])
    fig = go.Figure()
    for model, rows in per_prompt.groupby("model", sort=False):
        fig.add_trace(
            go.Box(
                x=rows["tier"] + " / " + rows["prompt_label"],
                y=rows["signal"],
                name=model,
                boxpoints="all",
                jitter=0.4,
                pointpos=0,
            )
        )
    fig.update_layout(boxmode="group", yaxis_title="base-feature signal", xaxis_title="tier / surface label")
    return fig


def show_audit(folder: Path) -> None:
    report = show_report(folder, headline_keys=("layer",))
    if report is None:
        return
    cfg, layer = report.get("config", {}), report.get("layer")
    threshold = cfg.get("separation_auroc", 0.7)
    if (folder / "depth_profile.csv").exists():
        plot(
            profile_figure(pd.read_csv(folder / "depth_profile.csv"), layer, threshold),
            "Where the hazard distinction lives, layer by layer (one capture of each model): a linear probe on "
            "the base, the base's probe applied to the fine-tuned model, a probe refitted on the fine-tuned "
            "model, and the base-feature signal at the SAE's layer; bars are 95% intervals. Deep: everything "
            "falls into the grey band at the audit layer; rerouted: only the refitted probe stays high.",
        )
    if report.get("models"):
        plot(refusal_figure(report), "Refusal rate per tier with 95% intervals, base vs fine-tuned.")
    else:
        st.info("This report has no per-model refusal rates (report.json has no `models` block).")
    if (folder / "samples.csv").exists():
        plot(
            signal_figure(pd.read_csv(folder / "samples.csv", keep_default_na=False)),
            "Per prompt: the base-feature signal by tier and surface label; shallow refusal = refused hazard "
            "prompts whose signal stays high on the fine-tuned model.",
        )


def visualize(method) -> None:

    st.subheader("Refusal depth (contrastive bio SAE)")
    run = select_run(method.results_dir / METHOD_FOLDER, key="contrastive_bio_sae_run")
    if run is not None:
        show_audit(run / "audit")
