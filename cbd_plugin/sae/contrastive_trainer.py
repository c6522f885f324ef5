"""Contrastive TopK SAE trainer, driven like the dictionary_learning fork's trainers.

Protocol (``dictionary_learning.training.trainSAE``): ``trainer = cls(**config)``; ``trainer.update(step, act)``
with ``act`` a tensor already on ``trainer.device``; ``trainer.loss(act, step=..., logging=True)`` for stats;
``trainer.config``, ``trainer.model``/``trainer.ae``, ``get_logging_parameters()``. Batches may carry tier labels
as two extra columns (see :mod:`cbd_plugin.sae.labels`).

Loss = normalised MSE ``sum||x - x_hat||^2 / sum||x - mean(x)||^2``
     + ``auxk_alpha`` * AuxK (Gao et al. 2024: the dead latents' top-``top_k_aux`` reconstruct the residual)
     + ``l1_coeff`` * mean L1 of the latents (the seed's sparsity term; 0 by default, TopK is already sparse)
     + ``contrastive_weight`` * supervised InfoNCE (Khosla et al. 2020) over pooled latent profiles: each labelled
       example's profile (``pooling`` "mean" or "max" over its tokens, or "token": every token is a profile) is
       L2-normalised; same-tier profiles are positives, the other tier's negatives, similarities divided by
       ``temperature``. Off for a batch without both tiers.
Decoder rows stay unit-norm (gradient parallel to each row removed, rows renormalised after every step).

The step runs on sparse codes (:mod:`cbd_plugin.sae.sparse`): one dense encoder GEMM chooses each token's top-k
(and, for AuxK, the top dead latents); everything after it, the backward included, touches only the chosen
entries, as sparsify's fused encoder does (but with CSR products, measured faster on CPU). A latent counts as dead
after ``min(dead_after_tokens, dead_after_fraction * tokens of the whole run)`` silent tokens, so AuxK acts in
runs shorter than Gao et al.'s 10M-token window.

Fail-fast: settings are checked when the config is built (the key named); a batch holding NaN/Inf, a non-finite
loss or gradient raises :class:`NonFiniteError` naming the step before any update is applied.
"""

from __future__ import annotations

from collections import namedtuple
from dataclasses import asdict, dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F

from ..checks import is_finite_number, is_int
from .labels import TIER_BENIGN, TIER_HAZARD, unpack_labels
from .sparse import SelectedPreActivations, SparseCodes, SparseDecode, check_activations
from .topk import TopKSAE

POOLINGS = ("mean", "max", "token")
LossLog = namedtuple("LossLog", ["x", "x_hat", "f", "losses"])


@dataclass
class ContrastiveSAEConfig:
    """Trainer settings; the defaults are the BioRefusalAudit seed's (gemma-2-2b-it layer 12, d_sae 6144, k 32,
    AdamW lr 3e-4, torch's default weight decay)."""

    steps: int = 5000
    activation_dim: int = 2304
    dict_size: int = 6144
    k: int = 32
    layer: int = 12
    lm_name: str = "google/gemma-2-2b-it"
    submodule_name: str = "model.layers.12"
    lr: float = 3e-4
    weight_decay: float = 0.01
    warmup_steps: int = 0
    decay_start: int | None = None  # linear decay to 0 from this step to `steps`
    grad_clip: float = 1.0
    auxk_alpha: float = 1 / 32
    top_k_aux: int | None = None  # None: activation_dim // 2 (Gao et al. B.1)
    dead_after_tokens: int = 10_000_000  # a latent silent for this many tokens counts as dead ...
    dead_after_fraction: float = 0.1  # ... or for this fraction of the run's tokens, if fewer (see module doc)
    l1_coeff: float = 0.0
    contrastive_weight: float = 0.1
    temperature: float = 0.1
    pooling: str = "mean"  # "mean" | "max" over an example's tokens, or "token" (O(batch^2 * dict_size): costly)
    subtract_b_dec: bool = True
    seed: int | None = 0
    device: str | None = None
    wandb_name: str = "ContrastiveTopKSAE"

    def __post_init__(self):
        positive_ints = ("steps", "activation_dim", "dict_size", "k", "dead_after_tokens")
        for key in (*positive_ints, "top_k_aux"):
            value = getattr(self, key)
            if key == "top_k_aux" and value is None:
                continue
            if not is_int(value, 1):
                raise ValueError(f"ContrastiveSAEConfig.{key} must be a positive int, got {value!r}")
        for key in ("warmup_steps", "layer"):
            value = getattr(self, key)
            if not is_int(value, 0):
                raise ValueError(f"ContrastiveSAEConfig.{key} must be an int >= 0, got {value!r}")
        if self.k > self.dict_size:
            raise ValueError(f"ContrastiveSAEConfig.k={self.k} must be at most dict_size={self.dict_size}")
        positive = ("lr", "grad_clip", "temperature")
        non_negative = ("weight_decay", "auxk_alpha", "l1_coeff", "contrastive_weight")
        for key in positive + non_negative + ("dead_after_fraction",):
            value = getattr(self, key)
            if not is_finite_number(value):
                raise ValueError(f"ContrastiveSAEConfig.{key} must be a finite number, got {value!r}")
            if (key in positive and value <= 0) or value < 0:
                raise ValueError(
                    f"ContrastiveSAEConfig.{key} must be {'> 0' if key in positive else '>= 0'}, got "
                    f"{value!r}" + (" (it divides the similarities)" if key == "temperature" else "")
                )
        if not 0 < self.dead_after_fraction <= 1:
            raise ValueError(
                f"ContrastiveSAEConfig.dead_after_fraction must be in (0, 1], got {self.dead_after_fraction!r}"
            )
        if self.pooling not in POOLINGS:
            raise ValueError(f"ContrastiveSAEConfig.pooling must be one of {POOLINGS}, got {self.pooling!r}")
        if self.decay_start is not None and not self.warmup_steps <= self.decay_start < self.steps:
            raise ValueError(
                f"ContrastiveSAEConfig.decay_start={self.decay_start} must lie in "
                f"[warmup_steps={self.warmup_steps}, steps={self.steps})"
            )

    def trainer_config(self) -> dict:
        """The dict ``trainSAE`` / ``train_sae`` expect: ``{"trainer": ContrastiveTopKTrainer, **settings}``."""
        return {"trainer": ContrastiveTopKTrainer, **asdict(self)}


