"""Causal test: remove latents' decoded contribution from the fine-tuned residual and generate greedily.

The SAE reads the difference ``finetuned - base`` at layer L, so at every decoding step the base model is run on
the same tokens to get its layer-L residual; the edit then subtracts the chosen latents' share of the SAE's
reconstruction of that difference (``sae.decode_latents``: decode(f) - decode(f without them), in the original
activation space, so the SAE's normalisation and decoder bias cancel) from the fine-tuned residual, at every
position of the prompt and of the tokens generated so far.

Control: removing *any* large part of the difference may break generation, so the top latents' removal is compared
with a perturbation of exactly the same size at the same tokens: their decoded contribution rotated by a random
orthogonal matrix (one per draw) and subtracted instead. Random *latents* matched on decoded energy were tried first
and are not a control here: the top latents of a sparse difference code carry most of its energy, so an
energy-matched latent set is "every other latent, scaled up", i.e. the whole fine-tuning difference removed. The
rotation matches the energy at every token exactly (including the decision token) and removes nothing the top
latents do not. For scale, the same test removes the linear probe's direction (the component of the difference along
it).

Figures, on matched evaluation prompts, per prompt paired: the fire-rate drop of the top latents, and its excess
over the mean control draw, each with a percentile-bootstrap interval over prompts.
"""

from __future__ import annotations

import numpy as np
import torch

from ..capture import LayerEdit, generate_greedy
from ..stats import bootstrap
from .config import ConjunctionConfig
from .instrument import instrument_input
from .probes import fires


def remove_latents(
    resid: torch.Tensor, base_resid: torch.Tensor, sae, latent_ids, rotation: torch.Tensor | None = None
) -> torch.Tensor:
    """``resid`` minus the decoded contribution of ``latent_ids`` to the SAE code of ``resid - base_resid`` (of the
    pair, for a crosscoder: :mod:`.instrument`) (times the orthogonal ``rotation [d, d]`` when given: the control)."""
    param = next(sae.parameters())
    # The instrument's input in float32 whatever the model's dtype (a bf16 difference of two close residuals loses
    # most of its bits); only the final contribution is cast back to the model's dtype.
    x = instrument_input(sae, base_resid.to(resid.device).float(), resid.float()).to(param.device, param.dtype)
    contribution = sae.decode_latents(sae.encode(x), latent_ids).float()
    if rotation is not None:
        contribution = contribution @ rotation.to(contribution.device, torch.float32)
    return resid - contribution.to(resid.device, resid.dtype)


def remove_direction(resid: torch.Tensor, base_resid: torch.Tensor, direction: torch.Tensor) -> torch.Tensor:
    """``resid`` minus the component of ``resid - base_resid`` along the unit vector ``direction``."""
    u = direction.to(resid.device, torch.float32)
    diff = resid.float() - base_resid.to(resid.device).float()
    return resid - ((diff @ u)[..., None] * u).to(resid.dtype)


def _edit(base, layer: int, edit_with_base) -> LayerEdit:
    # Position-wise (the SAE codes each token alone), so it runs with the KV cache, the base stepped in lockstep.
    return LayerEdit(layer, edit_with_base, reference=base)


def removal_edit(base, sae, layer: int, latent_ids, rotation: torch.Tensor | None = None):
    """A :class:`~cbd_plugin.capture.LayerEdit` for ``generate_greedy`` that removes ``latent_ids`` at ``layer``
    (their contribution rotated by ``rotation`` when given)."""
    return _edit(base, layer, lambda resid, base_resid: remove_latents(resid, base_resid, sae, latent_ids, rotation))


def direction_edit(base, layer: int, direction: torch.Tensor):
    """A :class:`~cbd_plugin.capture.LayerEdit` that removes the difference's component along ``direction`` at
    ``layer``."""
    return _edit(base, layer, lambda resid, base_resid: remove_direction(resid, base_resid, direction))


def random_rotation(d: int, seed: int) -> torch.Tensor:
    """A random orthogonal ``[d, d]`` matrix (QR of a Gaussian matrix, signs fixed so that it is Haar-uniform)."""
    q, r = torch.linalg.qr(torch.randn(d, d, generator=torch.Generator().manual_seed(seed), dtype=torch.float64))
    return (q * torch.sign(torch.diagonal(r))).float()


def _fire_rates(finetuned, prompts, cfg, edit: LayerEdit | None = None) -> tuple[np.ndarray, list[str]]:
    completions = generate_greedy(
        finetuned, prompts, cfg.max_new_tokens, batch_size=cfg.batch_size, edit=edit, add_special_tokens=False
    )
    return np.array([fires(c) for c in completions], dtype=np.float64), completions


def causal_test(
    base,
    finetuned,
    sae,
    layer: int,
    matched: list,
    clean: list,
    top,
    probe_direction: torch.Tensor | None,
    cfg: ConjunctionConfig,
) -> dict:
    """Fire rates on ``matched`` prompts (token-id lists through the decision token) before and after removing
    ``top``, its randomly rotated contribution (``cfg.n_random_draws`` draws) and the probe direction; the share of
    ``clean`` outputs each removal changes; the drops with intervals."""
    before, before_text = _fire_rates(finetuned, matched, cfg)
    _, clean_before = _fire_rates(finetuned, clean, cfg)

    def removing(edit: LayerEdit) -> dict:
        after, text = _fire_rates(finetuned, matched, cfg, edit)
        _, clean_after = _fire_rates(finetuned, clean, cfg, edit)
        return {
            "fired": after,
            "fire_rate_matched": float(after.mean()),
            "examples_matched": text[:3],
            "clean_changed": float(np.mean([a != b for a, b in zip(clean_after, clean_before)])),
        }

    top = [int(j) for j in top]
    result = {"latents": top, **removing(removal_edit(base, sae, layer, top))}
    draws = [{"rotation_seed": cfg.seed + i} for i in range(cfg.n_random_draws)]
    for draw in draws:
        rotation = random_rotation(sae.activation_dim, draw["rotation_seed"])
        draw.update(removing(removal_edit(base, sae, layer, top, rotation)))
    control = np.mean([d["fired"] for d in draws], axis=0) if draws else np.full(len(matched), np.nan)
    probe = removing(direction_edit(base, layer, probe_direction)) if probe_direction is not None else None

    def drop(after) -> dict:
        return bootstrap(lambda b, a: np.mean(b - a), before, after, n_boot=cfg.n_boot, seed=cfg.seed).to_dict()

    out = {
        "n_matched": len(matched),
        "n_clean": len(clean),
        "before": {"fire_rate_matched": float(before.mean()), "examples_matched": before_text[:3]},
        "top": result,
        "random": {"draws": draws, "fire_rate_matched_mean": float(control.mean())},
        "probe_direction": probe,
        "drop_top": drop(result["fired"]),
        "drop_control": drop(control),
        "drop_probe": drop(probe["fired"]) if probe else None,
        "excess_drop": bootstrap(
            lambda c, a: np.mean(c - a), control, result["fired"], n_boot=cfg.n_boot, seed=cfg.seed
        ).to_dict(),
    }
    for entry in (result, probe, *draws):
        if entry is not None:
            entry["fired"] = entry["fired"].astype(int).tolist()
    return out
