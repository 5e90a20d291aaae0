"""Where the pipeline's stages read and write, relative to the repository root (dvc.yaml names the same paths)."""

from pathlib import Path

from carsketch.quickdraw import category_file

RAW_DIR = Path("data/raw")
PROCESSED_DIR = Path("data/processed")
FEATURES_DIR = Path("data/features")
BACKBONE_FILE = Path("model_data/backbone.pth")
# featurize's export of the frozen part (bitmaps -> cached features), which train joins to what it trained
FROZEN_MODEL_FILE = Path("model_data/frozen.onnx")
# The trained model, twice: PyTorch weights (Python users) and ONNX (predict, serve, evaluate: no torch needed)
MODEL_FILE = Path("model_data/car_sketch_weights.pth")
ONNX_MODEL_FILE = Path("model_data/car_sketch.onnx")
# train's model, the same two files: adapt fine-tunes it on the collected drawings into the two above, or passes it on
# untouched where there are none
TRAINED_MODEL_FILE = Path("model_data/trained/car_sketch_weights.pth")
TRAINED_ONNX_MODEL_FILE = Path("model_data/trained/car_sketch.onnx")
DOWNLOAD_REPORT = Path("metrics/download.json")
DATA_METRICS = Path("metrics/data.json")
DATA_PER_CATEGORY = Path("metrics/data_per_category.json")
# train's dvclive log: plots/metrics/<figure>.tsv, a row an epoch, and metrics.json, the last epoch's figures
TRAIN_LOG = Path("metrics/train")
METRICS_FILE = Path("metrics/metrics.json")
PER_CATEGORY_FILE = Path("metrics/per_category.json")
EVALUATE_CHECKS = Path("metrics/evaluate_checks.json")
PLOTS_DIR = Path("metrics/plots")
# The three parts of the balanced set: fit on train, watch val per epoch, report on test.
SPLITS = ("train", "val", "test")
# ...and the drawings of the categories never trained on (empty when params.yaml lists none), featurized with them.
UNSEEN_SPLIT = "unseen"
FEATURIZED_SPLITS = (*SPLITS, UNSEEN_SPLIT)
UNSEEN_PER_CATEGORY_FILE = Path("metrics/unseen_per_category.json")
# Drawings labelled on the serve page (carsketch.collected_file): the live file the server appends to, and
# the snapshot of it that adapt learns from and evaluate scores, with its counts per label (DVC keeps the snapshot)
COLLECTED_FILE = Path("data/collected/drawings.ndjson")
COLLECTED_SNAPSHOT_DIR = Path("data/collected_snapshot")
COLLECTED_SNAPSHOT = COLLECTED_SNAPSHOT_DIR / "drawings.ndjson"
COLLECTED_COUNTS = COLLECTED_SNAPSHOT_DIR / "counts.json"


def raw_file(category: str) -> Path:
    """One category's drawings as the download stage wrote them."""
    return RAW_DIR / category_file(category)

