"""Where each stage reads and writes, relative to the repository root (dvc.yaml names the same paths)."""

from pathlib import Path

RAW_DIR = Path("data/raw")
PROCESSED_DIR = Path("data/processed")
FEATURES_DIR = Path("data/features")
MODEL_FILE = Path("model_data/car_sketch_weights.pth")
DOWNLOAD_REPORT = Path("metrics/download.json")
DATA_REPORT = Path("metrics/data.json")
TRAIN_LOG = Path("metrics/train_log.csv")
TRAIN_METRICS = Path("metrics/train.json")
METRICS_FILE = Path("metrics/metrics.json")
PER_CATEGORY_FILE = Path("metrics/per_category.json")
PLOTS_DIR = Path("metrics/plots")
