"""adapt stage: fine-tune train's model on the collected drawings (the snapshot's share not held out), each counting
`collected_weight`, with a replay sample of the training drawings (carsketch.adaptation); or, where there are none,
pass train's model on untouched. Its two files are the model that evaluate, predict and serve use.

It reads the labels, train's model and `adapt_replay` training drawings, never the features or the whole data set:
after new labels `dvc repro` re-runs the snapshot, this stage and evaluate, in seconds.
"""

import time
from typing import TYPE_CHECKING

from carsketch.errors import run_main
from carsketch.files import copy_file, load_json
from carsketch.paths import (COLLECTED_COUNTS, COLLECTED_SNAPSHOT, MODEL_FILE, ONNX_MODEL_FILE, PROCESSED_DIR,
                             TRAINED_MODEL_FILE, TRAINED_ONNX_MODEL_FILE)

if TYPE_CHECKING:
    from carsketch.collected import CollectedSplit
    from carsketch.params import Params


def fine_tune(params: "Params", collected: "CollectedSplit") -> None:
    """Train's model, fine-tuned on the collected drawings and a replay sample, saved as the pipeline's model."""
    # here, not above: without labels adapt never imports torch, 2-3 s of every experiment
    # (tests/test_dvc_yaml.py counts these imports among the stage's code)
    import numpy as np

    from carsketch.adaptation import adapt, replay_sample, split_at
    from carsketch.checkpoint import load_checkpoint, save_model
    from carsketch.export import save_onnx
    from carsketch.files import NpyRows, load_array
    from carsketch.torch_device import resolve_device
    from carsketch.training import format_epoch

    started = time.perf_counter()
    classifier, trained_config = load_checkpoint(TRAINED_MODEL_FILE)
    train_bitmaps = NpyRows(PROCESSED_DIR / "train" / "x.npy")
    replay, replay_y = replay_sample(train_bitmaps, load_array(PROCESSED_DIR / "train" / "y.npy"), params.adapt_replay,
                                     params.seed)
    print(f"adapt: {len(collected.y)} collected drawings, each counting {params.collected_weight:g}, and {len(replay_y)} "
          f"replayed; the last {params.adapt_blocks} blocks and the head, {params.adapt_epochs} epochs", flush=True)
    config = {**trained_config, "adapted": {"blocks": params.adapt_blocks, "collected_drawings": len(collected.y),
                                            "replayed_drawings": len(replay_y)}}
    bitmaps, labels = np.concatenate([collected.bitmaps, replay]), np.concatenate([collected.y, replay_y])
    weights = np.concatenate([np.full(len(collected.y), params.collected_weight, np.float32),
                              np.ones(len(replay_y), np.float32)])
    adapted, adapted_onnx = adapt(classifier, params.adapt_blocks, bitmaps, labels, weights, config,
                                  params.adapt_epochs, params.batch_size, params.adapt_lr, params.seed,
                                  resolve_device(params.device), lambda row: print(format_epoch(row), flush=True),
                                  params.precision, train_bitmaps)
    # the .pth split as train's, which load_checkpoint reads from config["trainable_blocks"]
    save_model(MODEL_FILE, split_at(adapted, trained_config["trainable_blocks"]).state_dict(), config)
    save_onnx(adapted_onnx, ONNX_MODEL_FILE)
    print(f"adapt: done in {time.perf_counter() - started:.1f} s")


def main() -> None:
    # the snapshot's counts first: without labels (every experiment that changes none) adapt reads no params, and
    # imports neither pydantic nor the rasteriser: 0.3 s of every experiment
    if load_json(COLLECTED_COUNTS)["total"]:
        from carsketch.collected import collected_splits
        from carsketch.params import load_params

        params = load_params()
        collected = collected_splits(COLLECTED_SNAPSHOT, params.collected_test_size)["train"]
        if len(collected.y):
            fine_tune(params, collected)
            return
    copy_file(TRAINED_MODEL_FILE, MODEL_FILE)
    copy_file(TRAINED_ONNX_MODEL_FILE, ONNX_MODEL_FILE)
    print("adapt: no collected drawings to learn from; train's model goes on untouched")


if __name__ == "__main__":
    run_main(main)
