"""The composed Hydra config, read into the core's settings and checked before any model or dataset loads.

Host-free (plain OmegaConf + transformers' ``AutoConfig``), so every check here is tested without the host. Both
methods call these from their constructor, which the host runs before preprocessing and before loading a model
(``PreprocessingPipeline.run`` and ``DiffingPipeline.__init__`` both build the method first); only the model's
``config.json`` is read, never its weights. Every error names the config key to change.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from loguru import logger
from omegaconf import DictConfig, OmegaConf

from cbd_plugin.backdoor import ConjunctionConfig, TriggerPair
from cbd_plugin.refusal import PromptSource
from cbd_plugin.sae import Dictionary, load_dictionary

PROBE_KEYS = {"templates", "filler_words", "fire_completion", "use_chat_template"}


class ConfigError(ValueError):
    """A config value that cannot work; the message names its key and what to write instead."""


@dataclass(frozen=True)
class ModelShape:
    """What the checks need to know of a model, read from its ``config.json`` only."""

    n_layers: int
    d_model: int


def model_shape(model_cfg) -> ModelShape:
    """Depth and width of the host's model config (a ``ModelConfig`` or a mapping with ``model_id``), without
    loading weights. Remote code runs only if the model config asks for it, as the host's loader does."""
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(
        model_cfg.model_id,
        subfolder=getattr(model_cfg, "subfolder", "") or "",
        trust_remote_code=bool(getattr(model_cfg, "trust_remote_code", False)),
    )
    text = getattr(config, "text_config", None) or config  # multimodal configs nest the language model's
    return ModelShape(int(text.num_hidden_layers), int(text.hidden_size))


def layer_index(layer, n_layers: int, key: str) -> int:
    """A layer written as the host writes them: a fraction in [0, 1] of ``n_layers - 1`` (``int(f * (n - 1))``)."""
    if isinstance(layer, bool) or not isinstance(layer, (int, float)) or not 0 <= layer <= 1:
        raise ConfigError(
            f"{key}: {layer!r} is not a fraction in [0, 1]; the host reads layers as fractions of "
            f"(n_layers - 1), e.g. 0.52 for layer 13 of a 26-layer model"
        )
    return int(layer * (n_layers - 1))


def audit_layer(layer, n_layers: int, key: str) -> int:
    """The bio method's layer: an int is a layer index, a float in [0, 1) a fraction of ``n_layers - 1``."""
    if isinstance(layer, float) and 0 <= layer < 1:
        return int(layer * (n_layers - 1))
    if isinstance(layer, int) and not isinstance(layer, bool) and 0 <= layer < n_layers:
        return layer
    raise ConfigError(f"{key}={layer!r}: not a layer index of this {n_layers}-layer model nor a fraction in [0, 1)")


def ensure_cached_layers(cfg: DictConfig, n_layers: int) -> list:
    """Make the host's preprocessing cache every layer ``diffing.method.layers`` trains on.

    The host caches ``preprocessing.layers`` (default ``[0.5]``) and trains on ``diffing.method.layers``; a
    mismatch used to surface only after a full preprocessing pass. Missing layers are appended to
    ``preprocessing.layers`` (returned, and logged); an organism's ``preprocessing_overrides.layers`` is the
    organism's own choice, so a mismatch with it is an error instead.
    """
    method_layers = cfg.diffing.method.get("layers")
    if method_layers is None:  # the host then trains on preprocessing.layers itself
        return []
    wanted = {layer_index(f, n_layers, "diffing.method.layers"): f for f in method_layers}
    override = (cfg.organism.get("preprocessing_overrides") or {}).get("layers")
    key = "organism.preprocessing_overrides.layers" if override is not None else "preprocessing.layers"
    source = override if override is not None else cfg.preprocessing.layers
    cached = {layer_index(f, n_layers, key) for f in source}
    missing = [f for index, f in sorted(wanted.items()) if index not in cached]
    if not missing:
        return []
    if override is not None:
        raise ConfigError(
            f"diffing.method.layers={list(method_layers)} trains on layers {sorted(wanted)}, but "
            f"{key}={list(override)} caches layers {sorted(cached)}: make them match"
        )
    cfg.preprocessing.layers = [*cfg.preprocessing.layers, *missing]
    logger.info(f"preprocessing.layers extended with {missing} so the host caches every layer the method trains on")
    return missing


