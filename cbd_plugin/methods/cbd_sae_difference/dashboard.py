"""Dashboard of ``cbd_sae_difference``: a Conjunction tab next to the host's own SAE tabs."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from cbd_plugin.methods.report_page import select_run, show_report

from .method import METHOD_FOLDER


class _ResultsDir(type(Path())):
    """The host's SAE tabs read ``method.results_dir / "sae_difference"``; send them to this method's folder."""

    def __truediv__(self, key):
        return Path(self, METHOD_FOLDER if key == "sae_difference" else key)


class _HostTabsView:
    """The method as the host's SAE dashboard sees it: everything but ``results_dir`` delegates to the method."""

    def __init__(self, method):
        self._method = method
        self.results_dir = _ResultsDir(method.results_dir)

    def __getattr__(self, name):
        return getattr(self._method, name)


def visualize(method) -> None:
    from diffing.methods.sae_difference.dashboard import visualize as host_visualize

    conjunction_tab, host_tab = st.tabs(["Conjunction", "SAE (host)"])
    with conjunction_tab:
        run = select_run(method.results_dir / METHOD_FOLDER, key="cbd_sae_difference_run")
        if run is not None:
            show_report(run / "conjunction", headline_keys=("verdict", "layer"))
    with host_tab:
        host_visualize(_HostTabsView(method))
