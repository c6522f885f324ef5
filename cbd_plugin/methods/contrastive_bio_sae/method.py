"""``contrastive_bio_sae``: a contrastive TopK SAE and the refusal-depth audit of base vs fine-tuned model.

Per run: load the tiered prompt set (organism's ``prompt_set`` or the method's ``prompts``), get the SAE
(``pretrained_sae``: one of our folders or the seed's ``sae_weights.pt``; otherwise train it on the base model's
select-split residuals, with the host fork's ``trainSAE`` when installed), optionally train the same SAE without
the contrastive term for comparison, then :func:`cbd_plugin.refusal.audit_refusal_depth`. Results:
``{results_dir}/contrastive_bio_sae/layer_{L}/{run}/`` with ``sae/``, ``sae_no_contrastive/`` and ``audit/``.

Activations come from nnsight traces of the prompt set itself (the tiers are labels of prompts, which the host's
generic preprocessing cache does not carry), so ``requires_preprocessing`` is false.
"""

from __future__ import annotations

from dataclasses import fields
from importlib.util import find_spec
from pathlib import Path

from loguru import logger
from omegaconf import DictConfig, OmegaConf

from diffing.methods.diffing_method import DiffingMethod

from cbd_plugin.methods.results import scan_results
from cbd_plugin.refusal import AuditConfig, PromptSource, audit_refusal_depth
from cbd_plugin.refusal.audit import prepare_prompts
from cbd_plugin.refusal.training import train_tier_sae
from cbd_plugin.sae import ContrastiveSAEConfig, Dictionary, TopKSAE

METHOD_FOLDER = "contrastive_bio_sae"


def resolve_layer(layer, n_layers: int) -> int:
    """An int is a layer index; a float in [0, 1) a fraction of ``n_layers - 1``, as the host resolves them."""
    if isinstance(layer, float) and 0 <= layer < 1:
        return int(layer * (n_layers - 1))
    if isinstance(layer, int) and 0 <= layer < n_layers:
        return layer
    raise ValueError(f"diffing.method.layer={layer!r}: not a layer index of a {n_layers}-layer model nor a fraction")


def prompt_source(cfg: DictConfig) -> PromptSource:
    """The organism's ``prompt_set`` (it knows its tiers) or the method's ``prompts``: a jsonl path, or a mapping
    of :class:`PromptSource` fields."""
    node = cfg.organism.get("prompt_set") or cfg.diffing.method.get("prompts")
    if not node:
        raise KeyError("contrastive_bio_sae needs a tiered prompt set: organism.prompt_set or diffing.method.prompts "
                       "(a jsonl path, or {path: ...} / {dataset: <id>, ...}; fields id, text, tier, split)")
    if isinstance(node, str):
        return PromptSource(path=node)
    values = OmegaConf.to_container(node, resolve=True)
    known = {f.name for f in fields(PromptSource)}
    unknown = set(values) - known
    if unknown:
        raise KeyError(f"prompt set config: unknown keys {sorted(unknown)}; allowed {sorted(known)}")
    return PromptSource(**values)


def load_pretrained(path: str | Path, k: int, device: str, d_model: int) -> Dictionary:
    """One of our SAE folders (``config.json`` + safetensors) or the seed's ``sae_weights.pt``."""
    path = Path(path).expanduser()
    if path.suffix == ".pt":
        sae = TopKSAE.from_seed_checkpoint(path, k=k)
        sae.check_compatible(d_model)
        return sae.to(device)
    return Dictionary.from_pretrained(path, device=device, d_model=d_model)


class ContrastiveBioSAEMethod(DiffingMethod):
    """Refusal depth: does a model that refuses still represent the hazard concept at the audit layer?"""

    def __init__(self, cfg: DictConfig):
        super().__init__(cfg)
        self.results_dir = Path(cfg.diffing.results_dir)

    @property
    def layer(self) -> int:
        layer = self.cfg.organism.get("audit_layer", self.method_cfg.layer)
        return resolve_layer(layer, self.base_model.config.num_hidden_layers)

    def run_dir(self) -> Path:
        sae = self.method_cfg.sae
        name = (f"CBSAE-{self.base_model_cfg.name}-{self.cfg.organism.name}-L{self.layer}"
                f"-d{sae.dict_size}-k{sae.k}-cw{sae.contrastive_weight}-t{sae.temperature}")
        return self.results_dir / METHOD_FOLDER / f"layer_{self.layer}" / name

    def sae_config(self, contrastive_weight: float) -> ContrastiveSAEConfig:
        settings = OmegaConf.to_container(self.method_cfg.sae, resolve=True)
        return ContrastiveSAEConfig(**{**settings, "contrastive_weight": contrastive_weight, "device": self.device,
                                       "lm_name": self.base_model_cfg.model_id})

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
        return train_tier_sae(self.base_model, self.tokenizer, prompts, self.layer,
                              self.sae_config(contrastive_weight), save_dir,
                              examples_per_tier=training.examples_per_tier, other_per_batch=training.other_per_batch,
                              loop=self.training_loop())

    def run(self) -> dict:
        out = self.run_dir()
        out.mkdir(parents=True, exist_ok=True)
        audit_cfg = AuditConfig.from_dict(OmegaConf.to_container(self.method_cfg.audit, resolve=True))
        prompts, _, _ = prepare_prompts(prompt_source(self.cfg), self.tokenizer, audit_cfg)
        pretrained = self.method_cfg.get("pretrained_sae")
        if pretrained:
            sae = load_pretrained(pretrained, self.method_cfg.sae.k, self.device, self.base_model.config.hidden_size)
        else:
            sae = self.get_sae(prompts, out / "sae", self.method_cfg.sae.contrastive_weight)
        baseline = None
        if self.method_cfg.compare_without_contrastive and not pretrained:
            baseline = self.get_sae(prompts, out / "sae_no_contrastive", 0.0)
        report = audit_refusal_depth(self.base_model, self.finetuned_model, self.tokenizer, sae, prompts, self.layer,
                                     audit_cfg, out / "audit", baseline_sae=baseline)
        verdict = report.verdict.name if report.verdict is not None else None
        logger.info(f"contrastive_bio_sae layer {self.layer}: verdict {verdict}")
        return {"status": "completed", "layer": self.layer, "verdict": verdict, "files": report.files}

    def visualize(self) -> None:
        from .dashboard import visualize

        visualize(self)

    @staticmethod
    def has_results(results_dir: Path) -> dict[str, dict[str, str]]:
        return scan_results(results_dir, METHOD_FOLDER)
