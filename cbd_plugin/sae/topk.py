"""TopK SAE (Gao et al. 2024) in the BioRefusalAudit seed's parameter layout.

``encode(x) = topk_k(relu(x' @ W_enc + b_enc))`` per row, with ``x' = x - b_dec`` when ``subtract_b_dec`` (Gao et
al., and what our trainer uses) or ``x' = x`` (the seed checkpoint's formula; ``from_seed_checkpoint`` sets it).
``decode(f) = f @ W_dec + b_dec``. ``encode_sparse``/``decode_sparse`` give and take :class:`SparseCodes` (the same
numbers without the dense ``[n, dict_size]`` codes; ``encode`` is their scatter).
Shapes: ``W_enc [d, d_sae]``, ``b_enc [d_sae]``, ``W_dec [d_sae, d]``, ``b_dec [d]``.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from .dictionary import Dictionary, check_sizes
from .export import SAELensForm
from .folder import load_torch_state
from .sparse import SparseCodes, check_activations, sparse_matmul, topk_codes


class TopKSAE(Dictionary):
    """TopK SAE; fresh weights follow Gao et al.: random unit-norm decoder rows, encoder = decoder transpose."""

    dict_class = "TopKSAE"
    input_key = "W_enc"

    def __init__(
        self,
        activation_dim: int,
        dict_size: int,
        k: int,
        subtract_b_dec: bool = True,
        generator: torch.Generator | None = None,
    ):
        super().__init__()
        activation_dim, dict_size, k = check_sizes("TopKSAE", activation_dim, dict_size, k)
        self.activation_dim, self.dict_size, self.k, self.subtract_b_dec = activation_dim, dict_size, k, subtract_b_dec
        W_dec = F.normalize(torch.randn(dict_size, activation_dim, generator=generator), dim=1)
        self.W_dec = nn.Parameter(W_dec)
        self.W_enc = nn.Parameter(W_dec.T.clone())
        self.b_enc = nn.Parameter(torch.zeros(dict_size))
        self.b_dec = nn.Parameter(torch.zeros(activation_dim))

    def encoder_input(self, x: torch.Tensor) -> torch.Tensor:
        """``x - b_dec`` or ``x`` (see ``subtract_b_dec``)."""
        return x - self.b_dec if self.subtract_b_dec else x

    def pre_activations(self, x: torch.Tensor) -> torch.Tensor:
        """Dense pre-activations ``x' @ W_enc + b_enc`` (before ReLU and top-k) of ``[n, activation_dim]``."""
        return torch.addmm(self.b_enc, self.encoder_input(x), self.W_enc)

    def encode_sparse(self, x: torch.Tensor) -> SparseCodes:
        """The ``k`` active latents of each token of ``x [..., activation_dim]`` (flattened to ``[n, k]``)."""
        x2 = check_activations(x, self.activation_dim, f"{type(self).__name__}.encode ({self.source})")
        return topk_codes(self.pre_activations(x2), self.k)

    def decode_sparse(self, codes: SparseCodes) -> torch.Tensor:
        """``[n, activation_dim]`` reconstruction gathering each token's ``k`` decoder rows."""
        return sparse_matmul(codes, self.W_dec).add_(self.b_dec)  # in place: no second [n, d] buffer

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.encode_sparse(x).to_dense(self.dict_size).reshape(*x.shape[:-1], self.dict_size)

    def decode(self, f: torch.Tensor) -> torch.Tensor:
        return f @ self.W_dec + self.b_dec

    def decode_latents(self, f: torch.Tensor, latent_ids) -> torch.Tensor:
        ids = torch.as_tensor(latent_ids, dtype=torch.long, device=f.device)
        return f[..., ids] @ self.W_dec[ids]

    def config_dict(self) -> dict:
        return {
            "activation_dim": self.activation_dim,
            "dict_size": self.dict_size,
            "k": self.k,
            "subtract_b_dec": self.subtract_b_dec,
        }

    def saelens_form(self) -> SAELensForm:
        state = {"W_enc": self.W_enc, "b_enc": self.b_enc, "W_dec": self.W_dec, "b_dec": self.b_dec}
        return SAELensForm("topk", self.subtract_b_dec, state, {"k": self.k, "rescale_acts_by_decoder_norm": False})

    @classmethod
    def from_seed_checkpoint(cls, path: str | Path, k: int = 32, subtract_b_dec: bool = False) -> TopKSAE:
        """Load a ``{W_enc, b_enc, W_dec, b_dec}`` state dict saved with ``torch.save``.

        Defaults fit the BioRefusalAudit ``sae_weights.pt``: k is not stored there (the card says 32) and its encoder
        does not subtract ``b_dec``. A ``model_final.pt`` that ``trainSAE`` wrote for ``ContrastiveTopKTrainer``
        needs the trainer's ``k`` and ``subtract_b_dec=True``.
        """
        state = load_torch_state(path)
        if "W_enc" not in state or state["W_enc"].ndim != 2:
            shape = tuple(state["W_enc"].shape) if "W_enc" in state else "missing"
            raise ValueError(f"{path}: key 'W_enc' must be a [d, d_sae] matrix, got {shape}; keys: {list(state)}")
        d, d_sae = state["W_enc"].shape
        config = {"activation_dim": d, "dict_size": d_sae, "k": k, "subtract_b_dec": subtract_b_dec}
        return cls._from_state(config, state, path)
