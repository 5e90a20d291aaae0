"""evaluate stage: test-set metrics, a per-category table and plots for the saved model.

It runs the ONNX model in ONNX Runtime, with no torch or scikit-learn to import: the experiment loop's last step.
"""

from carsketch.errors import run_main
from carsketch.evaluation import check_agreement, classification_metrics, per_category, plot_data
from carsketch.files import load_array, save_json
from carsketch.inference import OnnxModel
from carsketch.params import load_params
from carsketch.paths import (EVALUATE_CHECKS, FEATURES_DIR, METRICS_FILE, ONNX_MODEL_FILE, PER_CATEGORY_FILE,
                             PLOTS_DIR, PROCESSED_DIR)


def main() -> None:
    model = OnnxModel(ONNX_MODEL_FILE, load_params().device)
    test = {name: load_array(PROCESSED_DIR / "test" / f"{name}.npy") for name in ("x", "y", "category")}
    probability = model.proba_from_frozen(load_array(FEATURES_DIR / "test.npy"))
    difference = check_agreement(model, test["x"], probability)
    results = classification_metrics(test["y"], probability, model.threshold)
    save_json(METRICS_FILE, results)
    save_json(EVALUATE_CHECKS, {"test_drawings": len(test["y"]), "full_model_max_difference": difference})
    save_json(PER_CATEGORY_FILE, per_category(test["category"], test["y"], probability, model.threshold))
    for name, rows in plot_data(test["y"], probability, model.threshold).items():
        save_json(PLOTS_DIR / name, rows)
    print(", ".join(f"{key} {value:.4f}" for key, value in results.items() if value is not None))


if __name__ == "__main__":
    run_main(main)
