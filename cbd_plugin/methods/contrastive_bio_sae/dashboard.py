"""Dashboard of ``contrastive_bio_sae``: the refusal-depth audit of the selected run."""

from __future__ import annotations

import streamlit as st

from cbd_plugin.methods.report_page import select_run, show_report

from .method import METHOD_FOLDER


def visualize(method) -> None:
    st.subheader("Refusal depth (contrastive bio SAE)")
    run = select_run(method.results_dir / METHOD_FOLDER, key="contrastive_bio_sae_run")
    if run is not None:
        show_report(run / "audit", headline_keys=("verdict", "layer"))
