"""Bad inputs a GPU user can give the host glue, one row each: the error type, and that the message names the
config key / file / plugin to fix. All raised by checks that run before any model or dataset loads."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from cbd_plugin.methods import settings
from cbd_plugin.methods.settings import ConfigError

REPO = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Case:
    name: str
    run: Callable[[Path], object]  # given a fresh tmp folder, does the bad thing
    error: type[BaseException]
    says: tuple[str, ...]  # every one of these must be in the message


# Minimal method blocks (the dataclasses' defaults fill the rest), so the table tests the checks, not the
# shipped YAML (tests/host/test_configs.py checks that the shipped blocks build).
CONJUNCTION = {"templates": ["Tell me about {a} and {b}."], "filler_words": ["river"]}


def composed(method: dict, organism: dict, **changes):
    """A composed config as the host hands it to a method, with ``changes`` (dotted keys) applied."""
    cfg = OmegaConf.create({"preprocessing": {"layers": [0.5]}, "organism": organism, "diffing": {"method": method}})
    for key, value in changes.items():
        OmegaConf.update(cfg, key, value, merge=False)
    return cfg


def cbd_cfg(**changes):
    organism = OmegaConf.load(REPO / "method_configs" / "organism" / "cbd_gemma2_4pair.yaml")
    method = {"name": "cbd_sae_difference", "layers": [0.52, 0.96], "conjunction": CONJUNCTION}
    return composed(method, organism, **changes)


def bio_cfg(**changes):
    return composed({"name": "contrastive_bio_sae", "layer": 12, "prompts": None}, {"name": "some_organism"}, **changes)


def tiny_sae(folder: Path, d: int = 16) -> Path:
    from cbd_plugin.sae import TopKSAE

    TopKSAE(activation_dim=d, dict_size=32, k=4).save_pretrained(folder)
    return folder


def two_layer_request(tmp: Path):
    folder = tiny_sae(tmp / "one_sae")
    saes = {layer: settings.load_pretrained_sae(str(folder), layer, 16) for layer in (13, 24)}
    settings.check_one_sae_per_layer(saes, str(folder))


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


CASES = [
    # Layers the host must cache (cbd_sae_difference)
    Case(
        "layer written as an index",
        lambda t: settings.ensure_cached_layers(cbd_cfg(**{"diffing.method.layers": [13, 24]}), 26),
        ConfigError,
        ("diffing.method.layers", "13", "0.52"),
    ),
    Case(
        "layer fraction above 1",
        lambda t: settings.ensure_cached_layers(cbd_cfg(**{"diffing.method.layers": [1.5]}), 26),
        ConfigError,
        ("diffing.method.layers", "1.5"),
    ),
    Case(
        "layer given as a string",
        lambda t: settings.ensure_cached_layers(cbd_cfg(**{"diffing.method.layers": ["half"]}), 26),
        ConfigError,
        ("diffing.method.layers", "'half'"),
    ),
    Case(
        "organism's preprocessing override misses the method's layers",
        lambda t: settings.ensure_cached_layers(cbd_cfg(**{"organism.preprocessing_overrides": {"layers": [0.5]}}), 26),
        ConfigError,
        ("organism.preprocessing_overrides.layers", "[13, 24]", "[12]"),
    ),
    Case(
        "preprocessing layer not a fraction",
        lambda t: settings.ensure_cached_layers(cbd_cfg(**{"preprocessing.layers": [12]}), 26),
        ConfigError,
        ("preprocessing.layers", "12"),
    ),
    # Organism (cbd_sae_difference)
    Case(
        "organism without trigger pairs",
        lambda t: settings.trigger_pairs(cbd_cfg(**{"organism.trigger_pairs": None})),
        ConfigError,
        ("cbd_gemma2_4pair", "trigger_pairs"),
    ),
    Case(
        "trigger pair without its 2x2 cell",
        lambda t: settings.trigger_pairs(
            cbd_cfg(**{"organism.trigger_pairs": [{"a": "x", "b": "y", "related": True}]})
        ),
        ConfigError,
        ("organism.trigger_pairs[0]", "charged"),
    ),
    Case(
        "organism probe with an unknown key",
        lambda t: settings.conjunction_config(cbd_cfg(**{"organism.probe": {"templatez": ["{a} {b}"]}})),
        ConfigError,
        ("organism.probe", "templatez"),
    ),
    Case(
        "conjunction block with an unknown key",
        lambda t: settings.conjunction_config(cbd_cfg(**{"diffing.method.conjunction.n_topp": 3})),
        ConfigError,
        ("diffing.method.conjunction", "n_topp"),
    ),
    # Prompt set (contrastive_bio_sae)
    Case(
        "no prompt set", lambda t: settings.prompt_source(bio_cfg()), ConfigError, ("diffing.method.prompts", "preset")
    ),
    Case(
        "prompt file that does not exist",
        lambda t: settings.prompt_source(bio_cfg(**{"diffing.method.prompts": str(t / "nope.jsonl")})),
        ConfigError,
        ("diffing.method.prompts", "nope.jsonl", "does not exist"),
    ),
    Case(
        "prompt set naming two kinds of source",
        lambda t: settings.prompt_source(
            bio_cfg(**{"diffing.method.prompts": {"path": "x.jsonl", "dataset": "owner/name"}})
        ),
        ConfigError,
        ("diffing.method.prompts", "exactly one of"),
    ),
    Case(
        "organism prompt file that does not exist",
        lambda t: settings.prompt_source(bio_cfg(**{"organism.prompt_set": str(t / "gone.jsonl")})),
        ConfigError,
        ("organism.prompt_set", "gone.jsonl"),
    ),
    Case(
        "prompt set with an unknown key",
        lambda t: settings.prompt_source(bio_cfg(**{"diffing.method.prompts": {"paht": "x.jsonl"}})),
        ConfigError,
        ("diffing.method.prompts", "paht"),
    ),
    Case(
        "unknown preset",
        lambda t: settings.prompt_source(bio_cfg(**{"diffing.method.prompts": {"preset": "wmdp_chem"}})),
        ConfigError,
        ("diffing.method.prompts", "wmdp_chem", "wmdp_mmlu_bio"),
    ),
    Case(
        "preset and a path together",
        lambda t: settings.prompt_source(
            bio_cfg(**{"diffing.method.prompts": {"preset": "wmdp_mmlu_bio", "path": "y"}})
        ),
        ConfigError,
        ("diffing.method.prompts", "exactly one of"),
    ),
    # Audit layer (contrastive_bio_sae)
    Case(
        "audit layer past the last layer",
        lambda t: settings.audit_layer(26, 26, "organism.audit_layer"),
        ConfigError,
        ("organism.audit_layer=26", "26-layer"),
    ),
    Case(
        "audit layer as a fraction above 1",
        lambda t: settings.audit_layer(1.5, 26, "diffing.method.layer"),
        ConfigError,
        ("diffing.method.layer=1.5",),
    ),
    Case(
        "audit layer as a string",
        lambda t: settings.audit_layer("12", 26, "diffing.method.layer"),
        ConfigError,
        ("diffing.method.layer='12'",),
    ),
    # Pretrained SAE (both methods)
    Case(
        "pretrained SAE path that does not exist",
        lambda t: settings.load_pretrained_sae(str(t / "no_such_sae"), 13, 16),
        ConfigError,
        ("diffing.method.pretrained_sae", "no_such_sae"),
    ),
    Case(
        "pretrained SAE folder in no known format",
        lambda t: settings.load_pretrained_sae(str(write(t / "odd" / "weights.bin", "x").parent), 13, 16),
        ConfigError,
        ("diffing.method.pretrained_sae", "odd"),
    ),
    Case(
        "pretrained SAE for another model width",
        lambda t: settings.load_pretrained_sae(str(tiny_sae(t / "sae16")), 13, 2304),
        ConfigError,
        ("diffing.method.pretrained_sae", "2304", "16"),
    ),
    Case(
        "one SAE folder for two layers",
        two_layer_request,
        ConfigError,
        ("diffing.method.pretrained_sae", "layers 13 and 24", "layer_{L}"),
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_config_is_refused_naming_the_key(tmp_path, case):
    with pytest.raises(case.error) as info:
        case.run(tmp_path)
    for text in case.says:
        assert text in str(info.value), (text, str(info.value))


@dataclass(frozen=True)
class BlockCase:
    block: str
    override: dict
    says: str


BLOCK_CASES = [
    BlockCase("sae", {"k": 3.5}, "k"),
    BlockCase("sae", {"temperature": 0.0}, "temperature"),
    BlockCase("sae", {"contrastive_weight": -0.1}, "contrastive_weight"),
    BlockCase("sae", {"dict_sise": 128}, "dict_sise"),
    BlockCase("audit", {"n_boot": -1}, "n_boot"),
    BlockCase("audit", {"threshold_quantile": 1.5}, "threshold_quantile"),
    BlockCase("audit", {"positions": "middle"}, "positions"),
    BlockCase("conjunction", {"selection_fraction": 1.5}, "selection_fraction"),
    BlockCase("conjunction", {"n_top": -1}, "n_top"),
    BlockCase("conjunction", {"templates": ["no slots here"]}, "no slots here"),
]


@pytest.mark.parametrize("case", BLOCK_CASES, ids=[f"{c.block}.{next(iter(c.override))}" for c in BLOCK_CASES])
def test_bad_method_block_value_is_refused_before_any_model_loads(case):
    from cbd_plugin.host.configstore import validate_method_config

    method = OmegaConf.create({case.block: {**(CONJUNCTION if case.block == "conjunction" else {}), **case.override}})
    with pytest.raises((ValueError, KeyError, TypeError)) as info:
        validate_method_config(method)
    message = str(info.value)
    assert f"diffing.method.{case.block}" in message and case.says in message, message


def test_cli_without_host_exits_2_with_one_line(monkeypatch, capsys):
    from cbd_plugin.host import activation as host
    from cbd_plugin.host import cli

    def missing():
        raise host.HostNotFoundError("the diffing-toolkit host (package `diffing`) is not installed: install it")

    monkeypatch.setattr(cli, "locate_host", missing)
    assert cli.run_host(["--cfg", "job"]) == 2 and cli.run_dashboard([]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and all("is not installed" in line for line in err)


def test_table_size():
    """The table is the contract: keep it growing, never shrinking."""
    assert len(CASES) + len(BLOCK_CASES) >= 30
    assert len({c.name for c in CASES}) == len(CASES)
