"""evaluate stage: test-set metrics, a per-category table and plots for the model adapt passed on; the unseen
categories' figures (how it does on kinds of drawing it never trained on) where params.yaml lists any; and the
figures on the held-out share of the collected drawings (the snapshot's), where there are any.

It runs the ONNX model in ONNX Runtime, with no torch to import: the experiment loop's last step. It scores train's
model from the cached features, checking a sample through the whole model; a model that adapt fine-tuned has other
frozen features, so every test drawing goes through the whole of it.
"""

from carsketch.errors import run_main
from carsketch.evaluation import (check_agreement, classification_metrics, collected_metrics, features_are_cached,
                                  per_category, plot_data, unseen_metrics)
from carsketch.files import NpyRows, load_array, load_json, save_json
from carsketch.inference.onnx_model import OnnxModel
from carsketch.params import load_params
from carsketch.paths import (COLLECTED_COUNTS, COLLECTED_SNAPSHOT, EVALUATE_CHECKS, FEATURES_DIR, METRICS_FILE,
                             ONNX_MODEL_FILE, PER_CATEGORY_FILE, PLOTS_DIR, PROCESSED_DIR, UNSEEN_PER_CATEGORY_FILE,
                             UNSEEN_SPLIT)


def main() -> None:
    params = load_params()
    model = OnnxModel(ONNX_MODEL_FILE, params.device)
    test, unseen = ({name: load_array(PROCESSED_DIR / split / f"{name}.npy") for name in ("y", "category")}
                    for split in ("test", UNSEEN_SPLIT))
    if features_are_cached(model.config):
        probability = model.proba_from_frozen(NpyRows(FEATURES_DIR / "test.npy"))
        unseen_probability = model.proba_from_frozen(NpyRows(FEATURES_DIR / f"{UNSEEN_SPLIT}.npy"))
        difference = check_agreement(model, NpyRows(PROCESSED_DIR / "test" / "x.npy"), probability)
    else:
        print(f"evaluate: the model adapt fine-tuned scores the {len(test['y']) + len(unseen['y'])} test and unseen "
              f"drawings through the whole model", flush=True)
        probability = model.predict_proba(NpyRows(PROCESSED_DIR / "test" / "x.npy"))
        unseen_probability = model.predict_proba(NpyRows(PROCESSED_DIR / UNSEEN_SPLIT / "x.npy"))
        difference = None  # one path, nothing to check it against
    results = classification_metrics(test["y"], probability, model.threshold)
    if len(unseen["y"]):
        results.update(unseen_metrics(unseen["y"], unseen_probability, model.threshold))
    if load_json(COLLECTED_COUNTS)["total"]:  # the rasteriser is imported only for labels to score
        from carsketch.collected import collected_splits

        collected = collected_splits(COLLECTED_SNAPSHOT, params.collected_test_size)["test"]
        if len(collected.y):
            results.update(collected_metrics(collected.y, model.predict_proba(collected.bitmaps), model.threshold))
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
