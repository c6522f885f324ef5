"""Bad SAE files, one row per case: each is loaded through the public ``load_dictionary`` and must either load
correctly (a row with ``error=None``; e.g. bf16 weights are converted) or raise the named error type with a message
naming the file, key, shape or layer. Then the save-side faults: nothing is lost when a save fails.
"""

import json
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

import cbd_plugin.sae.folder as folder_module
from cbd_plugin.sae import BatchTopKSAE, Dictionary, JumpReLUSAE, TopKSAE, load_dictionary

D, DICT, K = 8, 24, 3


def topk(seed: int = 0) -> TopKSAE:
    sae = TopKSAE(D, DICT, K, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        sae.b_dec.normal_(generator=torch.Generator().manual_seed(seed + 1))
    return sae


def plugin(tmp: Path) -> Path:
    return topk().save_pretrained(tmp / "sae")


def edit_json(path: Path, edit: Callable[[dict], object]) -> Path:
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))
    return path.parent


def write_config(content: bytes):
    def build(tmp):
        (plugin(tmp) / "config.json").write_bytes(content)
        return tmp / "sae"

    return build


def text_file(name: str):
    def build(tmp):
        (tmp / name).write_text("not an SAE")
        return tmp / name

    return build


def with_config(**changes):
    def build(tmp):
        folder = plugin(tmp)
        edit_json(folder / "config.json", lambda c: c.update(changes))
        return folder

    return build


def old_folder_with(tensors_edit: Callable[[dict], None]):
    """A folder as an older version wrote it (no sha256), with its tensors edited."""

    def build(tmp):
        folder = plugin(tmp)
        tensors = load_file(folder / "model.safetensors")
        tensors_edit(tensors)
        save_file(tensors, folder / "model.safetensors")
        edit_json(folder / "config.json", lambda c: c.pop("sha256"))
        return folder

    return build


def flip_byte(tmp):
    folder = plugin(tmp)
    data = bytearray((folder / "model.safetensors").read_bytes())
    data[-5] ^= 0x01
    (folder / "model.safetensors").write_bytes(bytes(data))
    return folder


def truncate(name: str, keep: float, checksum: bool = True):
    def build(tmp):
        folder = plugin(tmp)
        if not checksum:
            edit_json(folder / "config.json", lambda c: c.pop("sha256"))
        path = folder / name
        path.write_bytes(path.read_bytes()[: int(path.stat().st_size * keep)])
        return folder

    return build


def remove(*names):
    def build(tmp):
        folder = plugin(tmp)
        for name in names:
            (folder / name).unlink()
        return folder

    return build


def saelens(cfg_changes=None, tensors_edit=None, drop_weights=False):
    """A SAELens folder (cfg.json + sae_weights.safetensors) written by our export, then edited."""

    def build(tmp):
        folder = plugin(tmp)
        for name in ("config.json", "model.safetensors"):
            (folder / name).unlink()
        if cfg_changes:
            edit_json(folder / "cfg.json", lambda c: c.update(cfg_changes))
        if tensors_edit:
            tensors = load_file(folder / "sae_weights.safetensors")
            tensors_edit(tensors)
            save_file(tensors, folder / "sae_weights.safetensors")
        if drop_weights:
            (folder / "sae_weights.safetensors").unlink()
        return folder

    return build


def sparsify(cfg_changes=None, drop_key=None):
    def build(tmp):
        folder = tmp / "layers.3"
        folder.mkdir()
        g = torch.Generator().manual_seed(0)
        tensors = {
            "encoder.weight": torch.randn(DICT, D, generator=g),
            "encoder.bias": torch.zeros(DICT),
            "W_dec": torch.randn(DICT, D, generator=g),
            "b_dec": torch.zeros(D),
        }
        tensors.pop(drop_key, None)
        save_file(tensors, folder / "sae.safetensors")
        cfg = {
            "activation": "topk",
            "expansion_factor": 3,
            "normalize_decoder": True,
            "num_latents": DICT,
            "k": K,
            "multi_topk": False,
            "skip_connection": False,
            "transcode": False,
            "d_in": D,
            **(cfg_changes or {}),
        }
        (folder / "cfg.json").write_text(json.dumps(cfg))
        return folder

    return build


