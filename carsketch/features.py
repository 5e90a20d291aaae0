"""The classifier's frozen part as featurize runs it (float32, or int8 on a CPU) over drawings: in ONNX Runtime (fast on
CPU) or eager PyTorch.

The frozen blocks never change during training, so their output for a drawing is the same every epoch:
the featurize stage computes it once and caches it, and `dvc exp run -S epochs=5` re-runs only training.
"""

import collections
import time
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import onnx
import torch

from carsketch.batches import INFERENCE_BATCH
from carsketch.distributed import gather_on_main, is_main, rank_and_size
from carsketch.export import export_frozen
from carsketch.files import NpyRows, NpyWriter, atomic_path
from carsketch.inference.onnx_model import BITMAPS, CPU_PROVIDER, providers, session
from carsketch.model import CarSketchClassifier
from carsketch.progress import progress
from carsketch.quantize import CALIBRATION_SEED, DEFAULT_CALIBRATION_DRAWINGS, calibration_sample, quantize_frozen
from carsketch.quickdraw import BITMAP_PIXELS
from carsketch.sketch import to_model_input
from carsketch.torch_device import float32_convolutions

FeatureFunction = Callable[[np.ndarray], torch.Tensor]
# Drawings a featurize batch holds on CUDA: on an H200 at 128 px (TF32), 12,000 drawings/s at 64, 43,000 at 256 and
# 46,000 at 1024, for four times the memory. On the CPU larger batches are slower (torch on 2 cores: 276, 169 and
# 144 drawings/s at 64, 256 and 1024), so it keeps INFERENCE_BATCH.
CUDA_BATCH = 256


def featurize_batch_size(device: torch.device) -> int:
    """The batch featurize runs the frozen part on `device` in."""
    return CUDA_BATCH if device.type == "cuda" else INFERENCE_BATCH


def export_frozen_part(classifier: CarSketchClassifier, image_size: int, precision: str,
                       train_bitmaps: NpyRows | np.ndarray, device: torch.device) -> onnx.ModelProto:
    """export_frozen in float32, or with `precision` int8 on a CPU quantized on a fixed sample of `train_bitmaps`: the
    frozen part that featurize caches and adapt trains on, and that the whole model carries. int8 is a CPU setting: on
    CUDA the part stays float32, so the cached features and the model always come from the same graph."""
    model = export_frozen(classifier, image_size)
    if precision != "int8":
        return model
    if device.type == "cuda":
        print("precision int8 is a CPU setting: on the GPU the frozen part stays float32", flush=True)
        return model
    started = time.perf_counter()
    calibration = calibration_sample(train_bitmaps, DEFAULT_CALIBRATION_DRAWINGS, CALIBRATION_SEED)
    quantized = onnx.load_from_string(quantize_frozen(model.SerializeToString(), calibration))
    print(f"frozen part quantized to int8 on {len(calibration)} training drawings in "
          f"{time.perf_counter() - started:.1f} s", flush=True)
    return quantized


def _whole_batch(bitmaps: np.ndarray, batch_size: int) -> np.ndarray:
    """`bitmaps` with blank drawings after them up to `batch_size` rows: each new input shape costs CUDA 1.5-4 s of
    set-up on an H200, so the last batch of each split has the same shape as the others."""
    missing = batch_size - len(bitmaps)
    return np.concatenate([bitmaps, np.zeros((missing, BITMAP_PIXELS), np.uint8)]) if missing > 0 else bitmaps


def feature_function(classifier: CarSketchClassifier, image_size: int, engine: str,
                     device: torch.device = torch.device("cpu"),
                     frozen_model: onnx.ModelProto | None = None) -> FeatureFunction:
    """bitmaps -> frozen features (float32, on the CPU), with `engine` (onnxruntime or torch) on `device`.

    onnxruntime runs `frozen_model` (default: the classifier's frozen part, exported now). On CUDA it uses its
    CUDA provider where it has one; without one, torch runs the frozen part on the GPU instead, in float32 like the
    ONNX model that evaluate checks the features against.
    """
    if engine not in ("torch", "onnxruntime"):
        raise ValueError(f"unknown featurize engine {engine!r}")
    on_cuda = device.type == "cuda"
    chosen = providers("auto" if on_cuda else "cpu", device.index or 0)
    if engine == "onnxruntime" and (not on_cuda or chosen != [CPU_PROVIDER]):
        frozen_model = frozen_model or export_frozen(classifier, image_size)
        frozen = session(frozen_model.SerializeToString(), chosen, threads=torch.get_num_threads())
        return lambda bitmaps: torch.from_numpy(frozen.run(
            None, {BITMAPS: np.asarray(bitmaps, np.uint8).reshape(-1, BITMAP_PIXELS)})[0])
    classifier.to(device)

    def run_torch(bitmaps: np.ndarray) -> torch.Tensor:
        with float32_convolutions():
            return classifier.frozen_features(to_model_input(bitmaps, image_size, device=device)).cpu()
    return run_torch


def _batches_in_order(function: FeatureFunction, bitmaps: np.ndarray, batch_size: int,
                      shape: tuple[int, ...]) -> Iterator[tuple[slice, np.ndarray]]:
    """On rank 0, each batch's rows and features in order; elsewhere, nothing (but the same collective calls).

    The batches are exactly one process's batches, dealt round-robin (round r: rank k computes batch r * size + k),
    so each drawing goes through the frozen part beside the same drawings as in one process: the same bytes. Every
    batch is whole (the last padded with blank drawings), so every process sends the same shape.
    """
    rank, size = rank_and_size()
    batches = [slice(start, min(start + batch_size, len(bitmaps))) for start in range(0, len(bitmaps), batch_size)]
    for first in range(0, len(batches), size):
        this_round = batches[first:first + size]
        if rank < len(this_round):
            mine = function(_whole_batch(np.asarray(bitmaps[this_round[rank]]), batch_size))
        else:
            mine = torch.zeros((batch_size, *shape))  # no batch left for this process in the last round
        for rows, features in zip(this_round, gather_on_main(mine)):
            yield rows, features[:rows.stop - rows.start].numpy()


@torch.inference_mode()
def featurize_to_file(function: FeatureFunction, bitmaps: np.ndarray, destination: Path, desc: str = "featurize",
                      batch_size: int = INFERENCE_BATCH, dtype: str = "float32") -> None:
    """Stream `bitmaps` (NpyRows or an array) through `function` into a `dtype` .npy at `destination`.

    Batches are written in order to a file whose space is reserved first, so memory stays flat however many
    drawings there are; the file appears only once complete. Under torch.distributed the processes share the batches
    and rank 0 alone writes the file, byte for byte what one process writes.
    """
    shape = tuple(function(np.zeros((batch_size, BITMAP_PIXELS), np.uint8)).shape[1:])
    batches = _batches_in_order(function, bitmaps, batch_size, shape)
    if not is_main():
        collections.deque(batches, maxlen=0)  # compute and send this process's share
        return
    # the bar first: an interrupt while tqdm is built would leave a half-made bar that complains at exit
    with (progress(total=len(bitmaps), desc=desc, unit="drawing") as bar, atomic_path(destination) as partial,
          NpyWriter(partial, dtype, (len(bitmaps), *shape)) as features):
        for _, batch in batches:
            features.write(batch)
            bar.update(len(batch))
