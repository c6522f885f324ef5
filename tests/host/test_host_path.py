"""The host path as a user meets it, without the host: the dashboard finds the plugin's runs by default, a model
that cannot be loaded is named before the host starts, a freshly trained SAE is saved with its checksum, the bio
method says which layer it audits, and dashboard captions read as words."""

import inspect
import json
import textwrap
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf
from test_host_activation import make_fake_host, run_python

from cbd_plugin.host.cli import DASHBOARD_INFRASTRUCTURE, dashboard_arguments, plugin_storage
from cbd_plugin.methods.settings import ConfigError, ModelReference, check_models_available, model_references

# --- diffing-dashboard: the plugin's storage by default --------------------------------------------------------


@pytest.fixture
def runs(tmp_path, monkeypatch):
    monkeypatch.setenv("CBD_PLUGIN_RUNS", str(tmp_path / "runs"))
    return tmp_path / "runs"


def test_plain_dashboard_reads_the_plugin_storage_and_says_where(runs):
    arguments, line = dashboard_arguments([])
    assert arguments == ["--", f"infrastructure={DASHBOARD_INFRASTRUCTURE}"]
    assert f"reading runs under {runs / 'diffing_results'} (nothing there yet)" in line
    assert "-- infrastructure=<name>" in line
    (runs / "diffing_results").mkdir(parents=True)
    assert "nothing there yet" not in dashboard_arguments([])[1]


def test_dashboard_keeps_streamlit_options_and_other_overrides(runs):
    arguments, _ = dashboard_arguments(["--server.port", "8502", "--", "model=gemma2_2B"])
    assert arguments == ["--server.port", "8502", "--", "model=gemma2_2B", f"infrastructure={DASHBOARD_INFRASTRUCTURE}"]


@pytest.mark.parametrize("override", ["infrastructure=mats_cluster", "infrastructure.storage.base_dir=/data"])
def test_dashboard_with_an_infrastructure_override_is_left_alone(runs, override):
    arguments, line = dashboard_arguments(["--", override])
    assert arguments == ["--", override] and "given on the command line" in line


def test_plugin_storage_follows_tmpdir_without_cbd_plugin_runs(tmp_path, monkeypatch):
    monkeypatch.delenv("CBD_PLUGIN_RUNS", raising=False)
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    assert plugin_storage() == tmp_path / "cbd_plugin_runs"


# --- model ids checked before the host's constructor -----------------------------------------------------------


def run_config(base: str, finetuned: str | None = None, key: str = "model_id"):
    organism = {"name": "org", "finetuned_models": {"m": {"default": {key: finetuned}}}} if finetuned else {"name": "o"}
    return OmegaConf.create({"model": {"name": "m", "model_id": base}, "organism": organism})


def fake_hub_cache(root, repo: str, files: list[str]):
    """A model in huggingface_hub's cache layout (refs/main -> snapshots/<commit>/<files>)."""
    folder = root / f"models--{repo.replace('/', '--')}"
    (folder / "refs").mkdir(parents=True)
    (folder / "refs" / "main").write_text("0" * 40)
    for name in files:
        path = folder / "snapshots" / ("0" * 40) / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("{}")


