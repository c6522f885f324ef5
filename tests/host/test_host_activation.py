"""Plugin activation and the ``diffing-toolkit`` command, against a fake host layout (no real host needed).

The fake host reproduces what matters of the real one: ``get_method_class`` as an if/elif chain in
``diffing.pipeline.diffing_pipeline``, a module that binds it early, and a clone layout with ``configs/`` and
``main.py``. Tests against the real host are in ``test_host_integration.py``.
"""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from plugin_fixtures import make_distribution

FAKE_PIPELINE = """
class HostKL:
    pass

def get_method_class(method_name):
    if method_name == "kl":
        return HostKL
    raise ValueError(f"Unknown method: {method_name}")
"""

FAKE_MAIN = """
import sys
from diffing.pipeline.diffing_pipeline import get_method_class
from diffing.pipeline.evaluation_pipeline import get_method_class as early_bound
for name in sys.argv[1:]:
    print(name, get_method_class(name).__name__, early_bound(name).__name__)
"""


def make_fake_host(root: Path, with_configs: bool = True, patched_upstream: bool = False) -> Path:
    pkg = root / "src" / "diffing" / "pipeline"
    pkg.mkdir(parents=True)
    (root / "src" / "diffing" / "__init__.py").write_text("")
    (pkg / "__init__.py").write_text("")
    extra = 'METHOD_ENTRY_POINT_GROUP = "diffing_toolkit.methods"\n' if patched_upstream else ""
    (pkg / "diffing_pipeline.py").write_text(FAKE_PIPELINE + extra)
    (pkg / "evaluation_pipeline.py").write_text("from .diffing_pipeline import get_method_class\n")
    if with_configs:
        (root / "configs").mkdir()
        (root / "configs" / "config.yaml").write_text("seed: 0\n")
        (root / "main.py").write_text(FAKE_MAIN)
    return root / "src"


def run_python(code: str, *paths: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(map(str, paths))}
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], env=env, capture_output=True, text=True, timeout=120
    )


@pytest.fixture
def third_party(tmp_path):
    root = tmp_path / "site"
    root.mkdir()
    make_distribution(
        root,
        "thirdparty-good",
        {"tp_good": "thirdparty_good:GoodMethod"},
        {"thirdparty_good": "class GoodMethod:\n    pass\n"},
    )
    return root


def test_activation_patches_every_early_binding(tmp_path, third_party):
    src = make_fake_host(tmp_path / "host")
    result = run_python(
        """
        import diffing.pipeline.evaluation_pipeline as ev
        import diffing.pipeline.diffing_pipeline as dp
        from cbd_plugin.host.activation import activate
        assert activate() is True
        assert activate() is False  # idempotent
        print(dp.get_method_class("tp_good").__name__, ev.get_method_class("tp_good").__name__)
        print(dp.get_method_class("kl").__name__)
        try:
            dp.get_method_class("nope")
        except ValueError as exc:
            print(exc)
    """,
        src,
        third_party,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["GoodMethod GoodMethod", "HostKL", "Unknown method: nope"]


def test_conflicting_plugins_fail_only_their_names_through_the_host(tmp_path, third_party):
    """Two distributions declaring one name and a plugin shadowing `kl`: the host's built-ins, our methods and
    the other plugin's method keep resolving through every early-bound lookup; only the duplicate name fails."""
    make_distribution(third_party, "thirdparty-dup-one", {"tp_dup": "thirdparty_good:GoodMethod"})
    make_distribution(third_party, "thirdparty-dup-two", {"tp_dup": "thirdparty_good:GoodMethod"})
    make_distribution(third_party, "thirdparty-shadow", {"kl": "thirdparty_good:GoodMethod"})
    src = make_fake_host(tmp_path / "host")
    result = run_python(
        """
        import warnings
        warnings.simplefilter("ignore")
        import diffing.pipeline.evaluation_pipeline as ev
        from cbd_plugin.host.activation import activate
        from cbd_plugin.host.registry import DuplicateMethodError, MethodRegistry
        activate()
        print(ev.get_method_class("kl").__name__, ev.get_method_class("tp_good").__name__)
        print(sorted({"cbd_sae_difference", "contrastive_bio_sae"} & set(MethodRegistry().names())))
        try:
            ev.get_method_class("tp_dup")
        except DuplicateMethodError as exc:
            print("DuplicateMethodError", "thirdparty-dup-one 1.0" in str(exc), "thirdparty-dup-two 1.0" in str(exc))
    """,
        src,
        third_party,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "HostKL GoodMethod",
        "['cbd_sae_difference', 'contrastive_bio_sae']",
        "DuplicateMethodError True True",
    ]


def test_host_with_upstream_patch_is_left_alone(tmp_path, third_party):
    src = make_fake_host(tmp_path / "host", patched_upstream=True)
    result = run_python(
        """
        import diffing.pipeline.diffing_pipeline as dp
        original = dp.get_method_class
        from cbd_plugin.host.activation import activate
        print(activate(), dp.get_method_class is original)
    """,
        src,
        third_party,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["False", "True"]


def test_cli_runs_host_main_with_plugins_active(tmp_path, third_party):
    src = make_fake_host(tmp_path / "host")
    result = run_python(
        """
        import sys
        from cbd_plugin.host.cli import run_host
        sys.exit(run_host(["tp_good", "kl"]))
    """,
        src,
        third_party,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["tp_good GoodMethod GoodMethod", "kl HostKL HostKL"]


HIDE_HOST = """
import sys
class HideHost:
    def find_spec(self, name, path=None, target=None):
        if name == "diffing" or name.startswith("diffing."):
            raise ModuleNotFoundError(name)
sys.meta_path.insert(0, HideHost())
"""


def test_cli_without_host_says_what_to_install():
    result = run_python(HIDE_HOST + "from cbd_plugin.host.cli import run_host; sys.exit(run_host(['--info']))")
    assert result.returncode == 2
    assert result.stdout == ""
    assert len(result.stderr.strip().splitlines()) == 1
    assert (
        "host (package `diffing`) is not installed" in result.stderr
        and "pip install -e diffing-toolkit" in result.stderr
    )


def test_cli_with_non_editable_host_names_the_missing_configs(tmp_path):
    src = make_fake_host(tmp_path / "host", with_configs=False)
    result = run_python("import sys; from cbd_plugin.host.cli import run_host; sys.exit(run_host([]))", src)
    assert result.returncode == 2
    assert "non-editable install" in result.stderr and str(tmp_path / "host" / "configs") in result.stderr
