"""Report files: ``report.json``, ``latents.csv`` (one row per candidate latent) and the PNG plots (the fire rate
per declared pair among them, when the behaviour table has per-pair rows).

The folder is written whole under a temporary name, ``report.json`` last, and swapped in for an earlier report
(:mod:`cbd_plugin.artifacts`), so a folder with a ``report.json`` is complete and a failed write keeps the earlier
report.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; never a display
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from sklearn.metrics import roc_curve

from ..artifacts import atomic_write, atomic_write_text, publish_folder, report_folder
from .analysis import ConjunctionResult
from .probes import CONDITIONS

REPORT_JSON = "report.json"
LATENTS_CSV = "latents.csv"
PLOTS = {"heatmap": "firing_rates.png", "pairs": "pair_auroc.png", "roc": "roc.png"}
PAIR_PLOT = "pair_fire_rates.png"  # only when the behaviour table has per-pair rows


def jsonable(value):
    """Plain JSON values: numpy scalars and arrays to Python, NaN and infinities to None."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, np.ndarray)):
        return [jsonable(v) for v in value]
    if isinstance(value, (np.integer, np.bool_)):
        return value.item()
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, Path):
        return str(value)
    return value


def write_json(path: Path, payload: dict) -> Path:
    text = json.dumps(jsonable(payload), indent=1, allow_nan=False)
    return atomic_write_text(path, text)


def write_report(
    payload: dict,
    result: ConjunctionResult,
    tables: dict[str, pd.DataFrame],
    n_top: int,
    role: str,
    out_dir: Path,
    plots: bool = True,
) -> dict[str, Path]:
    """Write the CSVs (``latents.csv`` and ``{name}.csv`` per entry of ``tables``: the dashboard plots them) and
    plots, then ``payload`` (plus the file list) as ``report.json``; returns the paths."""
    out_dir = Path(out_dir)
    names: dict[str, str] = {}

    def write(tmp: Path) -> None:
        names["latents_csv"] = atomic_write(tmp / LATENTS_CSV, lambda t: result.latents.to_csv(t, index=False)).name
        for name, table in tables.items():
            names[f"{name}_csv"] = atomic_write(tmp / f"{name}.csv", lambda t, f=table: f.to_csv(t, index=False)).name
        if plots:
            names["heatmap"] = _save(_heatmap(result.latents, n_top, role), tmp / PLOTS["heatmap"]).name
            names["pairs"] = _save(_pair_bars(result.pairs, result.probe.to_dict()), tmp / PLOTS["pairs"]).name
            names["roc"] = _save(_roc(result.roc), tmp / PLOTS["roc"]).name
            behaviour = tables.get("behaviour")
            if behaviour is not None and "pair" in behaviour and (behaviour.pair != "all").any():
                names["pair_behaviour"] = _save(_pair_fire_rates(behaviour), tmp / PAIR_PLOT).name
        names["report_json"] = REPORT_JSON
        write_json(tmp / REPORT_JSON, {**payload, "files": dict(names)})

    publish_folder(out_dir, write, report_folder(out_dir, REPORT_JSON))
    return {key: out_dir / name for key, name in names.items()}


def _save(fig, path: Path) -> Path:
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=120, bbox_inches="tight"))
    plt.close(fig)
    return path


