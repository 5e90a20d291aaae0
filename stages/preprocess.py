"""preprocess stage: a balanced car (1) / not-car (0) set from data/raw/, split train / val / test by category.

The same params and raw files give byte-identical outputs. Only `split_seed` (not the training `seed`)
shapes the sample and the split, so training experiments keep one test set.
"""

from carsketch.dataset import category_counts, label_counts, sample_balanced, split_train_val_test
from carsketch.errors import run_main
from carsketch.files import save_array, save_json
from carsketch.params import load_params
from carsketch.paths import DATA_METRICS, DATA_PER_CATEGORY, PROCESSED_DIR, RAW_DIR


def main() -> None:
    params = load_params()
    x, y, category = sample_balanced(RAW_DIR, params.categories.labels(), params.split_seed)
    splits = split_train_val_test(category, params.test_size, params.val_size, params.split_seed)
    for split, rows in splits.items():
        for name, array in (("x", x[rows]), ("y", y[rows]), ("category", category[rows])):
            save_array(PROCESSED_DIR / split / f"{name}.npy", array)
    save_json(DATA_METRICS, {split: label_counts(y[rows]) for split, rows in splits.items()})
    save_json(DATA_PER_CATEGORY, {split: category_counts(category[rows]) for split, rows in splits.items()})
    print("preprocess: " + ", ".join(f"{len(rows)} {split}" for split, rows in splits.items()) + " drawings")


if __name__ == "__main__":
    run_main(main)
