"""Streamlit building blocks shared by both methods' dashboards: run picker, verdict box, captioned plotly plot,
report page. Method dashboards build their figures from the CSV/JSON files their analysis writes and call these.

The verdict schema (report.json ``verdict``) is the one both analyses write:
``{"name", "reason", "checks": [{"name", "passed": bool|None, "value", "interval": [lo, hi]|None, "threshold",
"detail"}]}``; ``passed: None`` means the check was not run.
"""

from __future__ import annotations

import inspect
import json
import math
from pathlib import Path

import pandas as pd
import streamlit as st

from cbd_plugin.methods.results import layer_runs

# Verdicts that decide nothing are shown as warnings; every other verdict is a finding, shown neutrally.
UNDECIDED = frozenset({"inconclusive"})


def full_width(element) -> dict:
    """The keyword that makes a Streamlit element as wide as its container: ``width="stretch"`` where the installed
    Streamlit has it (``use_container_width`` is deprecated there), else ``use_container_width=True``."""
    width = inspect.signature(element).parameters.get("width")
    return {"width": "stretch"} if width is not None and width.default == "stretch" else {"use_container_width": True}


def p_values_text(p_values) -> str:
    """A permutation null's p-values as words: ``p = 0.005 (specificity), p = 0.010 (signal)``, not a raw dict."""
    if isinstance(p_values, dict):
        parts = [f"p = {value:.3f} ({name})" for name, value in p_values.items() if isinstance(value, (int, float))]
        return ", ".join(parts) if parts else "no p-value recorded"
    return f"p = {p_values:.3f}" if isinstance(p_values, (int, float)) else "no p-value recorded"


def select_run(method_dir: Path, key: str) -> Path | None:
    """A layer/run picker over ``layer_{L}/{run}`` folders; None (with a message) when there are none."""
    runs = layer_runs(method_dir)
    if not runs:
        st.info(f"No results under {method_dir}: run the method first.")
        return None
    labels = [f"layer {layer} / {run.name}" for layer, run in runs]
    choice = st.selectbox("Layer and run", labels, key=key)
    return runs[labels.index(choice)][1]


def read_report(folder: Path) -> dict | None:
    """``folder/report.json`` as a dict; None (with a warning) when absent, an error naming the file when it is
    not a JSON object."""
    path = Path(folder) / "report.json"
    if not path.exists():
        st.warning(f"No report.json in {folder}: the analysis has not finished there.")
        return None
    try:
        report = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        st.error(f"{path} is not valid JSON ({exc}); rerun the analysis to rewrite it.")
        return None
    if not isinstance(report, dict):
        st.error(f"{path} holds a JSON {type(report).__name__}, not an object; rerun the analysis to rewrite it.")
        return None
    return report


def _number(value) -> str:
    if value is None:
        return ""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    return "nan" if math.isnan(value) else f"{value:.3g}"


def _result(passed) -> str:
    return {True: "passed", False: "failed", None: "not run"}.get(passed, str(passed))


def checks_table(checks: list[dict]) -> pd.DataFrame:
    """One row per check, in the order the verdict rule consulted them, formatted for reading."""
    rows = []
    for check in checks:
        interval = check.get("interval")
        rows.append(
            {
                "check": check.get("name", "?"),
                "result": _result(check.get("passed")),
                "value": _number(check.get("value")),
                "interval": f"[{_number(interval[0])}, {_number(interval[1])}]" if interval else "",
                "threshold": _number(check.get("threshold")),
                "detail": check.get("detail", ""),
            }
        )
    return pd.DataFrame(rows, columns=["check", "result", "value", "interval", "threshold", "detail"])


def verdict_box(verdict) -> None:
    """The verdict in words (its name and the one-sentence reason naming the deciding figure), then the table of
    every check the rule consulted."""
    if not isinstance(verdict, dict) or "name" not in verdict:
        st.error(f"This report's verdict is not in the expected form ({{name, reason, checks}}): {verdict!r:.200}")
        return
    text = f"**Verdict: {verdict['name']}.** {verdict.get('reason') or 'No reason recorded.'}"
    (st.warning if verdict["name"] in UNDECIDED else st.info)(text)
    checks = verdict.get("checks") or []
    if checks:
        st.markdown(
            "Checks consulted, in the order the verdict rule reads them (*not run*: the rule stopped "
            "earlier or the check does not apply):"
        )
        st.dataframe(checks_table(checks), hide_index=True, **full_width(st.dataframe))


def plot(fig, caption: str) -> None:
    """An interactive plotly figure and the sentence that says how to read it."""
    if not caption or not caption.strip():
        raise ValueError("plot(): every figure needs a caption saying what it shows and how to read it")
    st.plotly_chart(fig, **full_width(st.plotly_chart))
    st.caption(caption)


def show_report(folder: Path, headline_keys: tuple[str, ...] = ()) -> dict | None:
    """The verdict box, headline figures, then any static plots, tables and the whole JSON. Returns the report
    (None when there is none) so that a method page can add its own plots."""
    report = read_report(folder)
    if report is None:
        return None
    if "verdict" in report:
        verdict_box(report["verdict"])
    keys = [k for k in headline_keys if k != "verdict"]
    for col, key in zip(st.columns(max(1, len(keys))), keys):
        col.metric(key.replace("_", " "), _number(report.get(key, "n/a")))
    for png in sorted(Path(folder).glob("*.png")):
        st.image(str(png), caption=png.stem.replace("_", " "))
    for csv in sorted(Path(folder).glob("*.csv")):
        with st.expander(f"Table: {csv.name}"):
            st.dataframe(pd.read_csv(csv))
    with st.expander("Full report (JSON)"):
        st.json(report)
    return report
