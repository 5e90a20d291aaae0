"""A saved classifier in eager PyTorch, for Python users who want the torch module (predict and serve run the ONNX
model instead, carsketch.inference)."""

from pathlib import Path

import numpy as np
import torch

from carsketch.batches import INFERENCE_BATCH, map_batches
from carsketch.checkpoint import load_checkpoint
from carsketch.model import CarSketchClassifier
from carsketch.quickdraw import BITMAP_PIXELS
from carsketch.sketch import to_model_input
from carsketch.torch_device import float32_convolutions, resolve_device


class TrainedModel:
    """A saved classifier with what is needed to use it alone: input size, normalisation, threshold.

    It runs on `device` (`auto`: CUDA when visible); results always come back as CPU arrays.
    """

    def __init__(self, classifier: CarSketchClassifier, config: dict, device: str | torch.device = "cpu"):
        self.device = resolve_device(device)
        self.classifier = classifier.eval().to(self.device)
        self.config = config
        self.threshold = config["threshold"]

    @torch.inference_mode()
    def predict_proba(self, bitmaps: np.ndarray, batch_size: int = INFERENCE_BATCH) -> np.ndarray:
        """P(car) for uint8 bitmaps, (N, 784) or (N, 28, 28), ink bright on black."""
        config = self.config

        def probabilities(rows):
            images = to_model_input(rows, config["image_size"], config["mean"], config["std"], self.device)
            with float32_convolutions():
                return torch.sigmoid(self.classifier(images)).cpu().numpy()
        rows = np.asarray(bitmaps, dtype=np.uint8).reshape(-1, BITMAP_PIXELS)
        return np.concatenate(map_batches(probabilities, rows, batch_size) or [np.empty(0, np.float32)])


def load_trained_model(path: Path | str, device: str | torch.device = "cpu") -> TrainedModel:
    """Load a model saved by the train stage on its own (no params.yaml or backbone weights needed) onto `device`."""
    return TrainedModel(*load_checkpoint(path), device)
