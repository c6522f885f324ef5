"""A training loop with ``trainSAE``'s trainer protocol that runs without the fork and resumes exactly.

The trainer is built as ``trainer_config["trainer"](**rest)`` and driven by ``trainer.update(step, act)``, as in
the fork; for checkpoints it must also offer ``state_dict()``/``load_state_dict()``. ``save_dir`` holds:

* ``checkpoint.pt``: the latest resumable state, written atomically: step, trainer state (model, optimizer,
  scheduler, dead-latent counters), RNG states, the batch stream's state, a fingerprint of the data consumed and
  the trainer config;
* ``dictionary_model/``: the final SAE (``model.safetensors`` + ``config.json``), written only by a run that
  finished with finite losses;
* ``trainer_config.json``: ``{"trainer": trainer.config, "data": batches.config}``.

A run interrupted after a checkpoint and started again with ``resume=True`` ends with the same weights as an
uninterrupted run. Batches with ``state_dict()``/``load_state_dict()`` (e.g. ``BalancedTierBatches``) continue
their stream; any other iterable is iterated afresh and the consumed batches are skipped, so it must replay the
same sequence. Resuming checks the data, not only the config: the stream's ``fingerprint()`` (or, for a plain
iterable, a sha256 of the batches consumed so far) must match the checkpoint's unless ``allow_data_change=True``.

A NaN/Inf batch, loss or gradient stops the run before that step's update (``NonFiniteError`` naming the step and
the last good checkpoint); nothing is saved as final. Progress shows as a tqdm bar with the loss and the dead
fraction (off when stderr is not a terminal, as under CI).
"""

from __future__ import annotations

import hashlib
import io
import json
import pickle
import zipfile
from pathlib import Path

import torch
from loguru import logger
from tqdm.auto import tqdm

from ..artifacts import OutputLock, atomic_write_bytes, atomic_write_text
from ..checks import is_int
from .contrastive_trainer import NonFiniteError
from .export import reads

CHECKPOINT_NAME = "checkpoint.pt"
MODEL_DIR = "dictionary_model"
CONFIG_NAME = "trainer_config.json"


class BatchDigest:
    """Running sha256 of the batches a plain iterable has yielded (its fingerprint for resuming)."""

    def __init__(self):
        self.digest = hashlib.sha256()

    def update(self, batch: torch.Tensor) -> None:
        raw = batch.detach().to("cpu").contiguous()
        self.digest.update(str((tuple(raw.shape), raw.dtype)).encode())
        self.digest.update(raw.reshape(-1).view(torch.uint8).numpy().tobytes())

    def hexdigest(self) -> str:
        return self.digest.hexdigest()


def stream_fingerprint(batches, digest: BatchDigest | None) -> str | None:
    if hasattr(batches, "fingerprint"):
        return batches.fingerprint()
    return digest.hexdigest() if digest is not None else None


def save_checkpoint(trainer, batches, step: int, path: Path, fingerprint: str | None) -> None:
    state = {
        "step": step,
        "trainer": trainer.state_dict(),
        "config": trainer.config,
        "rng": {
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        },
        "data": batches.state_dict() if hasattr(batches, "state_dict") else None,
        "data_fingerprint": fingerprint,
    }
    # Serialised in memory, then written by plain writes: a full disk then raises ENOSPC naming the file (torch's
    # own file writer reports it as "unexpected pos"), and the previous checkpoint stays.
    buffer = io.BytesIO()
    torch.save(state, buffer)
    atomic_write_bytes(path, buffer.getbuffer())


