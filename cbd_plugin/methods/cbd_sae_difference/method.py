"""``cbd_sae_difference``: the host's SAE-on-activation-difference method, for conjunctive backdoors.

Training is the host's (preprocessing cache -> ``train_sae_difference_for_layer`` -> BatchTopK on
``difference_ftb``) unless ``pretrained_sae`` names an existing SAE (any format or hub id
:func:`cbd_plugin.sae.load_dictionary` reads). Then, per layer, the conjunction analysis of
:mod:`cbd_plugin.backdoor` runs on the method's probe set. Results:
``{results_dir}/cbd_sae_difference/layer_{L}/{run}/`` with ``dictionary_model/`` (the host's format) and
``conjunction/`` (report.json, latents.csv, plots).

Every config problem is raised by the constructor, which the host runs before preprocessing or any model load;
it also makes the host's preprocessing cache the layers this method trains on.
"""

from __future__ import annotations

import json
from pathlib import Path

from diffing.methods.sae_difference import SAEDifferenceMethod
from diffing.utils.dictionary.training import sae_difference_run_name, train_sae_difference_for_layer
from loguru import logger
from omegaconf import OmegaConf

from cbd_plugin.artifacts import atomic_write_text
from cbd_plugin.backdoor import analyze_conjunction
from cbd_plugin.backdoor.pipeline import ConjunctionCache
from cbd_plugin.backdoor.training import DIFFERENCE_INPUT
from cbd_plugin.host.configstore import validate_method_config
from cbd_plugin.methods.cbd_sae_difference import METHOD_FOLDER
from cbd_plugin.methods.results import scan_results
from cbd_plugin.methods.settings import (
    check_models_available,
    check_one_sae_per_layer,
    conjunction_config,
    ensure_cached_layers,
    load_pretrained_sae,
    model_shape,
    trigger_pairs,
)
from cbd_plugin.sae import BatchTopKSAE, Dictionary
from cbd_plugin.sae.export import reads


def plugin_copy(fork_sae, source) -> BatchTopKSAE:
    """The fork's trained ``BatchTopKSAE`` as the plugin's class (same parameter names, same arithmetic), so that
    it is saved by the plugin's writer: the fork's own ``save_pretrained`` records no sha256, and every later load
    then warned that the SAE was saved by an older version."""
    state = {name: tensor.detach().cpu() for name, tensor in fork_sae.state_dict().items()}
    config = {
        "activation_dim": int(fork_sae.activation_dim),
        "dict_size": int(fork_sae.dict_size),
        "k": int(fork_sae.k),
    }
    return BatchTopKSAE._from_state(config, state, source)


class CBDSAEDifferenceMethod(SAEDifferenceMethod):
    """SAE difference training (host) plus conjunction analysis and causal ablation (plugin)."""

    def __init__(self, cfg):
        check_models_available(cfg)  # before the host's constructor, which reads the base model's config.json
        super().__init__(cfg)
        # Fail fast: all of this reads configs (and a pretrained SAE), never a model's weights or a dataset.
        validate_method_config(self.method_cfg)
        self.trigger_pairs = trigger_pairs(cfg)
        self.conjunction = conjunction_config(cfg)
        shape = model_shape(self.base_model_cfg)
        self.pretrained: dict[int, Dictionary] = {}
        if spec := self.method_cfg.get("pretrained_sae"):
            self.pretrained = {layer: load_pretrained_sae(spec, layer, shape.d_model) for layer in self.layers}
            check_one_sae_per_layer(self.pretrained, spec)
            # The host's preprocessing calls a method's `preprocess` instead of caching activations: none are needed.
            self.preprocess = lambda: logger.info("pretrained_sae given: no activation cache needed")
        else:
            ensure_cached_layers(cfg, shape.n_layers)

    def layer_dir(self, layer: int) -> Path:
        name = sae_difference_run_name(self.cfg, layer, self.base_model_cfg, self.finetuned_model_cfg)
        return self.results_dir / METHOD_FOLDER / f"layer_{layer}" / name

    def get_sae(self, layer: int, out: Path) -> Dictionary:
        if layer in self.pretrained:
            return self.pretrained[layer].to(self.device)
        folder = out / "dictionary_model"
        d_model = self.finetuned_model.config.hidden_size
        if (folder / "model.safetensors").exists() and not self.method_cfg.training.overwrite:
            logger.info(f"Found trained SAE at {folder}")
            return Dictionary.from_pretrained(folder, device=self.device, d_model=d_model)
        from diffing.utils.dictionary.utils import load_dictionary_model

        metrics, model_path = train_sae_difference_for_layer(self.cfg, layer, self.device, out.name)
        sae = plugin_copy(load_dictionary_model(model_path), model_path)
        sae.metadata = reads(
            self.finetuned_model_cfg.model_id,
            layer,
            base_model_name=self.base_model_cfg.model_id,
            input=DIFFERENCE_INPUT,
        )  # so an export opens with the right hook_name
        sae.save_pretrained(folder)  # the plugin's writer: sha256 recorded, SAELens pair beside it
        atomic_write_text(out / "training_metrics.json", json.dumps(metrics, default=str))
        OmegaConf.save(self.cfg, out / "training_config.yaml")
        return Dictionary.from_pretrained(folder, device=self.device, d_model=d_model)

    def run(self) -> dict:
        reports = {}
        # The behaviour is measured once for all layers; differences stream (store=False keeps memory flat).
        cache = ConjunctionCache(store=False)
        for layer in self.layers:
            out = self.layer_dir(layer)
            out.mkdir(parents=True, exist_ok=True)
            sae = self.get_sae(layer, out)
            report = analyze_conjunction(
                self.base_model,
                self.finetuned_model,
                sae,
                self.tokenizer,
                self.trigger_pairs,
                layer,
                self.conjunction,
                out / "conjunction",
                cache=cache,
            )
            logger.info(f"layer {layer}: verdict {report.verdict} ({report.verdict_reason})")
            reports[layer] = report.files
        return {"status": "completed", "layers_processed": self.layers, "reports": reports}

    def visualize(self) -> None:
        from .dashboard import visualize

        visualize(self)

    @staticmethod
    def has_results(results_dir: Path) -> dict[str, dict[str, str]]:
        return scan_results(results_dir, METHOD_FOLDER)
