"""Running the classifier's frozen part over drawings: in ONNX Runtime (fast on CPU) or eager PyTorch.

The frozen blocks never change during training, so their output for a drawing is the same every epoch:
the featurize stage computes it once and caches it, and `dvc exp run -S epochs=5` re-runs only training.
"""

import io
import warnings
from pathlib import Path
from typing import Callable

import numpy as np
import onnxruntime
import torch
from torch import nn

from carsketch.files import atomic_path, create_npy
from carsketch.model import INFERENCE_BATCH, CarSketchClassifier, batched
from carsketch.progress import progress
from carsketch.quickdraw import BITMAP_PIXELS
from carsketch.sketch import to_model_input

FeatureFunction = Callable[[np.ndarray], torch.Tensor]


class _FrozenFeatures(nn.Module):
    """The classifier's frozen part as a module of its own, for export."""

    def __init__(self, classifier):
        super().__init__()
        self.classifier = classifier

    def forward(self, images):
        return self.classifier.frozen_features(images)


def onnxruntime_session(classifier: CarSketchClassifier, image_size: int) -> onnxruntime.InferenceSession:
    """The frozen blocks exported to ONNX and loaded in ONNX Runtime, using torch's thread count."""
    model = io.BytesIO()
    with warnings.catch_warnings():  # torch 2.14 calls the TorchScript exporter legacy; it is exact here
        warnings.simplefilter("ignore")
        torch.onnx.export(_FrozenFeatures(classifier).eval(), to_model_input(np.zeros(BITMAP_PIXELS, np.uint8), image_size),
                          model, input_names=["images"], output_names=["features"],
                          dynamic_axes={"images": {0: "batch"}}, dynamo=False)
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    # Idle threads sleep rather than spin: spinning next to torch's own pool (or on a busy machine) starves both.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return onnxruntime.InferenceSession(model.getvalue(), options, providers=["CPUExecutionProvider"])


def feature_function(classifier: CarSketchClassifier, image_size: int, engine: str) -> FeatureFunction:
    """bitmaps -> frozen features, with `engine` (onnxruntime or torch)."""
    if engine == "torch":
        return lambda bitmaps: classifier.frozen_features(to_model_input(bitmaps, image_size))
    if engine != "onnxruntime":
        raise ValueError(f"unknown featurize engine {engine!r}")
    session = onnxruntime_session(classifier, image_size)
    return lambda bitmaps: torch.from_numpy(
        session.run(None, {"images": to_model_input(bitmaps, image_size).contiguous().numpy()})[0])


def featurize(classifier: CarSketchClassifier, bitmaps: np.ndarray, image_size: int, engine: str = "torch",
              desc: str = "featurize") -> torch.Tensor:
    """The classifier's frozen features of uint8 bitmaps, batched, with a progress bar."""
    function = feature_function(classifier, image_size, engine)
    with progress(total=len(bitmaps), desc=desc, unit="drawing") as bar:
        return batched(function, bitmaps, bar=bar)


@torch.inference_mode()
def featurize_to_file(function: FeatureFunction, bitmaps: np.ndarray, destination: Path, desc: str = "featurize",
                      batch_size: int = INFERENCE_BATCH, dtype: str = "float32") -> None:
    """Stream `bitmaps` (a memory map is fine) through `function` into a `dtype` .npy at `destination`.

    Batches go straight into a preallocated memory-mapped file, so memory stays flat however many drawings
    there are; the file appears only once complete.
    """
    shape = function(np.zeros((1, BITMAP_PIXELS), np.uint8)).shape[1:]
    with atomic_path(destination) as partial, progress(total=len(bitmaps), desc=desc, unit="drawing") as bar:
        features = create_npy(partial, dtype, (len(bitmaps), *shape))
        for start in range(0, len(bitmaps), batch_size):
            batch = function(bitmaps[start:start + batch_size])
            features[start:start + len(batch)] = batch.numpy()
            bar.update(len(batch))
        features.flush()
        del features
