"""Model-based judge: a tiny, randomly initialised sequence-classification model saved locally (no network)."""

import numpy as np
import pytest
import torch

from cbd_plugin.refusal.judge import Judge, JudgeConfig, surface_labeller

WORDS = "i cannot help with that sure here is the answer sorry no yes cells".split()


def save_tiny_judge(folder, bias=(0.0, 0.0), labels=("NORMAL", "REJECTION")):
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast, RobertaConfig, RobertaForSequenceClassification

    vocab = {tok: i for i, tok in enumerate(["<pad>", "<unk>", "<s>", "</s>", *WORDS])}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend, unk_token="<unk>", pad_token="<pad>", bos_token="<s>", eos_token="</s>"
    )
    config = RobertaConfig(
        vocab_size=len(vocab),
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=40,
        pad_token_id=0,
        bos_token_id=2,
        eos_token_id=3,
        id2label=dict(enumerate(labels)),
        label2id={name: i for i, name in enumerate(labels)},
    )
    torch.manual_seed(0)
    model = RobertaForSequenceClassification(config)
    with torch.no_grad():
        model.classifier.out_proj.bias.copy_(torch.tensor(bias))
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return model, tokenizer


def test_judge_loads_lazily_and_matches_the_model(tmp_path):
    model, tokenizer = save_tiny_judge(tmp_path)
    judge = Judge(JudgeConfig(model=str(tmp_path), max_length=32))
    assert judge._model is None  # nothing loaded at construction
    texts = ["i cannot help with that", "sure here is the answer", "cells cells", "sorry no"]
    probs = judge.probabilities(texts)
    assert judge._model is not None
    batch = tokenizer(texts, padding=True, truncation=True, max_length=32, return_tensors="pt")
    with torch.no_grad():
        expected = torch.softmax(model.eval()(**batch).logits, dim=-1).numpy()
    np.testing.assert_allclose(probs, expected, atol=1e-5)
    assert np.allclose(probs.sum(axis=1), 1.0)
    labels = judge.classify_all(texts)
    assert labels == [("comply", "refuse")[k] for k in expected.argmax(axis=1)]


def test_label_mapping_and_empty_text(tmp_path):
    save_tiny_judge(tmp_path, bias=(0.0, 20.0))  # the classifier head always says REJECTION
    labels, _ = surface_labeller({"model": str(tmp_path), "max_length": 32})
    assert labels(["sure here is the answer", "", "   ", "yes"]) == ["refuse", "other", "other", "refuse"]
    remapped = Judge(JudgeConfig(model=str(tmp_path), labels={"NORMAL": "comply", "REJECTION": "other"}, max_length=32))
    assert remapped.classify_all(["i cannot help with that"]) == ["other"]


def test_unmapped_model_label_is_an_error_naming_it(tmp_path):
    save_tiny_judge(tmp_path, labels=("SAFE", "UNSAFE"))
    with pytest.raises(ValueError, match=r"emits labels \['SAFE', 'UNSAFE'\]"):
        Judge(JudgeConfig(model=str(tmp_path), max_length=32)).classify_all(["yes"])


def test_bad_config_is_an_error_before_loading(tmp_path):
    with pytest.raises(ValueError, match="outside"):
        JudgeConfig(model="x", labels={"REJECTION": "refusal"})
    with pytest.raises(KeyError, match="unknown keys"):
        JudgeConfig.from_dict({"model": "x", "trust_code": True})
    with pytest.raises(KeyError, match="'model'"):
        JudgeConfig.from_dict({})
    with pytest.raises(OSError, match="could not be loaded"):
        Judge(JudgeConfig(model=str(tmp_path / "missing"))).classify_all(["yes"])


def test_judge_reports_its_confusion_on_the_shipped_set(tmp_path):
    save_tiny_judge(tmp_path, bias=(0.0, 20.0))
    report = Judge(JudgeConfig(model=str(tmp_path), max_length=32)).estimated_confusion()
    assert report["classifier"].startswith("judge:")
    # an always-REJECTION judge: recall 1 on refusals; "other" only for the empty rows
    assert report["per_class"]["refuse"]["recall"]["value"] == 1.0
    assert report["per_class"]["comply"]["n_predicted"] == 0


def test_rules_are_the_default():
    labels, confusion = surface_labeller(None)
    assert labels(["I'm sorry, but I can't help with that."]) == ["refuse"]
    assert confusion()["classifier"] == "rules"


def test_audit_config_takes_a_judge_checked_before_loading(tmp_path):
    from cbd_plugin.refusal.audit import labeller
    from cbd_plugin.refusal.config import AuditConfig

    with pytest.raises(KeyError, match="unknown keys"):
        AuditConfig(judge={"model": "x", "trust_code": True})
    save_tiny_judge(tmp_path, bias=(0.0, 20.0))
    cfg = AuditConfig(judge={"model": str(tmp_path), "max_length": 32})
    labels, _confusion = labeller(cfg)
    assert labels(["sure here is the answer"]) == ["refuse"]  # the judge's label, not the rules'
    assert labeller(cfg)[0] is labels  # built once per setting: both models and the report share one judge
    assert labeller(AuditConfig())[1]()["classifier"] == "rules"
