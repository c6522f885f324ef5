"""Causal test: remove latents' decoded contribution from the fine-tuned residual and generate greedily.

The SAE reads the difference ``finetuned - base`` at layer L, so at every decoding step the base model is run on
the same tokens to get its layer-L residual; the edit then subtracts the chosen latents' share of the SAE's
reconstruction of that difference (``sae.decode_latents``: decode(f) - decode(f without them), in the original
activation space, so the SAE's normalisation and decoder bias cancel) from the fine-tuned residual, at every
position of the prompt and of the tokens generated so far.

Control: removing *any* large part of the difference may break generation, so the top latents are compared with
random latents that remove as much decoded energy: per draw, latents other than the top ones are taken in random
order until their summed decoded energy at matched decision tokens (selection half) reaches the top latents'; their
removal is then scaled by ``sqrt(top energy / drawn energy)`` so that it removes exactly as much. When the other
latents together carry less (the top latents of a sparse code often carry most of the difference), the draw holds
all of them and the scale exceeds 1 (``energy_ratio`` < 1 before scaling says so): the control then perturbs the
residual as strongly as the top latents, along the directions the rest of the code uses. For scale, the same test
removes the linear probe's direction (the component of the difference along it).

Figures, on matched evaluation prompts, per prompt paired: the fire-rate drop of the top latents, and its excess
over the mean control draw, each with a percentile-bootstrap interval over prompts.
"""

from __future__ import annotations

import numpy as np
import torch

from ..capture import generate_greedy, trace_residuals
from ..stats import bootstrap
from .config import ConjunctionConfig
from .probes import fires


def remove_latents(resid: torch.Tensor, base_resid: torch.Tensor, sae, latent_ids, scale: float = 1.0) -> torch.Tensor:
    """``resid`` minus ``scale`` x the decoded contribution of ``latent_ids`` to the SAE code of ``resid - base_resid``."""
    param = next(sae.parameters())
    diff = (resid - base_resid.to(resid.device, resid.dtype)).to(param.device, param.dtype)
    contribution = sae.decode_latents(sae.encode(diff), latent_ids)
    return resid - scale * contribution.to(resid.device, resid.dtype)


def remove_direction(resid: torch.Tensor, base_resid: torch.Tensor, direction: torch.Tensor) -> torch.Tensor:
    """``resid`` minus the component of ``resid - base_resid`` along the unit vector ``direction``."""
    u = direction.to(resid.device, resid.dtype)
    return resid - ((resid - base_resid.to(resid.device, resid.dtype)) @ u)[..., None] * u


def _edit(base, layer: int, edit_with_base):
    def make_edit(input_ids, attention_mask):
        base_resid = trace_residuals(base, input_ids, attention_mask, [layer])[layer]
        return lambda resid: edit_with_base(resid, base_resid)
    return make_edit


def removal_edit(base, sae, layer: int, latent_ids, scale: float = 1.0):
    """A ``make_edit`` for :func:`cbd_plugin.capture.generate_greedy` that removes ``latent_ids`` at ``layer``."""
    return _edit(base, layer, lambda resid, base_resid: remove_latents(resid, base_resid, sae, latent_ids, scale))


def direction_edit(base, layer: int, direction: torch.Tensor):
    """A ``make_edit`` that removes the difference's component along ``direction`` at ``layer``."""
    return _edit(base, layer, lambda resid, base_resid: remove_direction(resid, base_resid, direction))


def unit_decoder_energy(sae) -> np.ndarray:
    """``||decode_latents(e_j)||^2`` per latent: the decoded energy of latent j at activation 1."""
    param = next(sae.parameters())
    energy = []
    with torch.no_grad():
        for start in range(0, sae.dict_size, 1024):
            ids = torch.arange(start, min(start + 1024, sae.dict_size), device=param.device)
            codes = torch.zeros(len(ids), sae.dict_size, device=param.device, dtype=param.dtype)
            codes[torch.arange(len(ids)), ids] = 1.0
            energy.append(sae.decode_latents(codes, ids).pow(2).sum(-1).double().cpu())
    return torch.cat(energy).numpy()


