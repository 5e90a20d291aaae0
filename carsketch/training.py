"""Training the head (and any trainable backbone blocks) on cached frozen features.

Adam on binary cross-entropy with logits, deterministic for a given seed. Features may be read from disk
(NpyRows): each mini-batch is gathered from them, so memory stays bounded by the batch, not the data set (train
reads files of up to 256 MiB whole, NpyRows.small_in_memory).

Under torch.distributed it is data parallel (DistributedDataParallel) with the single-process recipe: every
process draws the same seeded order, and each takes its share of every global batch; the loss is scaled so
that the averaged gradient is the global batch's mean, so batch size and learning rate mean what they mean
in one process.
"""

import csv
import math
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from carsketch.distributed import rank_and_size, sum_over_processes
from carsketch.files import NpyRows, atomic_path
from carsketch.model import TrainedPart, cached_logits, features_tensor, parameters_device
from carsketch.progress import progress

EpochLog = dict[str, float | int]


class Adam:
    """torch.optim.Adam's update with its defaults (betas 0.9 and 0.999, eps 1e-8), written out, and an optional
    cosine schedule (CosineAnnealingLR's closed form, to 0 after `total_steps`).

    Every torch.optim optimizer imports torch._dynamo when first used: 3 s on two cores, longer than training the
    head takes, in every experiment. tests/test_model.py checks this against torch.optim.Adam and the scheduler.
    """

    betas = (0.9, 0.999)
    eps = 1e-8

    def __init__(self, parameters: list[torch.Tensor], lr: float, total_steps: int | None = None):
        self.parameters, self.lr, self.total_steps, self.steps = parameters, lr, total_steps, 0
        self.averages = [torch.zeros_like(p) for p in parameters]
        self.squares = [torch.zeros_like(p) for p in parameters]

    def current_lr(self) -> float:
        if self.total_steps is None:
            return self.lr
        return self.lr * (1 + math.cos(math.pi * min(self.steps, self.total_steps) / self.total_steps)) / 2

    @torch.no_grad()
    def step(self) -> None:
        """One update from the parameters' gradients, which it then clears."""
        lr = self.current_lr()
        self.steps += 1
        beta1, beta2 = self.betas
        correction1, correction2 = 1 - beta1 ** self.steps, 1 - beta2 ** self.steps
        for parameter, average, square in zip(self.parameters, self.averages, self.squares):
            gradient = parameter.grad
            if gradient is None:
                continue
            average.lerp_(gradient, 1 - beta1)
            square.mul_(beta2).addcmul_(gradient, gradient, value=1 - beta2)
            denominator = (square.sqrt() / math.sqrt(correction2)).add_(self.eps)
            parameter.addcdiv_(average, denominator, value=-lr / correction1)
            parameter.grad = None


def loss_and_accuracy(trained: TrainedPart, features: np.ndarray | NpyRows, labels: np.ndarray) -> tuple[float, float]:
    """Mean binary cross-entropy and accuracy at P(car) 0.5 on cached features."""
    logits = cached_logits(trained, features)
    labels = torch.as_tensor(np.asarray(labels), dtype=torch.float32)
    loss = nn.functional.binary_cross_entropy_with_logits(logits, labels).item()
    return loss, ((logits > 0).float() == labels).float().mean().item()


def fit(trained: TrainedPart, features: np.ndarray | NpyRows, labels: np.ndarray, epochs: int, batch_size: int,
        lr: float, seed: int, lr_schedule: str = "constant", val_features: np.ndarray | NpyRows | None = None,
        val_labels: np.ndarray | None = None, on_epoch: Callable[[EpochLog], None] | None = None) -> list[EpochLog]:
    """Train `trained` (on its device) on cached frozen features; returns one log row per epoch, also given to
    `on_epoch`. Under torch.distributed every process calls it and ends with the same weights."""
    rank, size = rank_and_size()
    device = parameters_device(trained)
    generator = torch.Generator().manual_seed(seed)  # the same batch order and dropout masks in every process
    dropout = trained.head[2]
    labels = np.asarray(labels, dtype=np.float32)
    step_model = trained
    if size > 1:
        step_model = DistributedDataParallel(trained, device_ids=[device] if device.type == "cuda" else None)
    optimizer = Adam([p for p in trained.parameters() if p.requires_grad], lr,
                     epochs * math.ceil(len(labels) / batch_size) if lr_schedule == "cosine" else None)
    log = []
    for epoch in range(1, epochs + 1):
        trained.train()
        total_loss = torch.zeros((), dtype=torch.float64, device=device)
        order = torch.randperm(len(labels), generator=generator).numpy()
        starts = range(0, len(labels), batch_size)
        for start in progress(starts, desc=f"epoch {epoch}/{epochs}", unit="batch", nested=True) if rank == 0 else starts:
            batch = np.sort(order[start:start + batch_size])  # ascending rows: neighbours are read together
            mine = batch[rank::size]
            keep = torch.rand(len(batch), trained.head[0].out_features, generator=generator) >= dropout.p
            logits = step_model(features_tensor(features[mine], device), keep[rank::size].to(device))
            loss_sum = nn.functional.binary_cross_entropy_with_logits(
                logits, torch.as_tensor(labels[mine], device=device), reduction="sum")
            (loss_sum * (size / len(batch))).backward()  # DDP averages over processes: the global batch's mean
            optimizer.step()
            total_loss += loss_sum.detach()
        trained.eval()
        row: EpochLog = {"epoch": epoch, "train_loss": sum_over_processes(total_loss.item()) / len(labels)}
        if val_labels is not None and len(val_labels):
            row["val_loss"], row["val_accuracy"] = loss_and_accuracy(trained, val_features, val_labels)
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
