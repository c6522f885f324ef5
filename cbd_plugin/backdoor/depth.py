"""The conjunction depth profile: what each analysed layer shows, whatever its verdict.

Per layer (one ``report.json`` each): the linear probe on the raw difference (its weakest AUROC of matched pairs vs
single_a, single_b, mismatch and clean: whether the layer has computed the conjunction), the deciding top latent's
specificity (its weakest AUROC) and interaction share (whether the SAE isolates it; the passing latent with the
highest specificity lower bound, else the highest), and the causal test's excess
drop (whether removing the top latents removes the behaviour beyond a random rotation of their contribution; the
causal test runs at every layer where the behaviour is pair-specific). Written as ``depth_profile.csv`` (long format,
one row per layer and series) and ``depth_profile.png``, like the refusal audit's depth profile.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; never a display
import matplotlib.pyplot as plt
import pandas as pd

from ..sae.dictionary import atomic_write
from .specificity import OTHERS

SERIES = (
    ("probe", "linear probe on the difference, weakest AUROC"),
    ("latent", "deciding top latent, weakest AUROC"),
    ("interaction", "deciding top latent, interaction share"),
    ("ablation", "ablation: excess drop of the matched fire rate"),
)
COLUMNS = ["layer", "series", "label", "value", "lo", "hi", "verdict"]


def layer_rows(payload: dict) -> list[dict]:
    """The profile's rows for one layer's ``report.json`` payload."""
    layer, verdict = payload["layer"], payload["verdict"]["name"]
    probe = payload["linear_probe_by_condition"]
    weakest = min(OTHERS, key=lambda c: probe[c]["lo"])
    rows = payload["specificity"]
    passing = [r for r in rows if r["passes"]]  # the verdict's deciding latent (verdict.deciding_latent)
    best = max(passing or rows, key=lambda r: (r["specificity_lo"], r["interaction_lo"]))
    w = best["weakest"]
    figures = {
        "probe": (probe[weakest]["value"], probe[weakest]["lo"], probe[weakest]["hi"]),
        "latent": (best[f"auroc_{w}"], best[f"auroc_{w}_lo"], best[f"auroc_{w}_hi"]),
        "interaction": (best["interaction"], best["interaction_lo"], best["interaction_hi"]),
    }
    causal = payload.get("causal")
    if causal is not None:
        e = causal["excess_drop"]
        figures["ablation"] = (e["value"], e["lo"], e["hi"])
    return [
        {
            "layer": layer,
            "series": key,
            "label": label,
            "value": figures[key][0],
            "lo": figures[key][1],
            "hi": figures[key][2],
            "verdict": verdict,
        }
        for key, label in SERIES
        if key in figures
    ]


def depth_profile(payloads: list[dict]) -> pd.DataFrame:
    """Long format over the layers of ``payloads`` (one ``report.json`` payload per layer)."""
    rows = [r for p in sorted(payloads, key=lambda p: p["layer"]) for r in layer_rows(p)]
    return pd.DataFrame(rows, columns=COLUMNS)


def plot_depth_profile(frame: pd.DataFrame, separation_threshold: float, title: str = ""):
    fig, ax = plt.subplots(figsize=(7.5, 4))
    for key, label in SERIES:
        rows = frame[frame.series == key]
        if rows.empty:
            continue
        (line,) = ax.plot(rows.layer, rows.value, marker="o", label=label, ls="--" if key == "ablation" else "-")
        ax.fill_between(rows.layer, rows.lo, rows.hi, color=line.get_color(), alpha=0.15)
    ax.axhline(separation_threshold, color="grey", ls=":", lw=1, label=f"separation threshold {separation_threshold}")
    ax.axhline(0, color="k", lw=0.5)
    layers = sorted(frame.layer.unique())
    ax.set_xticks(layers, [f"{k}\n{frame[frame.layer == k].verdict.iloc[0]}" for k in layers], fontsize=8)
    ax.set_ylim(min(-0.2, float(frame.lo.min()) - 0.05), 1.05)
    ax.set_xlabel("layer (output of decoder block) and its verdict")
    ax.set_ylabel("value, evaluation half (95% CI)")
    ax.set_title(title or "conjunction depth profile")
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    return fig


def write_depth_profile(
    payloads: list[dict], out_dir: Path, separation_threshold: float, title: str = ""
) -> dict[str, Path]:
    """``depth_profile.csv`` and ``depth_profile.png`` in ``out_dir``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    frame = depth_profile(payloads)
    files = {"csv": atomic_write(out_dir / "depth_profile.csv", lambda tmp: frame.to_csv(tmp, index=False))}
    fig = plot_depth_profile(frame, separation_threshold, title)
    files["png"] = atomic_write(
        out_dir / "depth_profile.png", lambda tmp: fig.savefig(tmp, format="png", dpi=120, bbox_inches="tight")
    )
    plt.close(fig)
    return files
