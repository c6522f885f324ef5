"""How tier labels travel through ``trainSAE``: packed as two extra columns of each batch.

The fork's ``trainSAE`` hands the trainer one plain tensor per step (``trainer.update(step, act)``, ``act`` moved
to ``trainer.device`` and cast to the training dtype). Labels therefore ride along as two extra columns:

    batch[:, :d]    activations
    batch[:, d]     LABEL_TAG + tier code (tier: 0 benign, 1 hazard, -1 unlabelled / other)
    batch[:, d + 1] example id (e.g. the prompt id); the contrastive term pools tokens sharing an id

The tag (2**20, exact in float32) makes the layout explicit: a ``[B, d + 2]`` batch whose column ``d`` does not
hold tagged tier codes in every row is a plain batch of the wrong width, and is refused rather than read as
labels. A plain ``[B, d]`` batch carries no labels and switches the contrastive term off for that batch; so does a
batch that lacks one of the two tiers. Codes and ids survive float32 exactly only below 2**24, so ids must be integers
in ``[0, 2**24)`` and training must run in float32 (``trainSAE``'s default; bf16 would corrupt the ids).
``pack_labels`` builds such a batch and ``unpack_labels`` splits one; the refusal audit's
:class:`~cbd_plugin.refusal.tier_batches.BalancedTierBatches` streams them with both tiers in every batch.
"""

from __future__ import annotations

import numpy as np
import torch

TIER_BENIGN, TIER_HAZARD, TIER_OTHER = 0, 1, -1
MAX_EXAMPLE_ID = 2**24  # float32 represents every integer below this exactly
LABEL_TAG = 2.0**20  # added to the tier code in the packed column: real activations never equal it in every row


TIER_NAMES = {"benign": TIER_BENIGN, "hazard": TIER_HAZARD, "other": TIER_OTHER}


def tier_codes(tier, owner: str) -> np.ndarray:
    """Per-token tier codes as int64: codes -1/0/1, or the names in ``TIER_NAMES``; anything else is refused,
    naming the value, how many tokens hold it and the first one (such tokens would silently never be trained on)."""
    values = np.asarray(tier)
    if values.dtype.kind in "USO":
        names = values.astype(str)
        unknown = sorted(set(names.tolist()) - set(TIER_NAMES))
        if unknown:
            first = int(np.flatnonzero(~np.isin(names, list(TIER_NAMES)))[0])
            raise ValueError(
                f"{owner}: tier labels {unknown[:5]} (first at token {first}) are not tiers; use codes "
                f"0 benign, 1 hazard, -1 other, or the names {sorted(TIER_NAMES)} (map e.g. dual_use "
                f"to 'other' or -1)"
            )
        return np.vectorize(TIER_NAMES.__getitem__, otypes=[np.int64])(names) if len(names) else names.astype(np.int64)
    if values.dtype.kind not in "biuf" or (values.dtype.kind == "f" and not np.array_equal(values, np.round(values))):
        raise ValueError(
            f"{owner}: tier codes must be integers -1, 0 or 1, got dtype {values.dtype} "
            f"(e.g. {values.ravel()[:3].tolist()})"
        )
    codes = values.astype(np.int64)
    bad = ~np.isin(codes, [TIER_OTHER, TIER_BENIGN, TIER_HAZARD])
    if bad.any():
        raise ValueError(
            f"{owner}: tier codes {sorted(set(codes[bad].tolist()))[:5]} in {int(bad.sum())} token(s), "
            f"first at token {int(np.flatnonzero(bad)[0])}, are not tiers; use 0 benign, 1 hazard, "
            f"-1 other (those tokens would never be trained on)"
        )
    return codes


def pack_labels(acts: torch.Tensor, tier, example_id) -> torch.Tensor:
    """``[B, d]`` activations plus per-token (or scalar) tier codes and example ids -> float32 ``[B, d + 2]``."""
    n = acts.shape[0]
    tier = torch.as_tensor(tier, dtype=torch.long).expand(n)
    example_id = torch.as_tensor(example_id, dtype=torch.long).expand(n)
    if not torch.isin(tier, torch.tensor([TIER_OTHER, TIER_BENIGN, TIER_HAZARD])).all():
        raise ValueError(f"tier codes must be -1, 0 or 1, got {sorted(set(tier.tolist()))}")
    if n and (example_id.min() < 0 or example_id.max() >= MAX_EXAMPLE_ID):
        raise ValueError(
            f"example ids must lie in [0, 2**24) to survive float32, got "
            f"[{int(example_id.min())}, {int(example_id.max())}]"
        )
    labels = torch.stack([tier + int(LABEL_TAG), example_id], dim=1).to(device=acts.device, dtype=torch.float32)
    return torch.cat([acts.float(), labels], dim=1)


def unpack_labels(batch: torch.Tensor, d: int):
    """Split a batch into ``(acts [B, d], tier [B] | None, example_id [B] | None)``; ``None`` for a plain batch."""
    if batch.ndim != 2:
        raise ValueError(
            f"batch has shape {tuple(batch.shape)}; expected [tokens, {d}] (plain) or [tokens, {d + 2}] (packed labels)"
        )
    if batch.shape[-1] == d:
        return batch, None, None
    if batch.shape[-1] != d + 2:
        raise ValueError(f"batch has {batch.shape[-1]} columns; expected {d} (plain) or {d + 2} (packed labels)")
    tag_column, id_column = batch[:, d].double(), batch[:, d + 1].double()
    tier = tag_column - LABEL_TAG
    valid = ((tier == TIER_BENIGN) | (tier == TIER_HAZARD) | (tier == TIER_OTHER)).all()
    valid &= ((id_column == id_column.round()) & (id_column >= 0) & (id_column < MAX_EXAMPLE_ID)).all()
    if not bool(valid):
        raise ValueError(
            f"batch has {d + 2} columns but columns {d}, {d + 1} are not labels packed by pack_labels "
            f"(tag {int(LABEL_TAG)} + tier, example id): is it a plain batch of {d + 2}-wide "
            f"activations? This SAE reads activation_dim {d}"
        )
    return batch[:, :d], tier.long(), id_column.long()
