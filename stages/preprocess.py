"""preprocess stage: a balanced car (1) / not-car (0) set from data/raw/, split train/test by category.

Each label gets the same number of drawings, spread as evenly as the categories allow; the split is
stratified by source category. The same params and raw files give byte-identical outputs.
"""

from collections import Counter
from pathlib import Path

import numpy as np
from sklearn.model_selection import train_test_split

from stages.errors import PipelineError, run_main
from stages.files import save_json, save_npz
from stages.params import category_labels, load_params
from stages.paths import DATA_REPORT, PROCESSED_DIR, RAW_DIR

LABEL_NAMES = {1: "car", 0: "not_car"}


def allocate_evenly(available, total):
    """Split `total` drawings over categories as evenly as possible, none taking more than it has.

    Water-filling: the smallest categories give all they have, the rest share what is left equally.
    """
    allocation = {}
    remaining = total
    by_size = sorted(available, key=lambda category: (available[category], category))
    for position, category in enumerate(by_size):
        allocation[category] = min(available[category], remaining // (len(by_size) - position))
        remaining -= allocation[category]
    return {category: allocation[category] for category in available}


def balanced_allocation(available, labels):
    """How many drawings to take from each category so that both labels get the same number."""
    sides = {label: {c: n for c, n in available.items() if labels[c] == label} for label in LABEL_NAMES}
    per_label = min(sum(side.values()) for side in sides.values())
    if per_label == 0:
        empty = [LABEL_NAMES[label] for label, side in sides.items() if not sum(side.values())]
        raise PipelineError(f"no drawings for {', '.join(empty)}: check data/raw and categories")
    allocation = {}
    for side in sides.values():
        allocation.update(allocate_evenly(side, per_label))
    return allocation


def sample_balanced(raw_dir, labels, seed):
    """Randomly (seeded) pick the balanced drawings; returns x, y and each row's source category."""
    rng = np.random.default_rng(seed)
    bitmaps = {}
    for category in labels:
        path = Path(raw_dir) / f"{category}.npy"
        if not path.exists():
            raise PipelineError(f"{path} is missing: run the download stage first (dvc repro download)")
        bitmaps[category] = np.load(path, mmap_mode="r")
    allocation = balanced_allocation({c: len(rows) for c, rows in bitmaps.items()}, labels)
    picked = {c: np.sort(rng.permutation(len(bitmaps[c]))[:n]) for c, n in allocation.items()}
    x = np.concatenate([bitmaps[c][rows] for c, rows in picked.items()])
    y = np.concatenate([np.full(len(rows), labels[c], np.uint8) for c, rows in picked.items()])
    category = np.concatenate([np.full(len(rows), c) for c, rows in picked.items()])
    return x, y, category


def split_by_category(category, test_size, seed):
    """Row indices of train and test, stratified by source category."""
    try:
        return train_test_split(np.arange(len(category)), test_size=test_size, random_state=seed,
                                stratify=category)
    except ValueError as error:
        raise PipelineError(f"cannot split {len(category)} drawings stratified by category with "
                            f"test_size={test_size} ({error}); raise max_per_category or test_size") from error


def describe(y, category):
    """Counts per label and per category, for the report."""
    return {
        "total": int(len(y)),
        **{name: int(np.sum(y == label)) for label, name in LABEL_NAMES.items()},
        "per_category": dict(sorted(Counter(category.tolist()).items())),
    }


def main(params_path="params.yaml"):
    params = load_params(params_path)
    labels = category_labels(params)
    test_size, seed = params["test_size"], params["seed"]
    if not 0 < test_size < 1:
        raise PipelineError(f"test_size must be between 0 and 1, not {test_size}")
    x, y, category = sample_balanced(RAW_DIR, labels, seed)
    train, test = split_by_category(category, test_size, seed)
    counts = {}
    for name, rows in (("train", train), ("test", test)):
        save_npz(PROCESSED_DIR / f"{name}.npz", x=x[rows], y=y[rows], category=category[rows])
        counts[name] = describe(y[rows], category[rows])
    save_json(DATA_REPORT, counts)
    print(f"preprocess: {counts['train']['total']} train, {counts['test']['total']} test drawings, "
          f"{len(x) // 2} per label")


if __name__ == "__main__":
    run_main(main)