@pytest.fixture
def hub_cache(tmp_path, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    return tmp_path / "hub"


def test_missing_base_model_offline_is_named_with_its_config_key(hub_cache):
    with pytest.raises(ConfigError) as err:
        check_models_available(run_config("google/gemma-2-2b-it"), offline=True)
    message = str(err.value)
    assert message.startswith("model.model_id=google/gemma-2-2b-it: not in the Hugging Face cache")
    assert str(hub_cache) in message and "\n" not in message


def test_offline_mode_is_read_from_the_environment(hub_cache, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # tests/conftest.py sets it too: nothing here may reach the hub
    with pytest.raises(ConfigError, match="offline"):
        check_models_available(run_config("google/gemma-2-2b"))


def test_missing_finetuned_model_names_the_organism_key(hub_cache):
    fake_hub_cache(hub_cache, "google/gemma-2-2b", ["config.json"])
    with pytest.raises(ConfigError, match=r"^organism\.finetuned_models\.m\.default\.model_id=me/gemma-ft: "):
        check_models_available(run_config("google/gemma-2-2b", "me/gemma-ft"), offline=True)


def test_cached_models_local_folders_and_adapters_pass(hub_cache, tmp_path):
    fake_hub_cache(hub_cache, "me/adapter", ["sub/adapter_config.json"])
    (tmp_path / "base").mkdir()
    (tmp_path / "base" / "config.json").write_text("{}")
    cfg = run_config(str(tmp_path / "base"), "me/adapter/sub", key="adapter_id")
    assert model_references(cfg)[1] == ModelReference(
        "organism.finetuned_models.m.default.adapter_id", "me/adapter", "sub", "adapter_config.json"
    )
    check_models_available(cfg, offline=True)


def test_local_folder_without_config_json_is_named(tmp_path, hub_cache):
    (tmp_path / "base").mkdir()
    with pytest.raises(ConfigError, match="has no config.json"):
        check_models_available(run_config(str(tmp_path / "base")), offline=True)


def test_model_auto_is_left_to_the_host():
    cfg = OmegaConf.create({"model": {"name": "auto", "model_id": "???"}, "organism": {"name": "o"}})
    assert model_references(cfg) == []


HOST_CONFIG = """
model: {name: m, model_id: google/gemma-2-2b-it}
organism: {name: o, finetuned_models: {m: {default: {model_id: google/gemma-2-2b-it}}}}
pipeline: {mode: full}
"""


def test_diffing_toolkit_exits_2_in_one_line_before_the_host_starts(tmp_path, hub_cache):
    src = make_fake_host(tmp_path / "host")
    (tmp_path / "host" / "configs" / "config.yaml").write_text(HOST_CONFIG)
    (tmp_path / "host" / "main.py").write_text("print('the host ran')\n")
    code = textwrap.dedent(f"""
        import os, sys
        os.environ["HF_HUB_CACHE"], os.environ["HF_HUB_OFFLINE"] = {str(hub_cache)!r}, "1"
        from cbd_plugin.host.cli import run_host
        sys.exit(run_host(["pipeline.mode=no_evaluation"]))
    """)
    result = run_python(code, src)
    assert result.returncode == 2 and "the host ran" not in result.stdout
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "diffing-toolkit: model.model_id=google/gemma-2-2b-it: not in the Hugging Face cache" in result.stderr


# --- the fork's trained SAE saved by the plugin's writer (sha256 recorded) ----------------------------------------


@pytest.fixture
def method_module():
    """The cbd method module, imported under the host stand-ins, which are removed again afterwards (a later test
    must not take them for an installed host)."""
    import sys

    from dashboard_fixtures import install_host_stub

    before = set(sys.modules)
    install_host_stub()
    from cbd_plugin.methods.cbd_sae_difference import method

    yield method
    for name in set(sys.modules) - before:
        if name == "diffing" or name.startswith(("diffing.", "cbd_plugin.methods.")):
            del sys.modules[name]


def test_fork_trained_sae_is_saved_with_its_checksum(tmp_path, method_module):
    from cbd_plugin.sae import BatchTopKSAE, Dictionary

    plugin_copy = method_module.plugin_copy

    trained = BatchTopKSAE(8, 16, k=3)  # the fork's class has the same parameter names and buffers
    with torch.no_grad():
        for p in trained.parameters():
            p.copy_(torch.randn_like(p))
    copy = plugin_copy(trained, tmp_path / "model_final.pt")
    copy.save_pretrained(tmp_path / "dictionary_model")
    config = json.loads((tmp_path / "dictionary_model" / "config.json").read_text())
    assert "model.safetensors" in config["sha256"]
    loaded = Dictionary.from_pretrained(tmp_path / "dictionary_model")
    x = torch.randn(5, 8)
    assert torch.equal(loaded.encode(x), trained.encode(x))


# --- dashboard text ---------------------------------------------------------------------------------------------


def test_p_values_read_as_words_not_a_dict():
    from cbd_plugin.methods.report_page import p_values_text

    assert p_values_text({"specificity": 0.005, "signal": 0.0125}) == "p = 0.005 (specificity), p = 0.013 (signal)"
    assert p_values_text(0.05) == "p = 0.050" and p_values_text(None) == "no p-value recorded"


def test_full_width_uses_stretch_where_streamlit_has_it():
    import streamlit as st

    from cbd_plugin.methods.report_page import full_width

    def old_dataframe(data=None, width=None, use_container_width=False):
        pass

    assert full_width(old_dataframe) == {"use_container_width": True}
    if inspect.signature(st.dataframe).parameters["width"].default == "stretch":
        assert full_width(st.dataframe) == {"width": "stretch"} and full_width(st.plotly_chart) == {"width": "stretch"}


def test_dashboard_default_finds_a_run_of_readmes_host_command(tmp_path, runs):
    """The run (``diffing-toolkit +experiment=cbd_tiny_cpu``) and the dashboard (plain ``diffing-dashboard``, which
    composes the host's config with its own model/organism/method choice and the arguments the launcher adds)
    resolve the same results folder, and the method's ``has_results`` scan finds the run there."""
    from hydra import compose, initialize_config_dir

    from cbd_plugin.host.cli import register_search_path_plugin
    from cbd_plugin.methods.results import scan_results

    configs = tmp_path / "configs"  # the host's root config, reduced to its groups and results folders
    configs.mkdir()
    (configs / "config.yaml").write_text(
        "defaults:\n  - organism: ???\n  - model: ???\n  - diffing/method: ???\n  - infrastructure: ???\n"
        "  - _self_\ndiffing:\n  results_base_dir: ${infrastructure.storage.base_dir}/diffing_results\n"
        "  results_dir: ${diffing.results_base_dir}/${model.name}/${organism.name}\n"
    )
    (configs / "diffing" / "method").mkdir(parents=True)
    (configs / "diffing" / "method" / "sae_difference.yaml").write_text(
        "# @package diffing.method\nname: sae_difference\ntraining:\n  k: 100\n"
    )
    register_search_path_plugin()
    dashboard_overrides = dashboard_arguments([])[0][1:]  # what follows "--"
    with initialize_config_dir(config_dir=str(configs), version_base=None):
        run = compose("config", overrides=["+experiment=cbd_tiny_cpu"])
        dashboard = compose(
            "config",
            overrides=[
                "model=tiny_gemma2_base",
                "organism=tiny_cbd",
                "diffing/method=cbd_sae_difference",
                *dashboard_overrides,
            ],
        )
    run_folder = Path(run.diffing.results_dir) / "cbd_sae_difference" / "layer_3" / "SAEdiff-run"
    run_folder.mkdir(parents=True)
    assert Path(dashboard.diffing.results_base_dir) == runs / "diffing_results"
    assert scan_results(dashboard.diffing.results_base_dir, "cbd_sae_difference") == {
        "tiny_gemma2_base": {"tiny_cbd": str(run_folder.parents[1])}
    }
