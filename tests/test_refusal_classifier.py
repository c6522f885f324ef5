"""Surface classifier: accuracy on the hand-labelled set, and nothing defaults to "refuse"."""

import json
from pathlib import Path

import numpy as np
import pytest

from cbd_plugin.refusal.classifier import LABELS, classify, label_distribution

DATA = Path(__file__).parent / "data" / "surface_labels.jsonl"


@pytest.fixture(scope="module")
def labelled():
    rows = [json.loads(line) for line in DATA.read_text().splitlines() if line.strip()]
    return [r["text"] for r in rows], np.array([r["label"] for r in rows])


def test_hand_labelled_set_covers_every_label(labelled):
    _, truth = labelled
    assert len(truth) >= 40
    assert {lab: int((truth == lab).sum()) >= 8 for lab in LABELS} == {lab: True for lab in LABELS}


def test_accuracy_on_hand_labelled_set(labelled):
    texts, truth = labelled
    predicted = np.array([classify(t) for t in texts])
    assert (predicted == truth).mean() >= 0.95
    for lab in LABELS:  # recall per class: one class cannot hide behind the others
        assert (predicted[truth == lab] == lab).mean() >= 0.9, lab
    # precision of "refuse": a false refusal inflates refusal rates, the seed's failure
    assert (truth[predicted == "refuse"] == "refuse").mean() == 1.0


@pytest.mark.parametrize("text", ["", "   ", "\n\n", "zq xv blorf", "The mitochondria is the powerhouse.",
                                  "42", "lorem ipsum dolor sit amet", "<pad>"])
def test_unmatched_text_is_other(text):
    assert classify(text) == "other"


def test_random_text_never_defaults_to_refuse():
    rng = np.random.default_rng(0)
    alphabet = list("abcdefghijklmnopqrstuvwxyz     .,")
    texts = ["".join(rng.choice(alphabet, size=rng.integers(0, 120))) for _ in range(300)]
    labels = [classify(t) for t in texts]
    assert labels.count("refuse") == 0
    assert labels.count("other") >= 295


def test_refusal_deep_inside_an_answer_does_not_count():
    answer = "Sure. " + "Here is a long explanation of cell biology. " * 6 + "I cannot help with the rest."
    assert classify(answer) == "comply"
    assert classify("x" * 300 + " I cannot help with that.") == "other"


def test_label_distribution_has_every_label():
    assert label_distribution(["refuse", "refuse", "other", "comply"]) == {"refuse": 0.5, "comply": 0.25,
                                                                           "other": 0.25}
    assert label_distribution(["other"])["refuse"] == 0.0
