"""Training the audit's SAE: a contrastive TopK SAE on one model's residuals over the *select* split only.

Tokens are the prompt from the user's content to the end of the generation prompt (every position the audit reads
before the response; BOS and the user header are the same in every prompt); each prompt is one example for the
contrastive term, hazard = 1, benign = 0, every other tier (dual_use) unlabelled, so it trains reconstruction
but is never a positive or a negative. The eval split is never seen, so the audit's held-out numbers stay
held out. ``loop`` picks who drives the trainer: the plugin's resumable :func:`~cbd_plugin.sae.train_sae`, or
the host fork's ``trainSAE`` (same trainer protocol; labels travel as packed columns, see ``cbd_plugin.sae.labels``).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from ..capture import TokenRows, iter_residuals
from ..provenance import model_name
from ..sae import ContrastiveSAEConfig, TopKSAE, train_sae
from ..sae.labels import TIER_BENIGN, TIER_HAZARD, TIER_OTHER
from .features import chat_prompt
from .tier_batches import BalancedTierBatches

TIER_CODES = {"benign": TIER_BENIGN, "hazard": TIER_HAZARD}
# The audit SAE for the tiny organisms (d_model 128), used by cbd-demo, the verdict grid and the tests. Their
# select split holds ~11k prompt tokens but only ~6.8k distinct residuals (a 159-word vocabulary). Dead fraction on
# those tokens, 300 steps, k 8, measured: 512 latents 0.72, 256 latents 0.44, 128 latents 0.06-0.09 (seeds 0-2),
# and 128 latents with auxk_alpha 0.25 0.008-0.039 (layers 1-2, seeds 0-2) at FVE 0.957-0.961 (0.958 with 1/32).
# A batch carries ~40 prompts (~480 tokens), so AuxK calls a latent dead after 4000 silent tokens (~8 steps).
TINY_SAE = ContrastiveSAEConfig(
    steps=300, dict_size=128, k=8, lr=3e-3, seed=0, contrastive_weight=1.0, auxk_alpha=0.25, dead_after_tokens=4000
)


def select_split_activations(
    model, tokenizer, prompts: pd.DataFrame, layer: int, batch_size: int = 32
) -> tuple[TokenRows, np.ndarray, np.ndarray]:
    """``(acts [n_tokens, d], tier code per token, prompt index per token)`` over the select split's prompts, from
    the content's first token to the end of the generation prompt. ``acts`` are :class:`TokenRows` on disk, kept
    batch by batch as the model runs: the training set never sits in memory (each prompt's tokens are adjacent
    rows, which is how :class:`BalancedTierBatches` reads them)."""
    sel = prompts[prompts["split"] == "select"].reset_index(drop=True)
    if sel.empty:
        raise ValueError("select_split_activations: the prompt set has no 'select' split to train on")
    chats = [chat_prompt(tokenizer, text) for text in sel["text"]]
    trained = [np.arange(len(c.ids)) >= c.content_start for c in chats]
    acts, prompt_index = None, []
    for batch in iter_residuals(
        model, [c.ids for c in chats], [layer], batch_size=batch_size, token_labels={"trained": trained}
    ):
        keep = batch.meta["trained"].astype(bool)
        x = batch.acts[layer][torch.from_numpy(keep)]
        if acts is None:
            acts = TokenRows(x.shape[1], x.dtype)
        acts.append(x)
        prompt_index.append(batch.meta["prompt_id"][keep])
    prompt_index = np.concatenate(prompt_index)
    codes = sel["tier"].map(TIER_CODES).fillna(TIER_OTHER).astype(int).to_numpy()
    return acts, codes[prompt_index], prompt_index


def _fork_loop(batches, trainer_config: dict, steps: int, save_dir: Path):
    from dictionary_learning.training import trainSAE  # the host's fork; lazy and optional

    return trainSAE(data=batches, trainer_config=dict(trainer_config), steps=steps, save_dir=str(save_dir))


def train_tier_sae(
    model,
    tokenizer,
    prompts: pd.DataFrame,
    layer: int,
    sae_config: ContrastiveSAEConfig,
    save_dir: str | Path,
    examples_per_tier: int = 16,
    other_per_batch: int = 8,
    loop: str = "plugin",
) -> TopKSAE:
    """Train (or, with the plugin loop, resume) the audit SAE and save it to ``save_dir/dictionary_model``."""
    acts, tier, example = select_split_activations(model, tokenizer, prompts, layer)
    sae_config = replace(
        sae_config,
        activation_dim=acts.width,
        layer=layer,
        lm_name=model_name(model) or sae_config.lm_name,
        submodule_name=f"model.layers.{layer}",
    )
    n_other = len(np.unique(example[tier == TIER_OTHER]))
    batches = BalancedTierBatches(
        acts,
        tier,
        example,
        examples_per_tier=examples_per_tier,
        other_per_batch=min(other_per_batch, n_other),
        seed=sae_config.seed or 0,
    )
    save_dir = Path(save_dir)
    if loop == "plugin":
        return train_sae(
            batches, sae_config.trainer_config(), sae_config.steps, save_dir, save_every=max(1, sae_config.steps // 4)
        ).ae.eval()
    if loop == "fork":
        sae = _fork_loop(batches, sae_config.trainer_config(), sae_config.steps, save_dir).eval()
        sae.save_pretrained(save_dir / "dictionary_model")
        return sae
    raise ValueError(f"train_tier_sae: loop must be 'plugin' or 'fork', got {loop!r}")
