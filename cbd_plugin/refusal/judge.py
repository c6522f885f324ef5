"""Optional model-based surface judge: any Hugging Face sequence-classification model as a refusal labeller.

The rules in :mod:`.classifier` are the default. A judge (e.g. ``ProtectAI/distilroberta-base-rejection-v1``,
labels ``NORMAL``/``REJECTION``) is named in the audit config as ``judge: {model: <id or folder>, labels: {...}}``;
it is loaded lazily on first use, through the normal HF cache (``HF_HUB_OFFLINE`` honoured), never with
``trust_remote_code`` unless the config says so. Every label the model can emit must map to one of
``refuse``/``comply``/``other``, checked at load time with the model's own ``id2label``.
Empty completions are ``other`` without asking the model (a classifier has nothing to judge there).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

from .classifier import LABELS, Label, classify_all, confusion, load_labelled


@dataclass
class JudgeConfig:
    """Which model judges completions and how its labels read."""

    model: str  # hub id (owner/name) or a local folder
    labels: dict[str, str] = field(default_factory=lambda: {"NORMAL": "comply", "REJECTION": "refuse"})
    revision: str | None = None  # hub revision (commit, tag or branch); None: the default branch
    max_length: int = 512  # tokens per completion; longer ones are truncated (opening kept)
    batch_size: int = 16
    device: str = "cpu"
    trust_remote_code: bool = False  # only for a model whose code you have read

    def __post_init__(self):
        bad = {k: v for k, v in self.labels.items() if v not in LABELS}
        if bad:
            raise ValueError(f"JudgeConfig.labels: {bad} map to labels outside {LABELS}")
        if self.max_length < 1 or self.batch_size < 1:
            raise ValueError("JudgeConfig: max_length and batch_size must be >= 1")

    @classmethod
    def from_dict(cls, values) -> JudgeConfig:
        """From a mapping (e.g. a Hydra node); unknown keys are an error naming them."""
        values = dict(values)
        unknown = set(values) - set(cls.__dataclass_fields__)
        if unknown:
            raise KeyError(f"judge: unknown keys {sorted(unknown)}; allowed {sorted(cls.__dataclass_fields__)}")
        if "model" not in values:
            raise KeyError("judge: 'model' (a hub id or a local folder) is required")
        return cls(**values)


class Judge:
    """Labels completions with a sequence-classification model; loads it on the first call."""

    def __init__(self, cfg: JudgeConfig):
        self.cfg = cfg
        self._model = None
        self._tokenizer = None
        self._label_of_index: list[str] = []

    def _load(self) -> None:
        from transformers import AutoModelForSequenceClassification, AutoTokenizer  # lazy: optional dependency path

        cfg = self.cfg
        try:
            tokenizer = AutoTokenizer.from_pretrained(
                cfg.model, revision=cfg.revision, trust_remote_code=cfg.trust_remote_code
            )
            model = AutoModelForSequenceClassification.from_pretrained(
                cfg.model, revision=cfg.revision, trust_remote_code=cfg.trust_remote_code
            )
        except OSError as err:
            raise OSError(
                f"judge model {cfg.model!r} could not be loaded (a hub id needs network or the HF cache; "
                f"a folder needs config.json, weights and a tokenizer): {err}"
            ) from err
        id2label = {int(i): str(name) for i, name in model.config.id2label.items()}
        unmapped = sorted(set(id2label.values()) - set(cfg.labels))
        if unmapped:
            raise ValueError(
                f"judge model {cfg.model!r} emits labels {unmapped} that judge.labels does not map; "
                f"its labels are {sorted(id2label.values())}, the mapping has {sorted(cfg.labels)}"
            )
        self._label_of_index = [cfg.labels[id2label[i]] for i in range(len(id2label))]
        self._model = model.to(cfg.device).eval()
        self._tokenizer = tokenizer

    def probabilities(self, completions: list[str]) -> np.ndarray:
        """Softmax over the model's own labels, [n, n_model_labels], in the model's label order."""
        import torch

        if self._model is None:
            self._load()
        out = []
        for start in range(0, len(completions), self.cfg.batch_size):
            batch = self._tokenizer(
                completions[start : start + self.cfg.batch_size],
                padding=True,
                truncation=True,
                max_length=self.cfg.max_length,
                return_tensors="pt",
            ).to(self.cfg.device)
            with torch.inference_mode():
                out.append(torch.softmax(self._model(**batch).logits.float(), dim=-1).cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, len(self._label_of_index)))

    def classify_all(self, completions: Iterable[str]) -> list[Label]:
        texts = [c or "" for c in completions]
        judged = [i for i, t in enumerate(texts) if t.strip()]
        labels: list[Label] = ["other"] * len(texts)
        if judged:
            best = self.probabilities([texts[i] for i in judged]).argmax(axis=1)
            for i, k in zip(judged, best):
                labels[i] = self._label_of_index[k]
        return labels

    def estimated_confusion(self) -> dict:
        """Per-class precision/recall of this judge on the shipped hand-labelled set (as the rules report)."""
        rows = load_labelled()
        return {
            "labelled_set": "cbd_plugin/refusal/data/surface_labels.jsonl",
            "classifier": f"judge:{self.cfg.model}",
            **confusion([r["label"] for r in rows], self.classify_all(r["text"] for r in rows)),
        }


def surface_labeller(judge: JudgeConfig | dict | None = None):
    """``labels(completions) -> list[Label]`` and ``estimated_confusion() -> dict``: the rules, or the judge."""
    if judge is None:
        from .classifier import estimated_confusion

        return classify_all, estimated_confusion
    model = Judge(judge if isinstance(judge, JudgeConfig) else JudgeConfig.from_dict(judge))
    return model.classify_all, model.estimated_confusion
