"""README.md is the contract with a new user: CI must run exactly its set-up and test commands."""

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def quick_start_commands() -> list[str]:
    readme = (REPO / "README.md").read_text()
    section = readme.split("## Quick start", 1)[1]
    block = re.search(r"```bash\n(.*?)```", section, re.S).group(1)
    return [line.strip() for line in block.splitlines() if line.strip()]


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
