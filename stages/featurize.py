"""featurize stage: run the frozen backbone once over every drawing and cache what it outputs.

The frozen blocks never change during training, so their output for a drawing is the same every
epoch: computing it once here lets `dvc exp run -S epochs=5` re-run only train and evaluate.
"""

from stages.errors import run_main
from stages.files import load_npz, save_npz
from stages.model import batched, build_classifier
from stages.params import load_params
from stages.paths import FEATURES_DIR, PROCESSED_DIR
from stages.progress import progress
from stages.sketch import to_model_input


def featurize(classifier, bitmaps, image_size, desc="featurize"):
    """The classifier's frozen features of uint8 bitmaps, batched, with a progress bar."""
    with progress(total=len(bitmaps), desc=desc, unit="drawing") as bar:
        return batched(lambda rows: classifier.frozen_features(to_model_input(rows, image_size)), bitmaps, bar=bar)


def main(params_path="params.yaml"):
    params = load_params(params_path)
    classifier = build_classifier(params["weights"], params["trainable_blocks"])
    for split in ("train", "test"):
        bitmaps = load_npz(PROCESSED_DIR / f"{split}.npz")["x"]
        features = featurize(classifier, bitmaps, params["image_size"], desc=f"featurize {split}")
        save_npz(FEATURES_DIR / f"{split}.npz", features=features.contiguous().numpy())


if __name__ == "__main__":
    run_main(main)
