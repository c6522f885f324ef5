"""``examples/``: each script runs with its defaults on the tiny organisms and prints the verdict those organisms
are built to give (slow: each trains a small SAE, then runs its analysis)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


@pytest.fixture(scope="module")
def tiny_organisms():
    from cbd_plugin.organisms import build

    return build(["tiny-base", "tiny-cbd", "tiny-refusal-shallow"])


@pytest.mark.slow
@pytest.mark.parametrize(
    "script, verdict, report", [("conjunction.py", "conjunctive", "report"), ("refusal_depth.py", "shallow", "audit")]
)
def test_example_prints_the_organisms_verdict(script, verdict, report, tiny_organisms, tmp_path):
    # The environment tests/conftest.py set: the organisms' hub cache, offline.
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / script), "--out", str(tmp_path)],
        cwd=tmp_path,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    assert done.stdout.splitlines()[0] == f"verdict: {verdict}", done.stdout
    assert (tmp_path / report / "report.json").is_file()


@pytest.mark.parametrize("script", ["conjunction.py", "refusal_depth.py"])
def test_example_help_names_its_arguments(script):
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / script), "--help"], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    for argument in ("--base", "--finetuned", "--sae", "--layer", "--out"):
        assert argument in done.stdout
