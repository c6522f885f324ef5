"""Read the ecosystem's SAE formats into plugin ``Dictionary`` classes; the format is chosen by the files on disk.

=========================  ======================================  ==========================================
format                     files                                   becomes
=========================  ======================================  ==========================================
plugin / the host's fork   ``config.json`` + ``model.safetensors``  its ``dict_class`` (sha256 verified)
dictionary_learning        ``config.json`` (``trainer``) + ``ae.pt``  ReLUSAE / TopKSAE / JumpReLUSAE / BatchTopK
the fork's ``trainSAE``    ``config.json`` (``trainer``) +           BatchTopKSAE / CrossCoder /
                           ``model_final.pt``                       BatchTopKCrossCoder (and the above)
SAELens                    ``cfg.json`` + ``sae_weights.safetensors``  ``topk`` / ``standard`` / ``jumprelu``
sparsify                   ``cfg.json`` + ``sae.safetensors``        TopKSAE (``x - b_dec``, relu, top-k)
Gemma Scope                ``params.npz``                           JumpReLUSAE (no ``b_dec`` subtraction)
BioRefusalAudit seed       ``sae_weights.pt`` (or any ``*.pt``)     TopKSAE (k from the caller, card: 32)
=========================  ======================================  ==========================================

Each loader maps the library's own ``encode`` formula onto ours (tests compare against the libraries). Options the
plugin cannot reproduce (SAELens per-row ``layer_norm``, transcoders, skip connections...) are refused by name.
"""

from __future__ import annotations

import re
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from loguru import logger

from ..checks import is_int
from ..vocab import SAELENS_CONFIG, SAELENS_WEIGHTS, SPARSIFY_WEIGHTS
from .batchtopk import BatchTopKSAE
from .crosscoder import BatchTopKCrossCoder, CrossCoder
from .dictionary import Dictionary, check_tensors
from .export import reads
from .folder import CONFIG_NAME, WEIGHTS_NAME, load_torch_state, read_json_object, read_safetensors
from .jumprelu import JumpReLUSAE
from .relu import ReLUSAE
from .topk import TopKSAE

GEMMA_SCOPE_PARAMS = "params.npz"
DL_WEIGHTS = "ae.pt"
FORK_WEIGHTS = "model_final.pt"  # what the fork's trainSAE saves at the end (state_dict of trainer.ae)
DL_WEIGHT_NAMES = (DL_WEIGHTS, FORK_WEIGHTS)
SEED_WEIGHTS = "sae_weights.pt"
SEED_DEFAULT_K = 32  # the BioRefusalAudit card's k; its checkpoint does not store it


@dataclass(frozen=True)
class LoadOptions:
    """What a loader may need beyond the files."""

    layer: int | None = None  # the layer the caller wants; checked against a layer the files record
    k: int | None = None  # top-k for formats that do not store it (the seed checkpoint); None: the card's 32


def _positive_int(cfg: dict, key: str, source) -> int:
    value = cfg.get(key)
    if not is_int(value, 1):
        raise ValueError(f"{source}: key '{key}' is {value!r}; expected a positive integer")
    return value


def _check_recorded_layer(recorded: int | None, options: LoadOptions, source, what: str) -> None:
    if recorded is not None and options.layer is not None and recorded != options.layer:
        raise ValueError(
            f"{source}: {what} says this SAE reads layer {recorded}, but layer {options.layer} was "
            f"asked for; point at that layer's SAE"
        )


def _layer_in(name: str | None) -> int | None:
    """The layer number in a hook/folder name (``blocks.13.hook_resid_post``, ``layers.13``, ``layer_13``)."""
    match = re.search(r"(?:^|[./_])(?:blocks|layers|layer)[._](\d+)(?:$|[./_])", name or "")
    return int(match.group(1)) if match else None


def _renamed(tensors: dict, expected: dict[str, tuple], rename: dict[str, tuple[str, bool]], source) -> dict:
    """Check ``tensors`` against ``expected`` (file names and shapes), then map file key -> (our key, transpose)."""
    check_tensors(tensors, expected, source)
    return {
        ours: (tensors[theirs].T if transpose else tensors[theirs]).contiguous()
        for theirs, (ours, transpose) in rename.items()
    }


def load_plugin(folder: Path, options: LoadOptions) -> Dictionary:
    return Dictionary.from_pretrained(folder)


