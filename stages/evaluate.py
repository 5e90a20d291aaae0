"""evaluate stage: test-set metrics, a per-category table and plots for the saved model; the unseen categories'
figures (how it does on kinds of drawing it never trained on) where params.yaml lists any; and the accuracy on the
held-out share of the drawings labelled on the serve page, where there are any.

It runs the ONNX model in ONNX Runtime, with no torch to import: the experiment loop's last step.
"""

from carsketch.collected import collected_splits
from carsketch.errors import run_main
from carsketch.evaluation import (check_agreement, classification_metrics, collected_metrics, per_category, plot_data,
                                  unseen_metrics)
from carsketch.files import NpyRows, load_array, save_json
from carsketch.inference.onnx_model import OnnxModel
from carsketch.params import load_params
from carsketch.paths import (COLLECTED_FILE, EVALUATE_CHECKS, FEATURES_DIR, METRICS_FILE, ONNX_MODEL_FILE,
                             PER_CATEGORY_FILE, PLOTS_DIR, PROCESSED_DIR, UNSEEN_PER_CATEGORY_FILE, UNSEEN_SPLIT)


def main() -> None:
    params = load_params()
    model = OnnxModel(ONNX_MODEL_FILE, params.device)
    test = {name: load_array(PROCESSED_DIR / "test" / f"{name}.npy") for name in ("y", "category")}
    probability = model.proba_from_frozen(NpyRows(FEATURES_DIR / "test.npy"))
    difference = check_agreement(model, NpyRows(PROCESSED_DIR / "test" / "x.npy"), probability)
    results = classification_metrics(test["y"], probability, model.threshold)
    unseen = {name: load_array(PROCESSED_DIR / UNSEEN_SPLIT / f"{name}.npy") for name in ("y", "category")}
    unseen_probability = model.proba_from_frozen(NpyRows(FEATURES_DIR / f"{UNSEEN_SPLIT}.npy"))
    if len(unseen["y"]):
        results.update(unseen_metrics(unseen["y"], unseen_probability, model.threshold))
    labelled = collected_splits(COLLECTED_FILE, params.test_size)["test"]
    if len(labelled.y):  # the held-out share of the drawings labelled on the page, through the whole model
        results.update(collected_metrics(labelled.y, model.predict_proba(labelled.bitmaps), model.threshold))
    save_json(METRICS_FILE, results)
    save_json(UNSEEN_PER_CATEGORY_FILE, per_category(unseen["category"], unseen["y"], unseen_probability,
                                                     model.threshold))
    save_json(EVALUATE_CHECKS, {"test_drawings": len(test["y"]), "full_model_max_difference": difference})
    save_json(PER_CATEGORY_FILE, per_category(test["category"], test["y"], probability, model.threshold))
    for name, rows in plot_data(test["y"], probability, model.threshold).items():
        save_json(PLOTS_DIR / name, rows)
    print(", ".join(f"{key} {value:.4f}" if isinstance(value, float) else f"{key} {value}"
                    for key, value in results.items() if value is not None))


if __name__ == "__main__":
    run_main(main)
