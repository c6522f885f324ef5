"""``contrastive_bio_sae``: a contrastive TopK SAE and the refusal-depth audit of base vs fine-tuned model.

Per run: load the tiered prompt set (organism's ``prompt_set`` or the method's ``prompts``), get the SAE
(``pretrained_sae``: any SAE :func:`cbd_plugin.sae.load_dictionary` reads, the seed's ``sae_weights.pt`` included;
otherwise train it on the base model's select-split residuals, with the host fork's ``trainSAE`` when installed),
optionally train the same SAE without the contrastive term for comparison, then
:func:`cbd_plugin.refusal.audit_refusal_depth`. Results: ``{results_dir}/contrastive_bio_sae/layer_{L}/{run}/``
with ``sae/``, ``sae_no_contrastive/`` and ``audit/``.

Activations come from nnsight traces of the prompt set itself (the tiers are labels of prompts, which the host's
generic preprocessing cache does not carry), so ``requires_preprocessing`` is false. Every config problem is
raised by the constructor, before any model or dataset loads (only the model's ``config.json`` is read).
"""

from __future__ import annotations

from importlib.util import find_spec
from pathlib import Path

from diffing.methods.diffing_method import DiffingMethod
from loguru import logger
from omegaconf import DictConfig, OmegaConf

from cbd_plugin.host.configstore import validate_method_config
from cbd_plugin.methods.contrastive_bio_sae import METHOD_FOLDER
from cbd_plugin.methods.results import scan_results
from cbd_plugin.methods.settings import (
    audit_layer,
    check_models_available,
    load_pretrained_sae,
    model_shape,
    prompt_source,
)
from cbd_plugin.refusal import AuditConfig, audit_refusal_depth
from cbd_plugin.refusal.audit import prepare_prompts
from cbd_plugin.refusal.training import train_tier_sae
from cbd_plugin.sae import ContrastiveSAEConfig, Dictionary


class ContrastiveBioSAEMethod(DiffingMethod):
    """Refusal depth: does a model that refuses still represent the hazard concept at the audit layer?"""

    def __init__(self, cfg: DictConfig):
        check_models_available(cfg)  # before anything reads a model's files
        super().__init__(cfg)
        self.results_dir = Path(cfg.diffing.results_dir)
        # Fail fast: configs and (if given) the pretrained SAE only, never a model's weights or a dataset.
        validate_method_config(self.method_cfg)
        self.audit_cfg = AuditConfig.from_dict(OmegaConf.to_container(self.method_cfg.audit, resolve=True))
        self.prompt_source = prompt_source(cfg)
        shape = model_shape(self.base_model_cfg)
        key = "organism.audit_layer" if cfg.organism.get("audit_layer") is not None else "diffing.method.layer"
        self.layer = audit_layer(cfg.organism.get("audit_layer", self.method_cfg.layer), shape.n_layers, key)
        logger.info(f"contrastive_bio_sae: auditing layer {self.layer} (from {key})")
        self.pretrained = None
        if spec := self.method_cfg.get("pretrained_sae"):
            self.pretrained = load_pretrained_sae(spec, self.layer, shape.d_model, k=self.method_cfg.sae.k)

    def run_dir(self) -> Path:
        sae = self.method_cfg.sae
        name = (
            f"CBSAE-{self.base_model_cfg.name}-{self.cfg.organism.name}-L{self.layer}"
            f"-d{sae.dict_size}-k{sae.k}-cw{sae.contrastive_weight}-t{sae.temperature}"
        )
        return self.results_dir / METHOD_FOLDER / f"layer_{self.layer}" / name

    def sae_config(self, contrastive_weight: float) -> ContrastiveSAEConfig:
        settings = OmegaConf.to_container(self.method_cfg.sae, resolve=True)
        return ContrastiveSAEConfig(
            **{
                **settings,
                "contrastive_weight": contrastive_weight,
                "device": self.device,
                "lm_name": self.base_model_cfg.model_id,
            }
        )

    def training_loop(self) -> str:
        loop = self.method_cfg.training.loop
        if loop == "auto":
            return "fork" if find_spec("dictionary_learning.training") else "plugin"
        return loop

    def get_sae(self, prompts, save_dir: Path, contrastive_weight: float) -> Dictionary:
        d_model = self.base_model.config.hidden_size
        if (save_dir / "dictionary_model" / "config.json").exists() and not self.method_cfg.training.overwrite:
            logger.info(f"Found trained SAE at {save_dir / 'dictionary_model'}")
            return Dictionary.from_pretrained(save_dir / "dictionary_model", device=self.device, d_model=d_model)
        training = self.method_cfg.training
        return train_tier_sae(
            self.base_model,
            self.tokenizer,
            prompts,
            self.layer,
            self.sae_config(contrastive_weight),
            save_dir,
            examples_per_tier=training.examples_per_tier,
            other_per_batch=training.other_per_batch,
            loop=self.training_loop(),
        )

    def run(self) -> dict:
        out = self.run_dir()
        out.mkdir(parents=True, exist_ok=True)
        prompts, _, _ = prepare_prompts(self.prompt_source, self.tokenizer, self.audit_cfg)
        if self.pretrained is not None:
            sae = self.pretrained.to(self.device)
        else:
            sae = self.get_sae(prompts, out / "sae", self.method_cfg.sae.contrastive_weight)
        baseline = None
        if self.method_cfg.compare_without_contrastive and self.pretrained is None:
            baseline = self.get_sae(prompts, out / "sae_no_contrastive", 0.0)
        report = audit_refusal_depth(
            self.base_model,
            self.finetuned_model,
            self.tokenizer,
            sae,
            prompts,
            self.layer,
            self.audit_cfg,
            out / "audit",
            baseline_sae=baseline,
        )
        verdict = report.verdict.name if report.verdict is not None else None
        logger.info(f"contrastive_bio_sae layer {self.layer}: verdict {verdict}")
        return {"status": "completed", "layer": self.layer, "verdict": verdict, "files": report.files}

    def visualize(self) -> None:
        from .dashboard import visualize

        visualize(self)

    @staticmethod
    def has_results(results_dir: Path) -> dict[str, dict[str, str]]:
        return scan_results(results_dir, METHOD_FOLDER)
