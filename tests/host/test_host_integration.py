"""Against the real diffing-toolkit host. Skipped, with the reason, where the host is not installed."""

import importlib.util
import os
import re
import subprocess
import sys

import pytest

from cbd_plugin.host.activation import HostNotFoundError, locate_host

try:
    HOST = locate_host()
except HostNotFoundError as exc:
    pytest.skip(f"diffing-toolkit host not available: {exc}", allow_module_level=True)

from cbd_plugin.methods.settings import ConfigError

pytestmark = pytest.mark.host
PLUGIN_METHODS = ("cbd_sae_difference", "contrastive_bio_sae")


@pytest.fixture(scope="module")
def host_modules():
    # Bind the host's function early, as its own modules do, before the plugin activates.
    import diffing.pipeline.diffing_pipeline as diffing_pipeline
    import diffing.pipeline.evaluation_pipeline as evaluation_pipeline

    from cbd_plugin.host.activation import activate

    activate()
    spec = importlib.util.spec_from_file_location("host_main", HOST.main_script)
    host_main = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(host_main)  # main.py binds get_method_class at import, like `python main.py`
    return [diffing_pipeline, evaluation_pipeline, host_main]


@pytest.mark.parametrize("method", PLUGIN_METHODS)
def test_every_early_bound_lookup_finds_plugin_methods(host_modules, method):
    from diffing.methods.diffing_method import DiffingMethod

    from cbd_plugin.host.registry import MethodRegistry

    expected = MethodRegistry().load(method)
    assert issubclass(expected, DiffingMethod)
    for module in host_modules:
        assert module.get_method_class(method) is expected, module.__name__


def test_builtin_names_still_resolve_to_host_classes(host_modules):
    from diffing.methods.sae_difference import SAEDifferenceMethod

    for module in host_modules:
        assert module.get_method_class("sae_difference") is SAEDifferenceMethod
        with pytest.raises(ValueError, match="Unknown method: not_a_method"):
            module.get_method_class("not_a_method")


def test_cbd_method_extends_the_host_sae_difference(host_modules):
    from diffing.methods.sae_difference import SAEDifferenceMethod

    assert issubclass(host_modules[0].get_method_class("cbd_sae_difference"), SAEDifferenceMethod)


def run_cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "TMPDIR": os.environ.get("TMPDIR", "/tmp"), "HYDRA_FULL_ERROR": "1"}
    return subprocess.run(
        [sys.executable, "-m", "cbd_plugin", *args], capture_output=True, text=True, env=env, timeout=300, cwd=HOST.root
    )


def test_cli_prints_merged_config_with_plugin_method():
    result = run_cli("--cfg", "job", "diffing/method=contrastive_bio_sae", "infrastructure=test")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "name: contrastive_bio_sae" in result.stdout
    assert "chat_dataset:" in result.stdout  # the host's own config.yaml is merged in


def test_cli_info_searchpath_lists_plugin_configs():
    result = run_cli("--info", "searchpath")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "pkg://cbd_plugin.method_configs" in result.stdout


def test_dashboard_lists_plugin_methods():
    pytest.importorskip("streamlit")
    from cbd_plugin.host import dashboard_app

    module = dashboard_app._load_host_dashboard(HOST)
    dashboard_app._extend_discovery(module, HOST)
    assert set(PLUGIN_METHODS) <= set(module.discover_methods())
    assert "sae_difference" in module.discover_methods()


def run_experiment(experiment: str, runs_dir, *overrides: str) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "TMPDIR": os.environ.get("TMPDIR", "/tmp"),
        "CBD_PLUGIN_RUNS": str(runs_dir),
        "HF_HUB_OFFLINE": "1",
        "HYDRA_FULL_ERROR": "1",
    }
    return subprocess.run(
        [sys.executable, "-m", "cbd_plugin", f"+experiment={experiment}", "pipeline.mode=no_evaluation", *overrides],
        capture_output=True,
        text=True,
        env=env,
        timeout=3000,
        cwd=HOST.root,
    )


def only_report(runs_dir, method: str, name: str) -> dict:
    import json

    reports = list((runs_dir / "diffing_results").glob(f"*/*/{method}/layer_*/*/{name}/report.json"))
    assert len(reports) == 1, reports
    return json.loads(reports[0].read_text())


