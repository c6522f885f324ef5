"""The entry-point registry, tested against real (throwaway) distributions on sys.path."""

import json
import subprocess
import sys

import pytest
from plugin_fixtures import activate_path, make_distribution

from cbd_plugin.host.registry import (
    DuplicateMethodError,
    MethodRegistry,
    PluginLoadError,
    PluginWarning,
    ShadowedMethodError,
    UnknownMethodError,
    config_dirs,
    config_search_paths,
)

GOOD_MODULE = {"thirdparty_good": "class GoodMethod:\n    pass\n"}


def test_project_methods_listed_without_importing_them():
    # A fresh interpreter: other tests of the session may have imported the method modules already.
    code = (
        "import json, sys; from cbd_plugin.host.registry import MethodRegistry; names = MethodRegistry().names(); "
        "imported = [m for m in sys.modules if m.startswith('cbd_plugin.methods.') or m == 'diffing']; "
        "print(json.dumps([names, imported]))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    names, imported = json.loads(out)
    assert {"cbd_sae_difference", "contrastive_bio_sae"} <= set(names)
    assert imported == []


def test_third_party_method_loads_its_class(tmp_path, monkeypatch):
    make_distribution(tmp_path, "thirdparty-good", {"tp_good": "thirdparty_good:GoodMethod"}, GOOD_MODULE)
    activate_path(monkeypatch, tmp_path)
    registry = MethodRegistry()
    assert "tp_good" in registry.names()
    assert "thirdparty_good" not in sys.modules  # listing imports nothing
    cls = registry.load("tp_good")
    assert cls.__name__ == "GoodMethod" and cls.__module__ == "thirdparty_good"


def test_broken_plugin_names_entry_point_target_and_distribution(tmp_path, monkeypatch):
    broken = {"thirdparty_broken": "raise RuntimeError('boom at import')\n"}
    make_distribution(tmp_path, "thirdparty-broken", {"tp_broken": "thirdparty_broken:Method"}, broken)
    activate_path(monkeypatch, tmp_path)
    with pytest.raises(PluginLoadError) as info:
        MethodRegistry().load("tp_broken")
    message = str(info.value)
    assert "'tp_broken'" in message and "thirdparty_broken:Method" in message and "thirdparty-broken 1.0" in message
    assert isinstance(info.value.__cause__, RuntimeError) and "boom at import" in str(info.value.__cause__)


def test_entry_point_to_non_class_is_an_error(tmp_path, monkeypatch):
    make_distribution(
        tmp_path, "thirdparty-func", {"tp_func": "thirdparty_func:make"}, {"thirdparty_func": "def make():\n    pass\n"}
    )
    activate_path(monkeypatch, tmp_path)
    with pytest.raises(PluginLoadError, match="not a class"):
        MethodRegistry().load("tp_func")


def test_same_name_from_two_distributions_fails_only_that_name(tmp_path, monkeypatch):
    make_distribution(
        tmp_path,
        "thirdparty-one",
        {"tp_dup": "thirdparty_good:GoodMethod", "tp_good": "thirdparty_good:GoodMethod"},
        GOOD_MODULE,
    )
    make_distribution(tmp_path, "thirdparty-two", {"tp_dup": "thirdparty_good:GoodMethod"})
    activate_path(monkeypatch, tmp_path)
    registry = MethodRegistry()
    with pytest.raises(
        DuplicateMethodError,
        match=r"'tp_dup' is registered twice.*thirdparty-(one|two) 1\.0.*thirdparty-(one|two) 1\.0",
    ):
        registry.load("tp_dup")
    assert "tp_dup" not in registry.names()
    # Every other name keeps resolving: the other plugin's and ours.
    assert registry.load("tp_good").__name__ == "GoodMethod"
    assert {"cbd_sae_difference", "contrastive_bio_sae", "tp_good"} <= set(registry.names())


def test_plugin_shadowing_a_host_builtin_is_ignored_with_a_warning(tmp_path, monkeypatch):
    make_distribution(tmp_path, "thirdparty-shadow", {"sae_difference": "thirdparty_good:GoodMethod"}, GOOD_MODULE)
    activate_path(monkeypatch, tmp_path)
    registry = MethodRegistry()
    with pytest.warns(
        PluginWarning, match=r"thirdparty-shadow 1.0'\) shadows the host's built-in method 'sae_difference'"
    ):
        names = registry.names()
    assert "sae_difference" not in names and {"cbd_sae_difference", "contrastive_bio_sae"} <= set(names)
    with pytest.raises(ShadowedMethodError, match="shadows the host's built-in method 'sae_difference'"):
        registry.load("sae_difference")


def test_unreadable_entry_point_metadata_skips_only_that_distribution(tmp_path, monkeypatch):
    # importlib.metadata.entry_points() itself raises TypeError on such a file: read distribution by distribution.
    make_distribution(tmp_path, "thirdparty-malformed", {})
    info = tmp_path / "thirdparty_malformed-1.0.dist-info"
    (info / "entry_points.txt").write_text("[diffing_toolkit.methods]\nthis line has no equals sign\n")
    activate_path(monkeypatch, tmp_path)
    with pytest.warns(PluginWarning, match=r"thirdparty_malformed-1.0.dist-info.*TypeError"):
        names = MethodRegistry().names()
    assert {"cbd_sae_difference", "contrastive_bio_sae"} <= set(names)


def test_broken_plugin_does_not_affect_other_names(tmp_path, monkeypatch):
    broken = {"thirdparty_broken": "raise RuntimeError('boom at import')\n", **GOOD_MODULE}
    make_distribution(
        tmp_path,
        "thirdparty-broken",
        {"tp_broken": "thirdparty_broken:Method", "tp_good": "thirdparty_good:GoodMethod"},
        broken,
    )
    activate_path(monkeypatch, tmp_path)
    registry = MethodRegistry()
    with pytest.raises(PluginLoadError):
        registry.load("tp_broken")
    assert registry.load("tp_good").__name__ == "GoodMethod"
    assert {"cbd_sae_difference", "contrastive_bio_sae", "tp_broken", "tp_good"} <= set(registry.names())


def test_broken_config_package_is_skipped_with_a_warning(tmp_path, monkeypatch):
    make_distribution(tmp_path, "thirdparty-cfg", {})
    info = tmp_path / "thirdparty_cfg-1.0.dist-info"
    (info / "entry_points.txt").write_text("[diffing_toolkit.configs]\ntp_cfg = thirdparty_missing.configs\n")
    activate_path(monkeypatch, tmp_path)
    with pytest.warns(PluginWarning, match=r"'tp_cfg'.*thirdparty-cfg 1.0.*No module named 'thirdparty_missing'"):
        dirs = config_dirs()
    assert any((d / "diffing" / "method" / "cbd_sae_difference.yaml").exists() for d in dirs)


def test_unknown_name_lists_installed_methods():
    with pytest.raises(UnknownMethodError, match="no plugin registers diffing method 'nope'.*contrastive_bio_sae"):
        MethodRegistry().load("nope")


def test_config_package_is_declared_and_ships_the_yaml():
    assert ("diffing-plugin:cbd_plugin", "pkg://cbd_plugin.method_configs") in config_search_paths()
    shipped = {p.name for d in config_dirs() for p in (d / "diffing" / "method").glob("*.yaml")}
    assert {"cbd_sae_difference.yaml", "contrastive_bio_sae.yaml"} <= shipped
