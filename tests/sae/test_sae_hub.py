"""SAEs by hub id, offline, from a hub-layout cache the tests build (``models--owner--name/{refs,snapshots}``)."""

import json

import numpy as np
import pytest
import torch
from huggingface_hub import constants

from cbd_plugin.sae import JumpReLUSAE, TopKSAE, load_dictionary
from cbd_plugin.sae.hub import is_hub_id, parse_hub_spec

D, DICT = 8, 40
COMMIT = "0123456789abcdef0123456789abcdef01234567"


def random_topk(seed: int) -> TopKSAE:
    sae = TopKSAE(D, DICT, 4, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        sae.b_enc.normal_(generator=torch.Generator().manual_seed(seed + 100))
    return sae


@pytest.fixture
def hub(tmp_path, monkeypatch):
    """An offline HF cache in ``tmp_path/hub``; returns ``make(repo_id) -> snapshot folder``."""
    cache = tmp_path / "hub"
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.chdir(tmp_path)  # hub ids must not collide with local paths

    def make(repo_id: str):
        repo = cache / f"models--{repo_id.replace('/', '--')}"
        (repo / "refs").mkdir(parents=True)
        (repo / "refs" / "main").write_text(COMMIT)
        snapshot = repo / "snapshots" / COMMIT
        snapshot.mkdir(parents=True)
        return snapshot

    return make


@pytest.fixture
def card_repo(hub):
    """The card's layout: ``layer_13/`` and ``layer_24/`` plugin folders, a seed ``.pt``, a Gemma Scope npz."""
    snapshot = hub("Ftm23/cbd-sae-diff-gemma2-4pair")
    saes = {layer: random_topk(layer) for layer in (13, 24)}
    for layer, sae in saes.items():
        sae.save_pretrained(snapshot / f"layer_{layer}")
    (snapshot / "seed").mkdir()
    torch.save(
        {k: v.detach().clone() for k, v in random_topk(5).state_dict().items()}, snapshot / "seed" / "sae_weights.pt"
    )
    g = np.random.default_rng(0)
    npz = snapshot / "layer_20" / "width_16k" / "average_l0_71"
    npz.mkdir(parents=True)
    np.savez(
        npz / "params.npz",
        W_enc=g.normal(size=(D, DICT)).astype(np.float32),
        W_dec=g.normal(size=(DICT, D)).astype(np.float32),
        b_enc=g.normal(size=DICT).astype(np.float32),
        b_dec=g.normal(size=D).astype(np.float32),
        threshold=np.abs(g.normal(size=DICT)).astype(np.float32),
    )
    return saes


def test_hub_id_forms():
    assert parse_hub_spec("owner/name").path == ""
    assert parse_hub_spec("owner/name/layer_20/width_16k").path == "layer_20/width_16k"
    spec = parse_hub_spec("owner/name:dir/sae_weights.pt")
    assert (spec.repo_id, spec.path, spec.is_file) == ("owner/name", "dir/sae_weights.pt", True)
    assert parse_hub_spec("owner/name/sub:file.pt").path == "sub/file.pt"
    assert not is_hub_id("./owner/name") and not is_hub_id("/abs/path") and not is_hub_id("justname")


@pytest.mark.parametrize("layer", [13, 24])
def test_owner_name_with_layer_loads_that_layer(card_repo, layer):
    sae = load_dictionary("Ftm23/cbd-sae-diff-gemma2-4pair", layer=layer, d_model=D)
    x = torch.randn(6, D)
    with torch.no_grad():
        # Equal weights (checked bitwise by the loader's sha256); encodes to rounding (threaded GEMMs may differ).
        torch.testing.assert_close(sae.encode(x), card_repo[layer].encode(x), rtol=1e-6, atol=1e-6)
    assert "Ftm23/cbd-sae-diff-gemma2-4pair" in sae.source and f"layer_{layer}" in sae.source


def test_owner_name_without_layer_lists_the_layers(card_repo):
    with pytest.raises(ValueError, match=r"holds SAEs for layers \[13, 20, 24\].*give the layer"):
        load_dictionary("Ftm23/cbd-sae-diff-gemma2-4pair")


def test_missing_layer_names_repo_and_layers_found(card_repo):
    with pytest.raises(
        FileNotFoundError,
        match=r"hub repo 'Ftm23/cbd-sae-diff-gemma2-4pair'.*no SAE for layer 7; "
        r"it holds layers \[13, 20, 24\]",
    ):
        load_dictionary("Ftm23/cbd-sae-diff-gemma2-4pair", layer=7)


def test_file_form_loads_the_seed_checkpoint(card_repo):
    sae = load_dictionary("Ftm23/cbd-sae-diff-gemma2-4pair:seed/sae_weights.pt", k=4)
    assert isinstance(sae, TopKSAE) and sae.k == 4 and not sae.subtract_b_dec
    assert torch.equal(sae.W_enc, random_topk(5).W_enc)


def test_file_form_of_a_folder_file_loads_its_folder(card_repo):
    sae = load_dictionary("Ftm23/cbd-sae-diff-gemma2-4pair:layer_13/config.json")
    assert torch.equal(sae.W_dec, card_repo[13].W_dec)


def test_subfolder_form_loads_gemma_scope_npz(card_repo):
    sae = load_dictionary("Ftm23/cbd-sae-diff-gemma2-4pair/layer_20/width_16k/average_l0_71", layer=20)
    assert isinstance(sae, JumpReLUSAE) and (sae.activation_dim, sae.dict_size) == (D, DICT)
    with pytest.raises(ValueError, match=r"reads layer 20, but layer 13 was asked for"):
        load_dictionary("Ftm23/cbd-sae-diff-gemma2-4pair/layer_20/width_16k/average_l0_71", layer=13)


def test_parent_of_gemma_scope_lists_the_saes_below(card_repo):
    with pytest.raises(FileNotFoundError, match=r"holds no SAE itself; SAEs below it: \['width_16k/average_l0_71'\]"):
        load_dictionary("Ftm23/cbd-sae-diff-gemma2-4pair/layer_20")


def test_missing_path_names_repo_path_and_what_is_there(card_repo):
    with pytest.raises(
        FileNotFoundError,
        match=r"hub repo 'Ftm23/cbd-sae-diff-gemma2-4pair': no 'layer_99' "
        r"\(tried \['layer_99/config.json'.*the local cache lists "
        r"\[.*'layer_13/config.json'",
    ):
        load_dictionary("Ftm23/cbd-sae-diff-gemma2-4pair/layer_99")


def test_uncached_repo_offline_says_how_to_fetch_it(hub):
    with pytest.raises(
        FileNotFoundError,
        match=r"owner/absent: not a local path, and hub repo 'owner/absent' is "
        r"not in the Hugging Face cache .*HF_HUB_OFFLINE=1.*hf download",
    ):
        load_dictionary("owner/absent", layer=3)


def test_saelens_hook_folder_by_layer(hub):
    snapshot = hub("someone/saelens-saes")
    for layer in (3, 5):
        folder = snapshot / f"blocks.{layer}.hook_resid_post"
        sae = random_topk(layer)
        sae.save_pretrained(folder)
        for name in ("config.json", "model.safetensors"):  # keep only the SAELens pair
            (folder / name).unlink()
        cfg = json.loads((folder / "cfg.json").read_text())
        cfg["metadata"]["hook_name"] = f"blocks.{layer}.hook_resid_post"
        (folder / "cfg.json").write_text(json.dumps(cfg))
    loaded = load_dictionary("someone/saelens-saes", layer=5)
    assert torch.equal(loaded.W_enc, random_topk(5).W_enc)


def test_existing_local_path_that_looks_like_a_hub_id_is_local(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    random_topk(1).save_pretrained(tmp_path / "owner" / "name")
    assert not is_hub_id("owner/name")
    assert torch.equal(load_dictionary("owner/name").W_enc, random_topk(1).W_enc)


def test_a_hub_address_keeps_its_revision():
    from cbd_plugin.sae.hub import id_from_url

    assert id_from_url("https://huggingface.co/owner/name/tree/v2/layer_13") == "owner/name@v2/layer_13"
    assert (
        id_from_url("https://huggingface.co/owner/name/blob/abc123/sae_weights.pt")
        == "owner/name@abc123:sae_weights.pt"
    )
    assert id_from_url("https://huggingface.co/owner/name/tree/main") == "owner/name"