def gemma_scope(drop=None, nan=False, truncated=False):
    def build(tmp):
        g = np.random.default_rng(0)
        params = {
            "W_enc": g.normal(size=(D, DICT)),
            "W_dec": g.normal(size=(DICT, D)),
            "b_enc": np.zeros(DICT),
            "b_dec": np.zeros(D),
            "threshold": np.full(DICT, 0.1),
        }
        params = {k: v.astype(np.float32) for k, v in params.items() if k != drop}
        if nan:
            params["b_enc"][4] = np.nan
        path = tmp / "params.npz"
        np.savez(path, **params)
        if truncated:
            path.write_bytes(path.read_bytes()[:200])
        return path

    return build


def seed_pt(content=None, raw: bytes | None = None, truncated=False):
    def build(tmp):
        path = tmp / "sae_weights.pt"
        if raw is not None:
            path.write_bytes(raw)
            return path
        state = content(topk().state_dict()) if content else {k: v.detach() for k, v in topk().state_dict().items()}
        torch.save(state, path)
        if truncated:
            path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
        return path

    return build


def with_nan(key, index=0, value=float("nan")):
    def edit(tensors):
        tensors[key] = tensors[key].clone()
        tensors[key].view(-1)[index] = value
        return tensors

    return edit


def dictionary_learning(trainer, state=None, truncated=False):
    def build(tmp):
        folder = tmp / "trainer_0"
        folder.mkdir()
        (folder / "config.json").write_text(json.dumps({"trainer": trainer} if trainer is not None else {}))
        g = torch.Generator().manual_seed(0)
        torch.save(
            state
            or {
                "encoder.weight": torch.randn(DICT, D, generator=g),
                "encoder.bias": torch.zeros(DICT),
                "decoder.weight": torch.randn(D, DICT, generator=g),
                "bias": torch.zeros(D),
            },
            folder / "ae.pt",
        )
        if truncated:
            (folder / "ae.pt").write_bytes((folder / "ae.pt").read_bytes()[:100])
        return folder

    return build


def layered(tmp):
    for layer in (13, 24):
        topk(layer).save_pretrained(tmp / "card" / f"layer_{layer}")
    return tmp / "card"


class Evil:
    def __reduce__(self):
        return (os.system, ("touch /tmp/cbd_plugin_pwned",))


@dataclass
class Case:
    id: str
    build: Callable[[Path], Path]
    error: type | None  # None: must load correctly
    match: str = ""  # regex the message must contain (file / key / shape / layer)
    kwargs: dict | None = None  # extra load_dictionary arguments


def bf16(tensors):
    for k in tensors:
        tensors[k] = tensors[k].to(torch.bfloat16)


