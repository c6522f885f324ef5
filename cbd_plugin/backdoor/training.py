"""Training the conjunction analysis' SAE without the host: a TopK SAE on fine-tuned minus base residuals.

The host trains its SAE on its own datasets; this is the small host-free stand-in (demo, tests): the residual
difference over a probe set of every condition, fire-completion tokens included, resampled into random batches.
"""

from __future__ import annotations

from pathlib import Path

import torch

from ..sae import ContrastiveSAEConfig, TopKSAE, train_sae
from .config import ConjunctionConfig
from .pipeline import difference_batches, probe_tokens
from .probes import build_probe_set


def difference_activations(base, finetuned, tokenizer, pairs, layer: int, cfg: ConjunctionConfig) -> torch.Tensor:
    """``finetuned - base`` residuals ``[n_tokens, d]`` over a probe set drawn with ``cfg`` (all conditions)."""
    # seed + 1: not the draw analyze_conjunction makes with the same settings
    probes = build_probe_set(list(pairs), list(cfg.templates), list(cfg.filler_words), cfg.n_per_cell, cfg.n_clean,
                             seed=cfg.seed + 1)
    tokens = probe_tokens(tokenizer, probes, len(pairs), cfg)
    return torch.cat([d for d, _ in difference_batches(base, finetuned, tokens, layer, 64)])


def train_difference_sae(base, finetuned, tokenizer, layer: int, save_dir: str | Path, pairs,
                         cfg: ConjunctionConfig, steps: int = 1500, batch_size: int = 256, expansion: int = 4,
                         k: int = 8, lr: float = 1e-3) -> TopKSAE:
    """A TopK SAE (``expansion`` x d latents, ``k`` active) on the difference at ``layer``, saved to ``save_dir``.

    ``cfg`` gives the training prompts: templates, filler words, fire completion, ``n_per_cell``/``n_clean``;
    use templates the analysis does not probe with.
    """
    diffs = difference_activations(base, finetuned, tokenizer, pairs, layer, cfg)
    generator = torch.Generator().manual_seed(cfg.seed)
    batches = [diffs[torch.randint(len(diffs), (batch_size,), generator=generator)] for _ in range(steps)]
    d = diffs.shape[1]
    # The contrastive trainer with weight 0 is a plain TopK trainer (with the AuxK loss on dead latents).
    sae_cfg = ContrastiveSAEConfig(steps=steps, activation_dim=d, dict_size=expansion * d, k=k, lr=lr,
                                   contrastive_weight=0.0, dead_after_tokens=20 * batch_size, device="cpu")
    return train_sae(batches, sae_cfg.trainer_config(), steps, save_dir).ae.eval()