def load_saelens(folder: Path, options: LoadOptions) -> Dictionary:
    cfg_path, weights_path = folder / SAELENS_CONFIG, folder / SAELENS_WEIGHTS
    cfg = read_json_object(cfg_path)
    metadata = cfg.get("metadata") if isinstance(cfg.get("metadata"), dict) else {}
    hook_name = metadata.get("hook_name") or cfg.get("hook_name") or cfg.get("hook_point")
    recorded = cfg.get("hook_layer") if isinstance(cfg.get("hook_layer"), int) else _layer_in(hook_name)
    _check_recorded_layer(recorded, options, cfg_path, f"hook {hook_name!r}")
    arch = cfg.get("architecture", "standard")  # SAELens < 6 wrote no architecture for ReLU SAEs
    fn_kwargs = cfg.get("activation_fn_kwargs") or {}
    if cfg.get("activation_fn", cfg.get("activation_fn_str")) == "topk" and "k" in fn_kwargs:
        arch, cfg = "topk", {**cfg, "k": fn_kwargs["k"]}  # SAELens < 6 topk
    refused = {
        "normalize_activations": (cfg.get("normalize_activations", "none"), ("none", "expected_average_only_in", None)),
        "reshape_activations": (cfg.get("reshape_activations", "none"), ("none", None)),
        "rescale_acts_by_decoder_norm": (
            cfg.get("rescale_acts_by_decoder_norm", False),
            (False, None) + ((True,) if arch == "topk" else ()),
        ),
        "finetuning_scaling_factor": (cfg.get("finetuning_scaling_factor", False), (False, None)),
    }
    for key, (value, supported) in refused.items():
        if value not in supported:
            raise ValueError(
                f"{cfg_path}: {key}={value!r} is not supported (a Dictionary's decode(f) cannot "
                f"reproduce it); supported: {[s for s in supported if s is not None]}"
            )
    if cfg.get("normalize_activations") == "expected_average_only_in":
        # SAELens's load_from_disk applies no scaling for it either; the factor lives outside the folder.
        logger.info(
            f"{cfg_path}: normalize_activations='expected_average_only_in' read as no scaling, as "
            f"SAE.load_from_disk does; fold the dataset's scaling factor into the weights if you have it"
        )
    d, d_sae = _positive_int(cfg, "d_in", cfg_path), _positive_int(cfg, "d_sae", cfg_path)
    subtract = cfg.get("apply_b_dec_to_input", True)
    if not isinstance(subtract, bool):
        raise ValueError(f"{cfg_path}: key 'apply_b_dec_to_input' is {subtract!r}; expected true or false")
    tensors = read_safetensors(weights_path)
    if arch == "jumprelu" and "log_threshold" in tensors and "threshold" not in tensors:
        tensors["threshold"] = tensors.pop("log_threshold").exp()  # older JumpReLU files
    config = {"activation_dim": d, "dict_size": d_sae, "subtract_b_dec": subtract}
    if arch == "topk" and cfg.get("rescale_acts_by_decoder_norm"):
        tensors = _fold_decoder_norm(tensors, weights_path)
    classes = {"topk": TopKSAE, "standard": ReLUSAE, "jumprelu": JumpReLUSAE}
    if arch not in classes:
        raise ValueError(
            f"{cfg_path}: SAELens architecture {arch!r} is not supported; supported: ['topk', 'standard', 'jumprelu']"
        )
    if arch == "topk":
        config["k"] = _positive_int(cfg, "k", cfg_path)
    sae = classes[arch]._from_state(config, tensors, weights_path, cfg_path)
    model_name = metadata.get("model_name") or cfg.get("model_name")
    if hook_name or model_name:
        sae.metadata = {"model_name": model_name, "hook_name": hook_name, "layer": recorded}
    return sae


def _fold_decoder_norm(tensors: dict, source) -> dict:
    """SAELens's ``rescale_acts_by_decoder_norm``: top-k of ``h * |W_dec_i|``, decode ``(f / |W_dec_i|) @ W_dec``;
    the same as scaling encoder column i by ``|W_dec_i|`` and decoder row i by its inverse."""
    if "W_dec" not in tensors or "W_enc" not in tensors or "b_enc" not in tensors:
        return tensors  # _from_state names the missing key
    norm = tensors["W_dec"].float().norm(dim=-1)
    if not bool((norm > 0).all()):
        raise ValueError(
            f"{source}: rescale_acts_by_decoder_norm with a zero decoder row (latent "
            f"{int((norm == 0).nonzero()[0])}): cannot rescale"
        )
    return {
        **tensors,
        "W_enc": tensors["W_enc"].float() * norm,
        "b_enc": tensors["b_enc"].float() * norm,
        "W_dec": tensors["W_dec"].float() / norm[:, None],
    }