CASES = [
    # plugin / fork folders: config.json
    Case(
        "config_is_a_json_list",
        write_config(b"[1, 2]"),
        ValueError,
        r"sae/config.json: expected a JSON object \{\.\.\.\}, got a JSON list",
    ),
    Case("config_not_json", write_config(b"{oops"), ValueError, r"sae/config.json: not valid JSON"),
    Case("config_not_utf8", write_config(b"\xff\xfe{}"), ValueError, r"sae/config.json: not UTF-8"),
    Case(
        "activation_dim_is_a_string",
        with_config(activation_dim="16"),
        ValueError,
        r"sae/config.json: key 'activation_dim' is '16' \(str\); expected a positive integer",
    ),
    Case("dict_size_zero", with_config(dict_size=0), ValueError, r"config.json: key 'dict_size' is 0"),
    Case("k_fractional", with_config(k=3.5), ValueError, r"config.json: key 'k' is 3.5"),
    Case("k_boolean", with_config(k=True), ValueError, r"config.json: key 'k' is True"),
    Case("k_above_dict_size", with_config(k=DICT + 1), ValueError, r"sae/config.json: k=25 must be in \[1, "),
    Case(
        "subtract_b_dec_string",
        with_config(subtract_b_dec="yes"),
        ValueError,
        r"config.json: key 'subtract_b_dec' is 'yes'; expected true or false",
    ),
    Case(
        "missing_constructor_key",
        lambda t: edit_json(plugin(t) / "config.json", lambda c: c.pop("k")),
        ValueError,
        r"sae/config.json: missing key\(s\) \['k'\]",
    ),
    Case(
        "unknown_dict_class",
        with_config(dict_class="GatedAutoEncoder"),
        ValueError,
        r"config.json: unknown dict_class 'GatedAutoEncoder'",
    ),
    Case("checksum_not_a_mapping", with_config(sha256="abc"), ValueError, r"config.json: key 'sha256' must map"),
    Case(
        "checksum_lacks_the_weights",
        with_config(sha256={"other.safetensors": "00"}),
        ValueError,
        r"sae/config.json: records sha256 of \['other.safetensors'\] but not of model.safetensors",
    ),
    # plugin folders: weights
    Case(
        "flipped_byte_in_weights",
        flip_byte,
        ValueError,
        r"sae/model.safetensors: sha256 .* differs from .* recorded in config.json: the file is corrupt",
    ),
    Case(
        "truncated_weights_with_checksum",
        truncate("model.safetensors", 0.5),
        ValueError,
        r"sae/model.safetensors: sha256",
    ),
    Case(
        "truncated_weights_old_folder",
        truncate("model.safetensors", 0.5, checksum=False),
        ValueError,
        r"sae/model.safetensors: unreadable safetensors file, truncated or corrupt",
    ),
    Case(
        "empty_weights_old_folder",
        truncate("model.safetensors", 0.0, checksum=False),
        ValueError,
        r"sae/model.safetensors: unreadable safetensors file",
    ),
    Case(
        "weights_missing",
        remove("model.safetensors"),
        FileNotFoundError,
        r"sae/model.safetensors is missing although config.json exists",
    ),
    Case(
        "config_missing_is_an_interrupted_plugin_save",
        remove("config.json", "cfg.json"),
        FileNotFoundError,
        r"sae: no SAE format recognised; it looks like a cbd-plugin / diffing-toolkit fork folder "
        r"\(model.safetensors\) lacking config.json \(an interrupted save\?\)",
    ),
    Case(
        "nan_weight_old_folder",
        old_folder_with(with_nan("W_enc", 3)),
        ValueError,
        r"sae/model.safetensors: key 'W_enc' holds 1 non-finite value",
    ),
    Case(
        "inf_weight_old_folder",
        old_folder_with(with_nan("b_dec", 0, float("inf"))),
        ValueError,
        r"sae/model.safetensors: key 'b_dec' holds 1 non-finite",
    ),
    Case(
        "int_tensor_for_float_key",
        old_folder_with(lambda t: t.update(b_enc=torch.zeros(DICT, dtype=torch.int64))),
        ValueError,
        r"sae/model.safetensors: key 'b_enc' has dtype torch.int64, expected torch.float32",
    ),
    Case(
        "wrong_shape",
        old_folder_with(lambda t: t.update(W_dec=torch.zeros(DICT, D + 1))),
        ValueError,
        r"sae/model.safetensors: key 'W_dec' has shape \(24, 9\), expected \(24, 8\)",
    ),
    Case("bf16_weights_are_converted", old_folder_with(bf16), None),
    Case(
        "fp64_weights_are_converted", old_folder_with(lambda t: t.update({k: v.double() for k, v in t.items()})), None
    ),
    Case("old_folder_without_checksum_loads", old_folder_with(lambda t: None), None),
    Case(
        "d_model_mismatch",
        plugin,
        ValueError,
        r"sae/model.safetensors: key 'W_enc' gives activation_dim 8, but "
        r"the model's hidden size is 2304",
        {"d_model": 2304},
    ),
    # layer folders
    Case(
        "parent_of_layer_folders_without_layer",
        layered,
        ValueError,
        r"card holds SAEs for layers \[13, 24\] \(\['layer_13', 'layer_24'\]\), no SAE itself: give the layer",
    ),
    Case(
        "layer_not_present",
        layered,
        FileNotFoundError,
        r"card: no SAE for layer 7; it holds layers \[13, 24\]",
        {"layer": 7},
    ),
    Case("layer_not_an_int", layered, ValueError, r"layer='13': expected a non-negative integer", {"layer": "13"}),
    Case("layer_negative", layered, ValueError, r"layer=-1: expected a non-negative integer", {"layer": -1}),
    Case("d_model_not_an_int", plugin, ValueError, r"d_model='2304': expected a positive integer", {"d_model": "2304"}),
    # paths
    Case("empty_spec", lambda t: "", ValueError, r"spec='': expected a local path or a hub id"),
    Case("spec_none", lambda t: None, ValueError, r"spec=None: expected a local path or a hub id"),
    Case("nonexistent_path", lambda t: t / "nothing_here", FileNotFoundError, r"nothing_here: no such file or folder"),
    Case(
        "empty_folder",
        lambda t: (t / "empty").mkdir() or t / "empty",
        FileNotFoundError,
        r"empty: no SAE format recognised; it holds \[\]",
    ),
    Case("unknown_file_type", text_file("notes.txt"), ValueError, r"notes.txt: not an SAE file this plugin reads"),
    Case(
        "folder_of_unrelated_files",
        lambda t: text_file("notes.txt")(t).parent,
        FileNotFoundError,
        r"no SAE format recognised; it holds \['notes.txt'\]",
    ),
    # hub addresses and ids (no hub is reached: each is refused before any download)
    Case(
        "hub_url_of_a_dataset",
        lambda t: "https://huggingface.co/datasets/owner/name",
        ValueError,
        r"'https://huggingface.co/datasets/owner/name': a dataset address, not a model repo",
    ),
    Case(
        "hub_url_not_the_hub",
        lambda t: "https://example.com/owner/name",
        ValueError,
        r"not a Hugging Face model address; pass a local path or a hub id \(owner/name",
    ),
    Case(
        "hub_url_without_repo",
        lambda t: "https://huggingface.co/owner",
        ValueError,
        r"no repo in the address; expected https://huggingface.co/owner/name",
    ),
    Case(
        "hub_url_blob_without_file",
        lambda t: "https://huggingface.co/owner/name/blob/main",
        ValueError,
        r"'https://huggingface.co/owner/name/blob/main': no file after /blob/main/; pass the hub id owner/name:<file>",
    ),
    Case(
        "hub_id_two_revisions",
        lambda t: "owner/name@v1",
        ValueError,
        r"owner/name@v1: pins revision 'v1' but revision='v2' was given; give one",
        kwargs={"revision": "v2"},
    ),
    Case(
        "hub_url_unknown_page",
        lambda t: "https://huggingface.co/owner/name/discussions",
        ValueError,
        r"expected https://huggingface.co/owner/name\[/tree/main/<folder>\] or /blob/main/<file>",
    ),
    Case(
        "bad_hub_id_with_a_space",
        lambda t: "owner/my sae",
        FileNotFoundError,
        r"owner/my sae: no such file or folder; nor is it a hub id: owner/name allows letters, digits",
    ),
    Case(
        "batchtopk_k_above_dict_size",
        lambda t: edit_json(
            BatchTopKSAE(D, DICT, K).save_pretrained(t / "b") / "config.json",
            lambda c: c.pop("sha256") and c.update(k=40),
        ),
        ValueError,
        r"k=40 must be in \[1, dict_size=24\]: BatchTopKSAE keeps k of the dict_size latents",
    ),
    # SAELens
    Case("saelens_complete_folder_loads", saelens(), None),
    Case("saelens_d_in_string", saelens({"d_in": "8"}), ValueError, r"sae/cfg.json: key 'd_in' is '8'"),
    Case(
        "saelens_layer_norm_refused",
        saelens({"normalize_activations": "layer_norm"}),
        ValueError,
        r"sae/cfg.json: normalize_activations='layer_norm' is not supported",
    ),
    Case(
        "saelens_hook_z_refused",
        saelens({"reshape_activations": "hook_z"}),
        ValueError,
        r"cfg.json: reshape_activations='hook_z' is not supported",
    ),
    Case(
        "saelens_gated_refused",
        saelens({"architecture": "gated"}),
        ValueError,
        r"cfg.json: SAELens architecture 'gated' is not supported",
    ),
    Case(
        "saelens_apply_b_dec_string",
        saelens({"apply_b_dec_to_input": "true"}),
        ValueError,
        r"cfg.json: key 'apply_b_dec_to_input' is 'true'",
    ),
    Case(
        "saelens_weights_missing",
        saelens(drop_weights=True),
        FileNotFoundError,
        r"looks like a SAELens folder \(cfg.json\) lacking sae_weights.safetensors",
    ),
    Case(
        "saelens_wrong_shape",
        saelens(tensors_edit=lambda t: t.update(b_enc=torch.zeros(DICT + 2))),
        ValueError,
        r"sae/sae_weights.safetensors: key 'b_enc' has shape \(26,\), expected \(24,\)",
    ),
    Case(
        "saelens_nan",
        saelens(tensors_edit=with_nan("W_dec", 7)),
        ValueError,
        r"sae_weights.safetensors: key 'W_dec' holds 1 non-finite",
    ),
    Case("saelens_bf16_converted", saelens(tensors_edit=bf16), None),
    Case(
        "saelens_hook_layer_mismatch",
        saelens({"metadata": {"hook_name": "blocks.5.hook_resid_post"}}),
        ValueError,
        r"cfg.json: hook 'blocks.5.hook_resid_post' says this SAE reads layer 5, but layer 13 was asked for",
        {"layer": 13},
    ),
    # sparsify
    Case("sparsify_loads", sparsify(), None),
    Case(
        "sparsify_transcoder_refused",
        sparsify({"transcode": True}),
        ValueError,
        r"layers.3/cfg.json: transcode=True is not supported",
    ),
    Case(
        "sparsify_groupmax_refused",
        sparsify({"activation": "groupmax"}),
        ValueError,
        r"cfg.json: activation='groupmax' is not supported",
    ),
    Case(
        "sparsify_missing_key",
        sparsify(drop_key="encoder.bias"),
        ValueError,
        r"layers.3/sae.safetensors: missing key\(s\) \['encoder.bias'\]",
    ),
    Case(
        "sparsify_folder_layer_mismatch",
        sparsify(),
        ValueError,
        r"layers.3: the hookpoint folder's name says this "
        r"SAE reads layer 3, but layer 4 was asked for",
        {"layer": 4},
    ),
    # Gemma Scope
    Case("gemma_scope_loads", gemma_scope(), None),
    Case(
        "gemma_scope_truncated",
        gemma_scope(truncated=True),
        ValueError,
        r"params.npz: not a readable .npz file \(truncated or corrupt\?\)",
    ),
    Case(
        "gemma_scope_missing_threshold",
        gemma_scope(drop="threshold"),
        ValueError,
        r"params.npz: missing key\(s\) \['threshold'\]",
    ),
    Case("gemma_scope_nan", gemma_scope(nan=True), ValueError, r"params.npz: key 'b_enc' holds 1 non-finite"),
    # seed checkpoint
    Case("seed_loads", seed_pt(), None, "", {"k": K}),
    Case("seed_empty", seed_pt(raw=b""), ValueError, r"sae_weights.pt: the file is empty \(0 bytes\)"),
    Case(
        "seed_truncated",
        seed_pt(truncated=True),
        ValueError,
        r"sae_weights.pt: not a readable torch checkpoint \(truncated or corrupt\?\)",
    ),
    Case(
        "seed_garbage",
        seed_pt(raw=b"not a checkpoint at all"),
        ValueError,
        r"sae_weights.pt: torch.load\(weights_only=True\) refused it: not a plain tensor checkpoint.*"
        r"Unsupported operand",
    ),
    Case(
        "seed_pickled_code_refused",
        seed_pt(content=lambda s: {"W_enc": Evil()}),
        ValueError,
        r"sae_weights.pt: torch.load\(weights_only=True\) refused it.*GLOBAL posix.system",
    ),
    Case(
        "seed_is_a_list",
        seed_pt(content=lambda s: [s["W_enc"]]),
        ValueError,
        r"sae_weights.pt: expected a state dict of tensors, got list",
    ),
    Case(
        "seed_nan",
        seed_pt(content=lambda s: with_nan("b_enc", 2)({k: v.detach() for k, v in s.items()})),
        ValueError,
        r"sae_weights.pt: key 'b_enc' holds 1 non-finite",
        {"k": K},
    ),
    Case(
        "seed_bf16_converted",
        seed_pt(content=lambda s: {k: v.detach().bfloat16() for k, v in s.items()}),
        None,
        "",
        {"k": K},
    ),
    Case("seed_k_too_large", seed_pt(), ValueError, r"sae_weights.pt: k=32 must be in \[1, dict_size=24\]"),
    Case(
        "seed_missing_key",
        seed_pt(content=lambda s: {k: v.detach() for k, v in s.items() if k != "b_dec"}),
        ValueError,
        r"sae_weights.pt: missing key\(s\) \['b_dec'\]",
        {"k": K},
    ),
    # dictionary_learning
    Case("dictionary_learning_loads", dictionary_learning({"dict_class": "AutoEncoder"}), None),
    Case(
        "dictionary_learning_no_trainer",
        dictionary_learning(None),
        ValueError,
        r"trainer_0/config.json: no 'trainer' object",
    ),
    Case(
        "dictionary_learning_gated_refused",
        dictionary_learning({"dict_class": "GatedAutoEncoder"}),
        ValueError,
        r"trainer_0/config.json: dictionary_learning dict_class 'GatedAutoEncoder' is not supported",
    ),
    Case(
        "dictionary_learning_truncated",
        dictionary_learning({"dict_class": "AutoEncoder"}, truncated=True),
        ValueError,
        r"trainer_0/ae.pt: not a readable torch checkpoint",
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_sae_file(tmp_path, case):
    spec = case.build(tmp_path)
    if case.error is None:
        sae = load_dictionary(spec, **(case.kwargs or {}))
        assert sae.activation_dim == D and sae.dict_size == DICT
        assert all(torch.isfinite(p).all() and p.dtype == torch.float32 for p in sae.parameters())
        return
    with pytest.raises(case.error, match=case.match):
        load_dictionary(spec, **(case.kwargs or {}))
    assert not Path("/tmp/cbd_plugin_pwned").exists()


def test_table_size():
    assert len(CASES) >= 80 and len({c.id for c in CASES}) == len(CASES)


def test_bf16_conversion_keeps_the_values(tmp_path):
    folder = old_folder_with(bf16)(tmp_path)
    reference = {k: v.bfloat16().float() for k, v in topk().state_dict().items()}
    loaded = load_dictionary(folder)
    for key, value in reference.items():
        assert torch.equal(getattr(loaded, key), value)


# --- saving: nothing is lost ---


def assert_is_original(folder: Path):
    loaded = load_dictionary(folder)
    assert torch.equal(loaded.W_enc, topk().W_enc) and torch.equal(loaded.b_dec, topk().b_dec)
    assert not [p for p in folder.parent.iterdir() if ".tmp-" in p.name or ".old-" in p.name]


def test_saving_nan_weights_is_refused_and_the_old_sae_survives(tmp_path):
    folder = plugin(tmp_path)
    bad = topk(5)
    with torch.no_grad():
        bad.W_dec[2, 3] = float("nan")
    with pytest.raises(ValueError, match=r"TopKSAE to be saved in .*sae: key 'W_dec' holds 1 non-finite"):
        bad.save_pretrained(folder)
    assert_is_original(folder)


@pytest.mark.parametrize("crash_in", ["save_file", "sha256_file"])
def test_failed_overwrite_keeps_the_old_sae(tmp_path, monkeypatch, crash_in):
    folder = plugin(tmp_path)

    def crash(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(folder_module, crash_in, crash)
    with pytest.raises(KeyboardInterrupt):
        topk(9).save_pretrained(folder)
    monkeypatch.undo()
    assert_is_original(folder)


def test_failed_swap_restores_the_old_sae(tmp_path, monkeypatch):
    folder = plugin(tmp_path)
    real_replace, calls = os.replace, []

    def replace(src, dst):
        calls.append(dst)
        if len(calls) == 2:  # the new folder's rename into place
            raise OSError("disk gone")
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    with pytest.raises(OSError, match="disk gone"):
        topk(9).save_pretrained(folder)
    monkeypatch.undo()
    assert_is_original(folder)


def test_overwrite_replaces_the_whole_folder_and_keeps_user_files(tmp_path):
    folder = plugin(tmp_path)
    (folder / "NOTES.md").write_text("keep me")
    JumpReLUSAE(D, DICT).save_pretrained(folder, saelens=False)
    assert sorted(p.name for p in folder.iterdir()) == ["NOTES.md", "config.json", "model.safetensors"]
    assert isinstance(load_dictionary(folder), JumpReLUSAE)


def test_stale_temporaries_of_dead_writers_are_cleaned(tmp_path):
    folder = plugin(tmp_path)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    pid = int(dead.stdout)
    (tmp_path / f".sae.tmp-{pid}-deadbeef").mkdir()
    (tmp_path / f".sae.old-{pid}-deadbeef").mkdir()
    (folder / f".config.json.tmp-{pid}-deadbeef").write_text("half")
    live = tmp_path / f".sae.tmp-{os.getpid()}-livewrite"
    live.mkdir()
    topk().save_pretrained(folder)
    left = sorted(p.name for p in tmp_path.iterdir())
    assert left == sorted(["sae", live.name])
    assert not any(".tmp-" in p.name for p in folder.iterdir())


@pytest.mark.parametrize(
    "url, spec",
    [
        ("https://huggingface.co/owner/name", "owner/name"),
        ("https://huggingface.co/owner/name/tree/main/layer_13/width_16k", "owner/name/layer_13/width_16k"),
        ("https://hf.co/owner/name/blob/main/seed/sae_weights.pt", "owner/name:seed/sae_weights.pt"),
        ("https://huggingface.co/owner/name/resolve/main/params.npz?download=true", "owner/name:params.npz"),
    ],
)
def test_hub_url_is_converted_to_the_hub_id(url, spec):
    from cbd_plugin.sae.hub import id_from_url

    assert id_from_url(url) == spec


@pytest.mark.parametrize(
    "make, message",
    [
        (
            lambda p: p.write_text("my thesis"),
            r"FOLDER: exists and is a file, not an SAE folder; refusing to replace it",
        ),
        (
            lambda p: p.mkdir() or (p / "thesis.tex").write_text("x"),
            r"FOLDER: holds \['thesis.tex'\] and is not an SAE folder; refusing to write into it",
        ),
    ],
)
def test_save_onto_something_else_is_refused_and_it_survives(tmp_path, make, message):
    target = tmp_path / "out"
    make(target)
    listing = sorted(p.name for p in tmp_path.rglob("*"))
    with pytest.raises(FileExistsError, match=message.replace("FOLDER", str(target))):
        topk().save_pretrained(target)
    assert sorted(p.name for p in tmp_path.rglob("*")) == listing  # nothing moved, hidden or left behind
    assert (target.read_text() if target.is_file() else (target / "thesis.tex").read_text()) in ("my thesis", "x")


def test_from_pretrained_on_a_saelens_folder_points_to_load_dictionary(tmp_path):
    folder = saelens()(tmp_path)
    with pytest.raises(
        FileNotFoundError,
        match=r"sae/config.json is missing.*it holds a SAELens SAE: read it with "
        r"cbd_plugin.sae.load_dictionary\('.*sae'\)",
    ):
        Dictionary.from_pretrained(folder)


def test_a_second_writer_of_the_same_sae_folder_fails_at_once(tmp_path):
    folder = plugin(tmp_path)
    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"""
import time
import cbd_plugin.sae.folder as folder
from cbd_plugin.sae import TopKSAE
def slow(tensors, path, **kw):
    print("writing", flush=True)
    time.sleep(600)
folder.save_file = slow
TopKSAE({D}, {DICT}, {K}).save_pretrained({str(folder)!r})
""",
        ],
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).parents[2],
    )
    try:
        assert child.stdout.readline().strip() == "writing"
        with pytest.raises(
            RuntimeError, match=rf"sae: another process is writing it \(pid {child.pid} on .*, started "
        ):
            topk(3).save_pretrained(folder)
    finally:
        child.kill()
        child.wait()
    topk(4).save_pretrained(folder)  # the killed holder's lock is taken over
    assert torch.equal(load_dictionary(folder).W_enc, topk(4).W_enc)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sae"]


