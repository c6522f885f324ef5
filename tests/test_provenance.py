"""The ``provenance`` block of both methods' ``report.json``, on the tiny organisms loaded by their hub ids."""

import hashlib
import json
import subprocess
from dataclasses import asdict, replace
from pathlib import Path

import nnsight
import pandas as pd
import pytest
import torch
from huggingface_hub import constants

from cbd_plugin import __version__, provenance
from cbd_plugin.backdoor import analyze_conjunction
from cbd_plugin.backdoor.probes import build_probe_set
from cbd_plugin.capture import load_language_model
from cbd_plugin.demo import conjunction_config
from cbd_plugin.organisms.recipes import RECIPES
from cbd_plugin.provenance import model_provenance, plugin_provenance, prompt_set_provenance, resolve_revision
from cbd_plugin.refusal import AuditConfig, audit_refusal_depth
from cbd_plugin.sae import TopKSAE, load_dictionary
from cbd_plugin.sae.export import reads

LAYER = 1


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def main_revision(name: str) -> str:
    """What the hub cache's ``refs/main`` of ``cbd-plugin/<name>`` names: the snapshot folder's name."""
    return (Path(constants.HF_HUB_CACHE) / f"models--cbd-plugin--{name}" / "refs" / "main").read_text().strip()


@pytest.fixture(scope="module")
def organisms():
    from cbd_plugin.organisms import build

    return build(["tiny-base", "tiny-cbd", "tiny-refusal-shallow"])


@pytest.fixture(scope="module")
def by_id(organisms):
    """The organisms loaded by hub id, as a user would: ``cbd-plugin/<name>`` resolves through the hub cache."""
    return {name: load_language_model(f"cbd-plugin/{name}") for name in organisms}


@pytest.fixture(scope="module")
def saved_sae(by_id, tmp_path_factory):
    """A TopK SAE saved as a plugin folder (it records what it reads) and loaded back by path."""
    folder = tmp_path_factory.mktemp("sae") / "layer_1"
    d = by_id["tiny-base"].config.hidden_size
    sae = TopKSAE(d, 2 * d, 8, generator=torch.Generator().manual_seed(0))
    sae.metadata = reads("cbd-plugin/tiny-cbd", LAYER, base_model_name="cbd-plugin/tiny-base")
    sae.save_pretrained(folder)
    return folder, load_dictionary(folder)


def check_common(block: dict, cfg, sae_folder: Path) -> None:
    assert block["seeds"] == {"seed": cfg.seed}
    assert block["config"] == json.loads(json.dumps(asdict(cfg)))
    assert block["packages"]["torch"] == torch.__version__
    assert set(provenance.PACKAGES) <= set(block["packages"])
    assert block["plugin"]["version"] == __version__
    sae = block["sae"]
    assert sae["weights_file"] == str(sae_folder / "model.safetensors")
    assert sae["weights_sha256"] == sha256(sae_folder / "model.safetensors")
    assert sae["state_sha256"] is None and sae["dict_class"] == "TopKSAE"
    assert sae["metadata"]["hook_name"] == f"blocks.{LAYER}.hook_resid_post" and sae["metadata"]["layer"] == LAYER


def test_hub_ids_resolve_to_the_cache_snapshot(organisms, by_id):
    for name, model in by_id.items():
        block = model_provenance(model)
        assert block["id"] == block["hub_id"] == f"cbd-plugin/{name}"
        assert block["revision"] == main_revision(name) == organisms[name].path.name
        assert block["revision_kind"] == "hub cache snapshot"
        assert (block["dtype"], block["device_map"], block["class"]) == ("float32", {"": "cpu"}, "Gemma2ForCausalLM")
    # The snapshot folder given as a local path resolves to the same revision.
    by_path = model_provenance(load_language_model(str(organisms["tiny-cbd"].path)))
    assert (by_path["hub_id"], by_path["revision"]) == ("cbd-plugin/tiny-cbd", main_revision("tiny-cbd"))


def test_local_folder_revision_is_the_sha256_of_its_weight_files(organisms, tmp_path):
    folder = tmp_path / "my-model"
    folder.mkdir()
    for name in ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"):
        (folder / name).write_bytes((organisms["tiny-base"].path / name).read_bytes())
    block = model_provenance(load_language_model(str(folder), dtype=torch.bfloat16))
    expected = hashlib.sha256(f"model.safetensors:{sha256(folder / 'model.safetensors')}".encode()).hexdigest()
    assert (block["id"], block["hub_id"], block["revision"]) == (str(folder), None, expected)
    assert block["revision_kind"] == "sha256 of the folder's weight files" and block["dtype"] == "bfloat16"
    # A model built in memory has no id and no revision, and says so.
    loaded = load_language_model(str(folder))
    hf = loaded._model
    hf.config._name_or_path = hf.name_or_path = ""
    in_memory = model_provenance(nnsight.LanguageModel(hf, tokenizer=loaded.tokenizer))
    assert (in_memory["id"], in_memory["revision"], in_memory["revision_kind"]) == (
        None,
        None,
        "in-memory model (no id)",
    )
    assert resolve_revision("nobody/not-cached")["revision_kind"].startswith("requested (not found")


