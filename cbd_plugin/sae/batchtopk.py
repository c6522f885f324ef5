"""Reader and writer for the ``BatchTopKSAE`` folders of the diffing-toolkit's dictionary_learning fork.

Works without the fork and reproduces its arithmetic (``dictionary_learning/dictionary.py``):

* normalise: if ``activation_mean``/``activation_std`` hold no NaN, ``x_n = (x - mean) * activation_global_scale``
  with ``activation_global_scale = target_rms / sqrt(sum(std**2) + 1e-8)`` (the fork's ``keep_relative_variance``
  mode, the only one its BatchTopKSAE uses); otherwise ``x_n = x``;
* encode: ``a = relu(encoder.weight @ (x_n - b_dec) + encoder.bias)``, then either the learned threshold
  (``a * (a > threshold)``; the fork's default at inference, a no-op while ``threshold`` is still -1) or the
  batch top-k (keep the ``k * n_rows`` largest entries of the whole batch, as in training);
* decode: ``x_hat = (decoder.weight @ f + b_dec) / (activation_global_scale + 1e-8) + mean`` (no denormalising
  without a normaliser).

``encode_sparse``/``decode_sparse`` give the same numbers as :class:`SparseCodes` (width: the most active latents
of any token in the batch). Input holding NaN/Inf is refused: in batch top-k mode one NaN token would take every
slot of the batch and silently zero the codes of all the others.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .dictionary import Dictionary, check_sizes
from .export import SAELensForm
from .sparse import SparseCodes, check_activations, pack_rows, sparse_matmul

NORMALIZATION_KEYS = ("activation_mean", "activation_std", "activation_global_scale", "target_rms")


class BatchTopKSAE(Dictionary):
    """A BatchTopK SAE with the fork's parameter names, so ``state_dict()`` is the fork's ``model.safetensors``.

    Weights start at zero: they come from a file or are set by the caller.
    """

    dict_class = "BatchTopKSAE"
    input_key = "encoder.weight"
    nan_sentinel_keys = ("activation_mean", "activation_std")  # all-NaN: no normaliser (the fork's convention)

    def __init__(
        self,
        activation_dim: int,
        dict_size: int,
        k: int,
        activation_mean: torch.Tensor | None = None,
        activation_std: torch.Tensor | None = None,
        target_rms: float = 1.0,
    ):
        super().__init__()
        activation_dim, dict_size, k = check_sizes("BatchTopKSAE", activation_dim, dict_size, k)
        self.activation_dim, self.dict_size = activation_dim, dict_size
        self.encoder = nn.Linear(activation_dim, dict_size)
        self.decoder = nn.Linear(dict_size, activation_dim, bias=False)
        for p in (self.encoder.weight, self.encoder.bias, self.decoder.weight):
            nn.init.zeros_(p)
        self.b_dec = nn.Parameter(torch.zeros(activation_dim))
        self.register_buffer("k", torch.tensor(k, dtype=torch.int32))
        self.register_buffer("threshold", torch.tensor(-1.0))
        self.register_buffer("target_rms", torch.tensor(float(target_rms)))
        if activation_mean is None or activation_std is None:
            nan = torch.full((activation_dim,), math.nan)
            activation_mean, activation_std, scale = nan, nan.clone(), torch.tensor(1.0)
        else:
            scale = self.target_rms / torch.sqrt((activation_std.float() ** 2).sum() + 1e-8)
        self.register_buffer("activation_mean", activation_mean.float().clone())
        self.register_buffer("activation_std", activation_std.float().clone())
        self.register_buffer("activation_global_scale", scale)

    @property
    def has_normalizer(self) -> bool:
        return not (self.activation_mean.isnan().any() or self.activation_std.isnan().any())

    def normalize_activations(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.activation_mean) * self.activation_global_scale if self.has_normalizer else x

    def denormalize_activations(self, x: torch.Tensor) -> torch.Tensor:
        if not self.has_normalizer:
            return x
        return x / (self.activation_global_scale + 1e-8) + self.activation_mean

    def _pre_activations(self, x: torch.Tensor) -> torch.Tensor:
        """``encoder(x_n - b_dec)`` before the ReLU: selecting on it and keeping positives equals selecting on the
        ReLU output, without a full-width ReLU pass."""
        x2 = check_activations(x, self.activation_dim, f"{type(self).__name__}.encode ({self.source})")
        return self.encoder(self.normalize_activations(x2) - self.b_dec)

    def encode_sparse(self, x: torch.Tensor, use_threshold: bool = True) -> SparseCodes:
        """Active latents of ``x [..., activation_dim]`` (leading dimensions are one batch for the batch top-k)."""
        pre = self._pre_activations(x)
        n = pre.shape[0]
        if use_threshold:
            active = pre > self.threshold.clamp_min(0)  # a ReLU output of 0 is inactive whatever the threshold
            width = max(int(active.sum(1).max()) if n else 0, 1)
            top = pre.masked_fill(~active, 0).topk(width, dim=1, sorted=False)
            return SparseCodes(top.values, top.indices)
        # The k * n largest of the batch: everything at or above the (k * n)-th largest value (kthvalue is ~2x
        # faster than a flat topk of that size); exact float ties at that value are all kept.
        flat = pre.reshape(-1)
        keep = min(int(self.k) * n, flat.numel())
        if keep == 0:
            return pack_rows(flat[:0], flat.new_zeros(0, dtype=torch.long), n, self.dict_size)
        cut = flat.kthvalue(flat.numel() - keep + 1).values
        active = flat >= cut if cut > 0 else flat > 0
        index = active.nonzero().squeeze(1)
        return pack_rows(flat[index], index, n, self.dict_size)

    def encode(self, x: torch.Tensor, use_threshold: bool = True) -> torch.Tensor:
        """Latents of ``x [..., activation_dim]``; leading dimensions are one batch for the batch top-k."""
        codes = self.encode_sparse(x, use_threshold)
        return codes.to_dense(self.dict_size).reshape(*x.shape[:-1], self.dict_size)

    def decode_sparse(self, codes: SparseCodes) -> torch.Tensor:
        return self.denormalize_activations(sparse_matmul(codes, self.decoder.weight.T).add_(self.b_dec))

    def decode(self, f: torch.Tensor) -> torch.Tensor:
        return self.denormalize_activations(self.decoder(f) + self.b_dec)

    def decode_latents(self, f: torch.Tensor, latent_ids) -> torch.Tensor:
        ids = torch.as_tensor(latent_ids, dtype=torch.long, device=f.device)
        part = f[..., ids] @ self.decoder.weight[:, ids].T
        # Denormalising is affine: the latents' share is the linear part divided by the global scale.
        return part / (self.activation_global_scale + 1e-8) if self.has_normalizer else part

    def config_dict(self) -> dict:
        return {
            "activation_dim": self.activation_dim,
            "dict_size": self.dict_size,
            "k": int(self.k),
            "target_rms": float(self.target_rms),
            "encoder_init_norm": 1.0,
        }

    def saelens_form(self) -> SAELensForm:
        """Inference with the learned threshold is SAELens's ``jumprelu`` with that one threshold for every latent,
        the normaliser folded into the weights: ``x_n = (x - mean) * s`` gives ``W_enc' = s W_enc``,
        ``b_dec' = mean + b_dec / s`` (the encoder subtracts ``b_dec'``) and ``W_dec' = W_dec / s`` (decode matches
        the fork's up to its ``s + 1e-8`` denominator)."""
        W_enc, W_dec, b_dec = self.encoder.weight.T, self.decoder.weight.T, self.b_dec
        if self.has_normalizer:
            s = self.activation_global_scale
            W_enc, W_dec, b_dec = W_enc * s, W_dec / (s + 1e-8), self.activation_mean + b_dec / s
        state = {
            "W_enc": W_enc,
            "b_enc": self.encoder.bias,
            "W_dec": W_dec,
            "b_dec": b_dec,
            "threshold": self.threshold.expand(self.dict_size),
        }
        return SAELensForm("jumprelu", True, state)

    @classmethod
    def _complete_tensors(cls, config, tensors, source):
        present = [k for k in NORMALIZATION_KEYS if k in tensors]
        if present and len(present) < len(NORMALIZATION_KEYS):
            missing = [k for k in NORMALIZATION_KEYS if k not in tensors]
            raise ValueError(f"{source}: has normalisation key(s) {present} but lacks {missing}")
        if not present:  # dictionaries saved before the fork added normalisation: identity
            d = config["activation_dim"]
            tensors = {
                **tensors,
                "activation_mean": torch.full((d,), math.nan),
                "activation_std": torch.full((d,), math.nan),
                "activation_global_scale": torch.tensor(1.0),
                "target_rms": torch.tensor(1.0),
            }
        if "k" in tensors and int(tensors["k"]) != int(config["k"]):
            raise ValueError(f"{source}: key 'k' is {int(tensors['k'])} but config.json says k={config['k']}")
        return tensors
