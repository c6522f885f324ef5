"""Balanced, seeded, resumable batches of tier-labelled token activations for the audit's contrastive SAE.

Every batch holds whole benign and hazard examples (and optionally unlabelled ones), labels packed as
:mod:`cbd_plugin.sae.labels` describes, so the contrastive term sees both tiers at every step.
"""

from __future__ import annotations

import hashlib

import numpy as np
import torch

from ..checks import is_int
from ..sae.labels import TIER_BENIGN, TIER_HAZARD, TIER_OTHER, pack_labels, tier_codes


class BalancedTierBatches:
    """Endless, seeded stream of packed batches with ``examples_per_tier`` whole benign and hazard examples each.

    ``acts [N, d]`` are token activations (a tensor, or rows on disk such as ``cbd_plugin.capture.TokenRows``) with
    per-token ``tier`` (codes, or names: see :func:`tier_codes`) and ``example_id`` (all tokens of an example share
    its tier). ``other_per_batch`` unlabelled (tier -1) examples may be mixed in. Each tier is walked in epochs,
    each a permutation drawn from ``(seed, tier, epoch)`` cut into ``n_examples // per_batch`` slices, so no batch
    repeats an example, batch ``i`` depends on ``(seed, i)`` alone and ``state_dict()`` is the index of the next
    batch: a resumed run continues the same stream.
    """

    TIERS = (TIER_BENIGN, TIER_HAZARD, TIER_OTHER)

    def __init__(self, acts, tier, example_id, examples_per_tier: int, seed: int = 0, other_per_batch: int = 0):
        for key, value, least in (
            ("examples_per_tier", examples_per_tier, 1),
            ("other_per_batch", other_per_batch, 0),
            ("seed", seed, 0),
        ):
            if not is_int(value, least):
                raise ValueError(f"BalancedTierBatches: {key} must be an int >= {least}, got {value!r}")
        # A tensor, or a row store read by contiguous range (``len``, ``store[a:b]`` -> tensor, e.g.
        # ``cbd_plugin.capture.TokenRows`` on disk): a large training set then stays out of memory.
        in_memory = torch.is_tensor(acts) or isinstance(acts, (np.ndarray, list, tuple))
        self.acts = torch.as_tensor(acts) if in_memory else acts
        sample = self.acts if in_memory else self.acts[0:1]
        if sample.ndim != 2 or not sample.is_floating_point():
            shape = tuple(sample.shape) if in_memory else (len(self.acts), *sample.shape[1:])
            raise ValueError(
                f"BalancedTierBatches: acts must be a float [tokens, d] matrix, got shape {shape} dtype {sample.dtype}"
            )
        for start, chunk in self._chunks():
            finite = torch.isfinite(chunk).all(dim=1)
            if not bool(finite.all()):
                bad = torch.nonzero(~finite).flatten()
                raise ValueError(
                    f"BalancedTierBatches: {len(bad)} token(s) of acts hold NaN/Inf, first at token "
                    f"{start + int(bad[0])} (counted in rows [{start}, {start + len(chunk)}), the first "
                    f"rows read that hold any); they would train an all-NaN SAE"
                )
        self._fingerprint: str | None = None
        tier, example_id = tier_codes(tier, "BalancedTierBatches"), np.asarray(example_id, dtype=np.int64)
        if not len(self.acts) == len(tier) == len(example_id):
            raise ValueError(
                f"acts, tier and example_id differ in length: {len(self.acts)}, {len(tier)}, {len(example_id)}"
            )
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
        # Each example's tokens as one row range where they are contiguous (capture order makes them so).
        self.ranges = [
            (int(t[0]), int(t[-1]) + 1) if len(t) and t[-1] - t[0] + 1 == len(t) else None for t in self.tokens
        ]
        if not isinstance(self.acts, torch.Tensor) and None in self.ranges:
            eid = ids[self.ranges.index(None)]
            raise ValueError(
                f"BalancedTierBatches: example id {eid}'s tokens are not contiguous rows; a row store "
                f"({type(self.acts).__name__}) is read by range, so each example's tokens must be adjacent"
            )
        self.members = {t: np.flatnonzero(self.example_tier == t) for t in self.TIERS}
        for t, m in self.per_batch.items():
            if m and len(self.members[t]) < m:
                raise ValueError(f"tier {t} has {len(self.members[t])} examples, fewer than the {m} each batch needs")
        self._perm_cache: dict[tuple[int, int], np.ndarray] = {}

    @property
    def config(self) -> dict:
        return {
            "seed": self.seed,
            "examples_per_batch": {str(t): m for t, m in self.per_batch.items()},
            "n_examples": {str(t): len(self.members[t]) for t in self.TIERS},
            "n_tokens": len(self.acts),
        }

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
                chosen.append(self._permutation(t, i // per_epoch)[start : start + m])
        return np.concatenate(chosen)

    def _chunks(self, rows: int = 4096):
        """``(start, acts[start:start + rows])`` over every row: what a check or hash of a row store reads (4096
        rows: 36 MiB at width 2304, so reading a large training set costs no more memory than a batch)."""
        for start in range(0, len(self.acts), rows):
            yield start, self.acts[start : start + rows]

    def _rows(self, e: int) -> torch.Tensor:
        span = self.ranges[e]
        return self.acts[torch.from_numpy(self.tokens[e])] if span is None else self.acts[span[0] : span[1]]

    def batch(self, i: int) -> torch.Tensor:
        examples = self.batch_examples(i)
        counts = [len(self.tokens[e]) for e in examples]
        tier = torch.from_numpy(np.repeat(self.example_tier[examples], counts))
        example_id = torch.from_numpy(np.repeat(self.example_id[examples], counts))
        return pack_labels(torch.cat([self._rows(e) for e in examples]), tier, example_id)

    def __iter__(self):
        while True:
            i, self.next_batch = self.next_batch, self.next_batch + 1
            yield self.batch(i)

    def fingerprint(self) -> str:
        """sha256 of the activations, tiers, example ids and seed: what a resumed run must see again."""
        if self._fingerprint is None:
            digest = hashlib.sha256()
            for _, chunk in self._chunks():  # the same digest as hashing all the bytes at once
                digest.update(chunk.detach().cpu().contiguous().view(torch.uint8).numpy())
            for array in (self.example_tier, self.example_id, np.concatenate(self.tokens), np.array([self.seed])):
                digest.update(np.ascontiguousarray(array).tobytes())
            self._fingerprint = digest.hexdigest()
        return self._fingerprint

    def state_dict(self) -> dict:
        return {"next_batch": self.next_batch, **self.config}

    def load_state_dict(self, state: dict) -> None:
        mismatched = [k for k, v in self.config.items() if state.get(k) != v]
        if mismatched:
            saved, now = [state.get(k) for k in mismatched], [self.config[k] for k in mismatched]
            raise ValueError(f"cannot resume: the batch stream differs in {mismatched} (saved {saved}, now {now})")
        self.next_batch = int(state["next_batch"])