def lr_factor(step: int, warmup_steps: int, decay_start: int | None, steps: int) -> float:
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    if decay_start is not None and step >= decay_start:
        return max(steps - step, 0) / (steps - decay_start)
    return 1.0


def normalized_mse(x: torch.Tensor, x_hat: torch.Tensor) -> torch.Tensor:
    return (x - x_hat).pow(2).sum() / (x - x.mean(0)).pow(2).sum().clamp_min(1e-12)


def geometric_median(x: torch.Tensor, iters: int = 100, tol: float = 1e-5) -> torch.Tensor:
    """Weiszfeld iterations; the decoder bias starts here (Gao et al.), robust to outlier tokens."""
    median = x.mean(0)
    for _ in range(iters):
        w = 1 / (x - median).norm(dim=1).clamp_min(1e-8)
        new = (w[:, None] * x).sum(0) / w.sum()
        if (new - median).norm() < tol:
            return new
        median = new
    return median


class NonFiniteError(FloatingPointError):
    """A batch, loss or gradient holds NaN/Inf; raised before the update, so the model is still the last good one."""


def pool_profiles(codes: SparseCodes, tier: torch.Tensor, example_id: torch.Tensor, pooling: str, dict_size: int):
    """Profiles ``[n, dict_size]`` of the labelled examples in a batch and their tiers ``[n]``, from sparse codes."""
    labelled = (tier == TIER_BENIGN) | (tier == TIER_HAZARD)
    acts, latent = codes.top_acts[labelled], codes.top_indices[labelled]
    tier, example_id = tier[labelled], example_id[labelled]
    if pooling == "token":
        return SparseCodes(acts, latent).to_dense(dict_size), tier
    ids, inverse, counts = torch.unique(example_id, return_inverse=True, return_counts=True)
    flat = (inverse[:, None] * dict_size + latent).reshape(-1)
    empty = acts.new_zeros(len(ids) * dict_size)
    if pooling == "mean":  # index_add is cheaper than a mean scatter_reduce, forward and backward
        profiles = empty.index_add(0, flat, (acts / counts[inverse, None]).reshape(-1))
    else:  # codes are >= 0, so the zeros of inactive latents take part in the max as in the dense codes
        profiles = empty.scatter_reduce(0, flat, acts.reshape(-1), "amax", include_self=True)
    return profiles.view(len(ids), dict_size), tier.new_zeros(len(ids)).scatter_(0, inverse, tier)


