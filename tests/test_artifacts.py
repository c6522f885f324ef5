"""The write rule of cbd_plugin.artifacts: the rename fallback, putting back what a killed writer moved aside, the
per-output lock (busy, stale, re-entrant) and the refusals."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import cbd_plugin.artifacts as artifacts
from cbd_plugin.artifacts import NotAnArtifactError, OutputBusyError, OutputLock, atomic_write_text
from cbd_plugin.sae import TopKSAE, load_dictionary


def sae(seed):
    return TopKSAE(8, 24, 3, generator=torch.Generator().manual_seed(seed))


def dead_pid() -> int:
    return int(
        subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True).stdout
    )


def test_without_an_atomic_exchange_the_two_rename_fallback_replaces_the_folder(tmp_path, monkeypatch):
    monkeypatch.setattr(artifacts, "exchange", lambda a, b: False)
    sae(1).save_pretrained(tmp_path / "sae")
    sae(2).save_pretrained(tmp_path / "sae")
    assert torch.equal(load_dictionary(tmp_path / "sae").W_enc, sae(2).W_enc)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sae"]


def test_an_artifact_a_killed_writer_moved_aside_is_put_back(tmp_path):
    sae(1).save_pretrained(tmp_path / "sae")
    aside = tmp_path / f".sae.old-{dead_pid()}-0123abcd"
    os.replace(tmp_path / "sae", aside)  # killed between the two renames of the fallback
    artifacts.clean_stale_temporaries(tmp_path, "sae")
    assert torch.equal(load_dictionary(tmp_path / "sae").W_enc, sae(1).W_enc) and not aside.exists()


def test_a_held_lock_names_its_holder_and_a_dead_holders_lock_is_taken_over(tmp_path):
    script = (
        "import time\nfrom cbd_plugin.artifacts import OutputLock\n"
        f"with OutputLock({str(tmp_path / 'out')!r}):\n    print('held', flush=True)\n    time.sleep(600)\n"
    )
    child = subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, cwd=Path(__file__).parents[1]
    )
    try:
        assert child.stdout.readline().strip() == "held"
        with pytest.raises(
            OutputBusyError,
            match=rf"out: another process is writing it \(pid {child.pid} on .*, "
            rf"started 20\d\d-.*; wait for it to finish, or stop it",
        ):
            OutputLock(tmp_path / "out").__enter__()
    finally:
        child.kill()
        child.wait()
    lock_file = tmp_path / ".out.lock"
    assert json.loads(lock_file.read_text())["pid"] == child.pid  # left by the killed holder
    with OutputLock(tmp_path / "out"):
        assert json.loads(lock_file.read_text())["pid"] == os.getpid()
    assert not lock_file.exists()


def test_the_lock_is_reentrant_within_a_process(tmp_path):
    with OutputLock(tmp_path / "out"):
        with OutputLock(tmp_path / "out"):
            pass
        assert (tmp_path / ".out.lock").exists()
    assert not (tmp_path / ".out.lock").exists()


def test_a_file_never_replaces_a_folder(tmp_path):
    (tmp_path / "runs").mkdir()
    with pytest.raises(NotAnArtifactError, match=r"runs: is a folder; refusing to replace it with a file"):
        atomic_write_text(tmp_path / "runs", "x")
    assert (tmp_path / "runs").is_dir()


@pytest.mark.parametrize("run", ["analyze_conjunction", "audit_refusal_depth"])
def test_a_second_analysis_into_the_same_folder_fails_before_any_work(tmp_path, run):
    from cbd_plugin.backdoor import analyze_conjunction
    from cbd_plugin.refusal import audit_refusal_depth

    script = (
        "import time\nfrom cbd_plugin.artifacts import OutputLock\n"
        f"with OutputLock({str(tmp_path / 'run')!r}):\n    print('held', flush=True)\n    time.sleep(600)\n"
    )
    child = subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, cwd=Path(__file__).parents[1]
    )
    try:
        assert child.stdout.readline().strip() == "held"
        with pytest.raises(OutputBusyError, match=rf"run: another process is writing it \(pid {child.pid} "):
            if run == "analyze_conjunction":  # models None: the lock is taken before anything is read
                analyze_conjunction(None, None, None, None, [], 0, None, tmp_path / "run")
            else:
                audit_refusal_depth(None, None, None, None, None, 0, out_dir=tmp_path / "run")
    finally:
        child.kill()
        child.wait()
