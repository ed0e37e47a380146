"""Seeded percentile-bootstrap 95 % intervals, pure numpy: classification metrics (paired across models) and
ratios such as loss per token or per byte.

Classification resamples test examples once per round and scores every model on that same resample, so a
difference between two models is measured on identical examples (a paired bootstrap).
"""

import numpy as np

CONFIDENCE = 0.95
VERDICTS = ("beats", "loses to", "not distinguishable from")


def percentile_interval(samples: np.ndarray) -> list[float]:
    """The central 95 % of the resampled values, along the first axis."""
    tail = (1 - CONFIDENCE) / 2 * 100
    low, high = np.percentile(samples, [tail, 100 - tail], axis=0)
    return [float(low), float(high)]


def resampled_confusions(truth: np.ndarray, predictions: dict[str, np.ndarray], num_classes: int,
                         num_resamples: int, seed: int) -> dict[str, np.ndarray]:
    """Per model, its confusion matrix on each resample of the test examples: (num_resamples, K, K)."""
    rng = np.random.default_rng(seed)
    confusions = {name: np.zeros((num_resamples, num_classes, num_classes), dtype=np.int64) for name in predictions}
    for r in range(num_resamples):
        rows = rng.integers(0, len(truth), len(truth))  # one resample, shared by every model: the pairing
        for name, predicted in predictions.items():
            cells = truth[rows] * num_classes + predicted[rows]
            confusions[name][r] = np.bincount(cells, minlength=num_classes**2).reshape(num_classes, num_classes)
    return confusions


def f1_per_class(confusion: np.ndarray) -> np.ndarray:
    """(..., K, K) confusion [true, predicted] -> (..., K) F1 = 2TP / (2TP + FP + FN); 0 where a class is never
    true nor predicted (scikit-learn's zero_division=0)."""
    true_positives = np.diagonal(confusion, axis1=-2, axis2=-1)
    denominator = confusion.sum(-1) + confusion.sum(-2)
    return np.divide(2 * true_positives, denominator, out=np.zeros(denominator.shape), where=denominator > 0)


def accuracy(confusion: np.ndarray) -> np.ndarray:
    return np.trace(confusion, axis1=-2, axis2=-1) / confusion.sum((-2, -1))


def classification_intervals(confusions: np.ndarray, label_names: list[str]) -> dict:
    """Intervals for accuracy, macro F1 and each class's F1 from one model's resampled confusions."""
    f1 = f1_per_class(confusions)  # (R, K)
    return {"accuracy": percentile_interval(accuracy(confusions)), "macro_f1": percentile_interval(f1.mean(-1)),
            "f1": {name: percentile_interval(f1[:, i]) for i, name in enumerate(label_names)}}


def verdict(difference_interval: list[float]) -> str:
    """`model <verdict> baseline`: only an interval of (model - baseline) wholly above or below 0 decides."""
    low, high = difference_interval
    return VERDICTS[0] if low > 0 else VERDICTS[1] if high < 0 else VERDICTS[2]


def paired_f1_difference(model: np.ndarray, baseline: np.ndarray, class_index: int | None) -> dict:
    """Model F1 minus baseline F1 on the same resamples: one class's F1, or macro F1 when class_index is None."""
    f1_model, f1_baseline = f1_per_class(model), f1_per_class(baseline)  # (R, K)
    if class_index is None:
        differences = f1_model.mean(-1) - f1_baseline.mean(-1)
    else:
        differences = f1_model[:, class_index] - f1_baseline[:, class_index]
    interval = percentile_interval(differences)
    return {"ci95": interval, "verdict": verdict(interval)}


def ratio_interval(numerators: np.ndarray, denominators: np.ndarray, num_resamples: int, seed: int) -> list[float]:
    """Interval of sum(numerators) / sum(denominators) when whole units (blocks, documents) are resampled:
    the units' losses are correlated within a unit, not across units."""
    rng = np.random.default_rng(seed)
    units = rng.integers(0, len(numerators), (num_resamples, len(numerators)))  # (R, units)
    return percentile_interval(numerators[units].sum(1) / denominators[units].sum(1))
