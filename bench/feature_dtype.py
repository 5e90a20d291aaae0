"""float32 against float16 feature storage on the real drawings in ../shared: disk, memory and accuracy.

    python -m bench.feature_dtype [--image-size 128] [--seeds 1 2 3]

Featurizes the benchmark's split once (car + tractor against the other categories of ../shared), stores the
features in each dtype with featurize_to_file, and trains and evaluates the default head on each, several
seeds, reading the features from disk a batch at a time as the train and evaluate stages do.
"""

import argparse
import json
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from bench.project import SHARED_CAR_CATEGORIES, SHARED_DRAWINGS, SHARED_WEIGHTS, missing_from_shared
from carsketch.dataset import sample_balanced, split_train_val_test
from carsketch.evaluation import check_agreement, classification_metrics
from carsketch.export import export_frozen, export_model, save_onnx
from carsketch.features import feature_function, featurize_to_file
from carsketch.files import NpyRows
from carsketch.inference.onnx_model import OnnxModel
from carsketch.checkpoint import model_config
from carsketch.model import build_classifier, build_trained_part
from carsketch.params import FEATURE_DTYPES, load_params
from carsketch.quickdraw import category_file
from carsketch.training import fit


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    args = parser.parse_args()
    skipped = missing_from_shared()
    if skipped:
        print(skipped)
        return 0
    params = load_params()
    labels = {path.stem: int(path.stem in SHARED_CAR_CATEGORIES)
              for path in sorted(SHARED_DRAWINGS.glob(category_file("*")))}
    sample = sample_balanced(SHARED_DRAWINGS, labels, params.split_seed)
    splits = split_train_val_test(sample.category, params.test_size, params.val_size, params.split_seed)
    bitmaps = {split: sample.bitmaps(rows) for split, rows in splits.items()}
    classifier = build_classifier(SHARED_WEIGHTS)
    frozen = export_frozen(classifier, args.image_size)
    function = feature_function(classifier, args.image_size, "onnxruntime", frozen_model=frozen)
    report = {"image_size": args.image_size, "drawings": {s: len(r) for s, r in splits.items()}, "dtypes": {}}
    with tempfile.TemporaryDirectory() as folder:
        for dtype in FEATURE_DTYPES:
            paths = {split: Path(folder) / f"{dtype}-{split}.npy" for split in splits}
            for split, path in paths.items():
                featurize_to_file(function, bitmaps[split], path, f"{dtype} {split}", dtype=dtype)
            features = {split: NpyRows(path) for split, path in paths.items()}
            runs = []
            for seed in args.seeds:
                trained = build_trained_part(SHARED_WEIGHTS, seed=seed)
                started = time.perf_counter()
                fit(trained, features["train"], sample.y[splits["train"]], params.epochs, params.batch_size,
                    params.lr, seed, params.lr_schedule)
                seconds = time.perf_counter() - started
                config = model_config(args.image_size, 0, SHARED_WEIGHTS, {})
                save_onnx(export_model(frozen, trained, features["test"].shape[1:], config), Path(folder) / "model.onnx")
                model = OnnxModel(Path(folder) / "model.onnx", "cpu")
                probability = model.proba_from_frozen(features["test"])
                difference = check_agreement(model, bitmaps["test"], probability)
                runs.append({"seed": seed, "train_s": round(seconds, 2), "full_model_max_difference": difference,
                             **classification_metrics(sample.y[splits["test"]], probability, model.threshold)})
            report["dtypes"][dtype] = {
                "bytes": sum(path.stat().st_size for path in paths.values()),
                "bytes_per_drawing": paths["train"].stat().st_size / len(splits["train"]),
                "mean_accuracy": float(np.mean([run["accuracy"] for run in runs])),
                "mean_loss": float(np.mean([run["loss"] for run in runs])),
                "mean_roc_auc": float(np.mean([run["roc_auc"] for run in runs])),
                "runs": runs}
    report["max_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    json.dump(report, sys.stdout, indent=2)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
