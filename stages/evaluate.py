"""evaluate stage: test-set metrics, a per-category table and plots for the saved model.

Predictions come from the cached test features; a sample of test drawings is also run through the
saved full model from raw bitmaps, and the two paths must agree.
"""

from collections import defaultdict

import numpy as np
import torch
from sklearn import metrics as skm

from stages.errors import PipelineError, run_main
from stages.files import load_npz, save_json
from stages.model import batched, load_trained_model
from stages.paths import FEATURES_DIR, METRICS_FILE, MODEL_FILE, PER_CATEGORY_FILE, PLOTS_DIR, PROCESSED_DIR
from stages.preprocess import LABEL_NAMES

# Test drawings re-run through the full model to check the cached-feature path; the probabilities
# may differ by float rounding (more so when ONNX Runtime made the features), never by more.
AGREEMENT_SAMPLE = 256
AGREEMENT_TOLERANCE = 1e-3
# Points kept in the precision-recall plot (the curve has one per distinct score).
PLOT_POINTS = 500


def classification_metrics(y, probability, threshold):
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


def per_category(category, y, probability, threshold):
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


def plot_data(y, probability, threshold):
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


def check_agreement(model, bitmaps, cached_probability):
    """The saved full model, run on raw bitmaps, must give the cached-feature path's probabilities."""
    sample = slice(0, AGREEMENT_SAMPLE)
    full_probability = model.predict_proba(bitmaps[sample])
    difference = float(np.max(np.abs(full_probability - cached_probability[sample]), initial=0.0))
    if difference > AGREEMENT_TOLERANCE:
        raise PipelineError(f"the saved model and the cached features disagree (max difference {difference:.2g}): "
                            f"the features are stale; re-run with `dvc repro --force featurize`")
    return difference


def main():
    model = load_trained_model(MODEL_FILE)
    features = torch.from_numpy(load_npz(FEATURES_DIR / "test.npz")["features"])
    test = load_npz(PROCESSED_DIR / "test.npz")
    probability = torch.sigmoid(batched(model.classifier.forward_from_frozen, features)).numpy().astype(np.float64)
    difference = check_agreement(model, test["x"], probability)
    results = classification_metrics(test["y"], probability, model.threshold)
    save_json(METRICS_FILE, {**results, "test_drawings": len(test["y"]), "full_model_max_difference": difference})
    save_json(PER_CATEGORY_FILE, per_category(test["category"], test["y"], probability, model.threshold))
    for name, rows in plot_data(test["y"], probability, model.threshold).items():
        save_json(PLOTS_DIR / name, rows)
    print(", ".join(f"{key} {value:.4f}" for key, value in results.items() if value is not None))


if __name__ == "__main__":
    run_main(main)
