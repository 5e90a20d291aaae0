"""The frozen part in int8: ONNX Runtime's static quantization of featurize's frozen export (issue 29).

The frozen part is most of the work in featurize, predict and serve, and CPUs with 8-bit dot products (VNNI, AMX)
run its convolutions about twice as fast in int8 (bench/README: int8). Static quantization needs activation ranges,
measured here on a fixed, seeded sample of training drawings, so the same inputs give the same bytes: featurize's
outputs stay byte-identical across runs and `workers`, as in float32.

It imports no torch: quantizing a model that is already ONNX needs only numpy, onnx and ONNX Runtime.
"""

import logging
import tempfile
from pathlib import Path

import numpy as np
import onnx
from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType,
                                      quantize_static)

from carsketch.batches import INFERENCE_BATCH, map_batches
from carsketch.files import NpyRows
from carsketch.inference.onnx_model import BITMAPS
from carsketch.quickdraw import BITMAP_PIXELS

# Training drawings the activation ranges are measured on: 512 gave feature cosine min 0.989, mean 0.996 against
# float32 on the ImageNet backbone at 128 px, in 10-32 s on two cores (idle to loaded).
DEFAULT_CALIBRATION_DRAWINGS = 512
# The sample's own seed, not a params.yaml one: a new training `seed` must not re-run featurize.
CALIBRATION_SEED = 0
# What is quantized: the convolutions (BatchNorm is folded into them at export), their ReLU6 (Clip, fused into the
# convolution's output range) and the residual Adds. The transform before the first convolution (uint8 cast, Resize,
# normalisation) stays float, and so do the pooled features: quantizing them as well saved no time measurably and
# would round the features featurize caches to 256 levels.
QUANTIZED_OP_TYPES = ("Conv", "Clip", "Add")


class _Batches(CalibrationDataReader):
    """The calibration bitmaps as ONNX Runtime's calibrator reads them: one input dict per batch."""

    def __init__(self, bitmaps: np.ndarray, batch_size: int):
        self.batches = iter(map_batches(lambda rows: {BITMAPS: rows}, bitmaps, batch_size))

    def get_next(self) -> dict | None:
        return next(self.batches, None)


def _without_unused(model: onnx.ModelProto) -> onnx.ModelProto:
    """`model` less the nodes and initializers nothing reads: the quantizer folds each ReLU6 (Clip) into its
    convolution's output range and leaves the Clip's bounds behind, which ONNX Runtime would otherwise remove, with a
    warning for each, every time predict or serve loads the model."""
    graph = model.graph
    while True:
        read = {name for node in graph.node for name in node.input} | {output.name for output in graph.output}
        unused = [node for node in graph.node if not read.intersection(node.output)]
        if not unused:
            break
        for node in unused:
            graph.node.remove(node)
    for initializer in [initializer for initializer in graph.initializer if initializer.name not in read]:
        graph.initializer.remove(initializer)
    return model


def calibration_sample(rows: np.ndarray | NpyRows, count: int, seed: int) -> np.ndarray:
    """`count` of the training bitmaps (all of them where there are fewer), drawn by `seed`, as uint8 (N, 784).

    The rows are sorted, so an NpyRows reads them in file order."""
    if count < 1:
        raise ValueError(f"the calibration sample needs at least 1 drawing, not {count}")
    chosen = np.sort(np.random.default_rng(seed).choice(len(rows), min(count, len(rows)), replace=False))
    return np.asarray(rows[chosen], dtype=np.uint8).reshape(len(chosen), BITMAP_PIXELS)


def quantize_frozen(float_model: bytes, calibration: np.ndarray, batch_size: int = INFERENCE_BATCH) -> bytes:
    """The frozen part (an ONNX model, bitmaps -> frozen features, as carsketch.export.export_frozen writes it) with
    int8 convolutions, calibrated on uint8 `calibration` bitmaps (N, 784): the same bytes for the same inputs.

    QDQ format, as ONNX Runtime runs fastest on x86 and as it stays a plain ONNX graph: per-channel symmetric int8
    weights (MobileNetV2's depthwise filters differ too much in scale for one scale a tensor) and asymmetric uint8
    activations, whose ranges are the min and max seen in calibration. MinMax measured as well as Percentile and
    Entropy here, and is the quickest by far (bench/README: int8).
    """
    bitmaps = np.ascontiguousarray(calibration, dtype=np.uint8).reshape(-1, BITMAP_PIXELS)
    if not len(bitmaps):
        raise ValueError("no calibration drawings: quantization needs the activations of at least one")
    with tempfile.TemporaryDirectory(prefix="carsketch-quantize-") as folder:
        source, target = Path(folder) / "float32.onnx", Path(folder) / "int8.onnx"
        source.write_bytes(float_model)
        root = logging.getLogger()
        level = root.level
        root.setLevel(logging.ERROR)  # quantize_static warns that the model had no pre-processing: none is needed
        try:
            quantize_static(source, target, _Batches(bitmaps, batch_size), quant_format=QuantFormat.QDQ,
                            op_types_to_quantize=list(QUANTIZED_OP_TYPES), per_channel=True,
                            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                            calibrate_method=CalibrationMethod.MinMax)
        finally:
            root.setLevel(level)
        return _without_unused(onnx.load(target)).SerializeToString()
