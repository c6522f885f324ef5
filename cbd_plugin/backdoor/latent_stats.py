"""Streaming statistics of SAE latents over batches of tokens: memory independent of the number of tokens.

Two accumulators, each updated batch by batch in time linear in the batch (reconstruction quality uses
:class:`cbd_plugin.sae.metrics.ReconstructionStats`):

* :class:`LatentStats`: per (prompt group) x (token role) x latent: token count, firing count (act > 0), sum
  and sum of squares of activations. Groups are the probe set's pair x condition cells.
* :class:`PromptFeatures`: per prompt, for a fixed set of candidate latents, the activation at the decision
  token and the max over the prompt's tokens, plus the raw input at the decision token (for the linear probe).
  Memory is n_prompts x (n_candidates + d), independent of prompt length.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from .roles import DECISION, FIRE, ROLES


@dataclass
class LatentStats:
    n_latents: int
    n_groups: int
    n_roles: int = len(ROLES)
    tokens: torch.Tensor = field(init=False)  # [groups * roles]
    fires: torch.Tensor = field(init=False)  # [groups * roles, latents]: tokens with act > 0
    sums: torch.Tensor = field(init=False)  # [groups * roles, latents]: sum of act
    squares: torch.Tensor = field(init=False)  # [groups * roles, latents]: sum of act ** 2

    def __post_init__(self):
        cells = self.n_groups * self.n_roles
        self.tokens = torch.zeros(cells, dtype=torch.float64)
        self.fires, self.sums, self.squares = (torch.zeros(cells, self.n_latents, dtype=torch.float64)
                                               for _ in range(3))

    def update(self, latents: torch.Tensor, group: np.ndarray, role: np.ndarray) -> None:
        """Add a batch: ``latents`` [n_tokens, n_latents], ``group`` and ``role`` per token."""
        if latents.shape != (len(group), self.n_latents) or len(role) != len(group):
            raise ValueError(f"LatentStats.update: latents {tuple(latents.shape)}, {len(group)} groups, "
                             f"{len(role)} roles; expected [n_tokens, {self.n_latents}]")
        cell = torch.as_tensor(np.asarray(group, dtype=np.int64) * self.n_roles + np.asarray(role, dtype=np.int64))
        self.tokens.index_add_(0, cell, torch.ones(len(cell), dtype=torch.float64))
        # SAE codes are sparse (k of dict_size): scatter only the non-zero entries, in one pass over the batch.
        latents = latents.detach().cpu()
        rows, cols = latents.nonzero(as_tuple=True)
        values = latents[rows, cols].to(torch.float64)
        flat = cell[rows] * self.n_latents + cols
        self.fires.view(-1).index_add_(0, flat, (values > 0).to(torch.float64))
        self.sums.view(-1).index_add_(0, flat, values)
        self.squares.view(-1).index_add_(0, flat, values ** 2)

    def select(self, groups, role: int) -> tuple[float, np.ndarray, np.ndarray, np.ndarray]:
        """Token count and per-latent firing counts, sums and sums of squares, pooled over ``groups`` at ``role``."""
        cells = [g * self.n_roles + role for g in groups]
        return (float(self.tokens[cells].sum()),
                *(t[cells].sum(0).numpy() for t in (self.fires, self.sums, self.squares)))

    def moments(self, groups, role: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Firing rate, mean and variance of each latent's activation (zeros included); NaN without tokens."""
        n, fires, sums, squares = self.select(groups, role)
        if n == 0:
            nan = np.full(self.n_latents, np.nan)
            return nan, nan, nan
        mean = sums / n
        return fires / n, mean, np.maximum(squares / n - mean ** 2, 0.0)


@dataclass
class PromptFeatures:
    """Per-prompt detection features for ``candidates`` (latent indices) and the decision-token input."""

    n_prompts: int
    candidates: np.ndarray
    d_input: int
    decision: torch.Tensor = field(init=False)  # [prompts, candidates]
    prompt_max: torch.Tensor = field(init=False)  # [prompts, candidates], max over non-fire tokens
    decision_input: torch.Tensor = field(init=False)  # [prompts, d_input]
    seen: np.ndarray = field(init=False)

    def __post_init__(self):
        self.candidates = np.asarray(self.candidates, dtype=np.int64)
        n_c = len(self.candidates)
        self.decision = torch.zeros(self.n_prompts, n_c)
        self.prompt_max = torch.full((self.n_prompts, n_c), -torch.inf)
        self.decision_input = torch.zeros(self.n_prompts, self.d_input)
        self.seen = np.zeros(self.n_prompts, dtype=bool)

    def update(self, latents: torch.Tensor, inputs: torch.Tensor, prompt_id: np.ndarray, role: np.ndarray) -> None:
        """Add a batch: ``latents`` [n_tokens, n_latents], SAE ``inputs`` [n_tokens, d], per-token prompt and role."""
        chosen = latents.detach().to("cpu", torch.float32)[:, torch.as_tensor(self.candidates)]
        prompt_id, role = np.asarray(prompt_id, dtype=np.int64), np.asarray(role)
        in_prompt = torch.as_tensor(role != FIRE)
        values = chosen[in_prompt]
        index = torch.as_tensor(prompt_id)[in_prompt][:, None].expand_as(values)
        self.prompt_max.scatter_reduce_(0, index, values, "amax")
        at_decision = torch.as_tensor(np.flatnonzero(role == DECISION))
        rows = torch.as_tensor(prompt_id)[at_decision]
        self.decision[rows] = chosen[at_decision]
        self.decision_input[rows] = inputs.detach().to("cpu", torch.float32)[at_decision]
        self.seen[rows.numpy()] = True

    def feature(self, name: str) -> np.ndarray:
        """``decision`` or ``prompt_max`` features [prompts, candidates]."""
        if name not in ("decision", "prompt_max"):
            raise ValueError(f"PromptFeatures.feature: unknown feature {name!r}")
        self._check_complete()
        return getattr(self, name).numpy()

    def inputs(self) -> np.ndarray:
        """Decision-token SAE inputs [prompts, d] (float64, for the linear probe)."""
        self._check_complete()
        return self.decision_input.numpy().astype(np.float64)

    def _check_complete(self) -> None:
        if not self.seen.all():
            raise ValueError(f"PromptFeatures: {int((~self.seen).sum())} of {self.n_prompts} prompts have no "
                             "decision token")
