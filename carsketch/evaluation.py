"""Test-set figures for a trained model: metrics, a per-category table, plot data, and a consistency check.

Predictions come from the cached test features; a sample of test drawings is also run through the saved
full model from raw bitmaps, and the two paths must agree.
"""

from collections import defaultdict

import numpy as np
import torch
from sklearn import metrics as skm

from carsketch.errors import PipelineError
from carsketch.labels import LABEL_NAMES
from carsketch.model import TrainedModel, cached_logits

# Test drawings re-run through the full model to check the cached-feature path; the probabilities
# may differ by float rounding (more so when ONNX Runtime made the features), never by more.
AGREEMENT_SAMPLE = 64
AGREEMENT_TOLERANCE = 1e-3
# Points kept in the precision-recall plot (the curve has one per distinct score).
PLOT_POINTS = 500


def classification_metrics(y: np.ndarray, probability: np.ndarray, threshold: float) -> dict[str, float | None]:
    """accuracy, loss (binary cross-entropy), precision, recall, F1 and ROC AUC."""
    predicted = probability >= threshold
    return {
        "accuracy": skm.accuracy_score(y, predicted),
        "loss": skm.log_loss(y, probability, labels=[0, 1]),
        "precision": skm.precision_score(y, predicted, zero_division=0),
        "recall": skm.recall_score(y, predicted, zero_division=0),
        "f1": skm.f1_score(y, predicted, zero_division=0),
        "roc_auc": skm.roc_auc_score(y, probability) if len(set(y.tolist())) == 2 else None,
    }


def per_category(category: np.ndarray, y: np.ndarray, probability: np.ndarray, threshold: float) -> dict[str, dict]:
    """For each source category: drawings, accuracy and the share predicted car."""
    rows = defaultdict(list)
    for index, name in enumerate(category.tolist()):
        rows[name].append(index)
    table = {}
    for name, indices in sorted(rows.items()):
        predicted_car = probability[indices] >= threshold
        table[name] = {"label": LABEL_NAMES[int(y[indices[0]])], "drawings": len(indices),
                       "accuracy": float(np.mean(predicted_car == y[indices].astype(bool))),
                       "predicted_car_share": float(np.mean(predicted_car))}
    return table


def _thin(points):
    step = max(1, len(points) // PLOT_POINTS)
    return points[::step] + ([points[-1]] if (len(points) - 1) % step else [])


def plot_data(y: np.ndarray, probability: np.ndarray, threshold: float) -> dict[str, list[dict]]:
    """Rows for DVC's confusion, ROC and precision-recall plots."""
    names = np.array([LABEL_NAMES[0], LABEL_NAMES[1]])
    confusion = [{"actual": a, "predicted": p}
                 for a, p in zip(names[y.astype(int)], names[(probability >= threshold).astype(int)])]
    fpr, tpr, _ = skm.roc_curve(y, probability)
    precision, recall, _ = skm.precision_recall_curve(y, probability)
    return {
        "confusion.json": confusion,
        "roc.json": [{"fpr": float(f), "tpr": float(t)} for f, t in zip(fpr, tpr)],
        "precision_recall.json": _thin([{"recall": float(r), "precision": float(p)} for r, p in zip(recall, precision)]),
    }


def check_agreement(model: TrainedModel, bitmaps: np.ndarray, cached_probability: np.ndarray) -> float:
    """The saved full model, run on raw bitmaps, must give the cached-feature path's probabilities."""
    sample = slice(0, AGREEMENT_SAMPLE)
    full_probability = model.predict_proba(np.asarray(bitmaps[sample]))
    difference = float(np.max(np.abs(full_probability - cached_probability[sample]), initial=0.0))
    if difference > AGREEMENT_TOLERANCE:
        raise PipelineError(f"the saved model and the cached features disagree (max difference {difference:.2g}): "
                            f"the features are stale; re-run with `dvc repro --force featurize`")
    return difference


def cached_probabilities(model: TrainedModel, features: np.ndarray) -> np.ndarray:
    """P(car) from cached frozen features (a memory map is fine), as float64."""
    return torch.sigmoid(cached_logits(model.classifier, features)).numpy().astype(np.float64)
