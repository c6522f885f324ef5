"""How tier labels travel through ``trainSAE``, and balanced batches that carry them.

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
``pack_labels`` builds such a batch, ``unpack_labels`` splits one, and ``BalancedTierBatches`` streams them with
both tiers in every batch.
"""

from __future__ import annotations

import hashlib
import numbers

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
            raise ValueError(f"{owner}: tier labels {unknown[:5]} (first at token {first}) are not tiers; use codes "
                             f"0 benign, 1 hazard, -1 other, or the names {sorted(TIER_NAMES)} (map e.g. dual_use "
                             f"to 'other' or -1)")
        return np.vectorize(TIER_NAMES.__getitem__, otypes=[np.int64])(names) if len(names) else names.astype(np.int64)
    if values.dtype.kind not in "biuf" or (values.dtype.kind == "f" and not np.array_equal(values, np.round(values))):
        raise ValueError(f"{owner}: tier codes must be integers -1, 0 or 1, got dtype {values.dtype} "
                         f"(e.g. {values.ravel()[:3].tolist()})")
    codes = values.astype(np.int64)
    bad = ~np.isin(codes, [TIER_OTHER, TIER_BENIGN, TIER_HAZARD])
    if bad.any():
        raise ValueError(f"{owner}: tier codes {sorted(set(codes[bad].tolist()))[:5]} in {int(bad.sum())} token(s), "
                         f"first at token {int(np.flatnonzero(bad)[0])}, are not tiers; use 0 benign, 1 hazard, "
                         f"-1 other (those tokens would never be trained on)")
    return codes


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
    labels = torch.stack([tier + int(LABEL_TAG), example_id], dim=1).to(device=acts.device, dtype=torch.float32)
    return torch.cat([acts.float(), labels], dim=1)


def unpack_labels(batch: torch.Tensor, d: int):
    """Split a batch into ``(acts [B, d], tier [B] | None, example_id [B] | None)``; ``None`` for a plain batch."""
    if batch.ndim != 2:
        raise ValueError(f"batch has shape {tuple(batch.shape)}; expected [tokens, {d}] (plain) or "
                         f"[tokens, {d + 2}] (packed labels)")
    if batch.shape[-1] == d:
        return batch, None, None
    if batch.shape[-1] != d + 2:
        raise ValueError(f"batch has {batch.shape[-1]} columns; expected {d} (plain) or {d + 2} (packed labels)")
    tag_column, id_column = batch[:, d].double(), batch[:, d + 1].double()
    tier = tag_column - LABEL_TAG
    valid = ((tier == TIER_BENIGN) | (tier == TIER_HAZARD) | (tier == TIER_OTHER)).all()
    valid &= ((id_column == id_column.round()) & (id_column >= 0) & (id_column < MAX_EXAMPLE_ID)).all()
    if not bool(valid):
        raise ValueError(f"batch has {d + 2} columns but columns {d}, {d + 1} are not labels packed by pack_labels "
                         f"(tag {int(LABEL_TAG)} + tier, example id): is it a plain batch of {d + 2}-wide "
                         f"activations? This SAE reads activation_dim {d}")
    return batch[:, :d], tier.long(), id_column.long()


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
        for key, value, least in (("examples_per_tier", examples_per_tier, 1), ("other_per_batch", other_per_batch, 0),
                                  ("seed", seed, 0)):
            if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < least:
                raise ValueError(f"BalancedTierBatches: {key} must be an int >= {least}, got {value!r}")
        # A tensor, or a row store read by contiguous range (``len``, ``store[a:b]`` -> tensor, e.g.
        # ``cbd_plugin.capture.TokenRows`` on disk): a large training set then stays out of memory.
        in_memory = torch.is_tensor(acts) or isinstance(acts, (np.ndarray, list, tuple))
        self.acts = torch.as_tensor(acts) if in_memory else acts
        sample = self.acts if in_memory else self.acts[0:1]
        if sample.ndim != 2 or not sample.is_floating_point():
            shape = tuple(sample.shape) if in_memory else (len(self.acts), *sample.shape[1:])
            raise ValueError(f"BalancedTierBatches: acts must be a float [tokens, d] matrix, got shape "
                             f"{shape} dtype {sample.dtype}")
        for start, chunk in self._chunks():
            finite = torch.isfinite(chunk).all(dim=1)
            if not bool(finite.all()):
                bad = torch.nonzero(~finite).flatten()
                raise ValueError(f"BalancedTierBatches: {len(bad)} token(s) of acts hold NaN/Inf, first at token "
                                 f"{start + int(bad[0])} (counted in rows [{start}, {start + len(chunk)}), the first "
                                 f"rows read that hold any); they would train an all-NaN SAE")
        self._fingerprint: str | None = None
        tier, example_id = tier_codes(tier, "BalancedTierBatches"), np.asarray(example_id, dtype=np.int64)
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
        # Each example's tokens as one row range where they are contiguous (capture order makes them so).
        self.ranges = [(int(t[0]), int(t[-1]) + 1) if len(t) and t[-1] - t[0] + 1 == len(t) else None
                       for t in self.tokens]
        if not isinstance(self.acts, torch.Tensor) and None in self.ranges:
            eid = ids[self.ranges.index(None)]
            raise ValueError(f"BalancedTierBatches: example id {eid}'s tokens are not contiguous rows; a row store "
                             f"({type(self.acts).__name__}) is read by range, so each example's tokens must be adjacent")
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

    def _chunks(self, rows: int = 4096):
        """``(start, acts[start:start + rows])`` over every row: what a check or hash of a row store reads (4096
        rows: 36 MiB at width 2304, so reading a large training set costs no more memory than a batch)."""
        for start in range(0, len(self.acts), rows):
            yield start, self.acts[start:start + rows]

    def _rows(self, e: int) -> torch.Tensor:
        span = self.ranges[e]
        return self.acts[torch.from_numpy(self.tokens[e])] if span is None else self.acts[span[0]:span[1]]

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
