"""Depth profile: where along the layers and positions the hazard distinction is removed, and where it comes back.

From one capture per model and position kind (:class:`~cbd_plugin.refusal.features.Capture`, every profiled layer
pooled over the audit's positions), per layer, hazard vs benign on the eval split, each AUROC with its bootstrap
interval:

* ``base_probe``: a linear probe fitted on the base's residuals (select split), scored on the base;
* ``base_fitted_probe``: that same probe scored on the fine-tuned model's residuals (is the base's hazard
  direction still there?);
* ``refit_probe``: a probe refitted on the fine-tuned model's residuals (is hazard linearly there at all?);
* ``base_signal`` / ``finetuned_signal``: the base-feature signal (the audit SAE's hazard latents), only at layers
  with an SAE.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..stats import Estimate, auroc_ci, fit_linear_probe
from .features import Capture


@dataclass
class LayerProfile:
    layer: int
    base_probe: Estimate
    base_fitted_probe: Estimate | None  # None without a fine-tuned model
    refit_probe: Estimate | None
    base_signal: Estimate | None  # None at layers without an SAE
    finetuned_signal: Estimate | None
    positions: str = ""  # the position kind read (AuditConfig.positions values)


def _masks(tiers: np.ndarray, splits: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    labelled = np.isin(tiers, ["hazard", "benign"])
    return (splits == "select") & labelled, (splits == "eval") & labelled


def depth_profile(
    base: Capture,
    finetuned: Capture | None,
    tiers,
    splits,
    signals: dict[int, tuple],
    n_boot: int,
    seed: int,
    positions: str = "",
) -> list[LayerProfile]:
    """One row per layer captured (see the module docstring) at the ``positions`` the captures read.
    ``signals[layer]`` = (base per-prompt signal, fine-tuned per-prompt signal or None) where an SAE was read."""
    tiers, splits = np.asarray(tiers), np.asarray(splits)
    sel, ev = _masks(tiers, splits)
    y_sel, y_ev = tiers[sel] == "hazard", tiers[ev] == "hazard"
    score = lambda values: auroc_ci(values, y_ev, n_boot=n_boot, seed=seed)  # noqa: E731
    rows = []
    for layer in sorted(base.pooled):
        probe = fit_linear_probe(base.pooled[layer][sel], y_sel, seed=seed)
        base_fitted = refit = None
        if finetuned is not None:
            x_ft = finetuned.pooled[layer]
            base_fitted = score(probe.decision_function(x_ft[ev].astype(np.float64)))
            refit_probe = fit_linear_probe(x_ft[sel], y_sel, seed=seed)
            refit = score(refit_probe.decision_function(x_ft[ev].astype(np.float64)))
        base_signal, ft_signal = signals.get(layer, (None, None))
        rows.append(
            LayerProfile(
                layer,
                score(probe.decision_function(base.pooled[layer][ev].astype(np.float64))),
                base_fitted,
                refit,
                None if base_signal is None else score(base_signal[ev]),
                None if ft_signal is None else score(ft_signal[ev]),
                positions,
            )
        )
    return rows


def at_layer(profile: list[LayerProfile], layer: int) -> LayerProfile:
    for row in profile:
        if row.layer == layer:
            return row
    raise KeyError(f"depth profile has no layer {layer}; layers {[r.layer for r in profile]}")
