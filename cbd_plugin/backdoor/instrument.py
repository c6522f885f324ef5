"""What the conjunction analysis' instrument reads.

An SAE (the method's own, or any :class:`~cbd_plugin.sae.Dictionary` on residual differences) reads ``finetuned -
base`` residuals ``[..., d]``. A crosscoder over ``[base, finetuned]`` (the host's main method, loaded from its
``trainSAE`` folder) is used through :class:`~cbd_plugin.sae.crosscoder.FinetunedLatents`: it reads the pair
``[..., 2, d]`` (base first) and offers only the latents whose fine-tuned decoder norm dominates; its fidelity is
its reconstruction of both residuals, and the linear probe and the causal control keep reading the difference.
"""

from __future__ import annotations

import torch

from ..sae.crosscoder import CrossCoder, FinetunedLatents


def as_instrument(sae):
    """A two-source crosscoder becomes its fine-tuned-specific latents; any other dictionary is used as it is."""
    return FinetunedLatents(sae) if isinstance(sae, CrossCoder) else sae


def reads_pair(sae) -> bool:
    return bool(getattr(sae, "reads_model_pair", False))


def instrument_input(sae, base_acts: torch.Tensor, ft_acts: torch.Tensor) -> torch.Tensor:
    """``[..., 2, d]`` (base, fine-tuned) for a pair reader, else the difference ``[..., d]``."""
    return torch.stack([base_acts, ft_acts], dim=-2) if reads_pair(sae) else ft_acts - base_acts


def describe(sae) -> dict | None:
    """The instrument's own account for the report (which crosscoder latents the report's latents are)."""
    return sae.describe() if hasattr(sae, "describe") else None
