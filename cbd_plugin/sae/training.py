"""A training loop with ``trainSAE``'s trainer protocol that runs without the fork and resumes exactly.

The trainer is built as ``trainer_config["trainer"](**rest)`` and driven by ``trainer.update(step, act)``, as in
the fork; for checkpoints it must also offer ``state_dict()``/``load_state_dict()``. ``save_dir`` holds:

* ``checkpoint.pt``: the latest resumable state, written atomically: step, trainer state (model, optimizer,
  scheduler, dead-latent counters), RNG states, the batch stream's state and the trainer config;
* ``dictionary_model/``: the final SAE (``model.safetensors`` + ``config.json``);
* ``trainer_config.json``: ``{"trainer": trainer.config, "data": batches.config}``.

A run interrupted after a checkpoint and started again with ``resume=True`` ends with the same weights as an
uninterrupted run. Batches with ``state_dict()``/``load_state_dict()`` (e.g. ``BalancedTierBatches``) continue
their stream; any other iterable is iterated afresh and the consumed batches are skipped, so it must replay the
same sequence.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import torch
from loguru import logger

from .dictionary import atomic_write

CHECKPOINT_NAME = "checkpoint.pt"
MODEL_DIR = "dictionary_model"
CONFIG_NAME = "trainer_config.json"


def save_checkpoint(trainer, batches, step: int, path: Path) -> None:
    state = {"step": step, "trainer": trainer.state_dict(), "config": trainer.config,
             "rng": {"torch": torch.get_rng_state(),
                     "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []},
             "data": batches.state_dict() if hasattr(batches, "state_dict") else None}
    atomic_write(path, lambda tmp: torch.save(state, tmp))


def load_checkpoint(trainer, batches, path: Path) -> int:
    """Restore ``trainer`` and ``batches`` from ``path``; returns the step to continue from."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    saved, now = state["config"], trainer.config
    differing = sorted(k for k in saved.keys() | now.keys() if k != "device" and saved.get(k) != now.get(k))
    if differing:
        raise ValueError(f"{path}: checkpoint belongs to a different run; config differs in {differing}")
    trainer.load_state_dict(state["trainer"])
    torch.set_rng_state(state["rng"]["torch"])
    if state["rng"]["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["rng"]["cuda"])
    if hasattr(batches, "load_state_dict"):
        batches.load_state_dict(state["data"])
    logger.info(f"resuming from {path} at step {state['step']}")
    return int(state["step"])


def train_sae(batches, trainer_config: dict, steps: int, save_dir, save_every: int | None = None,
              log_every: int | None = None, resume: bool = True):
    """Train for ``steps`` updates, checkpointing every ``save_every``; returns the trainer."""
    config = dict(trainer_config)
    trainer_class = config.pop("trainer")
    config.setdefault("steps", steps)
    trainer = trainer_class(**config)
    save_dir = Path(save_dir)
    save_dir.mkdir(parents=True, exist_ok=True)
    checkpoint = save_dir / CHECKPOINT_NAME
    start = load_checkpoint(trainer, batches, checkpoint) if resume and checkpoint.exists() else 0
    data = iter(batches)
    if not hasattr(batches, "load_state_dict"):
        data = itertools.islice(data, start, None)
    for step in range(start, steps):
        act = next(data, None)
        if act is None:
            raise ValueError(f"batches ran out after {step} steps; {steps} requested")
        trainer.update(step, act.to(trainer.device, torch.float32))
        if log_every and (step + 1) % log_every == 0:
            logger.info(f"step {step + 1}/{steps} {json.dumps(trainer.get_logging_parameters())}")
        if save_every and (step + 1) % save_every == 0 and step + 1 < steps:
            save_checkpoint(trainer, batches, step + 1, checkpoint)
    save_checkpoint(trainer, batches, steps, checkpoint)
    trainer.ae.save_pretrained(save_dir / MODEL_DIR)
    run_config = {"trainer": trainer.config, "data": getattr(batches, "config", None)}
    atomic_write(save_dir / CONFIG_NAME, lambda tmp: tmp.write_text(json.dumps(run_config, indent=2)))
    return trainer
