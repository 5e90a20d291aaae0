"""Test-set figures for a trained model: metrics, a per-category table, plot data, and a consistency check.

Predictions come from the cached test features; a sample of test drawings is also run through the saved
full model from raw bitmaps, and the two paths must agree. The figures and curves are scikit-learn's; the expected
calibration error, which it lacks, is computed here.
"""

from collections import defaultdict

import numpy as np
from sklearn import metrics

from carsketch.errors import PipelineError
from carsketch.inference.onnx_model import OnnxModel
from carsketch.labels import CAR, LABEL_NAMES, NOT_CAR

# Test drawings re-run through the full model to check the cached-feature path; the probabilities
# may differ by float rounding (more so when ONNX Runtime made the features), never by more. A wrong resize,
# normalisation or join shows on any drawing; 64 of them took 0.24 s of evaluate's 0.85 s at 128 px.
AGREEMENT_SAMPLE = 16
AGREEMENT_TOLERANCE = 1e-3
# Points kept in the ROC and precision-recall plots (each curve has one per distinct score).
PLOT_POINTS = 500
# Equal-width bins of P(car) for the expected calibration error.
ECE_BINS = 15


def roc_auc(y: np.ndarray, probability: np.ndarray) -> float | None:
    """Area under the ROC curve: the chance that a car drawing gets a higher P(car) than a not-car one (ties count
    half), whatever the threshold; None with one label only."""
    y = np.asarray(y).astype(bool)
    return float(metrics.roc_auc_score(y, probability)) if 0 < y.sum() < len(y) else None


def expected_calibration_error(y: np.ndarray, probability: np.ndarray, bins: int = ECE_BINS) -> float:
    """The share-weighted gap between mean P(car) and the share of cars, over equal-width bins of P(car)."""
    which = np.clip((probability * bins).astype(int), 0, bins - 1)
    return float(sum(abs(np.mean(y[which == b]) - np.mean(probability[which == b])) * np.mean(which == b)
                     for b in np.unique(which)))


def classification_metrics(y: np.ndarray, probability: np.ndarray, threshold: float) -> dict[str, float | None]:
    """accuracy, loss (binary cross-entropy), precision, recall, F1, ROC AUC (None with one label only), and
    calibration: the Brier score (mean squared error of P(car); 0.25 is a coin's) and the ECE."""
    y, probability = np.asarray(y).astype(bool), np.asarray(probability, np.float64)
    predicted = probability >= threshold
    return {
        "accuracy": float(metrics.accuracy_score(y, predicted)),
        "loss": float(metrics.log_loss(y, probability, labels=[False, True])),
        "precision": float(metrics.precision_score(y, predicted, zero_division=0)),
        "recall": float(metrics.recall_score(y, predicted, zero_division=0)),
        "f1": float(metrics.f1_score(y, predicted, zero_division=0)),
        "roc_auc": roc_auc(y, probability),
        "brier": float(metrics.brier_score_loss(y, probability, pos_label=True)),
        "ece": expected_calibration_error(y, probability),
    }


def per_category(category: np.ndarray, y: np.ndarray, probability: np.ndarray, threshold: float) -> dict[str, dict]:
    """For each source category: drawings, accuracy, the share predicted car and the mean P(car)."""
    rows = defaultdict(list)
    for index, name in enumerate(category.tolist()):
        rows[name].append(index)
    table = {}
    for name, indices in sorted(rows.items()):
        predicted_car = probability[indices] >= threshold
        table[name] = {"label": LABEL_NAMES[int(y[indices[0]])], "drawings": len(indices),
                       "accuracy": float(np.mean(predicted_car == y[indices].astype(bool))),
                       "predicted_car_share": float(np.mean(predicted_car)),
                       "mean_car_probability": float(np.mean(probability[indices]))}
    return table