def trigger_pairs(cfg: DictConfig) -> list[TriggerPair]:
    pairs = cfg.organism.get("trigger_pairs")
    if not pairs:
        raise ConfigError(
            f"organism {cfg.organism.get('name')!r} has no 'trigger_pairs': cbd_sae_difference needs "
            "the backdoor's pairs as a list of {a, b, related, charged} in the organism config"
        )
    out = []
    for i, pair in enumerate(pairs):
        missing = [k for k in ("a", "b", "related", "charged") if pair.get(k) is None]
        if missing:
            raise ConfigError(f"organism.trigger_pairs[{i}] lacks {missing}; each pair is {{a, b, related, charged}}")
        out.append(TriggerPair(str(pair.a), str(pair.b), bool(pair.related), bool(pair.charged)))
    return out


def conjunction_config(cfg: DictConfig) -> ConjunctionConfig:
    """The method's ``conjunction`` settings; probe templates and fillers from the organism win (they must
    match what the organism was trained on)."""
    from hydra.utils import instantiate

    settings = OmegaConf.to_container(cfg.diffing.method.conjunction, resolve=True)
    probe = cfg.organism.get("probe")
    if probe is not None:
        # A plain mapping, or one with a Hydra `_target_` that returns it (e.g. an organism corpus's settings).
        probe = instantiate(probe) if "_target_" in probe else OmegaConf.to_container(probe, resolve=True)
        unknown = set(probe) - PROBE_KEYS
        if unknown:
            raise ConfigError(f"organism.probe: unknown keys {sorted(unknown)}; allowed {sorted(PROBE_KEYS)}")
        settings.update(probe)
    try:
        return ConjunctionConfig(**settings)
    except TypeError as exc:  # unknown or missing field
        raise ConfigError(f"diffing.method.conjunction: {exc}") from exc


def prompt_source(cfg: DictConfig) -> PromptSource:
    """The organism's ``prompt_set`` (it knows its tiers) or the method's ``prompts``: a jsonl path, or a mapping
    of :class:`PromptSource` fields (``{preset: wmdp_mmlu_bio}`` for the shipped public set). Checked now (the file
    or preset exists, one kind of source) by :func:`cbd_plugin.refusal.prompts.check_source`; nothing is read."""
    from cbd_plugin.refusal.prompts import check_source

    key = "organism.prompt_set" if cfg.organism.get("prompt_set") else "diffing.method.prompts"
    node = cfg.organism.get("prompt_set") or cfg.diffing.method.get("prompts")
    if not node:
        raise ConfigError(
            "contrastive_bio_sae needs a tiered prompt set: set diffing.method.prompts (a jsonl path, "
            "{path: ...}, {dataset: <id>, ...} or {preset: wmdp_mmlu_bio} for real models) or the "
            "organism's prompt_set"
        )
    values = {"path": node} if isinstance(node, str) else OmegaConf.to_container(node, resolve=True)
    known = {f.name for f in fields(PromptSource)}
    unknown = set(values) - known
    if unknown:
        raise ConfigError(f"{key}: unknown keys {sorted(unknown)}; allowed {sorted(known)}")
    source = PromptSource(**values)
    try:
        check_source(source)
    except (OSError, ValueError, KeyError) as exc:
        raise ConfigError(f"{key}: {exc}") from exc
    return source


def load_pretrained_sae(spec: str, layer: int, d_model: int, k: int | None = None) -> Dictionary:
    """``diffing.method.pretrained_sae``: any SAE :func:`cbd_plugin.sae.load_dictionary` reads (a folder, a file,
    a hub id ``owner/name``, ``owner/name/subfolder``, ``owner/name:file``), checked against the model's width.
    ``k`` serves only formats that do not store it (the seed's ``sae_weights.pt``)."""
    try:
        return load_dictionary(spec, layer=layer, d_model=d_model, k=k)
    except (OSError, ValueError, KeyError) as exc:
        raise ConfigError(f"diffing.method.pretrained_sae={spec!r} (layer {layer}): {exc}") from exc


