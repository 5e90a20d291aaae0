"""Training the head (and any trainable backbone blocks) on cached frozen features.

Adam on binary cross-entropy with logits, deterministic for a given seed. Features may be memory-mapped:
each mini-batch is gathered from them, so memory stays bounded by the batch, not the data set.
"""

import csv
import math
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn

from carsketch.files import atomic_path
from carsketch.model import CarSketchClassifier, batched
from carsketch.progress import progress

EpochLog = dict[str, float | int]


def _logits(classifier: CarSketchClassifier, features: np.ndarray) -> torch.Tensor:
    return batched(lambda rows: classifier.forward_from_frozen(torch.as_tensor(np.array(rows, np.float32))), features)


def loss_and_accuracy(classifier: CarSketchClassifier, features: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """Mean binary cross-entropy and accuracy at P(car) 0.5 on cached features."""
    logits = _logits(classifier, features)
    labels = torch.as_tensor(np.asarray(labels), dtype=torch.float32)
    loss = nn.functional.binary_cross_entropy_with_logits(logits, labels).item()
    return loss, ((logits > 0).float() == labels).float().mean().item()


def fit(classifier: CarSketchClassifier, features: np.ndarray, labels: np.ndarray, epochs: int, batch_size: int,
        lr: float, seed: int, lr_schedule: str = "constant", val_features: np.ndarray | None = None,
        val_labels: np.ndarray | None = None, on_epoch: Callable[[EpochLog], None] | None = None) -> list[EpochLog]:
    """Train `classifier` on cached frozen features; returns one log row per epoch, also given to `on_epoch`."""
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    labels = np.asarray(labels, dtype=np.float32)
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
        order = torch.randperm(len(labels), generator=generator).numpy()
        for start in progress(range(0, len(labels), batch_size), desc=f"epoch {epoch}/{epochs}", unit="batch",
                              nested=True):
            batch = np.sort(order[start:start + batch_size])  # ascending rows read a memory map faster
            logits = classifier.forward_from_frozen(torch.as_tensor(np.array(features[batch], np.float32)))
            loss = loss_function(logits, torch.from_numpy(labels[batch]))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            if scheduler is not None:
                scheduler.step()
            total_loss += loss.item() * len(batch)
        classifier.eval()
        row: EpochLog = {"epoch": epoch, "train_loss": total_loss / len(labels)}
        if val_labels is not None and len(val_labels):
            row["val_loss"], row["val_accuracy"] = loss_and_accuracy(classifier, val_features, val_labels)
        if on_epoch is not None:
            on_epoch(row)
        log.append(row)
    return log


def format_epoch(row: EpochLog) -> str:
    """One epoch's log row as a line for people."""
    return ", ".join(f"{key} {value:.4f}" if isinstance(value, float) else f"{key} {value}" for key, value in row.items())


def write_log(path: Path, log: list[EpochLog]) -> None:
    """The per-epoch log as CSV (DVC's training-loss plot reads it)."""
    with atomic_path(path) as temporary, open(temporary, "w", newline="") as out:
        writer = csv.DictWriter(out, fieldnames=list(log[0]))
        writer.writeheader()
        writer.writerows(log)
