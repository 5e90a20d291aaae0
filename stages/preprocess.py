"""preprocess stage: a balanced car (1) / not-car (0) set from data/raw/, split train / val / test by category.

The same params and raw files give byte-identical outputs. Only `split_seed` (not the training `seed`)
shapes the sample and the split, so training experiments keep one test set. Raw rows are read through
memory maps and each split's arrays are written a chunk at a time, so memory does not grow with the data.
"""

from carsketch.dataset import category_counts, label_counts, sample_balanced, split_train_val_test
from carsketch.errors import run_main
from carsketch.files import save_json, save_rows
from carsketch.params import load_params
from carsketch.paths import DATA_METRICS, DATA_PER_CATEGORY, PROCESSED_DIR, RAW_DIR


def main() -> None:
    params = load_params()
    sample = sample_balanced(RAW_DIR, params.categories.labels(), params.split_seed)
    splits = split_train_val_test(sample.category, params.test_size, params.val_size, params.split_seed)
    for split, rows in splits.items():
        for name, gather in (("x", sample.bitmaps), ("y", sample.y.__getitem__), ("category", sample.category_names)):
            save_rows(PROCESSED_DIR / split / f"{name}.npy", gather, rows)
    save_json(DATA_METRICS, {split: label_counts(sample.y[rows]) for split, rows in splits.items()})
    save_json(DATA_PER_CATEGORY, {split: category_counts(sample.category_names(rows)) for split, rows in splits.items()})
    print("preprocess: " + ", ".join(f"{len(rows)} {split}" for split, rows in splits.items()) + " drawings")


if __name__ == "__main__":
    run_main(main)
