"""Causal check: remove latents' decoded contribution from the fine-tuned residual and generate greedily.

The SAE reads the difference ``finetuned - base`` at layer L, so at every decoding step the base model is run on
the same tokens to get its layer-L residual; the edit then subtracts the chosen latents' share of the SAE's
reconstruction of that difference (``sae.decode_latents``: decode(f) - decode(f without them), in the original
activation space, so the SAE's normalisation and decoder bias cancel) from the fine-tuned residual, at every
position of the prompt and of the tokens generated so far.
"""

from __future__ import annotations

import numpy as np
import torch

from ..capture import generate_greedy, trace_residuals
from .config import ConjunctionConfig
from .probes import fires


def remove_latents(resid: torch.Tensor, base_resid: torch.Tensor, sae, latent_ids) -> torch.Tensor:
    """``resid`` minus the decoded contribution of ``latent_ids`` to the SAE code of ``resid - base_resid``."""
    param = next(sae.parameters())
    diff = (resid - base_resid.to(resid.device, resid.dtype)).to(param.device, param.dtype)
    contribution = sae.decode_latents(sae.encode(diff), latent_ids)
    return resid - contribution.to(resid.device, resid.dtype)


def removal_edit(base, sae, layer: int, latent_ids):
    """A ``make_edit`` for :func:`cbd_plugin.capture.generate_greedy` that removes ``latent_ids`` at ``layer``."""
    def make_edit(input_ids, attention_mask):
        base_resid = trace_residuals(base, input_ids, attention_mask, [layer])[layer]
        return lambda resid: remove_latents(resid, base_resid, sae, latent_ids)
    return make_edit


def _behaviour(finetuned, matched, clean, cfg, layer=None, make_edit=None) -> tuple[list[str], list[str]]:
    def generate(prompts):
        return generate_greedy(finetuned, prompts, cfg.max_new_tokens, batch_size=cfg.batch_size, layer=layer,
                               make_edit=make_edit)
    return generate(matched), generate(clean)


def _effect(before_clean: list[str], after: tuple[list[str], list[str]], latent_ids) -> dict:
    matched_out, clean_out = after
    return {"latents": [int(j) for j in latent_ids],
            "fire_rate_matched": float(np.mean([fires(c) for c in matched_out])),
            "clean_changed": float(np.mean([a != b for a, b in zip(clean_out, before_clean)])),
            "examples_matched": matched_out[:3]}


def ablation_effect(base, finetuned, sae, layer: int, matched: list, clean: list, latent_ids, random_pool,
                    cfg: ConjunctionConfig) -> dict:
    """Fire rate on ``matched`` prompts and the fraction of ``clean`` outputs changed, before and after removing
    ``latent_ids``, and for ``cfg.n_random_draws`` seeded draws of as many latents from ``random_pool``.

    Prompts are token-id lists (the prompt only, without the fire completion).
    """
    before = _behaviour(finetuned, matched, clean, cfg)

    def removing(ids) -> dict:
        after = _behaviour(finetuned, matched, clean, cfg, layer, removal_edit(base, sae, layer, ids))
        return _effect(before[1], after, ids)

    top = removing(latent_ids)
    rng = np.random.default_rng(cfg.seed)
    pool = np.setdiff1d(np.asarray(random_pool, dtype=np.int64), np.asarray(latent_ids, dtype=np.int64))
    draws = [removing(rng.choice(pool, size=min(len(latent_ids), len(pool)), replace=False))
             for _ in range(cfg.n_random_draws)]
    fire_before = float(np.mean([fires(c) for c in before[0]]))
    for effect in (top, *draws):  # the fraction of the matched fire rate the removal takes away
        effect["fire_rate_reduction"] = 1 - effect["fire_rate_matched"] / fire_before if fire_before else None
    random = {"draws": draws}
    for key in ("fire_rate_matched", "fire_rate_reduction", "clean_changed"):
        values = [d[key] for d in draws if d[key] is not None]
        random[f"{key}_mean"] = float(np.mean(values)) if values else None
        random[f"{key}_std"] = float(np.std(values)) if values else None
    return {"n_matched": len(matched), "n_clean": len(clean),
            "before": {"fire_rate_matched": fire_before,
                       "fire_rate_clean": float(np.mean([fires(c) for c in before[1]])),
                       "examples_matched": before[0][:3]},
            "top": top, "random": random}
