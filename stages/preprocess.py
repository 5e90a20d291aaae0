"""preprocess stage: a balanced car (1) / not-car (0) set from data/raw/, split train / val / test by category,
with `augment_copies` stretched copies of each training drawing after the train split's originals; and the unseen
categories' drawings, never trained on, as a split of their own (empty when there are none).

The same params and raw files give byte-identical outputs. Only `split_seed` (not the training `seed`)
shapes the sample, the split and the copies, so training experiments keep one test set. Raw rows are read through
plain file reads and each split's arrays are written a chunk at a time, so memory does not grow with the data.
"""

import numpy as np

from carsketch.augment import stretch, stretched_copies
from carsketch.dataset import category_counts, every_drawing, label_counts, sample_balanced, split_train_val_test
from carsketch.errors import run_main
from carsketch.files import save_json, save_rows
from carsketch.params import load_params
from carsketch.paths import DATA_METRICS, DATA_PER_CATEGORY, PROCESSED_DIR, RAW_DIR, UNSEEN_SPLIT, raw_file


def main() -> None:
    params = load_params()
    labels = params.categories.labels()
    if params.categories.not_car_all:  # download fetched only the not-car files that exist and that balancing uses
        labels = {name: label for name, label in labels.items() if raw_file(name).exists()}
    sample = sample_balanced(RAW_DIR, labels, params.split_seed)
    splits = split_train_val_test(sample.category, params.test_size, params.val_size, params.split_seed)
    splits["train"], stretch_by = stretched_copies(splits["train"], params.augment_copies, params.augment_stretch,
                                                   params.split_seed)
    parts = {split: (sample, rows) for split, rows in splits.items()}
    unseen = every_drawing(RAW_DIR, params.unseen.labels())  # no unseen categories: an empty split
    parts[UNSEEN_SPLIT] = (unseen, np.arange(len(unseen.y)))
    for split, (chosen, rows) in parts.items():
        gathers = {"x": lambda at: chosen.bitmaps(rows[at]), "y": lambda at: chosen.y[rows[at]],
                   "category": lambda at: chosen.category_names(rows[at])}
        if split == "train":
            gathers["x"] = lambda at: stretch(chosen.bitmaps(rows[at]), stretch_by[at])
        for name, gather in gathers.items():
            save_rows(PROCESSED_DIR / split / f"{name}.npy", gather, np.arange(len(rows)))
    counted = {split: part for split, part in parts.items() if len(part[1]) or split != UNSEEN_SPLIT}
    save_json(DATA_METRICS, {split: label_counts(chosen.y[rows]) for split, (chosen, rows) in counted.items()})
    save_json(DATA_PER_CATEGORY, {split: category_counts(chosen.category_names(rows))
                                  for split, (chosen, rows) in counted.items()})
    print("preprocess: " + ", ".join(f"{len(rows)} {split}" for split, (_, rows) in counted.items()) + " drawings")


if __name__ == "__main__":
    run_main(main)
