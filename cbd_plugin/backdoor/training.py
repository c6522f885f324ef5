"""Training the conjunction analysis' SAE without the host: a TopK SAE on fine-tuned minus base residuals.

The host trains its SAE on its own datasets; this is the small host-free stand-in (demo, tests): the residual
difference over a probe set of every condition, fire-completion tokens included, resampled into random batches.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from ..capture import iter_paired_residuals
from ..provenance import model_name
from ..sae import ContrastiveSAEConfig, TopKSAE, train_sae
from ..sae.export import reads
from .config import ConjunctionConfig
from .pipeline import probe_tokens
from .probes import build_probe_set

DIFFERENCE_INPUT = "finetuned minus base residual"


@dataclass(frozen=True)
class DifferenceSAEConfig:
    """The host-free difference SAE. Defaults keep dead latents under 10% on the tiny organisms (d_model 128, ~11k
    training tokens): measured on layers 1 and 3 of tiny-cbd, x2 k24 200 steps leaves 2% dead (FVE 0.97); x2 k16
    10-15%; x4 k16 53-55%; x2 k8 50-55%. AuxK revives latents silent for 2 batches."""

    expansion: int = 2  # dict_size = expansion x d_model
    k: int = 24  # active latents per token
    steps: int = 200
    batch_size: int = 256
    lr: float = 3e-3
    dead_after_batches: int = 2  # AuxK treats a latent silent for this many batches as dead
    seed: int = 0  # SAE initialisation and batch order


def difference_activations(
    base, finetuned, tokenizer, pairs, layers, cfg: ConjunctionConfig
) -> dict[int, torch.Tensor]:
    """``finetuned - base`` residuals ``[n_tokens, d]`` per layer of ``layers`` over a probe set drawn with ``cfg``
    (all conditions), captured in one pass."""
    # seed + 1: not the draw analyze_conjunction makes with the same settings
    probes = build_probe_set(
        list(pairs), list(cfg.templates), list(cfg.filler_words), cfg.n_per_cell, cfg.n_clean, seed=cfg.seed + 1
    )
    tokens = probe_tokens(tokenizer, probes, len(pairs), cfg)
    layers = list(layers)
    parts = {k: [] for k in layers}
    for b, f in iter_paired_residuals(base, finetuned, [i.tolist() for i in tokens.ids], layers, batch_size=64):
        for k in layers:
            parts[k].append(f.acts[k] - b.acts[k])
    return {k: torch.cat(v) for k, v in parts.items()}


def train_difference_sae(
    diffs: torch.Tensor,
    save_dir: str | Path,
    settings: DifferenceSAEConfig = DifferenceSAEConfig(),
    metadata: dict | None = None,
) -> TopKSAE:
    """A TopK SAE on difference activations ``diffs [n_tokens, d]``, saved to ``save_dir``; it records ``metadata``
    (:func:`difference_metadata`; without it, only that it reads a difference)."""
    if diffs.ndim != 2 or not torch.isfinite(diffs).all():
        raise ValueError(f"train_difference_sae: diffs must be finite [n_tokens, d], got {tuple(diffs.shape)}")
    generator = torch.Generator().manual_seed(settings.seed)
    s = settings
    batches = [diffs[torch.randint(len(diffs), (s.batch_size,), generator=generator)] for _ in range(s.steps)]
    d = diffs.shape[1]
    # The contrastive trainer with weight 0 is a plain TopK trainer (with the AuxK loss on dead latents).
    sae_cfg = ContrastiveSAEConfig(
        steps=s.steps,
        activation_dim=d,
        dict_size=s.expansion * d,
        k=s.k,
        lr=s.lr,
        contrastive_weight=0.0,
        dead_after_tokens=s.dead_after_batches * s.batch_size,
        seed=s.seed,
        device="cpu",
    )
    return train_sae(
        batches, sae_cfg.trainer_config(), s.steps, save_dir, metadata=metadata or {"input": DIFFERENCE_INPUT}
    ).ae.eval()


def difference_metadata(base, finetuned, layer: int) -> dict:
    """What a difference SAE reads: the fine-tuned model's residual after block ``layer`` minus the base's."""
    return reads(model_name(finetuned), layer, base_model_name=model_name(base), input=DIFFERENCE_INPUT)
