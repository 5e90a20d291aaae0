"""train stage: fit the head (and any trainable backbone blocks) on the cached features; save the whole model.

The saved file holds what is needed to use the model alone (input size, normalisation, threshold), with CPU
tensors wherever it was trained. With `workers` > 1 it trains data parallel in that many processes under torchrun.
"""

import torch

from carsketch.distributed import is_main, run_stage
from carsketch.errors import run_main
from carsketch.files import load_array, save_json
from carsketch.model import TrainedModel, build_classifier, model_config
from carsketch.params import Params, load_params
from carsketch.paths import BACKBONE_FILE, FEATURES_DIR, MODEL_FILE, PROCESSED_DIR, TRAIN_LOG, TRAIN_METRICS
from carsketch.training import fit, format_epoch, write_log


def train(params: Params, device: torch.device) -> None:
    features = {split: load_array(FEATURES_DIR / f"{split}.npy") for split in ("train", "val")}
    labels = {split: load_array(PROCESSED_DIR / split / "y.npy", mmap=False) for split in ("train", "val")}
    classifier = build_classifier(BACKBONE_FILE, params.trainable_blocks, params.seed).to(device)
    log = fit(classifier, features["train"], labels["train"], params.epochs, params.batch_size, params.lr, params.seed,
              params.lr_schedule, features["val"], labels["val"],
              on_epoch=lambda row: print(format_epoch(row)) if is_main() else None)
    if not is_main():
        return
    config = model_config(params.image_size, params.trainable_blocks, params.weights, params.categories.as_dict(),
                          autocast=params.autocast)
    TrainedModel(classifier, config, device).save(MODEL_FILE)
    write_log(TRAIN_LOG, log)
    save_json(TRAIN_METRICS, {key: value for key, value in log[-1].items() if key != "epoch"})


def main() -> None:
    params = load_params()
    run_stage("stages.train", params.workers, params.device, lambda device: train(params, device))


if __name__ == "__main__":
    run_main(main)