def load_sparsify(folder: Path, options: LoadOptions) -> Dictionary:
    cfg_path, weights_path = folder / SAELENS_CONFIG, folder / SPARSIFY_WEIGHTS
    cfg = read_json_object(cfg_path)
    _check_recorded_layer(_layer_in(folder.name), options, folder, "the hookpoint folder's name")
    for key, ok in (("activation", "topk"), ("skip_connection", False), ("transcode", False)):
        if cfg.get(key, ok) != ok:
            raise ValueError(
                f"{cfg_path}: {key}={cfg[key]!r} is not supported (only plain top-k SAEs: "
                f"activation='topk', no skip connection, not a transcoder)"
            )
    d, k = _positive_int(cfg, "d_in", cfg_path), _positive_int(cfg, "k", cfg_path)
    n = cfg.get("num_latents") or d * _positive_int(cfg, "expansion_factor", cfg_path)
    n = _positive_int({"num_latents": n}, "num_latents", cfg_path)
    expected = {"encoder.weight": (n, d), "encoder.bias": (n,), "W_dec": (n, d), "b_dec": (d,)}
    rename = {
        "encoder.weight": ("W_enc", True),
        "encoder.bias": ("b_enc", False),
        "W_dec": ("W_dec", False),
        "b_dec": ("b_dec", False),
    }
    tensors = _renamed(read_safetensors(weights_path), expected, rename, weights_path)
    # sparsify's encode: relu(encoder(x - b_dec)), then top-k: our TopKSAE with subtract_b_dec.
    return TopKSAE._from_state(
        {"activation_dim": d, "dict_size": n, "k": k, "subtract_b_dec": True}, tensors, weights_path, cfg_path
    )


def load_gemma_scope(path: Path, options: LoadOptions) -> Dictionary:
    _check_recorded_layer(_layer_in(str(path.parent)), options, path, "its folder path")
    try:
        with np.load(path, allow_pickle=False) as params:
            tensors = {key: torch.from_numpy(np.array(params[key])) for key in params.files}
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as err:
        raise ValueError(f"{path}: not a readable .npz file (truncated or corrupt?): {err}") from err
    if "W_enc" not in tensors or tensors["W_enc"].ndim != 2:
        raise ValueError(f"{path}: key 'W_enc' must be a [d, d_sae] matrix; keys: {sorted(tensors)}")
    d, d_sae = tensors["W_enc"].shape
    # Gemma Scope's encoder: relu(x @ W_enc + b_enc) masked by threshold; it does not subtract b_dec.
    return JumpReLUSAE._from_state({"activation_dim": d, "dict_size": d_sae, "subtract_b_dec": False}, tensors, path)


def load_dictionary_learning(folder: Path, options: LoadOptions) -> Dictionary:
    config_path = folder / CONFIG_NAME
    weights_path = next((folder / name for name in DL_WEIGHT_NAMES if (folder / name).is_file()), folder / DL_WEIGHTS)
    trainer = read_json_object(config_path).get("trainer")
    if not isinstance(trainer, dict):
        raise ValueError(
            f"{config_path}: no 'trainer' object; dictionary_learning's {weights_path.name} needs trainer.dict_class"
        )
    layer = trainer.get("layer")
    _check_recorded_layer(layer if isinstance(layer, int) else None, options, config_path, "trainer.layer")
    dict_class = trainer.get("dict_class")
    state = load_torch_state(weights_path)
    if dict_class in ("CrossCoder", "BatchTopKCrossCoder"):
        sae = load_fork_crosscoder(trainer, state, weights_path, config_path)
    else:
        sae = _load_dl_sae(dict_class, trainer, state, weights_path, config_path)
    if isinstance(trainer.get("lm_name"), str) and isinstance(layer, int):
        sae.metadata = reads(trainer["lm_name"], layer)
    return sae