def read_checkpoint(path: Path) -> dict:
    """The checkpoint's state; a clear error naming the file if it is truncated, empty or not ours."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, EOFError, OSError, pickle.UnpicklingError, zipfile.BadZipFile, ValueError) as err:
        raise ValueError(
            f"{path}: unreadable checkpoint ({type(err).__name__}: {str(err)[:200]}); it is truncated, "
            f"empty or not a checkpoint. Delete it to start afresh, or pass resume=False"
        ) from err
    missing = [k for k in ("step", "trainer", "config", "rng") if not isinstance(state, dict) or k not in state]
    if missing:
        raise ValueError(
            f"{path}: not a train_sae checkpoint (missing key(s) {missing}); delete it to start afresh, "
            f"or pass resume=False"
        )
    return state


def load_checkpoint(trainer, batches, path: Path) -> tuple[int, str | None]:
    """Restore ``trainer`` and ``batches`` from ``path``; returns the step to continue from and the checkpoint's
    data fingerprint."""
    state = read_checkpoint(path)
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
    return int(state["step"]), state.get("data_fingerprint")


def check_fingerprint(path: Path, saved: str | None, now: str | None, allow_data_change: bool) -> None:
    if saved is None or now is None or saved == now:
        return
    if allow_data_change:
        logger.warning(f"{path}: resuming on different data (fingerprint {now[:12]} != {saved[:12]}), as allowed")
        return
    raise ValueError(
        f"{path}: the data differ from the run this checkpoint belongs to (fingerprint {now[:12]}, "
        f"checkpoint {saved[:12]}); pass allow_data_change=True to continue on the new data, or "
        f"resume=False to start afresh"
    )


def check_positive(name: str, value, optional: bool = False) -> None:
    if optional and value is None:
        return
    if not is_int(value, 1):
        raise ValueError(f"train_sae: {name} must be a positive int{' or None' if optional else ''}, got {value!r}")


def train_sae(
    batches,
    trainer_config: dict,
    steps: int,
    save_dir,
    save_every: int | None = None,
    log_every: int | None = None,
    resume: bool = True,
    allow_data_change: bool = False,
    metadata: dict | None = None,
):
    """Train for ``steps`` updates, checkpointing every ``save_every``; returns the trainer. The saved SAE records
    ``metadata`` (default: the trainer config's ``lm_name`` and ``layer``, see :func:`cbd_plugin.sae.export.reads`)."""
    check_positive("steps", steps)
    check_positive("save_every", save_every, optional=True)
    check_positive("log_every", log_every, optional=True)
    config = dict(trainer_config)
    trainer_class = config.pop("trainer")
    config.setdefault("steps", steps)
    trainer = trainer_class(**config)
    save_dir = Path(save_dir)
    save_dir.mkdir(parents=True, exist_ok=True)
    with OutputLock(save_dir):  # one run per save_dir: a second fails at once, naming this one
        checkpoint = save_dir / CHECKPOINT_NAME
        start, saved_fingerprint = (
            load_checkpoint(trainer, batches, checkpoint) if resume and checkpoint.exists() else (0, None)
        )
        stateful = hasattr(batches, "load_state_dict")
        digest = None if hasattr(batches, "fingerprint") else BatchDigest()
        data = iter(batches)
        if not stateful:  # replay the consumed batches: skip them, but fingerprint them
            for step in range(start):
                batch = next(data, None)
                if batch is None:
                    raise ValueError(f"{checkpoint}: the batches ran out after {step} of the {start} already consumed")
                digest.update(batch)
        if start:
            check_fingerprint(checkpoint, saved_fingerprint, stream_fingerprint(batches, digest), allow_data_change)
        last_saved = start if start else None
        bar = tqdm(total=steps, initial=start, desc="SAE training", unit="step", disable=None)
        try:
            for step in range(start, steps):
                act = next(data, None)
                if act is None:
                    raise ValueError(f"batches ran out after {step} steps; {steps} requested")
                if digest is not None and not stateful:
                    digest.update(act)
                try:
                    loss = trainer.update(step, act.to(trainer.device, torch.float32))
                except NonFiniteError as err:
                    kept = (
                        f"the last good checkpoint is step {last_saved} in {checkpoint}"
                        if last_saved is not None
                        else "no checkpoint was written yet"
                    )
                    raise NonFiniteError(f"{err}; training stopped, {kept}; nothing saved as final") from err
                bar.update(1)
                if (step + 1) % max(1, steps // 200) == 0:
                    bar.set_postfix(
                        loss=f"{loss:.4g}", dead=f"{getattr(trainer, 'dead_fraction', float('nan')):.3f}", refresh=False
                    )
                if log_every and (step + 1) % log_every == 0:
                    logger.info(f"step {step + 1}/{steps} {json.dumps(trainer.get_logging_parameters())}")
                if save_every and (step + 1) % save_every == 0 and step + 1 < steps:
                    save_checkpoint(trainer, batches, step + 1, checkpoint, stream_fingerprint(batches, digest))
                    last_saved = step + 1
        finally:
            bar.close()
        save_checkpoint(trainer, batches, steps, checkpoint, stream_fingerprint(batches, digest))
        trainer.ae.metadata = metadata if metadata is not None else reads(trainer.lm_name, trainer.layer)
        trainer.ae.save_pretrained(save_dir / MODEL_DIR)
        run_config = {"trainer": trainer.config, "data": getattr(batches, "config", None)}
        atomic_write_text(save_dir / CONFIG_NAME, json.dumps(run_config, indent=2))
        logger.info(f"trained {steps} steps into {save_dir}: {json.dumps(trainer.get_logging_parameters())}")
        return trainer