@pytest.mark.slow
def test_cbd_sae_difference_end_to_end_on_the_tiny_conjunctive_organism(organisms, tmp_path):
    result = run_experiment("cbd_tiny_cpu", tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    report = only_report(tmp_path, "cbd_sae_difference", "conjunction")
    verdict = report["verdict"]
    assert verdict["behaviour"] == "pair_specific_conjunction", verdict["reason"]
    assert verdict["name"] in ("conjunctive", "inconclusive"), verdict["reason"]
    if verdict["name"] == "conjunctive":
        assert report["causal"]["before"]["fire_rate_matched"] >= 0.95 and report["causal"]["excess_drop"]["lo"] > 0


@pytest.mark.slow
def test_contrastive_bio_sae_end_to_end_on_the_tiny_shallow_organism(organisms, tmp_path):
    result = run_experiment("bio_tiny_cpu", tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    report = only_report(tmp_path, "contrastive_bio_sae", "audit")
    assert report["verdict"]["name"] == "shallow", report["verdict"]


CARD_COMMANDS = {
    "cbd_gemma2_4pair": (
        "diffing/method=cbd_sae_difference",
        "model=gemma2_2B_it",
        "organism=cbd_gemma2_4pair",
        "infrastructure=local_gpu",
        "diffing.method.pretrained_sae=Ftm23/cbd-sae-diff-gemma2-4pair",
    ),
    "gemma2_2B_instruction_tuning": (
        "diffing/method=contrastive_bio_sae",
        "model=gemma2_2B",
        "organism=gemma2_2B_instruction_tuning",
        "infrastructure=local_gpu",
        "diffing.method.pretrained_sae=Solshine/biorefusalaudit-gemma2-2b-bio-sae-wmdp:sae_weights.pt",
    ),
}


@pytest.mark.parametrize("card", sorted(CARD_COMMANDS))
def test_cfg_job_composes_each_real_card(card):
    result = run_cli("--cfg", "job", *CARD_COMMANDS[card])
    assert result.returncode == 0, result.stderr[-2000:]
    out = result.stdout
    if card == "cbd_gemma2_4pair":
        assert "model_id: google/gemma-2-2b-it" in out and "model_id: Ftm23/cbd-gemma2-4pair" in out
        assert "pretrained_sae: Ftm23/cbd-sae-diff-gemma2-4pair" in out and "k: 128" in out
    else:
        assert "model_id: google/gemma-2-2b\n" in out and "model_id: google/gemma-2-2b-it" in out
        assert "audit_layer: 12" in out and "preset: wmdp_mmlu_bio" in out and "dict_size: 6144" in out


def compose_host(*overrides: str):
    from hydra import compose, initialize_config_dir

    from cbd_plugin.host.cli import register_search_path_plugin

    register_search_path_plugin()
    with initialize_config_dir(config_dir=str(HOST.configs_dir), version_base=None):
        return compose("config", overrides=list(overrides))


def test_cbd_method_makes_the_host_cache_its_layers_before_preprocessing(host_modules, organisms, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    cfg = compose_host("+experiment=cbd_tiny_cpu", "preprocessing.layers=[0.5]")
    method = host_modules[0].get_method_class("cbd_sae_difference")(cfg)
    assert list(cfg.preprocessing.layers) == [0.5, 1.0] and method.layers == [3]
    assert method._base_model is None  # nothing loaded yet


def test_bio_method_without_prompts_fails_before_loading_a_model(host_modules, organisms, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    cfg = compose_host("+experiment=bio_tiny_cpu", "organism.prompt_set=null")
    with pytest.raises(ConfigError, match="diffing.method.prompts"):
        host_modules[0].get_method_class("contrastive_bio_sae")(cfg)


def test_conflicting_plugins_leave_host_builtins_and_our_methods_resolving(tmp_path):
    from plugin_fixtures import make_distribution

    make_distribution(tmp_path, "thirdparty-one", {"tp_dup": "x:Y"})
    make_distribution(tmp_path, "thirdparty-two", {"tp_dup": "x:Y"})
    make_distribution(tmp_path, "thirdparty-shadow", {"kl": "x:Y"})
    code = (
        "import warnings; warnings.simplefilter('ignore'); "
        "import diffing.pipeline.diffing_pipeline as dp; from cbd_plugin.host.activation import activate; activate(); "
        "from cbd_plugin.host.registry import DuplicateMethodError\n"
        "print(dp.get_method_class('kl').__name__, dp.get_method_class('cbd_sae_difference').__name__)\n"
        "try:\n    dp.get_method_class('tp_dup')\n"
        "except DuplicateMethodError as exc:\n    print('dup', 'thirdparty-two' in str(exc))"
    )
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split() == ["KLDivergenceDiffingMethod", "CBDSAEDifferenceMethod", "dup", "True"]


@pytest.mark.parametrize(
    "overrides, error, says",
    [
        # a model the cache lacks: named with its config key before the host's own checks or any load
        (("model=gemma2_2B",), ValueError, "model.model_id=google/gemma-2-2b: not in the Hugging Face cache"),
        (("diffing.method.pretrained_sae=/nonexistent/sae",), ConfigError, "diffing.method.pretrained_sae"),
        (("diffing.method.layers=[3]",), ConfigError, "diffing.method.layers"),
    ],
)
def test_cbd_config_errors_raise_before_any_model_loads(host_modules, organisms, monkeypatch, overrides, error, says):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    cfg = compose_host("+experiment=cbd_tiny_cpu", *overrides)
    with pytest.raises(error, match=re.escape(says)):
        host_modules[0].get_method_class("cbd_sae_difference")(cfg)