def load_fork_crosscoder(trainer: dict, state: dict, weights_path: Path, config_path: Path) -> CrossCoder:
    """The fork's ``CrossCoder`` / ``BatchTopKCrossCoder`` (sizes from ``encoder.weight [L, d, F]``)."""
    state = {k.removeprefix("_orig_mod."): v for k, v in state.items()}
    weight = state.get("encoder.weight")
    if weight is None or weight.ndim != 3:
        raise ValueError(
            f"{weights_path}: key 'encoder.weight' must be a [num_layers, d, dict_size] tensor for "
            f"{trainer.get('dict_class')}; keys: {sorted(state)}"
        )
    num_layers, d, d_sae = weight.shape
    decoder = state.get("decoder.weight")
    if decoder is not None and decoder.ndim == 3 and decoder.shape[0] != num_layers:
        raise ValueError(
            f"{weights_path}: the encoder reads {num_layers} source(s) but the decoder writes "
            f"{decoder.shape[0]} (encoder_layers, a subset of sources, is not supported)"
        )
    code_norm = str(trainer.get("code_normalization", "CROSSCODER")).upper()
    config = {"activation_dim": d, "dict_size": d_sae, "num_layers": num_layers, "code_normalization": code_norm}
    for key in ("code_normalization_alpha_sae", "code_normalization_alpha_cc", "target_rms"):
        if isinstance(trainer.get(key), (int, float)) and not isinstance(trainer.get(key), bool):
            config[key] = float(trainer[key])
    if trainer["dict_class"] == "CrossCoder":
        return CrossCoder._from_state(config, state, weights_path, config_path)
    k = int(state["k"]) if "k" in state else _positive_int(trainer, "k", config_path)
    return BatchTopKCrossCoder._from_state({**config, "k": k}, state, weights_path, config_path)


def _load_dl_sae(dict_class, trainer: dict, state: dict, weights_path: Path, config_path: Path) -> Dictionary:
    if "encoder.weight" in state:
        d_sae, d = state["encoder.weight"].shape
    elif "W_enc" in state:
        d, d_sae = state["W_enc"].shape
    else:
        raise ValueError(f"{weights_path}: neither 'encoder.weight' nor 'W_enc' found; keys: {sorted(state)}")
    config = {"activation_dim": d, "dict_size": d_sae}
    linear = {"encoder.weight": ("W_enc", True), "encoder.bias": ("b_enc", False), "decoder.weight": ("W_dec", True)}
    shapes = {"encoder.weight": (d_sae, d), "encoder.bias": (d_sae,), "decoder.weight": (d, d_sae)}
    if dict_class == "AutoEncoder":  # relu(encoder(x - bias)); decoder(f) + bias
        tensors = _renamed(state, {**shapes, "bias": (d,)}, {**linear, "bias": ("b_dec", False)}, weights_path)
        return ReLUSAE._from_state({**config, "subtract_b_dec": True}, tensors, weights_path, config_path)
    if dict_class == "AutoEncoderTopK":  # relu(encoder(x - b_dec)), top-k per row
        k = int(state["k"]) if "k" in state else _positive_int(trainer, "k", config_path)
        state = {key: v for key, v in state.items() if key not in ("k", "threshold")}
        tensors = _renamed(state, {**shapes, "b_dec": (d,)}, {**linear, "b_dec": ("b_dec", False)}, weights_path)
        return TopKSAE._from_state({**config, "k": k, "subtract_b_dec": True}, tensors, weights_path, config_path)
    if dict_class == "JumpReluAutoEncoder":  # relu(pre * (pre > threshold)), pre = x @ W_enc + b_enc
        return JumpReLUSAE._from_state(
            {**config, "subtract_b_dec": bool(trainer.get("apply_b_dec_to_input"))}, state, weights_path, config_path
        )
    if dict_class == "BatchTopKSAE":
        k = int(state["k"]) if "k" in state else _positive_int(trainer, "k", config_path)
        return BatchTopKSAE._from_state({**config, "k": k}, state, weights_path, config_path)
    raise ValueError(
        f"{config_path}: dictionary_learning dict_class {dict_class!r} is not supported; supported: "
        f"['AutoEncoder', 'AutoEncoderTopK', 'JumpReluAutoEncoder', 'BatchTopKSAE', 'CrossCoder', "
        f"'BatchTopKCrossCoder']"
    )


