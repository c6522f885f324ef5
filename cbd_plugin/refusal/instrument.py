"""The instrument: is the audit SAE a measuring device at the positions read, and do its features beat random ones?

The verdict (:mod:`cbd_plugin.refusal.verdict`) rests on SAE features only when both hold; otherwise it is
``inconclusive (instrument)``, naming the figure.

* Fidelity: the SAE's FVE, error norm fraction, mean L0 and latents firing, on the base AND the fine-tuned
  model's residuals at the positions read (:func:`~.features.encode_pooled` measures them while encoding). The
  floors are ``AuditConfig``'s ``min_fve``, ``max_error_norm_fraction``, ``min_mean_l0`` and 2 x ``n_latents``
  latents firing (their reasons are there).
* Random-instrument null (:func:`random_instrument_null`): the same signal, computed with
  ``n_random_instruments`` random SAEs of the audit SAE's shape: as many latents, each a random unit direction
  (Gaussian, normalised; encoder = decoder transpose, Gao et al.'s initialisation), reading the residual centred on
  the base's mean at the positions read, TopK with k = the audit SAE's measured mean L0 there. Centring makes the
  random directions read the residual's variation, not its offset: the stronger null. Each draw goes through the
  audit's own pipeline (encode, pool, select ``n_latents`` hazard latents on the base's select split, score the
  eval split). The SAE's separation must beat them: its lower bound above the largest draw (the draws'
  1 - alpha quantile). Separation here is the signal's standardised mean difference (hazard minus benign over the
  pooled standard deviation, eval split, base model), not its AUROC: where the tier is linearly present in every
  residual, random directions reach AUROC 1 too, and an AUROC pinned at 1 cannot say which instrument separates
  more. Failing the null means the separation rests on linear structure that any direction (and a probe) finds,
  not on the SAE's features; the verdict then reports what the probes alone support.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..sae import TopKSAE
from ..stats import Estimate, auroc, bootstrap
from .features import encode_pooled
from .hazard_signal import hazard_signal, select_latents


def standardised_separation(signal, is_hazard) -> float:
    """``(mean_hazard - mean_benign) / sqrt((var_hazard + var_benign) / 2)``; 0 for a constant signal."""
    signal, is_hazard = np.asarray(signal, dtype=np.float64), np.asarray(is_hazard, dtype=bool)
    hazard, benign = signal[is_hazard], signal[~is_hazard]
    if not len(hazard) or not len(benign):
        raise ValueError("standardised_separation: needs hazard and benign prompts")
    diff, sd = hazard.mean() - benign.mean(), np.sqrt((hazard.var() + benign.var()) / 2)
    if sd <= 1e-12 * max(1.0, abs(hazard.mean()), abs(benign.mean())):
        return 0.0 if abs(diff) <= 1e-12 else float(np.copysign(np.inf, diff))
    return float(diff / sd)


@dataclass
class RandomNull:
    """The audit SAE's separation against random instruments of its shape (module docstring)."""

    separation: Estimate  # the SAE's signal, standardised mean difference, base model, eval split
    null_separation: list[float]  # each random instrument's, the same statistic
    null_auroc: list[float]  # each random instrument's signal AUROC (reported beside the SAE's)
    null_upper: float  # the largest draw: the null's 1 - alpha quantile
    k: int  # active latents per token of the random instruments (the SAE's measured mean L0, rounded)
    dict_size: int
    beats: bool  # separation.lo > null_upper


def _mean(acts, batch_size: int = 4096) -> torch.Tensor:
    total, n = None, 0
    for start in range(0, len(acts), batch_size):
        x = acts[start : start + batch_size].to(torch.float64)
        total = x.sum(0) if total is None else total + x.sum(0)
        n += len(x)
    return total / n


def random_instrument(activation_dim: int, dict_size: int, k: int, centre: torch.Tensor, seed: int) -> TopKSAE:
    """A TopK SAE of random unit directions reading ``x - centre`` (module docstring)."""
    sae = TopKSAE(activation_dim, dict_size, k, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        sae.b_dec.copy_(centre)
    return sae.eval()


@torch.no_grad()
def random_instrument_null(
    sae,
    acts,
    prompt_of_token: np.ndarray,
    base_signal: np.ndarray,
    mean_l0: float,
    tiers: np.ndarray,
    splits: np.ndarray,
    cfg,
) -> RandomNull:
    """``acts``: the base model's token residuals at the positions read (``prompt_of_token`` maps them to prompts);
    ``base_signal``: the audit SAE's per-prompt signal on the base; ``cfg``: the :class:`~.config.AuditConfig`."""
    tiers, splits = np.asarray(tiers), np.asarray(splits)
    labelled = np.isin(tiers, ["hazard", "benign"])
    sel, ev = (splits == "select") & labelled, (splits == "eval") & labelled
    y = tiers[ev] == "hazard"
    separation = bootstrap(
        standardised_separation,
        np.asarray(base_signal, dtype=np.float64)[ev],
        y,
        n_boot=cfg.n_boot,
        level=1 - cfg.alpha,
        seed=cfg.seed,
        stratify=y,
    )
    param = next(sae.parameters())
    k = int(min(sae.dict_size, max(1, round(mean_l0))))
    centre = _mean(acts)
    null_sep, null_auc = [], []
    for draw in range(cfg.n_random_instruments):
        rnd = random_instrument(
            acts.width if hasattr(acts, "width") else acts.shape[1],
            sae.dict_size,
            k,
            centre.float(),
            seed=cfg.seed * 1_000_003 + draw,
        ).to(param.device, param.dtype)
        latents, _ = encode_pooled(rnd, acts, prompt_of_token, len(tiers), cfg.pooling)
        signal = hazard_signal(latents[ev], select_latents(latents[sel], tiers[sel], cfg.n_latents, cfg.selection))
        null_sep.append(standardised_separation(signal, y))
        null_auc.append(auroc(signal, y))
    upper = float(max(null_sep))
    beats = bool(np.isfinite(separation.lo) and separation.lo > upper)
    return RandomNull(separation, null_sep, null_auc, upper, k, int(sae.dict_size), beats)