def test_plugin_commit_from_the_checkout_and_none_without_git(monkeypatch):
    package = Path(provenance.__file__).parent
    top = subprocess.run(
        ["git", "-C", str(package), "rev-parse", "--show-toplevel"], capture_output=True, text=True, check=False
    )
    block = plugin_provenance()
    if top.returncode == 0 and Path(top.stdout.strip()).resolve() == package.parent.resolve():
        head = subprocess.run(
            ["git", "-C", str(package), "rev-parse", "HEAD"], capture_output=True, text=True, check=False
        )
        assert block["git_commit"] == head.stdout.strip() and isinstance(block["git_dirty"], bool)
    plugin_provenance.cache_clear()
    monkeypatch.setenv("PATH", "/nonexistent")  # no git executable: unknown, not a failure
    try:
        assert plugin_provenance()["git_commit"] is None and plugin_provenance()["version"] == __version__
    finally:
        plugin_provenance.cache_clear()


def test_conjunction_report_json_carries_provenance(by_id, saved_sae, tmp_path):
    folder, sae = saved_sae
    pairs = RECIPES["tiny-cbd"].pairs
    cfg = replace(
        conjunction_config(), n_per_cell=4, n_clean=8, n_boot=20, n_permutations=19, ablate=False, plots=False
    )
    analyze_conjunction(
        by_id["tiny-base"], by_id["tiny-cbd"], sae, by_id["tiny-base"].tokenizer, pairs, LAYER, cfg, tmp_path
    )
    block = json.loads((tmp_path / "report.json").read_text())["provenance"]
    models = block["models"]
    assert {r: (m["id"], m["revision"]) for r, m in models.items()} == {
        "base": ("cbd-plugin/tiny-base", main_revision("tiny-base")),
        "finetuned": ("cbd-plugin/tiny-cbd", main_revision("tiny-cbd")),
    }
    check_common(block, cfg, folder)
    probes = build_probe_set(
        list(pairs),
        list(cfg.templates),
        list(cfg.filler_words),
        cfg.n_per_cell,
        cfg.n_clean,
        cfg.seed,
        cfg.selection_fraction,
    )
    rows = [
        {"text": p.text, "condition": p.condition, "pair": p.pair, "other_pair": p.other_pair, "split": p.split}
        for p in probes
    ]
    assert block["prompts"]["sha256"] == prompt_set_provenance("", rows)["sha256"]
    assert block["prompts"]["n_prompts"] == len(probes) and "build_probe_set" in block["prompts"]["source"]


def test_audit_report_json_carries_provenance(organisms, by_id, saved_sae, tmp_path):
    folder, sae = saved_sae
    frame = pd.read_json(organisms["tiny-refusal-shallow"].data_dir / "prompts.jsonl", lines=True)
    frame = frame.groupby(["tier", "split"], sort=False).head(4).reset_index(drop=True)
    path = tmp_path / "prompts.jsonl"
    frame.to_json(path, orient="records", lines=True)
    cfg = AuditConfig(positions="last_prompt", max_new_tokens=3, n_latents=4, n_boot=50, n_perm=199, seed=3)
    audit_refusal_depth(
        by_id["tiny-base"],
        by_id["tiny-refusal-shallow"],
        by_id["tiny-base"].tokenizer,
        sae,
        path,
        LAYER,
        cfg,
        out_dir=tmp_path / "report",
    )
    block = json.loads((tmp_path / "report" / "report.json").read_text())["provenance"]
    assert {r: (m["id"], m["revision"]) for r, m in block["models"].items()} == {
        "base": ("cbd-plugin/tiny-base", main_revision("tiny-base")),
        "finetuned": ("cbd-plugin/tiny-refusal-shallow", main_revision("tiny-refusal-shallow")),
    }
    check_common(block, cfg, folder)
    # The hash covers the validated rows (ids as strings), in file order.
    rows = pd.read_json(path, lines=True).astype({"id": str})[["id", "text", "tier", "split"]].to_dict("records")
    assert block["prompts"] == {
        "source": str(path),
        "n_prompts": len(frame),
        "sha256": prompt_set_provenance("", rows)["sha256"],
    }


def test_an_sae_without_a_file_is_identified_by_its_state_hash():
    from cbd_plugin.provenance import sae_provenance
    from cbd_plugin.sae import BatchTopKSAE

    sae = BatchTopKSAE(8, 16, k=2)  # 0-dim buffers (k, threshold) included
    first = sae_provenance(sae)
    assert first["weights_file"] is None and first["weights_sha256"] is None and len(first["state_sha256"]) == 64
    assert sae_provenance(sae)["state_sha256"] == first["state_sha256"]
    with torch.no_grad():
        sae.encoder.weight[0, 0] = 1.0
    assert sae_provenance(sae)["state_sha256"] != first["state_sha256"]
