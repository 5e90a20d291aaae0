"""featurize stage: run the frozen backbone once over every drawing of each split and cache its output.

It also saves the frozen part as ONNX (in int8 with `precision: int8` on a CPU), which train joins to the part it
trains: the features and the model come from the same graph.

With `workers` > 1 it runs in that many processes under torchrun, which share the batches; the files are the same bytes.
"""

import time

import torch

from carsketch.distributed import computed_on_main, is_main, run_stage
from carsketch.errors import run_main
from carsketch.export import save_onnx
from carsketch.features import export_frozen_part, feature_function, featurize_batch_size, featurize_to_file
from carsketch.files import NpyRows
from carsketch.model import build_classifier
from carsketch.params import Params, load_params
from carsketch.paths import BACKBONE_FILE, FEATURES_DIR, FEATURIZED_SPLITS, FROZEN_MODEL_FILE, PROCESSED_DIR


def featurize_splits(params: Params, device: torch.device) -> None:
    classifier = build_classifier(BACKBONE_FILE, params.trainable_blocks)
    # exported (and quantized, with int8) once, by rank 0: the same graph for every process
    frozen = computed_on_main(lambda: export_frozen_part(classifier, params.image_size, params.precision,
                                                         NpyRows(PROCESSED_DIR / "train" / "x.npy"), device))
    if is_main():
        save_onnx(frozen, FROZEN_MODEL_FILE)
    function = feature_function(classifier, params.image_size, params.featurize_engine, device, frozen)
    started, drawings = time.perf_counter(), 0
    for split in FEATURIZED_SPLITS:
        bitmaps = NpyRows(PROCESSED_DIR / split / "x.npy")
        featurize_to_file(function, bitmaps, FEATURES_DIR / f"{split}.npy", f"featurize {split}",
                          featurize_batch_size(device), params.feature_dtype)
        drawings += len(bitmaps)
    if is_main():
        seconds = time.perf_counter() - started
        print(f"featurize: {drawings} drawings in {seconds:.1f} s, {drawings / seconds:.0f} drawings/s "
              f"(start-up not counted)")


def main() -> None:
    params = load_params()
    run_stage("stages.featurize", params.workers, params.device, lambda device: featurize_splits(params, device))


if __name__ == "__main__":
    run_main(main)
