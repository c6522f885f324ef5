"""How tier labels travel through ``trainSAE``, and balanced batches that carry them.

The fork's ``trainSAE`` hands the trainer one plain tensor per step (``trainer.update(step, act)``, ``act`` moved
to ``trainer.device`` and cast to the training dtype). Labels therefore ride along as two extra columns:

    batch[:, :d]    activations
    batch[:, d]     tier code: 0 benign, 1 hazard, -1 unlabelled / other
    batch[:, d + 1] example id (e.g. the prompt id); the contrastive term pools tokens sharing an id

A plain ``[B, d]`` batch carries no labels and switches the contrastive term off for that batch; so does a batch
that lacks one of the two tiers. Codes and ids survive float32 exactly only below 2**24, so ids must be integers
in ``[0, 2**24)`` and training must run in float32 (``trainSAE``'s default; bf16 would corrupt the ids).
``pack_labels`` builds such a batch, ``unpack_labels`` splits one, and ``BalancedTierBatches`` streams them with
both tiers in every batch.
"""

from __future__ import annotations

import numpy as np
import torch

TIER_BENIGN, TIER_HAZARD, TIER_OTHER = 0, 1, -1
MAX_EXAMPLE_ID = 2**24  # float32 represents every integer below this exactly


def pack_labels(acts: torch.Tensor, tier, example_id) -> torch.Tensor:
    """``[B, d]`` activations plus per-token (or scalar) tier codes and example ids -> float32 ``[B, d + 2]``."""
    n = acts.shape[0]
    tier = torch.as_tensor(tier, dtype=torch.long).expand(n)
    example_id = torch.as_tensor(example_id, dtype=torch.long).expand(n)
    if not torch.isin(tier, torch.tensor([TIER_OTHER, TIER_BENIGN, TIER_HAZARD])).all():
        raise ValueError(f"tier codes must be -1, 0 or 1, got {sorted(set(tier.tolist()))}")
    if n and (example_id.min() < 0 or example_id.max() >= MAX_EXAMPLE_ID):
        raise ValueError(f"example ids must lie in [0, 2**24) to survive float32, got "
                         f"[{int(example_id.min())}, {int(example_id.max())}]")
    labels = torch.stack([tier, example_id], dim=1).to(device=acts.device, dtype=torch.float32)
    return torch.cat([acts.float(), labels], dim=1)


def unpack_labels(batch: torch.Tensor, d: int):
    """Split a batch into ``(acts [B, d], tier [B] | None, example_id [B] | None)``; ``None`` for a plain batch."""
    if batch.shape[-1] == d:
        return batch, None, None
    if batch.shape[-1] != d + 2:
        raise ValueError(f"batch has {batch.shape[-1]} columns; expected {d} (plain) or {d + 2} (packed labels)")
    return batch[:, :d], batch[:, d].round().long(), batch[:, d + 1].round().long()


class BalancedTierBatches:
    """Endless, seeded stream of packed batches with ``examples_per_tier`` whole benign and hazard examples each.

    ``acts [N, d]`` are token activations with per-token ``tier`` and ``example_id`` (all tokens of an example share
    its tier). ``other_per_batch`` unlabelled (tier -1) examples may be mixed in. Each tier is walked in epochs,
    each a permutation drawn from ``(seed, tier, epoch)`` cut into ``n_examples // per_batch`` slices, so no batch
    repeats an example, batch ``i`` depends on ``(seed, i)`` alone and ``state_dict()`` is the index of the next
    batch: a resumed run continues the same stream.
    """

    TIERS = (TIER_BENIGN, TIER_HAZARD, TIER_OTHER)

    def __init__(self, acts, tier, example_id, examples_per_tier: int, seed: int = 0, other_per_batch: int = 0):
        self.acts = torch.as_tensor(acts)
        tier, example_id = np.asarray(tier, dtype=np.int64), np.asarray(example_id, dtype=np.int64)
        if not len(self.acts) == len(tier) == len(example_id):
            raise ValueError(f"acts, tier and example_id differ in length: "
                             f"{len(self.acts)}, {len(tier)}, {len(example_id)}")
        self.seed, self.next_batch = seed, 0
        self.per_batch = {TIER_BENIGN: examples_per_tier, TIER_HAZARD: examples_per_tier, TIER_OTHER: other_per_batch}
        order = np.argsort(example_id, kind="stable")
        ids, starts = np.unique(example_id[order], return_index=True)
        self.tokens = np.split(order, starts[1:])  # token indices of each example
        self.example_id = ids
        self.example_tier = tier[order[starts]]
        for tokens, eid, t in zip(self.tokens, ids, self.example_tier):
            if (tier[tokens] != t).any():
                raise ValueError(f"example id {eid} mixes tiers {sorted(set(tier[tokens].tolist()))}")
        self.members = {t: np.flatnonzero(self.example_tier == t) for t in self.TIERS}
        for t, m in self.per_batch.items():
            if m and len(self.members[t]) < m:
                raise ValueError(f"tier {t} has {len(self.members[t])} examples, fewer than the {m} each batch needs")
        self._perm_cache: dict[tuple[int, int], np.ndarray] = {}

    @property
    def config(self) -> dict:
        return {"seed": self.seed, "examples_per_batch": {str(t): m for t, m in self.per_batch.items()},
                "n_examples": {str(t): len(self.members[t]) for t in self.TIERS}, "n_tokens": len(self.acts)}

    def _permutation(self, t: int, epoch: int) -> np.ndarray:
        key = (t, epoch)
        if key not in self._perm_cache:
            self._perm_cache = {k: v for k, v in self._perm_cache.items() if k[0] != t}  # keep one epoch per tier
            rng = np.random.default_rng([self.seed, self.TIERS.index(t), epoch])
            self._perm_cache[key] = self.members[t][rng.permutation(len(self.members[t]))]
        return self._perm_cache[key]

    def batch_examples(self, i: int) -> np.ndarray:
        """Indices (into ``self.example_id``) of the examples in batch ``i``."""
        chosen = []
        for t, m in self.per_batch.items():
            if m:
                per_epoch = len(self.members[t]) // m  # an epoch's leftover examples wait for a later permutation
                start = (i % per_epoch) * m
                chosen.append(self._permutation(t, i // per_epoch)[start:start + m])
        return np.concatenate(chosen)

    def batch(self, i: int) -> torch.Tensor:
        examples = self.batch_examples(i)
        tokens = torch.from_numpy(np.concatenate([self.tokens[e] for e in examples]))
        counts = [len(self.tokens[e]) for e in examples]
        tier = torch.from_numpy(np.repeat(self.example_tier[examples], counts))
        example_id = torch.from_numpy(np.repeat(self.example_id[examples], counts))
        return pack_labels(self.acts[tokens], tier, example_id)

    def __iter__(self):
        while True:
            i, self.next_batch = self.next_batch, self.next_batch + 1
            yield self.batch(i)

    def state_dict(self) -> dict:
        return {"next_batch": self.next_batch, **self.config}

    def load_state_dict(self, state: dict) -> None:
        mismatched = [k for k, v in self.config.items() if state.get(k) != v]
        if mismatched:
            saved, now = [state.get(k) for k in mismatched], [self.config[k] for k in mismatched]
            raise ValueError(f"cannot resume: the batch stream differs in {mismatched} (saved {saved}, now {now})")
        self.next_batch = int(state["next_batch"])
