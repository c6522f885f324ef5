"""Crosscoders of the diffing-toolkit's dictionary_learning fork (``CrossCoder``, ``BatchTopKCrossCoder``), read
without the fork, with its parameter names and arithmetic (``dictionary_learning/dictionary.py``).

A crosscoder reads the residuals of ``num_layers`` sources at once, for model diffing the stack ``[base, finetuned]``
at one layer: ``x [n, num_layers, d]``. With ``W_enc = encoder.weight [L, d, F]``, ``W_dec = decoder.weight
[L, F, d]``, ``b_dec = decoder.bias [L, d]``:

* normalise (when ``activation_mean``/``activation_std`` hold no NaN): ``x_n = (x - mean) * scale[l]``, ``scale
  = target_rms / sqrt(sum_d std**2 + 1e-8)`` per source;
* ``CrossCoder.encode``: ``f = relu(sum_l x_n[:, l] @ W_enc[l] + encoder.bias)``;
* ``BatchTopKCrossCoder.encode``: the same ``f``, ranked on ``f * c`` where ``c`` is the code normalisation (from the
  decoder: CROSSCODER ``sum_l |W_dec[l, i]|``, SAE ``|W_dec[:, i]|`` over both sources, MIXED ``a_sae SAE + a_cc
  CROSSCODER``, NONE 1): ``f * (f c > threshold)`` (inference, the fork's default) or, in batch top-k mode, the
  ``k * n`` largest ``f c`` of the batch keep their ``f``;
* decode: ``x_hat[:, l] = (f @ W_dec[l] + b_dec[l]) / (scale[l] + 1e-8) + mean[l]``.

The DECOUPLED code normalisation (codes per source) and an encoder over a subset of the sources are refused by name.

:class:`FinetunedLatents` makes a crosscoder the conjunction analysis' instrument: it reads the pair
``[base, finetuned]`` and exposes only latents whose fine-tuned decoder norm dominates.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from loguru import logger
from torch import nn

from .dictionary import Dictionary

# The fork's CodeNormalization enum values (enum.auto(), in its order).
CODE_NORMALIZATIONS = {"CROSSCODER": 1, "SAE": 2, "MIXED": 3, "NONE": 4, "DECOUPLED": 5}
NORMALIZATION_KEYS = ("activation_mean", "activation_std", "activation_global_scale", "target_rms")
# A latent is fine-tuned-specific when |W_dec[ft, i]| / (|W_dec[base, i]| + |W_dec[ft, i]|) exceeds 5/6: the fork's
# own count of model-specific latents (run_validation: 0.5 ((n_l - n_other) / max(n_l, n_other) + 1) > 0.9), so a
# candidate here is a latent the host's crosscoder runs call specific to the fine-tuned model. Set before any run.
FT_NORM_SHARE = 5 / 6
BASE, FINETUNED = 0, 1  # the fork's model-diffing order of sources: base first


class CrossCoder(Dictionary):
    """The fork's ``CrossCoder``: ``state_dict()`` has its keys, so its ``model_final.pt`` loads as it is."""

    dict_class = "CrossCoder"
    input_key = "encoder.weight"
    nan_sentinel_keys = ("activation_mean", "activation_std")

    def __init__(
        self,
        activation_dim: int,
        dict_size: int,
        num_layers: int,
        code_normalization: str = "CROSSCODER",
        code_normalization_alpha_sae: float = 1.0,
        code_normalization_alpha_cc: float = 0.1,
        target_rms: float = 1.0,
    ):
        super().__init__()
        if code_normalization not in CODE_NORMALIZATIONS or code_normalization == "DECOUPLED":
            raise ValueError(
                f"code_normalization {code_normalization!r} is not supported; supported: "
                f"{[c for c in CODE_NORMALIZATIONS if c != 'DECOUPLED']} (DECOUPLED gives a code per "
                f"source, not one per token)"
            )
        self.activation_dim, self.dict_size, self.num_layers = activation_dim, dict_size, num_layers
        self.code_normalization = code_normalization
        self.alpha_sae, self.alpha_cc = code_normalization_alpha_sae, code_normalization_alpha_cc
        self.encoder = nn.Module()
        self.encoder.weight = nn.Parameter(torch.zeros(num_layers, activation_dim, dict_size))
        self.encoder.bias = nn.Parameter(torch.zeros(dict_size))
        self.decoder = nn.Module()
        self.decoder.weight = nn.Parameter(torch.zeros(num_layers, dict_size, activation_dim))
        self.decoder.bias = nn.Parameter(torch.zeros(num_layers, activation_dim))
        self.register_buffer("code_normalization_id", torch.tensor(CODE_NORMALIZATIONS[code_normalization]))
        self.register_buffer("target_rms", torch.tensor(float(target_rms)))
        nan = torch.full((num_layers, activation_dim), math.nan)
        self.register_buffer("activation_mean", nan)
        self.register_buffer("activation_std", nan.clone())
        self.register_buffer("activation_global_scale", torch.ones(num_layers))

    @property
    def has_normalizer(self) -> bool:
        return not (self.activation_mean.isnan().any() or self.activation_std.isnan().any())

    def _check(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 3 or tuple(x.shape[1:]) != (self.num_layers, self.activation_dim):
            raise ValueError(
                f"{self.dict_class} ({self.source}): input has shape {tuple(x.shape)}, expected "
                f"[n, {self.num_layers}, {self.activation_dim}] (one residual per source, base first)"
            )
        if not bool(torch.isfinite(x).all()):
            raise ValueError(f"{self.dict_class} ({self.source}): input holds NaN or Inf")
        return x

    def normalize_activations(self, x: torch.Tensor) -> torch.Tensor:
        if not self.has_normalizer:
            return x
        return (x - self.activation_mean) * self.activation_global_scale[None, :, None]

    def denormalize_activations(self, x: torch.Tensor) -> torch.Tensor:
        if not self.has_normalizer:
            return x
        return x / (self.activation_global_scale[None, :, None] + 1e-8) + self.activation_mean

    def pre_codes(self, x: torch.Tensor) -> torch.Tensor:
        """``relu(sum_l x_n[:, l] @ W_enc[l] + b)`` of ``x [n, L, d]``: the fork's ``CrossCoder.encode``."""
        x = self.normalize_activations(self._check(x))
        return F.relu(torch.einsum("bld,ldf->bf", x, self.encoder.weight) + self.encoder.bias)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.pre_codes(x)

    def decode(self, f: torch.Tensor) -> torch.Tensor:
        """``[n, L, d]`` reconstruction of codes ``f [n, F]``."""
        return self.denormalize_activations(torch.einsum("bf,lfd->bld", f, self.decoder.weight) + self.decoder.bias)

    def decode_latents(self, f: torch.Tensor, latent_ids) -> torch.Tensor:
        ids = torch.as_tensor(latent_ids, dtype=torch.long, device=f.device)
        part = torch.einsum("bf,lfd->bld", f[..., ids], self.decoder.weight[:, ids])
        # Denormalising is affine per source: the latents' share is the linear part over that source's scale.
        return part / (self.activation_global_scale[None, :, None] + 1e-8) if self.has_normalizer else part

    def code_normalization_weights(self) -> torch.Tensor:
        """``c [F]`` (the fork's ``get_code_normalization`` without its leading 1)."""
        norms = self.decoder.weight.norm(dim=2)  # [L, F]
        sae = self.decoder.weight.norm(dim=(0, 2))
        return {
            "CROSSCODER": norms.sum(0),
            "SAE": sae,
            "MIXED": self.alpha_sae * sae + self.alpha_cc * norms.sum(0),
            "NONE": torch.ones_like(sae),
        }[self.code_normalization]

    def finetuned_norm_share(self) -> torch.Tensor:
        """``|W_dec[ft, i]| / (|W_dec[base, i]| + |W_dec[ft, i]|)`` per latent (NaN for a latent with no decoder)."""
        if self.num_layers != 2:
            raise ValueError(
                f"{self.source}: a crosscoder over {self.num_layers} sources; the base/fine-tuned "
                f"decoder norm share needs exactly 2 (base first)"
            )
        norms = self.decoder.weight.detach().float().norm(dim=2)
        return norms[FINETUNED] / (norms[BASE] + norms[FINETUNED])

    def save_pretrained(self, folder, saelens: bool = False):
        """The plugin folder; SAELens has no crosscoder format, so no SAELens pair."""
        if saelens:
            raise TypeError(f"{self.dict_class} has no SAELens equivalent")
        return super().save_pretrained(folder, saelens=False)

    def config_dict(self) -> dict:
        return {
            "activation_dim": self.activation_dim,
            "dict_size": self.dict_size,
            "num_layers": self.num_layers,
            "code_normalization": self.code_normalization,
            "code_normalization_alpha_sae": self.alpha_sae,
            "code_normalization_alpha_cc": self.alpha_cc,
            "target_rms": float(self.target_rms),
        }

    @classmethod
    def _complete_tensors(cls, config, tensors, source):
        tensors = {k.removeprefix("_orig_mod."): v for k, v in tensors.items()}  # saved while torch.compiled
        present = [k for k in NORMALIZATION_KEYS if k in tensors]
        if present and len(present) < len(NORMALIZATION_KEYS):
            raise ValueError(
                f"{source}: has normalisation key(s) {present} but lacks "
                f"{[k for k in NORMALIZATION_KEYS if k not in present]}"
            )
        if not present:  # saved before the fork added normalisation: identity, as the fork reads it
            shape = (config["num_layers"], config["activation_dim"])
            tensors = {
                **tensors,
                "activation_mean": torch.full(shape, math.nan),
                "activation_std": torch.full(shape, math.nan),
                "activation_global_scale": torch.ones(config["num_layers"]),
                "target_rms": torch.tensor(1.0),
            }
        expected = CODE_NORMALIZATIONS[config.get("code_normalization", "CROSSCODER")]
        if "code_normalization_id" not in tensors:
            logger.warning(
                f"{source}: no code_normalization_id (an older fork version); using "
                f"{config.get('code_normalization', 'CROSSCODER')}, as the fork does"
            )
            tensors["code_normalization_id"] = torch.tensor(expected)
        elif int(tensors["code_normalization_id"]) != expected:
            raise ValueError(
                f"{source}: key 'code_normalization_id' is {int(tensors['code_normalization_id'])} but "
                f"the config says code_normalization={config.get('code_normalization')!r} ({expected})"
            )
        return tensors


class BatchTopKCrossCoder(CrossCoder):
    """The fork's ``BatchTopKCrossCoder`` (not DECOUPLED): threshold at inference, batch top-k optionally."""

    dict_class = "BatchTopKCrossCoder"

    def __init__(
        self,
        activation_dim: int,
        dict_size: int,
        num_layers: int,
        k: int,
        code_normalization: str = "CROSSCODER",
        code_normalization_alpha_sae: float = 1.0,
        code_normalization_alpha_cc: float = 0.1,
        target_rms: float = 1.0,
    ):
        super().__init__(
            activation_dim,
            dict_size,
            num_layers,
            code_normalization,
            code_normalization_alpha_sae,
            code_normalization_alpha_cc,
            target_rms,
        )
        self.register_buffer("k", torch.tensor(k, dtype=torch.int32))
        self.register_buffer("threshold", torch.tensor(-1.0))

    def encode(self, x: torch.Tensor, use_threshold: bool = True) -> torch.Tensor:
        f = self.pre_codes(x)
        scaled = f * self.code_normalization_weights()
        if use_threshold:
            return f * (scaled > self.threshold)
        flat = scaled.flatten()
        top = flat.topk(min(int(self.k) * x.shape[0], flat.numel()), sorted=False)
        return torch.zeros_like(flat).scatter_(0, top.indices, f.flatten()[top.indices]).reshape(f.shape)

    def config_dict(self) -> dict:
        return {**super().config_dict(), "k": int(self.k)}

    @classmethod
    def _complete_tensors(cls, config, tensors, source):
        tensors = super()._complete_tensors(config, tensors, source)
        if "k" in tensors and int(tensors["k"]) != int(config["k"]):
            raise ValueError(f"{source}: key 'k' is {int(tensors['k'])} but the config says k={config['k']}")
        return tensors


class FinetunedLatents(Dictionary):
    """A two-source crosscoder seen as the conjunction analysis' instrument: it reads ``[base, finetuned]``
    residuals ``[n, 2, d]`` and has one latent per crosscoder latent whose fine-tuned decoder norm share exceeds
    ``threshold`` (latent ``j`` here is crosscoder latent ``latent_ids[j]``). Codes are the crosscoder's own (its
    selection runs over all its latents first); ``reconstruct`` is the whole crosscoder's; ``decode_latents`` is
    the latents' part of the fine-tuned residual, what the causal test removes from it."""

    reads_model_pair = True
    input_key = "decoder.weight"

    def __init__(self, crosscoder: CrossCoder, threshold: float = FT_NORM_SHARE):
        super().__init__()
        self.crosscoder, self.threshold = crosscoder, float(threshold)
        self.norm_share = crosscoder.finetuned_norm_share()
        ids = torch.nonzero(self.norm_share > self.threshold).squeeze(1)
        if len(ids) == 0:
            raise ValueError(
                f"{crosscoder.source}: no latent's fine-tuned decoder norm share exceeds {threshold:.3f} "
                f"(max {float(self.norm_share.nan_to_num(0).max()):.3f}): the crosscoder has no "
                f"fine-tuned-specific latent to test"
            )
        self.register_buffer("latent_ids", ids)
        self.activation_dim, self.dict_size = crosscoder.activation_dim, len(ids)
        self.source, self.metadata, self.origin = crosscoder.source, crosscoder.metadata, crosscoder.origin

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Codes ``[..., dict_size]`` of ``x [..., 2, d]``."""
        lead = x.shape[:-2]
        codes = self.crosscoder.encode(x.reshape(-1, *x.shape[-2:]))[:, self.latent_ids]
        return codes.reshape(*lead, self.dict_size)

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """The whole crosscoder's reconstruction of ``x [n, 2, d]`` (its fidelity, not the candidates')."""
        return self.crosscoder.decode(self.crosscoder.encode(x))

    def decode(self, f: torch.Tensor) -> torch.Tensor:
        """The candidates' part of the fine-tuned residual (no biases): ``[n, d]``."""
        return self.decode_latents(f, range(self.dict_size))

    def decode_latents(self, f: torch.Tensor, latent_ids) -> torch.Tensor:
        ids = torch.as_tensor(latent_ids, dtype=torch.long, device=f.device)
        flat = f.reshape(-1, self.dict_size)
        full = torch.zeros(len(flat), self.crosscoder.dict_size, dtype=f.dtype, device=f.device)
        full[:, self.latent_ids[ids]] = flat[:, ids]
        part = self.crosscoder.decode_latents(full, self.latent_ids[ids])[:, FINETUNED]
        return part.reshape(*f.shape[:-1], self.activation_dim)

    def config_dict(self) -> dict:
        return {"threshold": self.threshold, **self.crosscoder.config_dict()}

    def describe(self) -> dict:
        """For the report: which crosscoder latents are the candidates, and why."""
        return {
            "kind": "crosscoder",
            "dict_class": self.crosscoder.dict_class,
            "crosscoder_dict_size": self.crosscoder.dict_size,
            "finetuned_norm_share_threshold": self.threshold,
            "latent_ids": self.latent_ids.tolist(),
            "finetuned_norm_share": self.norm_share[self.latent_ids].tolist(),
            "rule": "latent j of this report is crosscoder latent latent_ids[j]: the latents whose fine-tuned "
            "decoder norm share |W_dec[ft]| / (|W_dec[base]| + |W_dec[ft]|) exceeds the threshold",
        }
