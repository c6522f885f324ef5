"""Dashboard of ``cbd_sae_difference``: a Conjunction tab next to the host's own SAE tabs.

The Conjunction tab: the verdict box (name, reason naming the deciding figure, every check), then plotly figures
drawn from the analysis' CSVs and report.json: the behaviour table (fire rates per condition, base and fine-tuned,
with Wilson intervals), the top latents' separation of matched pairs from each other condition (AUROC with bootstrap
intervals), the per-pair table (each trigger pair's deciding latent, report.json ``pair_specificity``), the
permutation null and the causal test. Figures whose files are absent (older runs) are skipped.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import streamlit as st

from cbd_plugin.backdoor.figures import behaviour_figure, causal_figure, null_figure, specificity_figure
from cbd_plugin.backdoor.verdict import deciding_latent, per_pair_route
from cbd_plugin.methods.report_page import full_width, p_values_text, plot, select_run, show_report

from . import METHOD_FOLDER

PAIR_COLUMNS = ["pair", "deciding latent", "weakest separation [95% CI]", "interaction share [95% CI]", "passes"]


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


def _interval(value, lo, hi) -> str:
    return f"{value:.2f} [{lo:.2f}, {hi:.2f}]"


def pair_tables(report: dict) -> list[pd.DataFrame]:
    """report.json's ``pair_specificity`` records, one table per pair in report order; empty when absent."""
    records = report.get("pair_specificity") or []
    return [t.reset_index(drop=True) for _, t in pd.DataFrame(records).groupby("pair", sort=False)] if records else []


def pair_table(tables: list[pd.DataFrame]) -> pd.DataFrame:
    """One row per pair: its deciding latent (the passing one with the highest separation lower bound, else the
    closest), that latent's weakest separation and interaction share with their intervals, and whether it passes."""
    rows = []
    for t in tables:
        j = deciding_latent(t)
        weakest = j.weakest
        rows.append(
            [
                j.pair_name if "pair_name" in j else f"pair {int(j.pair)}",
                int(j.latent),
                f"matched vs {weakest}: "
                + _interval(j[f"auroc_{weakest}"], j[f"auroc_{weakest}_lo"], j[f"auroc_{weakest}_hi"]),
                _interval(j.interaction, j.interaction_lo, j.interaction_hi),
                bool(j.passes),
            ]
        )
    return pd.DataFrame(rows, columns=PAIR_COLUMNS)


def route_text(report: dict, tables: list[pd.DataFrame]) -> str:
    """Which route the specificity checks took here, in words."""
    covered = sum(bool(t.passes.any()) for t in tables)
    shared = pd.DataFrame(report.get("specificity") or [])
    if "passes" not in shared:
        return f"{covered} of {len(tables)} pairs have a passing latent."
    if shared.passes.any():
        return f"Here a shared latent passes, so the shared route decided ({covered} of {len(tables)} pairs covered)."
    if per_pair_route(shared, tables) is not None:
        return f"Here no shared latent passes and all {len(tables)} pairs are covered: the per-pair route decided."
    return f"Here no shared latent passes and only {covered} of {len(tables)} pairs are covered: neither route passes."


def show_pair_table(report: dict) -> None:
    """The per-pair table, when report.json has one (runs before the per-pair route have none)."""
    try:
        tables = pair_tables(report)
        table = pair_table(tables) if tables else None
    except (KeyError, AttributeError, TypeError, ValueError):  # records in another form: the JSON shows them
        table = None
    if table is None:
        return
    st.markdown("**Per pair**")
    st.dataframe(table, hide_index=True, **full_width(st.dataframe))
    threshold = (report.get("config") or {}).get("separation_threshold")
    st.caption(
        "Per-pair route: when no single latent passes for all pairs at once, the verdict can still be "
        "conjunctive if EVERY trigger pair has its own latent passing the same bounds (its matched prompts "
        "vs its single words, every mismatch holding one of its words, and clean"
        + (f", each AUROC lower bound >= {threshold}" if threshold is not None else "")
        + "; interaction-share lower bound). "
        + route_text(report, tables)
    )


def conjunction_figures(folder: Path, report: dict) -> None:
    """The tab's plotly figures from the files of one analysis folder."""
    folder = Path(folder)
    if (folder / "behaviour.csv").exists():
        plot(
            behaviour_figure(pd.read_csv(folder / "behaviour.csv")),
            "Behaviour, measured: greedy fire rate per condition on the evaluation prompts, base and fine-tuned, "
            "with 95% Wilson intervals. The verdict names this behaviour class first.",
        )
    if (folder / "specificity.csv").exists():
        threshold = (report.get("config") or {}).get("separation_threshold")
        plot(
            specificity_figure(pd.read_csv(folder / "specificity.csv"), threshold),
            "Pair specificity of the selection half's top conjunction latents, on the evaluation half: AUROC of "
            "matched pairs vs each other condition with 95% bootstrap intervals over prompts. A conjunctive latent "
            "has every lower bound right of the dotted line (and an interaction share near 1, in the table).",
        )
    show_pair_table(report)
    if (folder / "null.csv").exists() and report.get("null"):
        null = report["null"]
        plot(
            null_figure(pd.read_csv(folder / "null.csv"), null.get("observed", {})),
            f"Permutation null of the whole selection-then-evaluation procedure ({null.get('n_permutations')} "
            f"shuffles of the condition labels): {p_values_text(null.get('p_value'))}.",
        )
    if report.get("causal"):
        causal = report["causal"]
        excess = causal["excess_drop"]
        plot(
            causal_figure(causal),
            "Causal test: matched-pair fire rate after removing the top latents, their contribution rotated in a "
            "random direction (same energy at every token) and the linear probe's direction. Excess drop of the top "
            "latents over the control: "
            f"{excess['value']:.2f} [{excess['lo']:.2f}, {excess['hi']:.2f}].",
        )


def visualize(method) -> None:
    from diffing.methods.sae_difference.dashboard import visualize as host_visualize

    conjunction_tab, host_tab = st.tabs(["Conjunction", "SAE (host)"])
    with conjunction_tab:
        run = select_run(method.results_dir / METHOD_FOLDER, key="cbd_sae_difference_run")
        if run is not None:
            report = show_report(run / "conjunction", headline_keys=("layer",))
            if report is not None:
                conjunction_figures(run / "conjunction", report)
    with host_tab:
        host_visualize(_HostTabsView(method))
