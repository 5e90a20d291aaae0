"""Fine-tuning the trained model on the drawings people labelled: its last backbone blocks and its head, in seconds.

A head on frozen features learns little from tens of drawings of a kind it never saw, and re-training blocks on every
Quick, Draw! drawing costs a whole training each time (bench/README: the labelling loop). adapt starts from the
trained model instead and trains only its last `blocks` blocks and the head, with the library's `fit`, on the
collected drawings and a seeded replay sample of the training drawings, so that it keeps what it knew. Its cost grows
with those two, never with the data set.
"""

from typing import Callable

import numpy as np
import onnx
import torch
from torch import nn

from carsketch.export import export_model
from carsketch.features import export_frozen_part
from carsketch.files import NpyRows
from carsketch.inference.onnx_model import BITMAPS, CPU_PROVIDER, FROZEN_FEATURES, run_batched, session
from carsketch.model import CarSketchClassifier
from carsketch.training import EpochLog, fit


def split_at(classifier: CarSketchClassifier, trained_blocks: int) -> CarSketchClassifier:
    """The same network (its modules, not copies) with its last `trained_blocks` backbone blocks and the head
    trainable and the blocks before them frozen, wherever the classifier was split before."""
    blocks = nn.Sequential(*classifier.frozen, *classifier.trained.trainable)
    resplit = CarSketchClassifier(blocks, trained_blocks)
    resplit.trained.head = classifier.head
    resplit.trained.requires_grad_(True)
    return resplit


def replay_sample(bitmaps: NpyRows | np.ndarray, labels: np.ndarray, count: int,
                  seed: int) -> tuple[np.ndarray, np.ndarray]:
    """`count` of the training drawings (all of them where there are fewer), drawn by `seed`, and their labels."""
    rows = np.sort(np.random.default_rng(seed).choice(len(labels), min(count, len(labels)), replace=False))
    return np.asarray(bitmaps[rows]), np.asarray(labels)[rows]


def adapt(classifier: CarSketchClassifier, blocks: int, bitmaps: np.ndarray, labels: np.ndarray,
          weights: np.ndarray, config: dict, epochs: int, batch_size: int, lr: float, seed: int,
          device: torch.device = torch.device("cpu"), on_epoch: Callable[[EpochLog], None] | None = None,
          precision: str = "float32", train_bitmaps: NpyRows | np.ndarray | None = None
          ) -> tuple[CarSketchClassifier, onnx.ModelProto]:
    """`classifier` with its last `blocks` blocks and its head trained on uint8 `bitmaps` (N, 784) and their 0/1
    `labels`, each row's loss counting its `weight` (on the CPU and in eval mode after); and the same model as ONNX,
    with `config` in its metadata.

    The blocks before them are exported to ONNX once (in int8 with `precision` int8, calibrated on `train_bitmaps` as
    featurize calibrates) and run once over the drawings in ONNX Runtime, 4-5 times faster than eager torch on a CPU;
    each epoch then costs only the blocks trained, on what the exported model's frozen part computes."""
    adapted = split_at(classifier.cpu(), blocks)
    frozen = export_frozen_part(adapted, config["image_size"], precision, train_bitmaps if train_bitmaps is not None
                                else bitmaps, device)
    inputs = run_batched(session(frozen.SerializeToString(), [CPU_PROVIDER]), bitmaps, BITMAPS, FROZEN_FEATURES)
    adapted.to(device)
    fit(adapted.trained, inputs, labels, epochs, batch_size, lr, seed, sample_weights=weights, on_epoch=on_epoch)
    adapted.cpu().eval()
    return adapted, export_model(frozen, adapted.trained, inputs.shape[1:], config)
