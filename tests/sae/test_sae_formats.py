"""SAE formats: the Dictionary folder, the fork's BatchTopKSAE folders, the BioRefusalAudit seed checkpoint."""

import hashlib
import json
import math

import pytest
import torch
from safetensors.torch import load_file

import cbd_plugin.sae.folder as folder_module
from cbd_plugin.sae import BatchTopKSAE, Dictionary, JumpReLUSAE, ReLUSAE, TopKSAE
from cbd_plugin.sae.dictionary import CONFIG_NAME, WEIGHTS_NAME, save_folder

D, DICT, K = 12, 40, 3


def fork_folder_tensors(normalised: bool = True, seed: int = 0) -> dict:
    """Random weights under the fork's ``model.safetensors`` keys, dtypes and shapes."""
    g = torch.Generator().manual_seed(seed)
    tensors = {
        "encoder.weight": torch.randn(DICT, D, generator=g),
        "encoder.bias": torch.randn(DICT, generator=g) * 0.1,
        "decoder.weight": torch.randn(D, DICT, generator=g),
        "b_dec": torch.randn(D, generator=g),
        "k": torch.tensor(K, dtype=torch.int32),
        "threshold": torch.tensor(0.8),
    }
    if normalised:
        std = torch.rand(D, generator=g) + 0.5
        tensors.update(
            activation_mean=torch.randn(D, generator=g) * 3,
            activation_std=std,
            target_rms=torch.tensor(2.0),
            activation_global_scale=2.0 / torch.sqrt((std**2).sum() + 1e-8),
        )
    return tensors


def write_fork_folder(path, tensors, **config):
    # What the fork's save_pretrained writes (huggingface_hub mixin: init kwargs plus dict_class).
    config = {
        "activation_dim": D,
        "dict_size": DICT,
        "k": K,
        "target_rms": 2.0,
        "encoder_init_norm": 1.0,
        "dict_class": "BatchTopKSAE",
        **config,
    }
    save_folder(path, tensors, config)
    return path


