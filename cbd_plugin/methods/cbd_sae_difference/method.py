"""``cbd_sae_difference``: the host's SAE-on-activation-difference method, for conjunctive backdoors.

Training is the host's (preprocessing cache -> ``train_sae_difference_for_layer`` -> BatchTopK on
``difference_ftb``) unless ``pretrained_sae`` names an existing SAE. Then, per layer, the conjunction analysis
of :mod:`cbd_plugin.backdoor` runs on the method's probe set. Results:
``{results_dir}/cbd_sae_difference/layer_{L}/{run}/`` with ``dictionary_model/`` (the host's format) and
``conjunction/`` (report.json, latents.csv, plots).
"""

from __future__ import annotations

import json
from pathlib import Path

from hydra.utils import instantiate
from loguru import logger
from omegaconf import DictConfig, OmegaConf

from diffing.methods.sae_difference import SAEDifferenceMethod
from diffing.utils.dictionary.training import sae_difference_run_name, train_sae_difference_for_layer

from cbd_plugin.backdoor import ConjunctionConfig, TriggerPair, analyze_conjunction
from cbd_plugin.methods.results import scan_results
from cbd_plugin.sae import BatchTopKSAE

METHOD_FOLDER = "cbd_sae_difference"


def resolve_pretrained_sae(folder: str | Path, layer: int, n_layers_requested: int) -> Path:
    """The SAE folder for ``layer``: ``<folder>/layer_{L}/`` (the published per-layer layout) or ``<folder>``
    itself when it holds one SAE and one layer is analysed."""
    folder = Path(folder).expanduser()
    for candidate in (folder / f"layer_{layer}", folder):
        if (candidate / "config.json").exists() and (candidate is not folder or n_layers_requested == 1):
            return candidate
    raise FileNotFoundError(
        f"diffing.method.pretrained_sae={folder}: no SAE for layer {layer}; expected {folder / f'layer_{layer}'}"
        f"/config.json (or {folder}/config.json when a single layer is analysed)"
    )


def trigger_pairs(cfg: DictConfig) -> list[TriggerPair]:
    pairs = cfg.organism.get("trigger_pairs")
    if not pairs:
        raise KeyError(
            f"organism {cfg.organism.name!r} has no 'trigger_pairs': cbd_sae_difference needs the backdoor's "
            "pairs as a list of {a, b, related, charged} in the organism config"
        )
    return [TriggerPair(str(p.a), str(p.b), bool(p.related), bool(p.charged)) for p in pairs]


def conjunction_config(cfg: DictConfig) -> ConjunctionConfig:
    """The method's ``conjunction`` settings; probe templates and fillers from the organism win (they must
    match what the organism was trained on)."""
    settings = OmegaConf.to_container(cfg.diffing.method.conjunction, resolve=True)
    probe = cfg.organism.get("probe")
    if probe is not None:
        # A plain mapping, or one with a Hydra `_target_` that returns it (e.g. an organism corpus's settings).
        probe = instantiate(probe) if "_target_" in probe else OmegaConf.to_container(probe, resolve=True)
        unknown = set(probe) - {"templates", "filler_words", "fire_completion", "use_chat_template"}
        if unknown:
            raise KeyError(f"organism {cfg.organism.name!r}: unknown probe keys {sorted(unknown)}")
        settings.update(probe)
    return ConjunctionConfig(**settings)


class CBDSAEDifferenceMethod(SAEDifferenceMethod):
    """SAE difference training (host) plus conjunction analysis and causal ablation (plugin)."""

    def layer_dir(self, layer: int) -> Path:
        name = sae_difference_run_name(self.cfg, layer, self.base_model_cfg, self.finetuned_model_cfg)
        return self.results_dir / METHOD_FOLDER / f"layer_{layer}" / name

    def sae_folder(self, layer: int, out: Path) -> Path:
        pretrained = self.method_cfg.get("pretrained_sae")
        if pretrained:
            return resolve_pretrained_sae(pretrained, layer, len(self.layers))
        folder = out / "dictionary_model"
        if (folder / "model.safetensors").exists() and not self.method_cfg.training.overwrite:
            logger.info(f"Found trained SAE at {folder}")
            return folder
        self._check_preprocessed_layer(layer)
        from diffing.utils.dictionary.utils import load_dictionary_model

        metrics, model_path = train_sae_difference_for_layer(self.cfg, layer, self.device, out.name)
        load_dictionary_model(model_path).save_pretrained(folder)
        (out / "training_metrics.json").write_text(json.dumps(metrics, default=str))
        OmegaConf.save(self.cfg, out / "training_config.yaml")
        return folder

    def _check_preprocessed_layer(self, layer: int) -> None:
        from diffing.utils.activations import get_layer_indices

        cached = get_layer_indices(self.base_model_cfg.model_id, self.cfg.preprocessing.layers)
        if layer not in cached:
            raise ValueError(
                f"cbd_sae_difference trains on layer {layer} but preprocessing.layers={list(self.cfg.preprocessing.layers)} "
                f"caches layers {cached}: add preprocessing.layers=[...] matching diffing.method.layers, "
                "or pass diffing.method.pretrained_sae=<folder>"
            )

    def run(self) -> dict:
        pairs = trigger_pairs(self.cfg)
        conjunction = conjunction_config(self.cfg)
        d_model = self.finetuned_model.config.hidden_size
        reports = {}
        for layer in self.layers:
            out = self.layer_dir(layer)
            out.mkdir(parents=True, exist_ok=True)
            sae = BatchTopKSAE.from_pretrained(self.sae_folder(layer, out), device=self.device, d_model=d_model)
            report = analyze_conjunction(self.base_model, self.finetuned_model, sae, self.tokenizer, pairs, layer,
                                         conjunction, out / "conjunction")
            logger.info(f"layer {layer}: verdict {report.verdict} ({report.verdict_reason})")
            reports[layer] = report.files
        return {"status": "completed", "layers_processed": self.layers, "reports": reports}

    def visualize(self) -> None:
        from .dashboard import visualize

        visualize(self)

    @staticmethod
    def has_results(results_dir: Path) -> dict[str, dict[str, str]]:
        return scan_results(results_dir, METHOD_FOLDER)
