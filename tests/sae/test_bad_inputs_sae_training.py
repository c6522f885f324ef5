"""Bad inputs and faults in SAE training and encoding (issue 12): one row per case, each asserting the error type
and that the message names the key, shape, token, step or file; then the faults where nothing may be lost."""

import errno
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from cbd_plugin.refusal.tier_batches import BalancedTierBatches
from cbd_plugin.sae import (
    BatchTopKSAE,
    ContrastiveSAEConfig,
    ContrastiveTopKTrainer,
    TopKSAE,
    evaluate_sae,
    pack_labels,
    train_sae,
    unpack_labels,
)
from cbd_plugin.sae.contrastive_trainer import NonFiniteError
from cbd_plugin.sae.training import CHECKPOINT_NAME, MODEL_DIR

D = 8


def config(**overrides):
    cfg = dict(
        steps=8, activation_dim=D, dict_size=32, k=4, lr=1e-3, seed=0, device="cpu", layer=0, lm_name="synthetic"
    )
    return {**cfg, **overrides}


def labelled_data(seed=0, n_examples=16, tokens=4):
    g = torch.Generator().manual_seed(seed)
    eid = torch.arange(n_examples).repeat_interleave(tokens)
    return torch.randn(n_examples * tokens, D, generator=g), eid % 2, eid


def with_nan(x, token, value=float("nan")):
    x = x.clone()
    x[token, 3] = value
    return x


def trainer(**overrides):
    return ContrastiveTopKTrainer(**config(**overrides))


def batchtopk():
    sae = BatchTopKSAE(D, 32, 4)
    with torch.no_grad():
        sae.encoder.weight.copy_(torch.randn(32, D, generator=torch.Generator().manual_seed(0)))
    return sae


def write_checkpoint(tmp_path, content: bytes):
    (tmp_path / CHECKPOINT_NAME).write_bytes(content)
    x, tier, eid = labelled_data()
    return lambda: train_sae(
        BalancedTierBatches(x, tier, eid, 2), {"trainer": ContrastiveTopKTrainer, **config()}, 8, tmp_path
    )


def truncated_checkpoint(tmp_path):
    x, tier, eid = labelled_data()
    train_sae(BalancedTierBatches(x, tier, eid, 2), {"trainer": ContrastiveTopKTrainer, **config()}, 8, tmp_path / "a")
    return write_checkpoint(tmp_path, (tmp_path / "a" / CHECKPOINT_NAME).read_bytes()[:700])


def list_checkpoint(tmp_path):
    torch.save([1, 2, 3], tmp_path / "list.pt")
    return write_checkpoint(tmp_path, (tmp_path / "list.pt").read_bytes())