def fork_reference(t: dict, x: torch.Tensor, use_threshold: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """The fork's BatchTopKSAE.encode / decode (dictionary_learning/dictionary.py), rewritten on raw tensors."""
    normalised = "activation_mean" in t and not (
        t["activation_mean"].isnan().any() or t["activation_std"].isnan().any()
    )
    xn = (x - t["activation_mean"]) * t["activation_global_scale"] if normalised else x
    acts = torch.relu((xn - t["b_dec"]) @ t["encoder.weight"].T + t["encoder.bias"])
    if use_threshold:
        f = torch.where(acts > t["threshold"], acts, torch.zeros_like(acts))
    else:
        n_keep = int(t["k"]) * x.shape[0]
        flat = acts.flatten()
        keep = torch.zeros_like(flat, dtype=torch.bool)
        keep[flat.argsort(descending=True)[:n_keep]] = True
        f = torch.where(keep, flat, torch.zeros_like(flat)).view_as(acts)
    out = f @ t["decoder.weight"].T + t["b_dec"]
    x_hat = out / (t["activation_global_scale"] + 1e-8) + t["activation_mean"] if normalised else out
    return f, x_hat


@pytest.mark.parametrize("normalised", [True, False])
@pytest.mark.parametrize("use_threshold", [True, False])
def test_batchtopk_reader_matches_fork_math(tmp_path, normalised, use_threshold):
    tensors = fork_folder_tensors(normalised)
    sae = Dictionary.from_pretrained(write_fork_folder(tmp_path / "sae", tensors))
    assert isinstance(sae, BatchTopKSAE) and (sae.activation_dim, sae.dict_size, int(sae.k)) == (D, DICT, K)
    x = torch.randn(30, D, generator=torch.Generator().manual_seed(1)) * 4 + 2
    f_ref, x_hat_ref = fork_reference(tensors, x, use_threshold)
    with torch.no_grad():
        f = sae.encode(x, use_threshold=use_threshold)
        x_hat = sae.decode(f)
    assert torch.equal(f != 0, f_ref != 0)
    if not use_threshold:
        assert int((f != 0).sum()) == K * 30  # batch top-k keeps k per row on average, k * n_rows in all
    torch.testing.assert_close(f, f_ref, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(x_hat, x_hat_ref, atol=1e-4, rtol=1e-5)
    if use_threshold:  # forward uses the threshold, as the fork's does
        with torch.no_grad():
            assert torch.equal(sae(x), x_hat)


def test_batchtopk_untrained_threshold_keeps_every_positive_latent(tmp_path):
    tensors = {**fork_folder_tensors(), "threshold": torch.tensor(-1.0)}
    sae = Dictionary.from_pretrained(write_fork_folder(tmp_path / "sae", tensors))
    x = torch.randn(5, D)
    with torch.no_grad():
        f = sae.encode(x)
        dense = torch.relu(sae.encoder(sae.normalize_activations(x) - sae.b_dec))
    assert torch.equal(f, dense)


def test_batchtopk_encodes_leading_dims_as_one_batch(tmp_path):
    sae = Dictionary.from_pretrained(write_fork_folder(tmp_path / "sae", fork_folder_tensors()))
    x = torch.randn(2, 7, D)
    with torch.no_grad():
        torch.testing.assert_close(
            sae.encode(x, use_threshold=False).reshape(14, DICT),
            sae.encode(x.reshape(14, D), use_threshold=False),
            rtol=1e-6,
            atol=1e-6,
        )


@pytest.mark.parametrize("cls_name", ["BatchTopKSAE", "TopKSAE"])
def test_decode_latents_is_the_ablated_contribution(tmp_path, cls_name):
    if cls_name == "BatchTopKSAE":
        sae = Dictionary.from_pretrained(write_fork_folder(tmp_path / "sae", fork_folder_tensors()))
    else:
        sae = TopKSAE(D, DICT, K, generator=torch.Generator().manual_seed(0))
    x = torch.randn(8, D, generator=torch.Generator().manual_seed(1)) * 3
    with torch.no_grad():
        f = sae.encode(x)
        # Three latents that fire on this batch and one that does not: fixed ids could all be silent (k=3 of 40).
        active = (f != 0).any(0).nonzero().flatten().tolist()
        silent = (f == 0).all(0).nonzero().flatten().tolist()
        ids = active[:3] + silent[:1]
        f_without = f.clone()
        f_without[:, ids] = 0
        expected = sae.decode(f) - sae.decode(f_without)
        assert expected.abs().max() > 0.1
        torch.testing.assert_close(sae.decode_latents(f, ids), expected, atol=1e-4, rtol=1e-4)


def test_batchtopk_save_pretrained_roundtrip_and_fork_layout(tmp_path):
    sae = BatchTopKSAE(D, DICT, K, activation_mean=torch.randn(D), activation_std=torch.rand(D) + 0.5, target_rms=3.0)
    with torch.no_grad():
        for p in sae.parameters():
            p.normal_()
        sae.threshold.fill_(0.3)
    folder = sae.save_pretrained(tmp_path / "sae")
    config = json.loads((folder / CONFIG_NAME).read_text())
    checksums = config.pop("sha256")
    assert config == {
        "activation_dim": D,
        "dict_size": DICT,
        "k": K,
        "target_rms": 3.0,
        "encoder_init_norm": 1.0,
        "dict_class": "BatchTopKSAE",
    }
    assert checksums == {
        name: hashlib.sha256((folder / name).read_bytes()).hexdigest()
        for name in (WEIGHTS_NAME, "sae_weights.safetensors")
    }
    tensors = load_file(folder / WEIGHTS_NAME)
    expected = {
        "encoder.weight": (DICT, D),
        "encoder.bias": (DICT,),
        "decoder.weight": (D, DICT),
        "b_dec": (D,),
        "k": (),
        "threshold": (),
        "activation_mean": (D,),
        "activation_std": (D,),
        "activation_global_scale": (),
        "target_rms": (),
    }
    assert {k: tuple(v.shape) for k, v in tensors.items()} == expected
    assert tensors["k"].dtype == torch.int32
    total_var = float((sae.activation_std**2).sum())
    assert float(tensors["activation_global_scale"]) == pytest.approx(3.0 / math.sqrt(total_var))
    loaded = BatchTopKSAE.from_pretrained(folder)
    x = torch.randn(6, D)
    with torch.no_grad():
        assert torch.equal(loaded(x), sae(x))
    assert loaded.source == str(folder / WEIGHTS_NAME)


def test_batchtopk_folder_without_normalisation_keys_is_identity(tmp_path):
    tensors = fork_folder_tensors(normalised=False)
    sae = Dictionary.from_pretrained(write_fork_folder(tmp_path / "old", tensors))
    assert not sae.has_normalizer
    x = torch.randn(4, D)
    with torch.no_grad():
        torch.testing.assert_close(sae(x), fork_reference(tensors, x, True)[1])


def test_batchtopk_partial_normalisation_is_an_error(tmp_path):
    tensors = fork_folder_tensors()
    del tensors["activation_std"]
    with pytest.raises(ValueError, match=r"model.safetensors: has normalisation key.*lacks \['activation_std'\]"):
        Dictionary.from_pretrained(write_fork_folder(tmp_path / "sae", tensors))


def test_shape_mismatch_names_file_key_and_shapes(tmp_path):
    tensors = fork_folder_tensors()
    tensors["decoder.weight"] = torch.randn(D, DICT + 1)
    with pytest.raises(
        ValueError,
        match=r"sae/model.safetensors: key 'decoder.weight' has shape \(12, 41\), "
        r"expected \(12, 40\)",
    ):
        Dictionary.from_pretrained(write_fork_folder(tmp_path / "sae", tensors))


def test_config_and_weights_disagree_on_d(tmp_path):
    with pytest.raises(ValueError, match=r"key 'encoder.weight' has shape \(40, 12\), expected \(40, 16\)"):
        Dictionary.from_pretrained(write_fork_folder(tmp_path / "sae", fork_folder_tensors(), activation_dim=16))


def test_missing_and_unexpected_keys_are_named(tmp_path):
    tensors = fork_folder_tensors()
    del tensors["b_dec"]
    with pytest.raises(ValueError, match=r"model.safetensors: missing key\(s\) \['b_dec'\]"):
        Dictionary.from_pretrained(write_fork_folder(tmp_path / "a", tensors))
    tensors = {**fork_folder_tensors(), "W_extra": torch.zeros(1)}
    with pytest.raises(ValueError, match=r"unexpected key\(s\) \['W_extra'\]"):
        Dictionary.from_pretrained(write_fork_folder(tmp_path / "b", tensors))


def test_config_k_must_match_weights_k(tmp_path):
    with pytest.raises(ValueError, match=r"key 'k' is 3 but config.json says k=5"):
        Dictionary.from_pretrained(write_fork_folder(tmp_path / "sae", fork_folder_tensors(), k=5))


def test_check_compatible_against_model_hidden_size(tmp_path):
    folder = write_fork_folder(tmp_path / "sae", fork_folder_tensors())
    BatchTopKSAE.from_pretrained(folder, d_model=D)
    with pytest.raises(
        ValueError,
        match=r"sae/model.safetensors: key 'encoder.weight' gives activation_dim 12, "
        r"but the model's hidden size is 2304",
    ):
        BatchTopKSAE.from_pretrained(folder, d_model=2304)
    sae = TopKSAE(D, DICT, K)
    with pytest.raises(ValueError, match=r"key 'W_enc' gives activation_dim 12"):
        sae.check_compatible(13)


def test_wrong_or_unknown_dict_class(tmp_path):
    folder = write_fork_folder(tmp_path / "sae", fork_folder_tensors())
    with pytest.raises(ValueError, match=r"config.json: dict_class is 'BatchTopKSAE', expected 'TopKSAE'"):
        TopKSAE.from_pretrained(folder)
    write_fork_folder(tmp_path / "cc", fork_folder_tensors(), dict_class="GatedAutoEncoder")
    with pytest.raises(ValueError, match=r"unknown dict_class 'GatedAutoEncoder'"):
        Dictionary.from_pretrained(tmp_path / "cc")


def test_half_written_folder_refuses_to_load(tmp_path):
    folder = write_fork_folder(tmp_path / "sae", fork_folder_tensors())
    (folder / CONFIG_NAME).unlink()
    with pytest.raises(FileNotFoundError, match=r"config.json is missing: the folder is incomplete"):
        Dictionary.from_pretrained(folder)


def test_interrupted_overwrite_keeps_the_old_sae(tmp_path, monkeypatch):
    old = TopKSAE(D, DICT, K, generator=torch.Generator().manual_seed(1))
    folder = old.save_pretrained(tmp_path / "sae")

    def crash(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(folder_module, "save_file", crash)
    with pytest.raises(KeyboardInterrupt):
        TopKSAE(D, DICT, K).save_pretrained(folder)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sae"]  # no temporary folder left
    assert torch.equal(Dictionary.from_pretrained(folder).W_enc, old.W_enc)


def test_loading_does_not_draw_from_the_global_rng(tmp_path):
    folder = TopKSAE(D, DICT, K).save_pretrained(tmp_path / "sae")
    torch.manual_seed(0)
    state = torch.get_rng_state()
    Dictionary.from_pretrained(folder)
    assert torch.equal(state, torch.get_rng_state())


def test_topk_fresh_init_unit_norm_decoder_and_tied_encoder():
    sae = TopKSAE(D, DICT, K, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(sae.W_dec.norm(dim=1), torch.ones(DICT))
    assert torch.equal(sae.W_enc, sae.W_dec.T)
    f = sae.encode(torch.randn(9, D))
    assert ((f != 0).sum(1) <= K).all() and (f >= 0).all()


@pytest.mark.parametrize("subtract_b_dec", [True, False])
def test_topk_save_load_roundtrip(tmp_path, subtract_b_dec):
    sae = TopKSAE(D, DICT, K, subtract_b_dec=subtract_b_dec, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        sae.b_dec.normal_()
        sae.b_enc.normal_()
    folder = sae.save_pretrained(tmp_path / "sae")
    config = json.loads((folder / CONFIG_NAME).read_text())
    assert set(config.pop("sha256")) == {WEIGHTS_NAME, "sae_weights.safetensors"}
    assert config == {
        "activation_dim": D,
        "dict_size": DICT,
        "k": K,
        "subtract_b_dec": subtract_b_dec,
        "dict_class": "TopKSAE",
    }
    loaded = Dictionary.from_pretrained(folder)
    assert isinstance(loaded, TopKSAE) and loaded.subtract_b_dec is subtract_b_dec
    x = torch.randn(7, D)
    for name, p in sae.named_parameters():
        assert torch.equal(p, getattr(loaded, name))
    with torch.no_grad():  # equal weights; the kernels may still round differently across memory layouts
        torch.testing.assert_close(loaded(x), sae(x), rtol=0, atol=1e-6)


def seed_state_dict(d=D, d_sae=DICT, seed=0):
    g = torch.Generator().manual_seed(seed)
    return {
        "W_enc": torch.randn(d, d_sae, generator=g),
        "b_enc": torch.randn(d_sae, generator=g) * 0.1,
        "W_dec": torch.randn(d_sae, d, generator=g),
        "b_dec": torch.randn(d, generator=g) * 2,
    }


def test_seed_checkpoint_matches_the_card_formula(tmp_path):
    state = seed_state_dict()
    torch.save(state, tmp_path / "sae_weights.pt")
    sae = TopKSAE.from_seed_checkpoint(tmp_path / "sae_weights.pt", k=K)
    assert (sae.activation_dim, sae.dict_size, sae.k, sae.subtract_b_dec) == (D, DICT, K, False)
    x = torch.randn(10, D)
    # The card: pre = x @ W_enc + b_enc; topk of relu(pre); decode = z @ W_dec + b_dec.
    pre_relu = torch.relu(x @ state["W_enc"] + state["b_enc"])
    vals, idx = torch.topk(pre_relu, K, dim=-1)
    z = torch.zeros_like(pre_relu).scatter_(-1, idx, vals)
    with torch.no_grad():
        # To rounding, not bitwise: a multi-threaded GEMM may split x @ W_enc differently from the card's formula.
        torch.testing.assert_close(sae.encode(x), z, rtol=1e-6, atol=1e-6)
        torch.testing.assert_close(sae.decode(z), z @ state["W_dec"] + state["b_dec"], rtol=1e-6, atol=1e-6)
    # The b_dec subtraction of our own SAEs would change the codes: the flag matters.
    with torch.no_grad():
        sae.subtract_b_dec = True
        assert not torch.equal(sae.encode(x), z)


def test_seed_checkpoint_errors_name_file_and_key(tmp_path):
    path = tmp_path / "sae_weights.pt"
    state = seed_state_dict()
    del state["b_dec"]
    torch.save(state, path)
    with pytest.raises(ValueError, match=r"sae_weights.pt: missing key\(s\) \['b_dec'\]"):
        TopKSAE.from_seed_checkpoint(path)
    state = seed_state_dict()
    state["W_dec"] = state["W_dec"][:, :-1]
    torch.save(state, path)
    with pytest.raises(ValueError, match=r"sae_weights.pt: key 'W_dec' has shape \(40, 11\), expected \(40, 12\)"):
        TopKSAE.from_seed_checkpoint(path)
    torch.save([torch.zeros(2)], path)
    with pytest.raises(ValueError, match=r"sae_weights.pt: expected a state dict of tensors, got list"):
        TopKSAE.from_seed_checkpoint(path)
    torch.save({"W_enc": torch.zeros(3)}, path)
    with pytest.raises(ValueError, match=r"key 'W_enc' must be a \[d, d_sae\] matrix, got \(3,\)"):
        TopKSAE.from_seed_checkpoint(path)


def test_against_the_real_fork_where_installed(tmp_path):
    fork = pytest.importorskip("dictionary_learning.dictionary", reason="the dictionary_learning fork is not installed")
    if not hasattr(fork, "BatchTopKSAE"):
        pytest.skip("dictionary_learning is the PyPI package, not the fork (no BatchTopKSAE)")
    tensors = fork_folder_tensors()
    folder = write_fork_folder(tmp_path / "sae", tensors)
    theirs = fork.BatchTopKSAE.from_pretrained(folder, from_hub=True)
    ours = Dictionary.from_pretrained(folder)
    x = torch.randn(25, D) * 3
    with torch.no_grad():
        for mode in (True, False):
            assert torch.equal(ours.encode(x, use_threshold=mode), theirs.encode(x, use_threshold=mode))
        assert torch.equal(ours(x), theirs(x))
    theirs.save_pretrained(tmp_path / "theirs")
    with torch.no_grad():
        assert torch.equal(Dictionary.from_pretrained(tmp_path / "theirs")(x), theirs(x))


@pytest.mark.parametrize("cls", [ReLUSAE, JumpReLUSAE])
def test_relu_and_jumprelu_roundtrip_sparse_codes_and_ablation(tmp_path, cls):
    sae = cls(D, DICT)
    g = torch.Generator().manual_seed(4)
    with torch.no_grad():
        for p in sae.parameters():
            p.copy_(
                torch.randn(p.shape, generator=g).abs() * 0.2
                if p.shape == (DICT,)
                else torch.randn(p.shape, generator=g)
            )
    loaded = Dictionary.from_pretrained(sae.save_pretrained(tmp_path / "sae"))
    assert type(loaded) is cls and loaded.subtract_b_dec is sae.subtract_b_dec
    x = torch.randn(2, 5, D, generator=g)
    with torch.no_grad():
        f = loaded.encode(x)
        assert f.shape == (2, 5, DICT) and torch.equal(f, sae.encode(x)) and (f == 0).any() and (f > 0).any()
        codes = loaded.encode_sparse(x)
        assert torch.equal(codes.to_dense(DICT), f.reshape(10, DICT))
        torch.testing.assert_close(loaded.decode_sparse(codes), loaded.decode(f).reshape(10, D), atol=1e-5, rtol=0)
        ids = [1, 7, 30]
        f_without = f.clone()
        f_without[..., ids] = 0
        torch.testing.assert_close(
            loaded.decode_latents(f, ids), loaded.decode(f) - loaded.decode(f_without), atol=1e-5, rtol=0
        )
    with pytest.raises(ValueError, match=rf"{cls.__name__}.encode .*input has shape \(3, 13\).*\[..., 12\]"):
        loaded.encode(torch.zeros(3, D + 1))