def supervised_infonce(profiles: torch.Tensor, tier: torch.Tensor, temperature: float) -> torch.Tensor:
    """Mean over anchors of -mean_{positives} log softmax_{all others}(cos / temperature)."""
    z = F.normalize(profiles, dim=1)
    self_pair = torch.eye(len(z), dtype=torch.bool, device=z.device)
    logits = (z @ z.T / temperature).masked_fill(self_pair, float("-inf"))
    log_prob = logits - logits.logsumexp(dim=1, keepdim=True)
    positive = (tier[:, None] == tier[None, :]) & ~self_pair
    n_pos = positive.sum(1)
    anchors = n_pos > 0
    per_anchor = -log_prob.masked_fill(~positive, 0).sum(1)[anchors] / n_pos[anchors]
    return per_anchor.mean()


class ContrastiveTopKTrainer:
    """Trains a :class:`TopKSAE` with reconstruction, AuxK, optional L1 and the contrastive tier term."""

    logging_parameters: ClassVar[list[str]] = [
        "dead_fraction",
        "recon_loss",
        "auxk_loss",
        "l1_loss",
        "contrastive_loss",
    ]

    def __init__(self, **config):
        self.cfg = cfg = ContrastiveSAEConfig(**config)
        self.seed, self.layer, self.lm_name = cfg.seed, cfg.layer, cfg.lm_name
        self.submodule_name, self.wandb_name, self.steps = cfg.submodule_name, cfg.wandb_name, cfg.steps
        self.device = cfg.device or ("cuda" if torch.cuda.is_available() else "cpu")
        generator = torch.Generator().manual_seed(cfg.seed) if cfg.seed is not None else None
        self.ae = TopKSAE(cfg.activation_dim, cfg.dict_size, cfg.k, cfg.subtract_b_dec, generator=generator)
        self.ae.to(self.device)
        self.top_k_aux = cfg.top_k_aux or cfg.activation_dim // 2
        self.tokens_since_fired = torch.zeros(cfg.dict_size, dtype=torch.long, device=self.device)
        self.dead_after: int | None = None  # set from the first batch's size (see dead_window)
        self.optimizer = torch.optim.AdamW(self.ae.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda s: lr_factor(s, cfg.warmup_steps, cfg.decay_start, cfg.steps)
        )
        self.dead_fraction = self.recon_loss = self.auxk_loss = self.l1_loss = self.contrastive_loss = 0.0

    @property
    def model(self) -> TopKSAE:
        return self.ae

    @property
    def config(self) -> dict:
        return {
            "trainer_class": type(self).__name__,
            "dict_class": TopKSAE.dict_class,
            **asdict(self.cfg),
            "device": self.device,
        }

    def get_logging_parameters(self) -> dict:
        return {name: getattr(self, name) for name in self.logging_parameters}

    def dead_window(self, batch_tokens: int) -> int:
        """Silent tokens after which a latent is dead: the configured window, or a fraction of the whole run
        (``steps`` batches of the first batch's size) when that is shorter; never under one batch."""
        cfg = self.cfg
        return max(min(cfg.dead_after_tokens, int(cfg.dead_after_fraction * cfg.steps * batch_tokens)), batch_tokens)

    def dead_latents(self) -> torch.Tensor:
        return self.tokens_since_fired >= (self.dead_after or self.cfg.dead_after_tokens)

    def _contrastive(self, codes: SparseCodes, tier, example_id) -> torch.Tensor:
        if self.cfg.contrastive_weight == 0 or tier is None:
            return codes.top_acts.new_zeros(())
        profiles, profile_tier = pool_profiles(codes, tier, example_id, self.cfg.pooling, self.cfg.dict_size)
        if not ((profile_tier == TIER_BENIGN).any() and (profile_tier == TIER_HAZARD).any()):
            return codes.top_acts.new_zeros(())
        return supervised_infonce(profiles, profile_tier, self.cfg.temperature)

    def _select(self, x_enc: torch.Tensor):
        """Indices and pre-activations of each token's top-k, then of its top dead latents for AuxK (no grad)."""
        ae, k = self.ae, self.cfg.k
        with torch.no_grad():
            pre = torch.addmm(ae.b_enc, x_enc, ae.W_enc)
            top = pre.topk(k, dim=-1, sorted=False)
            dead = self.dead_latents()
            n_aux = min(self.top_k_aux, int(dead.sum())) if self.cfg.auxk_alpha > 0 else 0
            if not n_aux:
                return top.indices, top.values, 0
            aux = pre.masked_fill_(~dead, float("-inf")).topk(n_aux, dim=-1, sorted=False)
            return torch.cat([top.indices, aux.indices], 1), torch.cat([top.values, aux.values], 1), n_aux

    def _forward(self, act: torch.Tensor, step: int | None = None):
        x, tier, example_id = unpack_labels(act, self.ae.activation_dim)
        check_activations(x, self.ae.activation_dim, f"training batch at step {step}")
        ae, cfg = self.ae, self.cfg
        indices, values, n_aux = self._select(ae.encoder_input(x))
        b_dec = ae.b_dec if ae.subtract_b_dec else None
        selected = SelectedPreActivations.apply(x, ae.W_enc, ae.b_enc, b_dec, indices, values).relu()
        top_acts, aux_acts = selected.split([cfg.k, n_aux], dim=1)
        codes = SparseCodes(top_acts, indices[:, : cfg.k])
        x_hat = SparseDecode.apply(top_acts, codes.top_indices, ae.W_dec) + ae.b_dec
        if n_aux:  # the dead latents' top activations reconstruct what the live ones missed
            aux_hat = SparseDecode.apply(aux_acts, indices[:, cfg.k :], ae.W_dec)
            auxk = normalized_mse((x - x_hat).detach(), aux_hat).nan_to_num(0.0)
        else:
            auxk = x.new_zeros(())
        parts = {
            "recon_loss": normalized_mse(x, x_hat),
            "auxk_loss": auxk,
            "l1_loss": top_acts.abs().sum(-1).mean(),
            "contrastive_loss": self._contrastive(codes, tier, example_id),
        }
        total = (
            parts["recon_loss"]
            + cfg.auxk_alpha * parts["auxk_loss"]
            + cfg.l1_coeff * parts["l1_loss"]
            + cfg.contrastive_weight * parts["contrastive_loss"]
        )
        return total, parts, x, x_hat, codes

    def loss(self, x: torch.Tensor, step: int | None = None, logging: bool = False, **_):
        """Total loss, or with ``logging`` a ``LossLog(x, x_hat, f, losses)`` as trainSAE's stats expect.

        Extra keyword arguments of the fork's trainers (``use_threshold``, ``return_deads``) are accepted and ignored.
        """
        total, parts, x, x_hat, codes = self._forward(x, step)
        if not logging:
            return total
        f = codes.to_dense(self.cfg.dict_size)  # trainSAE's stats read dense codes
        losses = {name: float(v) for name, v in parts.items()}
        return LossLog(x, x_hat, f, {**losses, "loss": float(total), "deads": (f == 0).all(0)})

    def update(self, step: int, act: torch.Tensor) -> float:
        x, _, _ = unpack_labels(act, self.ae.activation_dim)
        check_activations(x, self.ae.activation_dim, f"training batch at step {step}")
        if self.dead_after is None:
            self.dead_after = self.dead_window(x.shape[0])
        if step == 0:
            self.ae.b_dec.data = geometric_median(x).to(self.ae.b_dec.dtype)
        total, parts, x, _, codes = self._forward(act, step)
        if not torch.isfinite(total):
            values = ", ".join(f"{name} {float(v.detach()):.4g}" for name, v in parts.items())
            raise NonFiniteError(f"step {step}: the loss is {float(total.detach())} ({values}); no update applied")
        self.optimizer.zero_grad(set_to_none=True)
        total.backward()
        self._remove_parallel_decoder_grad()
        norm = torch.nn.utils.clip_grad_norm_(self.ae.parameters(), self.cfg.grad_clip)
        if not torch.isfinite(norm):
            raise NonFiniteError(f"step {step}: the gradient norm is {float(norm)}; no update applied")
        self.optimizer.step()
        self.scheduler.step()
        with torch.no_grad():
            self.ae.W_dec.data = F.normalize(self.ae.W_dec.data, dim=1)
            self.tokens_since_fired += x.shape[0]
            self.tokens_since_fired[codes.top_indices[codes.active()]] = 0
        for name, value in parts.items():
            setattr(self, name, float(value.detach()))
        self.dead_fraction = float(self.dead_latents().float().mean())
        return float(total.detach())

    def _remove_parallel_decoder_grad(self) -> None:
        """Project out the gradient component along each (unit) decoder row: the step then only rotates rows."""
        W, grad = self.ae.W_dec.data, self.ae.W_dec.grad
        grad -= (grad * W).sum(1, keepdim=True) * W

    def state_dict(self) -> dict:
        return {
            "ae": self.ae.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "tokens_since_fired": self.tokens_since_fired,
            "dead_after": self.dead_after,
        }

    def load_state_dict(self, state: dict) -> None:
        self.ae.load_state_dict(state["ae"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.tokens_since_fired.copy_(state["tokens_since_fired"])
        self.dead_after = state.get("dead_after")
