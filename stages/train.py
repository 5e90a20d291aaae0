"""train stage: fit the head (and any trainable backbone blocks) on the cached features; save the whole model, which
adapt fine-tunes on the drawings labelled on the serve page, or passes on untouched.

The model is saved twice, each usable alone (input size, normalisation, threshold inside): PyTorch weights of the
whole classifier, with CPU tensors wherever it was trained, and ONNX, featurize's frozen part joined to the trained
one. With the backbone frozen (the default) this stage never builds the backbone. With `workers` > 1 it trains data
parallel in that many processes under torchrun.
"""

import torch

from carsketch.distributed import is_main, run_stage
from carsketch.errors import run_main
from carsketch.export import export_model, load_onnx, save_onnx
from carsketch.files import NpyRows, load_array
from carsketch.checkpoint import full_state_dict, model_config, save_model
from carsketch.model import build_trained_part
from carsketch.params import Params, load_params
from carsketch.paths import (BACKBONE_FILE, FEATURES_DIR, FROZEN_MODEL_FILE, PROCESSED_DIR, TRAIN_LOG,
                             TRAINED_MODEL_FILE, TRAINED_ONNX_MODEL_FILE)
from carsketch.training import epoch_log, fit


def train(params: Params, device: torch.device) -> None:
    features = {split: NpyRows(FEATURES_DIR / f"{split}.npy").small_in_memory() for split in ("train", "val")}
    labels = {split: load_array(PROCESSED_DIR / split / "y.npy") for split in ("train", "val")}
    trained = build_trained_part(BACKBONE_FILE, params.trainable_blocks, params.seed).to(device)
    with epoch_log(TRAIN_LOG) as log_epoch:
        fit(trained, features["train"], labels["train"], params.epochs, params.batch_size, params.lr, params.seed,
            params.lr_schedule, features["val"], labels["val"], on_epoch=log_epoch)
    if not is_main():
        return
    config = model_config(params.image_size, params.trainable_blocks, params.weights, params.categories.as_dict())
    trained.cpu()
    save_model(TRAINED_MODEL_FILE, full_state_dict(BACKBONE_FILE, trained), config)
    save_onnx(export_model(load_onnx(FROZEN_MODEL_FILE), trained, features["train"].shape[1:], config),
              TRAINED_ONNX_MODEL_FILE)


def main() -> None:
    params = load_params()
    run_stage("stages.train", params.workers, params.device, lambda device: train(params, device))


if __name__ == "__main__":
    run_main(main)
