"""A Streamlit page for one report folder (report.json, CSV tables, PNG plots); shared by both methods."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import streamlit as st

from cbd_plugin.methods.results import layer_runs


def select_run(method_dir: Path, key: str) -> Path | None:
    """A layer/run picker over ``layer_{L}/{run}`` folders; None (with a message) when there are none."""
    runs = layer_runs(method_dir)
    if not runs:
        st.info(f"No results under {method_dir}: run the method first.")
        return None
    labels = [f"layer {layer} / {run.name}" for layer, run in runs]
    choice = st.selectbox("Layer and run", labels, key=key)
    return runs[labels.index(choice)][1]


def show_report(folder: Path, headline_keys: tuple[str, ...]) -> None:
    """Headline figures first, then plots, then tables, then the whole JSON."""
    report_path = folder / "report.json"
    if not report_path.exists():
        st.warning(f"No report.json in {folder}")
        return
    report = json.loads(report_path.read_text())
    cols = st.columns(max(1, len(headline_keys)))
    for col, key in zip(cols, headline_keys):
        col.metric(key.replace("_", " "), str(report.get(key, "n/a")))
    for png in sorted(folder.glob("*.png")):
        st.image(str(png), caption=png.stem.replace("_", " "))
    for csv in sorted(folder.glob("*.csv")):
        with st.expander(f"Table: {csv.name}"):
            st.dataframe(pd.read_csv(csv))
    with st.expander("Full report (JSON)"):
        st.json(report)
