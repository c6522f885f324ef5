"""README.md is the contract with a new user: CI runs exactly its set-up and test commands, its install lines are
the right ones, and its Python examples run as written on the tiny organisms (slow)."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text()


def quick_start_commands() -> list[str]:
    section = README.split("## Quick start", 1)[1]
    block = re.search(r"```bash\n(.*?)```", section, re.S).group(1)
    return [line.strip() for line in block.splitlines() if line.strip()]


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README, re.S)


def test_quick_start_has_two_commands_an_install_and_the_tests():
    install, test = quick_start_commands()
    assert "pip install torch==2.13.0" in install and "editable_mode=strict" in install
    assert "pytest" in test


def test_ci_runs_the_readme_commands():
    install, test = quick_start_commands()
    ci = (REPO / ".ci" / "run").read_text()
    venv, pip_install = install.split(" && ")
    for command in (venv, test):
        assert command in ci, command
    assert pip_install.replace(".venv/bin/pip install", ".venv/bin/pip install --quiet") in ci


def test_install_lines_name_the_cpu_wheel_index_the_fork_and_uv():
    install = README.split("## Install", 1)[1].split("## Using it with the host", 1)[0]
    assert "pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu" in install
    assert "uv pip install -e /path/to/cbd-plugin --config-settings editable_mode=strict" in install
    # PyPI's dictionary-learning is another package: the host's fork comes from git.
    assert "git+https://github.com/science-of-finetuning/crosscoder_learning" in install


def test_readme_has_one_python_example_per_method():
    blocks = python_blocks()
    assert len(blocks) == 2
    assert "analyze_conjunction(" in blocks[0] and "audit_refusal_depth(" in blocks[1]
    for block in blocks:
        assert "load_dictionary(" in block and "load_language_model(" in block


@pytest.fixture(scope="module")
def tiny_organisms():
    """The organisms README's examples name (``cbd-plugin/tiny-...``), built or found in the test cache."""
    from cbd_plugin.organisms import build

    return build(["tiny-base", "tiny-cbd", "tiny-refusal-shallow"])


def run_python(code: str, cwd: Path) -> str:
    """Run ``code`` as a user would, in a fresh interpreter, with the environment tests/conftest.py set (the
    organisms' hub cache, offline)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-4000:]
    return done.stdout


@pytest.mark.slow
@pytest.mark.parametrize("index", [0, 1], ids=["conjunction", "refusal_depth"])
def test_readme_python_example_runs_and_prints_the_verdict_it_promises(index, tiny_organisms, tmp_path):
    block = python_blocks()[index]
    promised = re.search(r"print\(report\.verdict(?:\.name)?\)\s+# (\w+)", block).group(1)
    out_dir = re.search(r'out_dir="([^"]+)"', block).group(1)
    printed = run_python(block, tmp_path).splitlines()
    assert printed[0] == promised, printed
    assert (tmp_path / out_dir / "report.json").is_file()