def plain_batches(x, n=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [x[torch.randint(len(x), (16,), generator=g)] for _ in range(n)]


def run_plain(batches, **kwargs):
    return lambda tmp_path: (
        lambda: train_sae(batches, {"trainer": ContrastiveTopKTrainer, **config()}, 8, tmp_path, **kwargs)
    )


X, TIER, EID = labelled_data()
SAE = TopKSAE(D, 32, 4)

# (id, builder: tmp_path -> zero-argument call, error type, regex the message must match)
CASES = [
    (
        "temperature 0",
        lambda p: lambda: ContrastiveSAEConfig(temperature=0),
        ValueError,
        r"ContrastiveSAEConfig\.temperature must be > 0, got 0",
    ),
    ("negative temperature", lambda p: lambda: trainer(temperature=-0.1), ValueError, r"\.temperature must be > 0"),
    (
        "negative contrastive weight",
        lambda p: lambda: trainer(contrastive_weight=-1.0),
        ValueError,
        r"\.contrastive_weight must be >= 0, got -1",
    ),
    (
        "NaN contrastive weight",
        lambda p: lambda: trainer(contrastive_weight=float("nan")),
        ValueError,
        r"\.contrastive_weight must be a finite number",
    ),
    (
        "steps 0 in the config",
        lambda p: lambda: ContrastiveSAEConfig(steps=0),
        ValueError,
        r"ContrastiveSAEConfig\.steps must be a positive int, got 0",
    ),
    (
        "steps 0 in train_sae",
        lambda p: lambda: train_sae([X], {"trainer": ContrastiveTopKTrainer, **config()}, 0, p),
        ValueError,
        r"train_sae: steps must be a positive int, got 0",
    ),
    ("steps 2.5", lambda p: lambda: ContrastiveSAEConfig(steps=2.5), ValueError, r"\.steps must be a positive int"),
    ("k 3.5", lambda p: lambda: trainer(k=3.5), ValueError, r"ContrastiveSAEConfig\.k must be a positive int, got 3.5"),
    ("k 0", lambda p: lambda: trainer(k=0), ValueError, r"\.k must be a positive int, got 0"),
    ("k True", lambda p: lambda: trainer(k=True), ValueError, r"\.k must be a positive int, got True"),
    ("k '4'", lambda p: lambda: trainer(k="4"), ValueError, r"\.k must be a positive int, got '4'"),
    ("k above dict_size", lambda p: lambda: trainer(k=64), ValueError, r"\.k=64 must be at most dict_size=32"),
    ("dict_size -1", lambda p: lambda: trainer(dict_size=-1), ValueError, r"\.dict_size must be a positive int"),
    ("lr 0", lambda p: lambda: trainer(lr=0.0), ValueError, r"\.lr must be > 0"),
    ("lr inf", lambda p: lambda: trainer(lr=float("inf")), ValueError, r"\.lr must be a finite number"),
    ("negative auxk_alpha", lambda p: lambda: trainer(auxk_alpha=-0.1), ValueError, r"\.auxk_alpha must be >= 0"),
    ("negative l1_coeff", lambda p: lambda: trainer(l1_coeff=-1e-3), ValueError, r"\.l1_coeff must be >= 0"),
    ("grad_clip 0", lambda p: lambda: trainer(grad_clip=0), ValueError, r"\.grad_clip must be > 0"),
    (
        "dead_after_fraction 0",
        lambda p: lambda: trainer(dead_after_fraction=0.0),
        ValueError,
        r"\.dead_after_fraction must be in \(0, 1\]",
    ),
    (
        "dead_after_fraction 1.5",
        lambda p: lambda: trainer(dead_after_fraction=1.5),
        ValueError,
        r"\.dead_after_fraction must be in \(0, 1\]",
    ),
    (
        "dead_after_tokens 0",
        lambda p: lambda: trainer(dead_after_tokens=0),
        ValueError,
        r"\.dead_after_tokens must be a positive int",
    ),
    ("top_k_aux 0", lambda p: lambda: trainer(top_k_aux=0), ValueError, r"\.top_k_aux must be a positive int"),
    ("negative warmup", lambda p: lambda: trainer(warmup_steps=-1), ValueError, r"\.warmup_steps must be an int >= 0"),
    (
        "decay_start past steps",
        lambda p: lambda: trainer(decay_start=9),
        ValueError,
        r"\.decay_start=9 must lie in \[warmup_steps=0, steps=8\)",
    ),
    ("pooling median", lambda p: lambda: trainer(pooling="median"), ValueError, r"\.pooling must be one of"),
    ("unknown key", lambda p: lambda: trainer(dict_sise=3), TypeError, r"unexpected keyword argument 'dict_sise'"),
    (
        "save_every 0",
        lambda p: lambda: train_sae([X], {"trainer": ContrastiveTopKTrainer, **config()}, 8, p, save_every=0),
        ValueError,
        r"save_every must be a positive int",
    ),
    (
        "examples_per_tier 0",
        lambda p: lambda: BalancedTierBatches(X, TIER, EID, examples_per_tier=0),
        ValueError,
        r"BalancedTierBatches: examples_per_tier must be an int >= 1, got 0",
    ),
    (
        "examples_per_tier 2.5",
        lambda p: lambda: BalancedTierBatches(X, TIER, EID, examples_per_tier=2.5),
        ValueError,
        r"examples_per_tier must be an int >= 1, got 2.5",
    ),
    (
        "other_per_batch -1",
        lambda p: lambda: BalancedTierBatches(X, TIER, EID, 2, other_per_batch=-1),
        ValueError,
        r"other_per_batch must be an int >= 0",
    ),
    (
        "NaN token in the balanced corpus",
        lambda p: lambda: BalancedTierBatches(with_nan(X, 13), TIER, EID, 2),
        ValueError,
        r"1 token\(s\) of acts hold NaN/Inf, first at token 13",
    ),
    (
        "1-D acts for balanced batches",
        lambda p: lambda: BalancedTierBatches(X[:, 0], TIER, EID, 2),
        ValueError,
        r"acts must be a float \[tokens, d\] matrix, got shape \(64,\)",
    ),
    (
        "plain batch of width d+2",
        lambda p: lambda: trainer().update(0, torch.randn(16, D + 2)),
        ValueError,
        r"batch has 10 columns but columns 8, 9 are not labels packed by pack_labels.*activation_dim 8",
    ),
    (
        "d+2 batch whose extra columns are zeros",
        lambda p: lambda: unpack_labels(torch.zeros(4, D + 2), D),
        ValueError,
        r"not labels packed by pack_labels",
    ),
    (
        "batch of width d+1",
        lambda p: lambda: trainer().update(0, torch.randn(16, D + 1)),
        ValueError,
        r"batch has 9 columns; expected 8 \(plain\) or 10 \(packed labels\)",
    ),
    (
        "3-D batch",
        lambda p: lambda: trainer().update(0, torch.randn(2, 16, D)),
        ValueError,
        r"batch has shape \(2, 16, 8\); expected \[tokens, 8\]",
    ),
    (
        "NaN token in a training batch",
        lambda p: lambda: trainer().update(3, with_nan(X[:16], 5)),
        ValueError,
        r"training batch at step 3: 1 token\(s\) hold NaN/Inf, first at token 5 of 16 \(value nan\)",
    ),
    (
        "Inf token in a packed batch",
        lambda p: lambda: trainer().update(2, pack_labels(with_nan(X[:16], 7, float("inf")), TIER[:16], EID[:16])),
        ValueError,
        r"training batch at step 2: .*first at token 7 of 16 \(value inf\)",
    ),
    (
        "overflowing activations",
        lambda p: lambda: trainer().update(1, X[:16] * 1e25),
        NonFiniteError,
        r"step 1: the loss is (nan|inf) \(recon_loss .*no update applied",
    ),
    (
        "tier code 2",
        lambda p: lambda: pack_labels(X[:2], torch.tensor([0, 2]), 0),
        ValueError,
        r"tier codes must be -1, 0 or 1, got \[0, 2\]",
    ),
    (
        "negative example id",
        lambda p: lambda: pack_labels(X[:2], 0, torch.tensor([-1, 0])),
        ValueError,
        r"example ids must lie in \[0, 2\*\*24\)",
    ),
    (
        "wrong-width input to TopK encode",
        lambda p: lambda: SAE.encode(torch.randn(4, 7)),
        ValueError,
        r"TopKSAE\.encode .*input has shape \(4, 7\), but this SAE reads activations \[\.\.\., 8\]",
    ),
    (
        "wrong-width input to encode_sparse",
        lambda p: lambda: batchtopk().encode_sparse(torch.randn(3, 5, 9)),
        ValueError,
        r"BatchTopKSAE\.encode .*input has shape \(3, 5, 9\).*\[\.\.\., 8\]",
    ),
    (
        "scalar input to encode",
        lambda p: lambda: SAE.encode(torch.tensor(1.0)),
        ValueError,
        r"input has shape \(\), but this SAE reads",
    ),
    (
        "NaN token, TopK encode",
        lambda p: lambda: SAE.encode(with_nan(X, 9)),
        ValueError,
        r"1 token\(s\) hold NaN/Inf, first at token 9 of 64",
    ),
    (
        "NaN token, BatchTopK batch top-k mode",
        lambda p: lambda: batchtopk().encode(with_nan(X, 4), use_threshold=False),
        ValueError,
        r"BatchTopKSAE\.encode .*first at token 4 of 64",
    ),
    (
        "NaN token, BatchTopK threshold mode",
        lambda p: lambda: batchtopk().encode(with_nan(X, 60)),
        ValueError,
        r"first at token 60 of 64",
    ),
    (
        "NaN token in held-out metrics",
        lambda p: lambda: evaluate_sae(SAE, [X, with_nan(X, 2)]),
        ValueError,
        r"first at token 2 of 64",
    ),
    ("TopKSAE k 2.0", lambda p: lambda: TopKSAE(D, 32, 2.0), ValueError, r"TopKSAE: k must be a positive int, got 2.0"),
    (
        "empty checkpoint.pt",
        lambda p: write_checkpoint(p, b""),
        ValueError,
        r"checkpoint\.pt: unreadable checkpoint .*truncated, empty or not a checkpoint.*resume=False",
    ),
    ("truncated checkpoint.pt", truncated_checkpoint, ValueError, r"checkpoint\.pt: unreadable checkpoint"),
    (
        "text in checkpoint.pt",
        lambda p: write_checkpoint(p, b'{"step": 3}'),
        ValueError,
        r"checkpoint\.pt: unreadable checkpoint",
    ),
    (
        "a list in checkpoint.pt",
        list_checkpoint,
        ValueError,
        r"checkpoint\.pt: not a train_sae checkpoint \(missing key\(s\) \['step', 'trainer', 'config', 'rng'\]\)",
    ),
    ("batches run out", run_plain(plain_batches(X, n=5)), ValueError, r"batches ran out after 5 steps; 8 requested"),
    (
        "BatchTopK k above dict_size",
        lambda p: lambda: BatchTopKSAE(D, 32, 40),
        ValueError,
        r"k=40 must be in \[1, dict_size=32\]: BatchTopKSAE keeps k of the dict_size latents per token; lower k",
    ),
    (
        "BatchTopK dict_size 0",
        lambda p: lambda: BatchTopKSAE(D, 0, 4),
        ValueError,
        r"BatchTopKSAE: dict_size must be a positive int, got 0",
    ),
    (
        "BatchTopK width 8.5",
        lambda p: lambda: BatchTopKSAE(8.5, 32, 4),
        ValueError,
        r"BatchTopKSAE: activation_dim must be a positive int, got 8.5",
    ),
    (
        "tier code 2 in balanced batches",
        lambda p: lambda: BalancedTierBatches(X, torch.where(EID == 3, 2, TIER), EID, 2),
        ValueError,
        r"BalancedTierBatches: tier codes \[2\] in 4 token\(s\), first at token 12, are not tiers; use 0 "
        r"benign, 1 hazard, -1 other \(those tokens would never be trained on\)",
    ),
    (
        "unknown tier name in balanced batches",
        lambda p: lambda: BalancedTierBatches(X, ["benign", "dual_use"] * 32, torch.arange(64), 2),
        ValueError,
        r"BalancedTierBatches: tier labels \['dual_use'\] \(first at token 1\) are not tiers; use codes 0 benign, "
        r"1 hazard, -1 other, or the names \['benign', 'hazard', 'other'\]",
    ),
    (
        "fractional tier codes",
        lambda p: lambda: BalancedTierBatches(X, TIER * 0.5, EID, 2),
        ValueError,
        r"BalancedTierBatches: tier codes must be integers -1, 0 or 1, got dtype float",
    ),
]


@pytest.mark.parametrize("build, error, pattern", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_gets_a_clear_error(tmp_path, build, error, pattern):
    call = build(tmp_path)
    with pytest.raises(error, match=pattern):
        call()


def interrupted(batches, save_dir, after):
    """Train until batch ``after`` raises; checkpoints every 2 steps."""

    def limited():
        for i, batch in enumerate(batches):
            if i == after:
                raise KeyboardInterrupt
            yield batch

    class Stream:
        def __iter__(self):
            return limited()

        def __getattr__(self, name):
            return getattr(batches, name)

    with pytest.raises(KeyboardInterrupt):
        train_sae(Stream(), {"trainer": ContrastiveTopKTrainer, **config()}, 8, save_dir, save_every=2)


@pytest.mark.parametrize("stateful", [True, False])
def test_resume_refuses_other_data_of_the_same_shape_and_loses_nothing(tmp_path, stateful):
    def stream(seed):
        x, tier, eid = labelled_data(seed)
        return BalancedTierBatches(x, tier, eid, 2) if stateful else plain_batches(x)

    interrupted(stream(0), tmp_path, after=5)  # checkpoint at step 4
    checkpoint = tmp_path / CHECKPOINT_NAME
    before = checkpoint.read_bytes()
    run = {"trainer": ContrastiveTopKTrainer, **config()}
    with pytest.raises(
        ValueError,
        match=r"checkpoint\.pt: the data differ from the run this checkpoint belongs to "
        r".*allow_data_change=True",
    ):
        train_sae(stream(1), run, 8, tmp_path)
    assert checkpoint.read_bytes() == before and not (tmp_path / MODEL_DIR).exists()
    resumed = train_sae(stream(1), run, 8, tmp_path, allow_data_change=True)  # told: it continues
    assert torch.load(checkpoint, weights_only=True)["step"] == 8 and (tmp_path / MODEL_DIR).exists()
    assert resumed.ae.W_dec.isfinite().all()


def test_nan_mid_run_stops_before_the_update_and_keeps_the_last_good_checkpoint(tmp_path):
    x, _, _ = labelled_data()
    batches = plain_batches(x)
    batches[5] = with_nan(batches[5], 3)
    run = {"trainer": ContrastiveTopKTrainer, **config()}
    with pytest.raises(ValueError, match=r"step 5: 1 token\(s\) hold NaN/Inf, first at token 3"):
        train_sae(batches, run, 8, tmp_path, save_every=2)
    state = torch.load(tmp_path / CHECKPOINT_NAME, weights_only=True)
    assert state["step"] == 4 and all(v.isfinite().all() for v in state["trainer"]["ae"].values())
    assert not (tmp_path / MODEL_DIR).exists()  # no all-NaN SAE saved as final


def test_non_finite_loss_names_the_step_and_the_checkpoint(tmp_path):
    x, _, _ = labelled_data()
    batches = plain_batches(x)
    batches[6] = batches[6] * 1e25  # finite input, overflowing loss
    with pytest.raises(
        NonFiniteError,
        match=r"step 6: the loss is (nan|inf).*the last good checkpoint is step 4 in "
        r".*checkpoint\.pt; nothing saved as final",
    ):
        train_sae(batches, {"trainer": ContrastiveTopKTrainer, **config()}, 8, tmp_path, save_every=4)
    assert torch.load(tmp_path / CHECKPOINT_NAME, weights_only=True)["step"] == 4
    assert not (tmp_path / MODEL_DIR).exists()
    # After the fault the run resumes from the good checkpoint on repaired data.
    batches[6] = batches[6] / 1e25
    trainer = train_sae(batches, {"trainer": ContrastiveTopKTrainer, **config()}, 8, tmp_path)
    assert trainer.ae.W_dec.isfinite().all() and (tmp_path / MODEL_DIR).exists()


def test_tier_names_are_mapped_to_codes():
    names = ["hazard" if t else "benign" for t in TIER.tolist()]
    by_name, by_code = BalancedTierBatches(X, names, EID, 2, seed=3), BalancedTierBatches(X, TIER, EID, 2, seed=3)
    assert torch.equal(by_name.batch(0), by_code.batch(0)) and by_name.fingerprint() == by_code.fingerprint()


def test_full_disk_while_checkpointing_says_so_and_the_rerun_resumes(tmp_path, monkeypatch):
    x, tier, eid = labelled_data()
    run = {"trainer": ContrastiveTopKTrainer, **config()}
    reference = train_sae(BalancedTierBatches(x, tier, eid, 2), run, 8, tmp_path / "ref", save_every=2).ae
    real_write, writes = os.write, []

    def full_disk(fd, data):  # the disk fills during the second checkpoint (step 4)
        writes.append(fd)
        if len(writes) == 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", full_disk)
    with pytest.raises(
        OSError,
        match=r"no space left on device while writing .*run/checkpoint\.pt; nothing was "
        r"lost \(.*checkpoint\.pt keeps its previous content\): free space and rerun",
    ):
        train_sae(BalancedTierBatches(x, tier, eid, 2), run, 8, tmp_path / "run", save_every=2)
    monkeypatch.undo()
    assert torch.load(tmp_path / "run" / CHECKPOINT_NAME, weights_only=True)["step"] == 2
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == [CHECKPOINT_NAME]  # no temporary left
    resumed = train_sae(BalancedTierBatches(x, tier, eid, 2), run, 8, tmp_path / "run", save_every=2).ae
    assert all(torch.equal(a, b) for a, b in zip(resumed.state_dict().values(), reference.state_dict().values()))


def test_a_second_run_into_the_same_save_dir_fails_at_once(tmp_path):
    from cbd_plugin.artifacts import OutputBusyError, OutputLock

    x, tier, eid = labelled_data()
    script = (
        "import time\nfrom cbd_plugin.artifacts import OutputLock\n"
        f"with OutputLock({str(tmp_path / 'run')!r}):\n    print('held', flush=True)\n    time.sleep(600)\n"
    )
    child = subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, cwd=Path(__file__).parents[2]
    )
    try:
        assert child.stdout.readline().strip() == "held"
        with pytest.raises(OutputBusyError, match=rf"run: another process is writing it \(pid {child.pid} on "):
            train_sae(
                BalancedTierBatches(x, tier, eid, 2),
                {"trainer": ContrastiveTopKTrainer, **config()},
                8,
                tmp_path / "run",
            )
    finally:
        child.kill()
        child.wait()
    assert not (tmp_path / "run" / CHECKPOINT_NAME).exists()
    with OutputLock(tmp_path / "run"):  # the dead holder's lock is taken over
        pass


def test_table_size():
    assert len(CASES) >= 56 and len({c[0] for c in CASES}) == len(CASES)
    json.dumps([c[0] for c in CASES])