def unseen_metrics(y: np.ndarray, probability: np.ndarray, threshold: float) -> dict[str, float | int | None]:
    """Figures for drawings of categories never trained on: unseen_car_recall, the share of unseen car drawings
    called a car, and unseen_false_car_rate, the share of unseen not-car drawings called a car (None where there
    are none), with the drawings each counts; and unseen_roc_auc, the chance that an unseen car drawing gets a
    higher P(car) than an unseen not-car one, which compares recipes whatever threshold each ends with (None
    unless both kinds are there)."""
    y, probability = np.asarray(y), np.asarray(probability, np.float64)
    predicted_car = probability >= threshold
    results: dict[str, float | int | None] = {}
    for label, key in ((CAR, "unseen_car_recall"), (NOT_CAR, "unseen_false_car_rate")):
        rows = y == label
        results[key] = float(np.mean(predicted_car[rows])) if rows.any() else None
        results[f"unseen_{LABEL_NAMES[label]}_drawings"] = int(rows.sum())
    results["unseen_roc_auc"] = roc_auc(y == CAR, probability)
    return results


def collected_metrics(y: np.ndarray, probability: np.ndarray, threshold: float) -> dict[str, float | int | None]:
    """On the held-out collected drawings: collected_accuracy; collected_car_recall, the share of those labelled car
    that the model calls a car, and collected_not_car_accuracy, the share of those labelled not car that it calls not
    a car (None where a label has none): corrections are mostly of one kind, which accuracy alone hides; and how
    many there are of each."""
    y, predicted_car = np.asarray(y).astype(bool), np.asarray(probability) >= threshold
    results: dict[str, float | int | None] = {"collected_accuracy": float(metrics.accuracy_score(y, predicted_car)),
                                               "collected_test_drawings": int(len(y))}
    for label, key, called in ((CAR, "collected_car_recall", True), (NOT_CAR, "collected_not_car_accuracy", False)):
        rows = y == bool(label)
        results[key] = float(np.mean(predicted_car[rows] == called)) if rows.any() else None
        results[f"collected_test_{LABEL_NAMES[label]}_drawings"] = int(rows.sum())
    return results


def features_are_cached(config: dict) -> bool:
    """Whether featurize's cached features score the model: not once adapt has fine-tuned it, whose frozen part ends
    elsewhere (at its `adapted` blocks) and whose blocks may be ones that featurize froze."""
    return "adapted" not in config


def _thin(points):
    step = max(1, len(points) // PLOT_POINTS)
    return points[::step] + ([points[-1]] if (len(points) - 1) % step else [])


def plot_data(y: np.ndarray, probability: np.ndarray, threshold: float) -> dict[str, list[dict]]:
    """Rows for DVC's confusion, ROC and precision-recall plots."""
    names = np.array([LABEL_NAMES[NOT_CAR], LABEL_NAMES[CAR]])
    confusion = [{"actual": a, "predicted": p}
                 for a, p in zip(names[np.asarray(y).astype(int)], names[(probability >= threshold).astype(int)])]
    fpr, tpr, _ = metrics.roc_curve(y, probability)
    precision, recall, _ = metrics.precision_recall_curve(y, probability, drop_intermediate=True)
    return {
        "confusion.json": confusion,
        "roc.json": _thin([{"fpr": float(f), "tpr": float(t)} for f, t in zip(fpr, tpr)]),
        "precision_recall.json": _thin([{"recall": float(r), "precision": float(p)}
                                        for r, p in zip(recall[::-1], precision[::-1])]),
    }


def check_agreement(model: OnnxModel, bitmaps: np.ndarray, cached_probability: np.ndarray) -> float:
    """The saved full model, run on raw bitmaps, must give the cached-feature path's probabilities."""
    sample = slice(0, AGREEMENT_SAMPLE)
    full_probability = model.predict_proba(np.asarray(bitmaps[sample]))
    difference = float(np.max(np.abs(full_probability - cached_probability[sample]), initial=0.0))
    if difference > AGREEMENT_TOLERANCE:
        raise PipelineError(f"the saved model and the cached features disagree (max difference {difference:.2g}): "
                            f"the features are stale; re-run with `dvc repro --force featurize`")
    return difference