def load_seed(path: Path, options: LoadOptions) -> Dictionary:
    if options.k is None:
        logger.info(f"{path}: the seed checkpoint stores no k; using the BioRefusalAudit card's k={SEED_DEFAULT_K}")
    return TopKSAE.from_seed_checkpoint(path, k=options.k or SEED_DEFAULT_K)


@dataclass(frozen=True)
class Format:
    """An SAE format: the files that identify a folder of it, and its loader."""

    name: str
    files: tuple[str, ...]
    load: Callable[[Path, LoadOptions], Dictionary]
    reads_file: str | None = None  # the loader takes this file, not the folder


# In detection order: the plugin's own folder wins when a save also wrote the SAELens pair beside it.
FORMATS = (
    Format("cbd-plugin / diffing-toolkit fork", (CONFIG_NAME, WEIGHTS_NAME), load_plugin),
    Format("dictionary_learning", (CONFIG_NAME, DL_WEIGHTS), load_dictionary_learning),
    Format("dictionary_learning fork trainSAE output", (CONFIG_NAME, FORK_WEIGHTS), load_dictionary_learning),
    Format("SAELens", (SAELENS_CONFIG, SAELENS_WEIGHTS), load_saelens),
    Format("sparsify", (SAELENS_CONFIG, SPARSIFY_WEIGHTS), load_sparsify),
    Format("Gemma Scope", (GEMMA_SCOPE_PARAMS,), load_gemma_scope, GEMMA_SCOPE_PARAMS),
    Format("BioRefusalAudit seed checkpoint", (SEED_WEIGHTS,), load_seed, SEED_WEIGHTS),
)
SAE_FILES = tuple(dict.fromkeys(name for fmt in FORMATS for name in fmt.files))


def detect(folder: Path) -> Format | None:
    """The format whose files are all in ``folder``, or ``None``.

    A ``config.json`` beside no ``ae.pt`` / ``model_final.pt`` is ours even without ``model.safetensors``: its loader
    then says the weights are missing rather than falling back to the SAELens copy a save writes beside them.
    """
    if (folder / CONFIG_NAME).is_file() and not any((folder / name).is_file() for name in DL_WEIGHT_NAMES):
        return FORMATS[0]
    return next((fmt for fmt in FORMATS if all((folder / name).is_file() for name in fmt.files)), None)


def looks_like(folder: Path) -> str:
    """Describe the partial formats in ``folder`` ("" if it holds none of their files)."""
    notes = []
    for fmt in FORMATS:
        present = [name for name in fmt.files if (folder / name).is_file()]
        missing = [name for name in fmt.files if name not in present]
        if present and missing:
            hint = " (an interrupted save?)" if fmt is FORMATS[0] and missing == [CONFIG_NAME] else ""
            notes.append(f"a {fmt.name} folder ({', '.join(present)}) lacking {', '.join(missing)}{hint}")
    return "; or ".join(notes)


def load_file_spec(path: Path, options: LoadOptions) -> Dictionary:
    """Load an SAE named by one file: ``params.npz``, a ``.pt`` checkpoint, or a file of a folder format."""
    if path.suffix == ".npz":
        return load_gemma_scope(path, options)
    if path.name in DL_WEIGHT_NAMES and (path.parent / CONFIG_NAME).is_file():
        return load_dictionary_learning(path.parent, options)
    if path.suffix == ".pt":
        return load_seed(path, options)
    if path.name in SAE_FILES:
        return load_folder_sae(path.parent, options)
    raise ValueError(
        f"{path}: not an SAE file this plugin reads (a folder with one of {list(SAE_FILES)}, "
        f"a Gemma Scope .npz or a .pt state dict)"
    )


def load_folder_sae(folder: Path, options: LoadOptions) -> Dictionary:
    """Load the SAE whose files are directly in ``folder``; errors say what the folder looks like."""
    fmt = detect(folder)
    if fmt is None:
        partial = looks_like(folder)
        found = sorted(p.name for p in folder.iterdir())[:20]
        raise FileNotFoundError(
            f"{folder}: no SAE format recognised"
            + (f"; it looks like {partial}" if partial else f"; it holds {found}")
            + ". Readable formats: "
            + "; ".join(f"{f.name} ({' + '.join(f.files)})" for f in FORMATS)
        )
    return fmt.load(folder / fmt.reads_file if fmt.reads_file else folder, options)
