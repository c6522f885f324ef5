"""JumpReLU SAE (Rajamanoharan et al. 2024): Gemma Scope ``params.npz``, SAELens ``jumprelu``, dictionary_learning.

``encode(x) = relu(h) * (h > threshold)`` with ``h = x' @ W_enc + b_enc`` (``x'`` as in :mod:`cbd_plugin.sae.relu`),
the formula of SAELens's ``JumpReLUSAE.encode`` and of the Gemma Scope tutorial; Gemma Scope does not subtract
``b_dec`` from the input (``subtract_b_dec=False``). ``threshold [d_sae]`` is per latent.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .export import SAELensForm
from .relu import ReLUSAE


class JumpReLUSAE(ReLUSAE):
    """A ReLU SAE whose latent ``i`` is zeroed unless its pre-activation exceeds ``threshold[i]``."""

    dict_class = "JumpReLUSAE"

    def __init__(self, activation_dim: int, dict_size: int, subtract_b_dec: bool = False):
        super().__init__(activation_dim, dict_size, subtract_b_dec=subtract_b_dec)
        self.threshold = nn.Parameter(torch.zeros(dict_size))

    def activation(self, h: torch.Tensor) -> torch.Tensor:
        return F.relu(h) * (h > self.threshold)

    def saelens_form(self) -> SAELensForm:
        return SAELensForm("jumprelu", self.subtract_b_dec, {**self.linear_state(), "threshold": self.threshold})
