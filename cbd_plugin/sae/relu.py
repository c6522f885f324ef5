"""ReLU SAE (SAELens ``standard``, upstream dictionary_learning ``AutoEncoder``), in SAELens's parameter layout.

``encode(x) = relu(x' @ W_enc + b_enc)`` with ``x' = x - b_dec`` when ``subtract_b_dec`` (SAELens's
``apply_b_dec_to_input``) else ``x' = x``; ``decode(f) = f @ W_dec + b_dec``. Shapes: ``W_enc [d, d_sae]``,
``b_enc [d_sae]``, ``W_dec [d_sae, d]``, ``b_dec [d]``. Weights start at zero: they come from a file.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .dictionary import Dictionary
from .export import SAELensForm
from .sparse import SparseCodes, check_activations, pack_rows, sparse_matmul


class ReLUSAE(Dictionary):
    """A ReLU SAE; :class:`cbd_plugin.sae.jumprelu.JumpReLUSAE` adds a per-latent threshold."""

    dict_class = "ReLUSAE"
    input_key = "W_enc"

    def __init__(self, activation_dim: int, dict_size: int, subtract_b_dec: bool = True):
        super().__init__()
        self.activation_dim, self.dict_size, self.subtract_b_dec = activation_dim, dict_size, subtract_b_dec
        self.W_enc = nn.Parameter(torch.zeros(activation_dim, dict_size))
        self.b_enc = nn.Parameter(torch.zeros(dict_size))
        self.W_dec = nn.Parameter(torch.zeros(dict_size, activation_dim))
        self.b_dec = nn.Parameter(torch.zeros(activation_dim))

    def hidden_pre(self, x: torch.Tensor) -> torch.Tensor:
        """Encoder pre-activations, before any nonlinearity."""
        if self.subtract_b_dec:
            x = x - self.b_dec
        return x @ self.W_enc + self.b_enc

    def activation(self, h: torch.Tensor) -> torch.Tensor:
        """Codes from pre-activations."""
        return F.relu(h)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        x2 = check_activations(x, self.activation_dim, f"{type(self).__name__}.encode ({self.source})")
        return self.activation(self.hidden_pre(x2)).reshape(*x.shape[:-1], self.dict_size)

    def encode_sparse(self, x: torch.Tensor) -> SparseCodes:
        """The active latents of each token (width: the most active in any token; zeros pad the rest)."""
        f = self.encode(x).reshape(-1, self.dict_size)
        flat = f.flatten().nonzero().flatten()
        return pack_rows(f.flatten()[flat], flat, f.shape[0], self.dict_size)

    def decode(self, f: torch.Tensor) -> torch.Tensor:
        return f @ self.W_dec + self.b_dec

    def decode_sparse(self, codes: SparseCodes) -> torch.Tensor:
        return sparse_matmul(codes, self.W_dec).add_(self.b_dec)  # in place: no second [n, d] buffer

    def decode_latents(self, f: torch.Tensor, latent_ids) -> torch.Tensor:
        ids = torch.as_tensor(latent_ids, dtype=torch.long, device=f.device)
        return f[..., ids] @ self.W_dec[ids]

    def config_dict(self) -> dict:
        return {
            "activation_dim": self.activation_dim,
            "dict_size": self.dict_size,
            "subtract_b_dec": self.subtract_b_dec,
        }

    def linear_state(self) -> dict[str, torch.Tensor]:
        return {"W_enc": self.W_enc, "b_enc": self.b_enc, "W_dec": self.W_dec, "b_dec": self.b_dec}

    def saelens_form(self) -> SAELensForm:
        return SAELensForm("standard", self.subtract_b_dec, self.linear_state())