def test_interrupted_swap_names_the_backup(tmp_path):
    folder = plugin(tmp_path)
    os.replace(folder, tmp_path / f".sae.old-{os.getpid()}-12345678")
    with pytest.raises(FileNotFoundError, match=r"an interrupted save left the previous SAE at .*\.sae\.old-"):
        Dictionary.from_pretrained(folder)


def test_from_pretrained_on_a_parent_of_layer_folders_names_them(tmp_path):
    with pytest.raises(
        FileNotFoundError,
        match=r"card/config.json is missing.*it holds SAE folders \['layer_13', "
        r"'layer_24'\]: pick one \(for layer folders: load_dictionary",
    ):
        Dictionary.from_pretrained(layered(tmp_path))


def test_batchtopk_without_normaliser_keeps_its_nan_sentinel(tmp_path):
    sae = BatchTopKSAE(D, DICT, K)
    assert not sae.has_normalizer
    loaded = load_dictionary(sae.save_pretrained(tmp_path / "b"))
    assert isinstance(loaded, BatchTopKSAE) and not loaded.has_normalizer
    partial = {
        **sae.state_dict(),
        "activation_mean": torch.zeros(D),
        "activation_std": torch.tensor([float("nan")] + [1.0] * (D - 1)),
    }
    with pytest.raises(ValueError, match=r"x: key 'activation_std' holds 1 non-finite"):
        BatchTopKSAE._from_state({"activation_dim": D, "dict_size": DICT, "k": K}, partial, "x")


