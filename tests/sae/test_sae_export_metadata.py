"""Saved and exported SAEs record the model, hook and layer they read; SAELens opens the export with that hook."""

import json

import pytest
import torch

from cbd_plugin.sae import BatchTopKSAE, TopKSAE, load_dictionary, train_sae
from cbd_plugin.sae.contrastive_trainer import ContrastiveSAEConfig
from cbd_plugin.sae.export import reads

D = 16


@pytest.mark.parametrize(
    "make",
    [
        lambda: TopKSAE(D, 32, 4, generator=torch.Generator().manual_seed(0)),
        lambda: BatchTopKSAE(D, 32, 4, activation_mean=torch.randn(D), activation_std=torch.rand(D) + 0.5),
    ],
)
def test_saelens_opens_the_export_with_the_recorded_hook(make, tmp_path):
    sae_lens = pytest.importorskip("sae_lens")
    sae = make()
    sae.metadata = reads("cbd-plugin/tiny-cbd", 3, base_model_name="cbd-plugin/tiny-base")
    sae.save_pretrained(tmp_path)
    loaded = sae_lens.SAE.load_from_disk(str(tmp_path))
    meta = loaded.cfg.metadata
    assert (meta.hook_name, meta.model_name, meta.hook_layer) == ("blocks.3.hook_resid_post", "cbd-plugin/tiny-cbd", 3)
    assert meta.base_model_name == "cbd-plugin/tiny-base"
    # The plugin's own folder keeps the same record, and reading it back restores it.
    assert json.loads((tmp_path / "config.json").read_text())["metadata"] == sae.metadata
    assert load_dictionary(tmp_path).metadata == sae.metadata
    # Reading the SAELens pair alone (our SAELens loader) keeps the layer check working on the hook name.
    (tmp_path / "config.json").unlink()
    (tmp_path / "model.safetensors").unlink()
    with pytest.raises(ValueError, match="layer 3"):
        load_dictionary(tmp_path, layer=5)


def test_an_sae_without_metadata_exports_a_null_hook(tmp_path):
    TopKSAE(D, 32, 4).save_pretrained(tmp_path)
    cfg = json.loads((tmp_path / "cfg.json").read_text())
    assert cfg["metadata"]["hook_name"] is None and "metadata" not in json.loads((tmp_path / "config.json").read_text())


def test_trained_sae_records_the_trainer_model_and_layer(tmp_path):
    cfg = ContrastiveSAEConfig(
        steps=2,
        activation_dim=D,
        dict_size=32,
        k=4,
        contrastive_weight=0.0,
        layer=2,
        lm_name="cbd-plugin/tiny-base",
        device="cpu",
    )
    batches = [torch.randn(8, D) for _ in range(2)]
    trainer = train_sae(batches, cfg.trainer_config(), 2, tmp_path)
    expected = {"model_name": "cbd-plugin/tiny-base", "hook_name": "blocks.2.hook_resid_post", "layer": 2}
    assert trainer.ae.metadata == expected
    assert load_dictionary(tmp_path / "dictionary_model").metadata == expected


def test_saelens_folder_metadata_is_read_back(tmp_path):
    sae = TopKSAE(D, 32, 4)
    sae.metadata = reads("some/model", 7)
    sae.save_pretrained(tmp_path)
    for name in ("config.json", "model.safetensors"):  # leave the SAELens pair only
        (tmp_path / name).unlink()
    assert load_dictionary(tmp_path).metadata == {
        "model_name": "some/model",
        "hook_name": "blocks.7.hook_resid_post",
        "layer": 7,
    }
