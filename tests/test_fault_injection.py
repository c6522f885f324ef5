"""Fault injection on every writer (issue 19): the process killed (SIGKILL, in a subprocess) and the disk full (an
injected ``OSError(ENOSPC)``) at several points of a write over an earlier complete artifact. Afterwards the path
holds the earlier artifact intact or the new one complete, never a half; a rerun completes (training resumes to the
same weights as an uninterrupted run) and leaves no temporary or lock behind.

The points are counted on a clean write first: the first, middle, second-to-last and last fsync (the last one
follows the rename into place) and the first and last rename. ``pytest -s`` prints the table.
"""

import errno
import os
import subprocess
import sys
from pathlib import Path

import fault_writers
import pytest
import torch

from cbd_plugin.artifacts import is_temporary

pytestmark = pytest.mark.slow
TESTS = Path(__file__).parent
TABLE: list[tuple[str, str, str, str]] = []


def points(root: Path, writer: str, monkeypatch) -> list[tuple[str, int]]:
    write, _ = fault_writers.WRITERS[writer]
    if writer != "training checkpoint":
        write(root, 1)
    with monkeypatch.context() as m:
        counts = fault_writers.hook("none", 0, None, m.setattr)
        write(root, 2)
    n, r = counts["fsync"], counts["rename"]
    return sorted(
        {("fsync", 1), ("fsync", max(1, n // 2)), ("fsync", max(1, n - 1)), ("fsync", n), ("rename", 1), ("rename", r)}
    )


def leftovers(root: Path) -> list[str]:
    return sorted(
        str(p.relative_to(root))
        for p in root.rglob("*")
        if is_temporary(p.name) or (p.name.endswith(".lock") and not p.name == "cbd-build.lock")
    )


def expected(root: Path, writer: str) -> dict[str, str]:
    """What the read gives for the earlier artifact (v1) and the new one (v2) of ``writer``."""
    write, read = fault_writers.WRITERS[writer]
    if writer == "training checkpoint":
        write(root / "reference", 2)
        return {"new": read(root / "reference")}
    write(root / "v1", 1)
    write(root / "v2", 2)
    return {"earlier": read(root / "v1"), "new": read(root / "v2")}


def outcome(root: Path, writer: str, versions: dict[str, str]) -> str:
    """The state after the fault, named; asserts it is a complete artifact (or, for training, a readable
    checkpoint or none yet)."""
    _, read = fault_writers.WRITERS[writer]
    try:
        state = read(root)
    except FileNotFoundError:
        assert writer == "training checkpoint", f"{writer}: nothing readable at the path after the fault"
        return "no checkpoint yet"
    if writer == "training checkpoint":
        assert state.startswith("step ") or state == versions["new"], state
        return f"checkpoint {state} intact" if state.startswith("step") else "new complete"
    for name, value in versions.items():
        if state == value:
            return f"{name} intact" if name == "earlier" else "new complete"
    raise AssertionError(f"{writer}: the path holds neither the earlier nor the new artifact: {state}")


def prepare(root: Path, writer: str) -> None:
    if writer != "training checkpoint":
        fault_writers.WRITERS[writer][0](root, 1)


def rerun_completes(root: Path, writer: str, versions: dict[str, str]) -> str:
    write, read = fault_writers.WRITERS[writer]
    write(root, 2)
    assert read(root) == versions["new"], f"{writer}: the rerun did not give the new artifact"
    assert leftovers(root) == [], f"{writer}: left behind {leftovers(root)}"
    return "rerun resumes" if writer == "training checkpoint" else "rerun rebuilds"


@pytest.mark.parametrize("writer", list(fault_writers.WRITERS))
def test_kill_9_at_every_point(tmp_path, writer, monkeypatch):
    torch.set_num_threads(1)
    versions = expected(tmp_path / "expected", writer)
    for op, n in points(tmp_path / "count", writer, monkeypatch):
        root = tmp_path / f"{op}{n}"
        prepare(root, writer)
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS.parent), str(TESTS)]), "OMP_NUM_THREADS": "1"}
        child = subprocess.run(
            [sys.executable, str(TESTS / "fault_writers.py"), writer, str(root), op, str(n)],
            env=env,
            capture_output=True,
            text=True,
        )
        assert child.returncode == -9, f"{writer} {op} #{n}: not killed ({child.returncode}): {child.stderr[-800:]}"
        state = outcome(root, writer, versions)
        TABLE.append((writer, f"SIGKILL at {op} #{n}", state, rerun_completes(root, writer, versions)))


@pytest.mark.parametrize("writer", list(fault_writers.WRITERS))
def test_full_disk_at_every_point(tmp_path, writer, monkeypatch):
    torch.set_num_threads(1)
    versions = expected(tmp_path / "expected", writer)

    def full():
        raise OSError(errno.ENOSPC, "No space left on device")

    for op, n in points(tmp_path / "count", writer, monkeypatch):
        root = tmp_path / f"{op}{n}"
        prepare(root, writer)
        with monkeypatch.context() as m:
            fault_writers.hook(op, n, full, m.setattr)
            with pytest.raises(OSError) as raised:
                fault_writers.WRITERS[writer][0](root, 2)
        failed_after = op == "fsync" and raised.value.errno != errno.ENOSPC  # never: ENOSPC must surface as such
        assert not failed_after and raised.value.errno == errno.ENOSPC
        clear = "no space left on device while writing" in str(raised.value)
        state = outcome(root, writer, versions)
        TABLE.append(
            (
                writer,
                f"ENOSPC at {op} #{n}",
                f"{state}{'' if clear else ' (raw error)'}",
                rerun_completes(root, writer, versions),
            )
        )


def teardown_module():
    if TABLE:
        width = max(len(w) for w, *_ in TABLE)
        print("\n\n| writer | fault point | after the fault | then |\n|---|---|---|---|")
        for row in sorted(TABLE, key=lambda r: r[0]):  # stable: each writer's points in the order run
            print(f"| {row[0]:<{width}} | " + " | ".join(row[1:]) + " |")