def test_kill_9_during_overwrite_keeps_the_old_sae_and_the_next_save_cleans_up(tmp_path):
    folder = plugin(tmp_path)
    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"""
import time, torch
import cbd_plugin.sae.folder as folder
from cbd_plugin.sae import TopKSAE
real = folder.save_file
def slow(tensors, path, **kw):
    real(tensors, path, **kw)
    print("written", flush=True)
    time.sleep(600)
folder.save_file = slow
TopKSAE({D}, {DICT}, {K}).save_pretrained({str(folder)!r})
""",
        ],
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).parents[2],
    )
    try:
        assert child.stdout.readline().strip() == "written"
    finally:
        child.kill()
        child.wait()
    assert [p.name for p in tmp_path.iterdir() if ".tmp-" in p.name]  # the killed writer's half-built folder
    loaded = load_dictionary(folder)
    assert torch.equal(loaded.W_enc, topk().W_enc)
    topk(2).save_pretrained(folder)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sae"]
    assert torch.equal(load_dictionary(folder).W_enc, topk(2).W_enc)


def test_finite_check_is_exact_when_the_sum_overflows():
    huge = torch.full((4,), 3e38)
    assert not torch.isfinite(huge.sum())
    folder_module.check_finite({"W": huge}, "x")  # finite values whose sum overflows: accepted
    with pytest.raises(ValueError, match=r"x: key 'W' holds 1 non-finite"):
        folder_module.check_finite({"W": torch.cat([huge, torch.tensor([float("inf")])])}, "x")
