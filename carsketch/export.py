"""The classifier as ONNX: bitmaps in, P(car) out, with its config in the metadata (run by carsketch.inference).

featurize exports the frozen part, with the bitmap transform, once; train exports only the part it changed and
joins the two. Training a frozen backbone's head therefore never builds the backbone.
"""

import io
import json
import warnings
from pathlib import Path

import onnx
import onnx.compose
import torch
from torch import nn

from carsketch.errors import missing_output
from carsketch.files import atomic_path
from carsketch.inference.onnx_model import BITMAPS, CAR_PROBABILITY, CONFIG_KEY, FROZEN_FEATURES
from carsketch.model import CarSketchClassifier, TrainedPart
from carsketch.quickdraw import BITMAP_PIXELS
from carsketch.sketch import bitmaps_to_input


class _FrozenFromBitmaps(nn.Module):
    def __init__(self, classifier: CarSketchClassifier, image_size: int):
        super().__init__()
        self.classifier, self.image_size = classifier, image_size

    def forward(self, bitmaps):
        return self.classifier.frozen_features(bitmaps_to_input(bitmaps, self.image_size))


class _Probability(nn.Module):
    def __init__(self, trained: TrainedPart):
        super().__init__()
        self.trained = trained

    def forward(self, frozen_features):
        return torch.sigmoid(self.trained(frozen_features))


def _export(module: nn.Module, example: torch.Tensor, input_name: str, output_name: str) -> onnx.ModelProto:
    """`module` (in eval mode, on the CPU) as an ONNX model with a batch dimension of any size."""
    buffer = io.BytesIO()
    with warnings.catch_warnings():  # torch 2.14 calls the TorchScript exporter legacy; it is exact here
        warnings.simplefilter("ignore")
        torch.onnx.export(module.eval(), example, buffer, input_names=[input_name], output_names=[output_name],
                          dynamic_axes={input_name: {0: "batch"}, output_name: {0: "batch"}}, dynamo=False)
    return onnx.load_from_string(buffer.getvalue())


def export_frozen(classifier: CarSketchClassifier, image_size: int) -> onnx.ModelProto:
    """The frozen part with the bitmap transform: uint8 bitmaps (N, 784) -> frozen features, as featurize caches them."""
    example = torch.zeros(1, BITMAP_PIXELS, dtype=torch.uint8)
    return _export(_FrozenFromBitmaps(classifier.cpu(), image_size), example, BITMAPS, FROZEN_FEATURES)


def export_model(frozen: onnx.ModelProto, trained: TrainedPart, feature_shape: tuple[int, ...],
                 config: dict) -> onnx.ModelProto:
    """The whole model: the exported frozen part joined to the trained part (moved to the CPU), which takes frozen
    features of `feature_shape` (one drawing's); `config` goes in the metadata."""
    example = torch.zeros(1, *feature_shape)
    trained_model = _export(_Probability(trained.cpu()), example, FROZEN_FEATURES, CAR_PROBABILITY)
    trained_model = onnx.compose.add_prefix(trained_model, "trained/", rename_inputs=False, rename_outputs=False)
    model = onnx.compose.merge_models(frozen, trained_model, io_map=[(FROZEN_FEATURES, FROZEN_FEATURES)])
    onnx.helper.set_model_props(model, {CONFIG_KEY: json.dumps(config)})
    return model


def save_onnx(model: onnx.ModelProto, path: Path) -> None:
    with atomic_path(path) as temporary:
        temporary.write_bytes(model.SerializeToString())


def load_onnx(path: Path) -> onnx.ModelProto:
    """An ONNX model written by an earlier stage."""
    try:
        return onnx.load(path)
    except FileNotFoundError:
        raise missing_output(path) from None