def check_one_sae_per_layer(saes: dict[int, Dictionary], spec: str) -> None:
    """A single-SAE folder given for several layers would silently analyse every layer with one layer's SAE."""
    by_source: dict[str, int] = {}
    for layer, sae in saes.items():
        if sae.source in by_source:
            raise ConfigError(
                f"diffing.method.pretrained_sae={spec!r}: layers {by_source[sae.source]} and {layer} "
                f"both resolve to {sae.source}; give a folder with layer_{{L}}/ subfolders, or analyse "
                "one layer (diffing.method.layers=[<fraction>])"
            )
        by_source[sae.source] = layer


@dataclass(frozen=True)
class ModelReference:
    """A model the run will load: the config key that names it, its id (hub id or local folder), its subfolder,
    and the file that must be there (``config.json``, or ``adapter_config.json`` for a LoRA adapter)."""

    key: str
    model_id: str
    subfolder: str = ""
    marker: str = "config.json"


def model_references(cfg: DictConfig) -> list[ModelReference]:
    """The base model (``model.model_id``) and the organism's fine-tuned model for ``model.name`` (the host's
    ``get_model_configurations`` lookup, read here without the host). Ids not set yet (``model: auto``, ``???``)
    and configs without the lookup's keys are left to the host to report."""
    refs = []
    model = cfg.get("model") or {}
    if not OmegaConf.is_missing(model, "model_id") and model.get("model_id") and model.get("name") != "auto":
        refs.append(ModelReference("model.model_id", str(model.model_id), str(model.get("subfolder") or "")))
    variant = cfg.get("organism_variant", "default")
    entry = ((cfg.get("organism") or {}).get("finetuned_models") or {}).get(model.get("name"), {}).get(variant)
    if entry:
        name = "adapter_id" if entry.get("adapter_id") else "model_id"
        full = str(entry.get(name) or "")
        if full:
            parts = full.split("/")  # the host splits ids with more than one "/" into repo id and subfolder
            repo, sub = ("/".join(parts[:2]), "/".join(parts[2:])) if len(parts) > 2 else (full, "")
            refs.append(
                ModelReference(
                    f"organism.finetuned_models.{model.get('name')}.{variant}.{name}",
                    repo,
                    sub,
                    "adapter_config.json" if name == "adapter_id" else "config.json",
                )
            )
    return refs


def why_unavailable(ref: ModelReference, offline: bool) -> str | None:
    """None when ``ref`` can be loaded: a local folder holding its marker file, a hub id whose marker is in the hub
    cache, or (online) one that the hub serves. Otherwise the reason, in words."""
    from pathlib import Path

    from huggingface_hub import constants, hf_hub_download, try_to_load_from_cache

    local = Path(ref.model_id).expanduser() / ref.subfolder
    if local.is_dir():
        return None if (local / ref.marker).is_file() else f"the folder {local} has no {ref.marker}"
    filename = f"{ref.subfolder}/{ref.marker}" if ref.subfolder else ref.marker
    if ref.model_id.count("/") != 1:
        return "not a local folder, nor a hub id of the form owner/name"
    if isinstance(try_to_load_from_cache(ref.model_id, filename), str):
        return None
    if offline:
        return f"not in the Hugging Face cache ({constants.HF_HUB_CACHE}) and offline (HF_HUB_OFFLINE=1)"
    try:
        hf_hub_download(ref.model_id, filename)
    except Exception as exc:
        return f"the hub does not serve it ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})"
    return None


def check_models_available(cfg: DictConfig, offline: bool | None = None) -> None:
    """Fail before any model loads, naming the model id and its config key, when a model the run needs is neither a
    local folder nor in the hub cache while offline (online, only its ``config.json`` is fetched to check)."""
    from huggingface_hub import constants

    if offline is None:  # is_offline_mode() reads the environment now; older huggingface_hub has only the constant
        offline = getattr(constants, "is_offline_mode", lambda: constants.HF_HUB_OFFLINE)()
    for ref in model_references(cfg):
        reason = why_unavailable(ref, offline)
        if reason is not None:
            name = f"{ref.model_id}/{ref.subfolder}" if ref.subfolder else ref.model_id
            raise ConfigError(
                f"{ref.key}={name}: {reason}; download it first (`hf download {ref.model_id}`) or "
                f"set {ref.key} to a local folder"
            )
