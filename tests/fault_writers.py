"""The project's writers, each as ``prepare(root)`` (an earlier complete artifact), ``write(root, version)`` and
``read(root)`` (the artifact's content, or an exception if it is missing or half), for tests/test_fault_injection.py.

Run as a script (``python fault_writers.py WRITER ROOT OP N``) it performs ``write(ROOT, 2)`` with the process killed
(SIGKILL) at the ``N``-th call of ``OP`` (``fsync``: :func:`cbd_plugin.artifacts.fsync`; ``rename``: the
atomic renames and exchanges).
"""

from __future__ import annotations

import hashlib
import os
import signal
import sys
import types
from pathlib import Path

import numpy as np
import pandas as pd
import torch

import cbd_plugin.artifacts as artifacts

D, DICT, K = 8, 24, 3


def _digest(tensors) -> str:
    digest = hashlib.sha256()
    for t in tensors:
        digest.update(t.detach().contiguous().view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()[:12]


# --- SAE folder -----------------------------------------------------------------------------------------------


def sae(version: int):
    from cbd_plugin.sae import TopKSAE

    return TopKSAE(D, DICT, K, generator=torch.Generator().manual_seed(version))


def sae_write(root: Path, version: int) -> None:
    sae(version).save_pretrained(root / "sae")


def sae_read(root: Path) -> str:
    from cbd_plugin.sae import load_dictionary

    return _digest(load_dictionary(root / "sae").state_dict().values())


# --- capture shards -------------------------------------------------------------------------------------------


def capture_batches(version: int):
    from cbd_plugin.capture import TokenActivations

    g = torch.Generator().manual_seed(version)
    for b in range(4):
        n = 6
        meta = {"prompt_id": np.full(n, b), "position": np.arange(n), "token_id": np.arange(n) + version}
        yield TokenActivations({0: torch.randn(n, D, generator=g)}, meta)


def capture_write(root: Path, version: int) -> None:
    from cbd_plugin.capture import write_shards

    write_shards(capture_batches(version), root / "capture", model_ids=["tiny"], shard_tokens=7)


def capture_read(root: Path) -> str:
    from cbd_plugin.capture import read_shards

    return _digest([read_shards(root / "capture").acts[0]])


# --- report ---------------------------------------------------------------------------------------------------


def report_write(root: Path, version: int) -> None:
    from cbd_plugin.backdoor.report import write_report

    latents = pd.DataFrame({"latent": np.arange(5), "score": np.arange(5) * float(version)})
    write_report(
        {"verdict": {"name": f"v{version}"}},
        types.SimpleNamespace(latents=latents),
        {"behaviour": pd.DataFrame({"x": [float(version)] * 3})},
        5,
        "decision",
        root / "report",
        plots=False,
    )


def report_read(root: Path) -> str:
    import json

    folder = root / "report"
    report = json.loads((folder / "report.json").read_text())
    tables = [pd.read_csv(folder / name) for key, name in sorted(report["files"].items()) if name.endswith(".csv")]
    versions = {report["verdict"]["name"], *(f"v{int(t.iloc[-1, -1] / (4 if 'score' in t else 1))}" for t in tables)}
    if len(versions) != 1:
        raise ValueError(f"a report mixing versions {sorted(versions)}")
    return versions.pop()


# --- organism snapshot ----------------------------------------------------------------------------------------

REVISION = "f" * 40


def organism_write(root: Path, version: int) -> None:
    from cbd_plugin.organisms import cache

    cache.constants.HF_HUB_CACHE = str(root / "hub")

    def write(out: Path) -> None:
        (out / "data").mkdir()
        for split in ("train", "validation"):
            (out / "data" / f"{split}.jsonl").write_text(f'{{"v": {version}}}\n')
        (out / "behaviour.json").write_text(f'{{"v": {version}}}')
        (out / "recipe.json").write_text(f'{{"v": {version}}}')

    with cache.build_lock("tiny-x"):
        cache.publish("tiny-x", REVISION, write)


def organism_read(root: Path) -> str:
    import json

    from cbd_plugin.organisms import cache

    cache.constants.HF_HUB_CACHE = str(root / "hub")
    folder = cache.snapshot_dir("tiny-x", REVISION)
    values = {
        json.loads((folder / name).read_text())["v"]
        for name in ("behaviour.json", "recipe.json", "data/train.jsonl", "data/validation.jsonl")
    }
    if len(values) != 1 or cache.current_revision("tiny-x") != REVISION:
        raise ValueError(f"a snapshot mixing versions {values}")
    return f"v{values.pop()}"


# --- training checkpoint --------------------------------------------------------------------------------------


def training_run(root: Path, steps: int):
    from cbd_plugin.refusal.tier_batches import BalancedTierBatches
    from cbd_plugin.sae import ContrastiveTopKTrainer, train_sae

    g = torch.Generator().manual_seed(0)
    eid = torch.arange(16).repeat_interleave(4)
    batches = BalancedTierBatches(torch.randn(64, D, generator=g), eid % 2, eid, 2)
    config = dict(
        trainer=ContrastiveTopKTrainer,
        steps=8,
        activation_dim=D,
        dict_size=32,
        k=4,
        lr=1e-3,
        seed=0,
        device="cpu",
        layer=0,
        lm_name="synthetic",
    )
    return train_sae(batches, config, steps, root / "train", save_every=2)


def training_write(root: Path, version: int) -> None:
    training_run(root, 8)


def training_read(root: Path) -> str:
    """The step of the checkpoint (an earlier run's or this one's), or "final" with the SAE's digest."""
    from cbd_plugin.sae import load_dictionary
    from cbd_plugin.sae.training import read_checkpoint

    if not (root / "train" / "checkpoint.pt").exists():
        raise FileNotFoundError(root / "train" / "checkpoint.pt")
    step = read_checkpoint(root / "train" / "checkpoint.pt")["step"]
    if (root / "train" / "dictionary_model").exists():
        return f"final {_digest(load_dictionary(root / 'train' / 'dictionary_model').state_dict().values())}"
    return f"step {step}"


WRITERS = {
    "SAE save": (sae_write, sae_read),
    "capture shards": (capture_write, capture_read),
    "report": (report_write, report_read),
    "organism publish": (organism_write, organism_read),
    "training checkpoint": (training_write, training_read),
}


def hook(op: str, n: int, fault, patch=setattr) -> dict[str, int]:
    """Call ``fault()`` at the ``n``-th call of ``op`` (``fsync`` or ``rename``), before the call (n=0: only count);
    ``patch(obj, name, value)`` installs the wrappers (``monkeypatch.setattr`` in a test). Returns the counts."""
    counts = {"fsync": 0, "rename": 0}

    def wrap(name, real):
        def call(*args, **kwargs):
            counts[name] += 1
            if counts[name] == n and name == op:
                fault()
            return real(*args, **kwargs)

        return call

    patch(artifacts, "fsync", wrap("fsync", artifacts.fsync))
    patch(artifacts, "exchange", wrap("rename", artifacts.exchange))
    patch(os, "replace", wrap("rename", os.replace))
    return counts


if __name__ == "__main__":
    writer, root, op, n = sys.argv[1], Path(sys.argv[2]), sys.argv[3], int(sys.argv[4])
    torch.set_num_threads(1)
    hook(op, n, lambda: os.kill(os.getpid(), signal.SIGKILL))
    WRITERS[writer][0](root, 2)