def _heatmap(latents: pd.DataFrame, n_top: int, role: str):
    """Firing rate and mean activation (relative to matched pairs) per condition: latents can code the
    conjunction by firing or by magnitude."""
    top = latents.nsmallest(n_top, "conjunction_rank")
    means = top[[f"eval_mean_{c}" for c in CONDITIONS]].to_numpy(dtype=float)
    panels = {
        "firing rate": top[[f"eval_rate_{c}" for c in CONDITIONS]].to_numpy(dtype=float),
        "mean activation / mean on matched": means / np.where(means[:, :1] > 0, means[:, :1], np.nan),
    }
    fig, axes = plt.subplots(1, 2, figsize=(2.4 * len(CONDITIONS) + 3, 0.45 * len(top) + 1.8), sharey=True)
    for ax, (title, values) in zip(axes, panels.items()):
        image = ax.imshow(values, vmin=0, vmax=1, cmap="viridis", aspect="auto")
        ax.set_xticks(range(len(CONDITIONS)), CONDITIONS, rotation=30)
        for (i, k), v in np.ndenumerate(values):
            if np.isfinite(v):
                ax.text(k, i, f"{v:.2f}", ha="center", va="center", color="w" if v < 0.5 else "k", fontsize=8)
        ax.set_title(title, fontsize=10)
    axes[0].set_yticks(
        range(len(top)), [f"#{int(r)} latent {int(j)}" for r, j in zip(top.conjunction_rank, top.latent)]
    )
    fig.colorbar(image, ax=axes, shrink=0.8)
    fig.suptitle(f"Top conjunction latents (ranked on the selection half), {role} tokens, evaluation half")
    return fig


def _pair_bars(pairs: list[dict], probe: dict):
    fig, ax = plt.subplots(figsize=(1.8 * len(pairs) + 2, 3.5))
    x = np.arange(len(pairs))
    for offset, key, label in ((-0.2, "auroc", "best latent"), (0.2, "probe_auroc", "linear probe")):
        values = np.array([p[key]["value"] for p in pairs])
        err = np.array([[p[key]["value"] - p[key]["lo"], p[key]["hi"] - p[key]["value"]] for p in pairs]).T
        ax.bar(x + offset, values, width=0.4, yerr=np.nan_to_num(err), capsize=3, label=label)
    ax.axhline(probe["value"], color="grey", ls=":", label="probe, all pairs")
    names = [
        f"{p['name']}\n{'related' if p['related'] else 'unrelated'}, "
        f"{'charged' if p['charged'] else 'neutral'}\nlatent {p['best_latent']}"
        for p in pairs
    ]
    ax.set_xticks(x, names, fontsize=8)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("AUROC (evaluation half)")
    ax.legend(fontsize=8, loc="lower right")
    return fig


def _pair_fire_rates(behaviour: pd.DataFrame):
    """The fine-tuned model's fire rate per declared pair and condition, Wilson intervals, the base's as dots."""
    rows = behaviour[behaviour.pair != "all"]
    pairs = list(dict.fromkeys(rows.pair))
    conditions = list(dict.fromkeys(rows.condition))
    fig, ax = plt.subplots(figsize=(1.6 * len(pairs) + 2.5, 3.5))
    width = 0.8 / len(conditions)
    for k, condition in enumerate(conditions):
        x = np.arange(len(pairs)) + (k - (len(conditions) - 1) / 2) * width
        ft = rows[(rows.model == "finetuned") & (rows.condition == condition)].set_index("pair").loc[pairs]
        base = rows[(rows.model == "base") & (rows.condition == condition)].set_index("pair").loc[pairs]
        err = np.array([ft.fire_rate - ft.lo, ft.hi - ft.fire_rate])
        ax.bar(x, ft.fire_rate, width=width, yerr=err, capsize=2, label=condition)
        ax.plot(x, base.fire_rate, "k.", ms=4, label="base" if k == 0 else None)
    ax.set_xticks(range(len(pairs)), pairs, fontsize=8)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("fire rate, evaluation half (95% CI)")
    ax.set_title("Fine-tuned fire rate per declared pair")
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    return fig


def _roc(roc: dict):
    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    for j, scores in roc["latents"].items():
        fpr, tpr, _ = roc_curve(roc["labels"], scores)
        ax.plot(fpr, tpr, label=f"latent {j}")
    fpr, tpr, _ = roc_curve(roc["labels"], roc["probe"])
    ax.plot(fpr, tpr, "k--", label="linear probe")
    ax.plot([0, 1], [0, 1], color="grey", lw=0.5)
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.set_title("Matched vs not matched (evaluation half)")
    ax.legend(fontsize=8)
    return fig
