"""train stage: fit the head (and any trainable backbone blocks) on the cached frozen features.

Adam on binary cross-entropy with logits, deterministic for a given seed. Saves the whole model,
with what is needed to use it alone, to model_data/car_sketch_weights.pth.
"""

import csv
import math

import numpy as np
import torch
from sklearn.model_selection import train_test_split
from torch import nn

from stages.errors import PipelineError, run_main
from stages.files import atomic_path, load_npz, save_json
from stages.model import TrainedModel, batched, build_classifier, model_config
from stages.params import load_params
from stages.paths import FEATURES_DIR, MODEL_FILE, PROCESSED_DIR, TRAIN_LOG, TRAIN_METRICS
from stages.progress import progress

LR_SCHEDULES = ("constant", "cosine")


def split_validation(category, val_size, seed):
    """Indices to fit on and to validate on (none when val_size is 0), stratified by category."""
    rows = np.arange(len(category))
    if not val_size:
        return rows, rows[:0]
    return train_test_split(rows, test_size=val_size, random_state=seed, stratify=category)


def _loss_and_accuracy(classifier, features, labels):
    logits = batched(classifier.forward_from_frozen, features)
    loss = nn.functional.binary_cross_entropy_with_logits(logits, labels).item()
    return loss, ((logits > 0).float() == labels).float().mean().item()


def fit(classifier, features, labels, epochs, batch_size, lr, seed, lr_schedule="constant",
        val_features=None, val_labels=None):
    """Train `classifier` on cached frozen features; returns one log row per epoch."""
    if lr_schedule not in LR_SCHEDULES:
        raise PipelineError(f"lr_schedule must be one of {', '.join(LR_SCHEDULES)}, not {lr_schedule!r}")
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    parameters = [p for p in classifier.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(parameters, lr=lr)
    steps_per_epoch = math.ceil(len(labels) / batch_size)
    scheduler = (torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs * steps_per_epoch)
                 if lr_schedule == "cosine" else None)
    loss_function = nn.BCEWithLogitsLoss()
    log = []
    for epoch in range(1, epochs + 1):
        classifier.train()
        total_loss = 0.0
        order = torch.randperm(len(labels), generator=generator)
        for start in progress(range(0, len(labels), batch_size), desc=f"epoch {epoch}/{epochs}", unit="batch",
                              nested=True):
            batch = order[start:start + batch_size]
            loss = loss_function(classifier.forward_from_frozen(features[batch]), labels[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            if scheduler is not None:
                scheduler.step()
            total_loss += loss.item() * len(batch)
        classifier.eval()
        row = {"epoch": epoch, "train_loss": total_loss / len(labels)}
        if val_labels is not None and len(val_labels):
            row["val_loss"], row["val_accuracy"] = _loss_and_accuracy(classifier, val_features, val_labels)
        print(", ".join(f"{key} {value:.4f}" if isinstance(value, float) else f"{key} {value}"
                        for key, value in row.items()))
        log.append(row)
    return log


def write_log(path, log):
    with atomic_path(path) as temporary, open(temporary, "w", newline="") as out:
        writer = csv.DictWriter(out, fieldnames=list(log[0]))
        writer.writeheader()
        writer.writerows(log)


def main(params_path="params.yaml"):
    params = load_params(params_path)
    if params["epochs"] < 1:
        raise PipelineError(f"epochs must be at least 1, not {params['epochs']}")
    seed = params["seed"]
    features = torch.from_numpy(load_npz(FEATURES_DIR / "train.npz")["features"])
    processed = load_npz(PROCESSED_DIR / "train.npz")
    labels = torch.from_numpy(processed["y"].astype(np.float32))
    fit_rows, val_rows = split_validation(processed["category"], params["val_size"], seed)
    classifier = build_classifier(params["weights"], params["trainable_blocks"], seed)
    log = fit(classifier, features[fit_rows], labels[fit_rows], params["epochs"], params["batch_size"],
              params["lr"], seed, params["lr_schedule"], features[val_rows], labels[val_rows])
    config = model_config(params["image_size"], params["trainable_blocks"], params["weights"], params["categories"])
    TrainedModel(classifier, config).save(MODEL_FILE)
    write_log(TRAIN_LOG, log)
    save_json(TRAIN_METRICS, {key: value for key, value in log[-1].items() if key != "epoch"})


if __name__ == "__main__":
    run_main(main)
