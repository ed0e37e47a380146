"""Bootstrap intervals on synthetic predictions: the paired verdict follows the evidence, intervals hold their
point estimates, and a seed fixes every number."""

import numpy as np
import pytest

from tasks.eval.bootstrap import (
    classification_intervals,
    f1_per_class,
    paired_f1_difference,
    ratio_interval,
    resampled_confusions,
)
from tasks.eval.evaluate import EvaluateConfig, classification_metrics, with_intervals

LABELS = ["ham", "spam"]
CFG = EvaluateConfig(bootstrap_resamples=500, bootstrap_seed=7)


def noisy(truth: np.ndarray, error_rate: float, seed: int) -> np.ndarray:
    """The truth with a share of labels flipped: a model of known quality."""
    flip = np.random.default_rng(seed).random(len(truth)) < error_rate
    return np.where(flip, 1 - truth, truth)


@pytest.fixture(scope="module")
def truth() -> np.ndarray:
    return (np.random.default_rng(0).random(600) < 0.3).astype(np.int64)


def compare(truth: np.ndarray, model: np.ndarray, baseline: np.ndarray) -> dict:
    return with_intervals(truth, {"model": model, "baseline": baseline}, LABELS, "spam", CFG)


@pytest.mark.parametrize(("model_error", "baseline_error", "expected"), [
    (0.03, 0.30, "beats"), (0.30, 0.03, "loses to")])
def test_a_clearly_different_model_beats_or_loses(truth, model_error, baseline_error, expected):
    comparisons = compare(truth, noisy(truth, model_error, 1), noisy(truth, baseline_error, 2))["comparisons"]
    assert comparisons["baseline"]["spam_f1"]["verdict"] == expected
    assert comparisons["baseline"]["macro_f1"]["verdict"] == expected


def test_an_identical_model_is_not_distinguishable(truth):
    predicted = noisy(truth, 0.1, 1)
    comparison = compare(truth, predicted, predicted.copy())["comparisons"]["baseline"]["spam_f1"]
    assert comparison["verdict"] == "not distinguishable from" and comparison["ci95"] == [0.0, 0.0]


def test_a_slightly_different_model_is_not_distinguishable(truth):
    model, baseline = noisy(truth, 0.10, 1), noisy(truth, 0.10, 2)
    assert compare(truth, model, baseline)["comparisons"]["baseline"]["spam_f1"]["verdict"] == "not distinguishable from"


def test_intervals_contain_the_point_estimates(truth):
    scored = compare(truth, noisy(truth, 0.1, 1), noisy(truth, 0.2, 2))
    for metrics in (scored["model"], scored["baselines"]["baseline"]):
        low, high = metrics["ci95"]["accuracy"]
        assert low <= metrics["accuracy"] <= high
        low, high = metrics["ci95"]["macro_f1"]
        assert low <= metrics["macro_f1"] <= high
        for label in LABELS:
            low, high = metrics["ci95"]["f1"][label]
            assert low <= metrics["per_class"][label]["f1"] <= high
    difference = scored["comparisons"]["baseline"]["spam_f1"]
    assert difference["ci95"][0] <= difference["difference"] <= difference["ci95"][1]


def test_the_same_seed_gives_the_same_numbers_and_another_seed_others(truth):
    predictions = {"model": noisy(truth, 0.1, 1), "baseline": noisy(truth, 0.2, 2)}
    first, again = (with_intervals(truth, predictions, LABELS, "spam", CFG) for _ in range(2))
    assert first == again
    other = with_intervals(truth, predictions, LABELS, "spam", CFG.model_copy(update={"bootstrap_seed": 8}))
    assert other["model"]["ci95"] != first["model"]["ci95"]


def test_f1_from_a_confusion_matches_scikit_learn(truth):
    predicted = noisy(truth, 0.2, 3)
    confusion = np.array(classification_metrics(truth, predicted, LABELS)["confusion"])
    expected = classification_metrics(truth, predicted, LABELS)["per_class"]
    assert f1_per_class(confusion).tolist() == pytest.approx([expected[label]["f1"] for label in LABELS])
    assert f1_per_class(np.zeros((2, 2), dtype=int)).tolist() == [0.0, 0.0]  # no example: 0, as scikit-learn's zero_division=0


def test_a_never_predicted_class_has_a_zero_width_interval(truth):
    majority = np.zeros_like(truth)
    confusions = resampled_confusions(truth, {"majority": majority}, 2, 200, 0)["majority"]
    assert classification_intervals(confusions, LABELS)["f1"]["spam"] == [0.0, 0.0]
    paired = paired_f1_difference(confusions, confusions, None)
    assert paired == {"ci95": [0.0, 0.0], "verdict": "not distinguishable from"}


def test_a_ratio_interval_resamples_whole_units():
    rng = np.random.default_rng(0)
    losses, tokens = rng.uniform(100, 200, 300), np.full(300, 64.0)
    low, high = ratio_interval(losses, tokens, 1000, 0)
    assert low < losses.sum() / tokens.sum() < high and high - low < 0.2
    assert ratio_interval(losses, tokens, 1000, 0) == [low, high]