def energy_matched_draws(energy: np.ndarray, top, n_draws: int, seed: int) -> list[dict]:
    """Random latent sets (none of ``top``) whose summed ``energy`` reaches that of ``top``; see the module."""
    top = np.asarray(top, dtype=np.int64)
    target = float(energy[top].sum())
    pool = np.setdiff1d(np.flatnonzero(energy > 0), top)
    rng = np.random.default_rng(seed)
    draws = []
    for _ in range(n_draws):
        order = rng.permutation(pool)
        cumulative = np.cumsum(energy[order])
        n = int(np.searchsorted(cumulative, target) + 1) if len(order) else 0
        chosen = order[:min(n, len(order))]
        ratio = float(energy[chosen].sum() / target) if target > 0 else 0.0
        draws.append({"latents": chosen.tolist(), "energy_ratio": ratio,
                      "scale": float(np.sqrt(1 / ratio)) if ratio > 0 else 1.0})
    return draws


def _fire_rates(finetuned, prompts, cfg, layer=None, make_edit=None) -> tuple[np.ndarray, list[str]]:
    completions = generate_greedy(finetuned, prompts, cfg.max_new_tokens, batch_size=cfg.batch_size, layer=layer,
                                  make_edit=make_edit, add_special_tokens=False)
    return np.array([fires(c) for c in completions], dtype=np.float64), completions


def causal_test(base, finetuned, sae, layer: int, matched: list, clean: list, top, energy: np.ndarray,
                probe_direction: torch.Tensor | None, cfg: ConjunctionConfig) -> dict:
    """Fire rates on ``matched`` prompts (token-id lists through the decision token) before and after removing
    ``top``, energy-matched random latents (``cfg.n_random_draws`` draws) and the probe direction; the share of
    ``clean`` outputs each removal changes; the drops with intervals."""
    before, before_text = _fire_rates(finetuned, matched, cfg)
    _, clean_before = _fire_rates(finetuned, clean, cfg)

    done = {}  # greedy generation is deterministic: a control set drawn twice is generated once

    def removing(make_edit, key=None) -> dict:
        if key is not None and key in done:
            return dict(done[key])
        after, text = _fire_rates(finetuned, matched, cfg, layer, make_edit)
        _, clean_after = _fire_rates(finetuned, clean, cfg, layer, make_edit)
        done[key] = {"fired": after, "fire_rate_matched": float(after.mean()), "examples_matched": text[:3],
                     "clean_changed": float(np.mean([a != b for a, b in zip(clean_after, clean_before)]))}
        return dict(done[key])

    top = [int(j) for j in top]
    result = {"latents": top, "energy_top": float(energy[top].sum()), **removing(removal_edit(base, sae, layer, top))}
    draws = energy_matched_draws(energy, top, cfg.n_random_draws, cfg.seed)
    for draw in draws:
        key = (tuple(sorted(draw["latents"])), round(draw["scale"], 6))
        draw.update(removing(removal_edit(base, sae, layer, draw["latents"], draw["scale"]), key))
    control = np.mean([d["fired"] for d in draws], axis=0) if draws else np.full(len(matched), np.nan)
    probe = removing(direction_edit(base, layer, probe_direction)) if probe_direction is not None else None

    def drop(after) -> dict:
        return bootstrap(lambda b, a: np.mean(b - a), before, after, n_boot=cfg.n_boot, seed=cfg.seed).to_dict()

    out = {"n_matched": len(matched), "n_clean": len(clean),
           "before": {"fire_rate_matched": float(before.mean()), "examples_matched": before_text[:3]},
           "top": result, "random": {"draws": draws, "fire_rate_matched_mean": float(control.mean()),
                                      "energy_ratio_min": min(d["energy_ratio"] for d in draws)
                                      if draws else None},
           "probe_direction": probe, "drop_top": drop(result["fired"]), "drop_control": drop(control),
           "drop_probe": drop(probe["fired"]) if probe else None,
           "excess_drop": bootstrap(lambda c, a: np.mean(c - a), control, result["fired"], n_boot=cfg.n_boot,
                                    seed=cfg.seed).to_dict()}
    for entry in (result, probe, *draws):
        if entry is not None:
            entry["fired"] = entry["fired"].astype(int).tolist()
    return out
