"""The car-sketch classifier: a frozen ImageNet MobileNetV2 backbone and a small trainable head.

The backbone is split at a boundary: blocks before it are frozen and their output can be cached
(the featurize stage); the last `trainable_blocks` blocks (0 by default) and the head are trained.
"""

import contextlib
from pathlib import Path
from typing import Callable, Iterator, Self

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from carsketch.errors import PipelineError
from carsketch.files import NpyRows, atomic_path
from carsketch.inference.onnx_model import INFERENCE_BATCH
from carsketch.params import BACKBONE_BLOCKS
from carsketch.quickdraw import BITMAP_PIXELS
from carsketch.sketch import IMAGENET_MEAN, IMAGENET_STD, to_model_input

FEATURE_DIM = 1280


def car_sketch_head(in_features: int = FEATURE_DIM, hidden: int = 128, dropout: float = 0.2) -> nn.Sequential:
    """The seed's head on the pooled 1280-d features; it outputs a logit (sigmoid gives P(car))."""
    return nn.Sequential(nn.Linear(in_features, hidden), nn.ReLU(inplace=True), nn.Dropout(dropout),
                         nn.Linear(hidden, 1))


def resolve_device(setting: str | torch.device = "cpu") -> torch.device:
    """`auto` is CUDA where a GPU is visible, else CPU. Asking for CUDA without one fails here, before any work."""
    if setting == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(setting)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise PipelineError(f"device {setting!r}, but torch sees no CUDA GPU here; use device auto or cpu")
    return device


@contextlib.contextmanager
def float32_convolutions() -> Iterator[None]:
    """Convolutions on CUDA in true float32 rather than cuDNN's default TF32, within the block.

    The ONNX model (float32 on ONNX Runtime) is what predict, serve and evaluate run; on an H200 TF32 features moved
    P(car) by up to 0.006 from it, and evaluate's cross-check stopped the pipeline (bench/README.md: A GPU).
    """
    convolutions = torch.backends.cudnn.conv
    previous, convolutions.fp32_precision = convolutions.fp32_precision, "ieee"
    try:
        yield
    finally:
        convolutions.fp32_precision = previous


def load_backbone(path: Path | str | None, source: str | None = None) -> nn.Sequential:
    """MobileNetV2's convolutional blocks with the state dict in file `path`; random weights for None (tests)."""
    from torchvision.models import mobilenet_v2  # here: a frozen backbone's training never builds it (2-4 s)

    backbone = mobilenet_v2()
    if path is not None:
        try:
            backbone.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
        except FileNotFoundError:
            raise PipelineError(f"backbone weights file {path} not found: run `dvc repro weights` first") from None
        except Exception as error:  # unpickling and key mismatches raise many types; all mean the same here
            raise PipelineError(f"{source or path} is not a torchvision mobilenet_v2 state dict: "
                                f"{str(error).splitlines()[0]}") from error
    return backbone.features


def _pool(activations):
    return F.adaptive_avg_pool2d(activations, 1).flatten(1)


class TrainedPart(nn.Module):
    """What training changes: the last backbone blocks given (none by default), pooling and the head.

    Its input is the frozen part's output, as featurize caches it; it returns logits. The blocks stay in eval
    mode, so their BatchNorm statistics never change. With no blocks it needs no torchvision at all.
    """

    def __init__(self, blocks: nn.Sequential | None = None):
        super().__init__()
        self.trainable = blocks if blocks is not None else nn.Sequential()
        self.head = car_sketch_head()

    def train(self, mode: bool = True) -> Self:
        super().train(mode)
        self.trainable.eval()
        return self

    def forward(self, frozen_features: torch.Tensor) -> torch.Tensor:
        if len(self.trainable):
            frozen_features = _pool(self.trainable(frozen_features))
        return self.head(frozen_features).squeeze(1)


class CarSketchClassifier(nn.Module):
    """Frozen blocks, then the trained part (`trainable_blocks` blocks, pooling, the head); `forward` returns logits.

    The frozen blocks' output is pooled already when no block after them trains: that is what featurize caches.
    """

    def __init__(self, features: nn.Sequential, trainable_blocks: int = 0):
        super().__init__()
        if not 0 <= trainable_blocks < len(features):
            raise ValueError(f"trainable_blocks must be between 0 and {len(features) - 1}, not {trainable_blocks}")
        boundary = len(features) - trainable_blocks
        self.frozen = features[:boundary].requires_grad_(False).eval()
        self.trained = TrainedPart(features[boundary:])

    def train(self, mode: bool = True) -> Self:
        super().train(mode)
        self.frozen.eval()
        return self

    @property
    def head(self) -> nn.Sequential:
        return self.trained.head

    def frozen_features(self, images: torch.Tensor) -> torch.Tensor:
        """What the frozen blocks make of the images: pooled (N, 1280) when nothing after them trains."""
        activations = self.frozen(images)
        return activations if len(self.trained.trainable) else _pool(activations)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.trained(self.frozen_features(images))


def build_classifier(backbone_file: Path | str | None, trainable_blocks: int = 0, seed: int = 0) -> CarSketchClassifier:
    """A classifier with the backbone weights in `backbone_file` (None: random) and a fresh head seeded by `seed`."""
    torch.manual_seed(seed)  # a random backbone (tests) is the same for a seed too
    classifier = CarSketchClassifier(load_backbone(backbone_file), trainable_blocks)
    torch.manual_seed(seed)
    classifier.trained.head = car_sketch_head()
    return classifier.eval()


def build_trained_part(backbone_file: Path | str, trainable_blocks: int = 0, seed: int = 0) -> TrainedPart:
    """The part training changes, as build_classifier makes it; with no trainable blocks, without the backbone."""
    if trainable_blocks:
        return build_classifier(backbone_file, trainable_blocks, seed).trained
    torch.manual_seed(seed)
    return TrainedPart().eval()


def full_state_dict(backbone_file: Path | str, trained: TrainedPart) -> dict[str, torch.Tensor]:
    """A CarSketchClassifier's state dict (on the CPU) from the backbone file and a trained part, without
    building the backbone: its frozen blocks are the file's blocks (features.0 to features.18) before the trained
    ones."""
    backbone = torch.load(backbone_file, map_location="cpu", weights_only=True)
    boundary = BACKBONE_BLOCKS - len(trained.trainable)
    state = {f"frozen.{name.removeprefix('features.')}": tensor for name, tensor in backbone.items()
             if name.startswith("features.") and int(name.split(".")[1]) < boundary}
    state.update({f"trained.{name}": tensor.cpu() for name, tensor in trained.state_dict().items()})
    return state


def features_tensor(rows: np.ndarray, device: torch.device) -> torch.Tensor:
    """A batch of cached frozen features, float16 or float32, as float32 on `device`: torch widens float16 about
    14 times faster than numpy (0.03 against 0.4 ms for 64 rows of 1280)."""
    return torch.from_numpy(np.require(rows, requirements="W")).to(device, torch.float32)


def cached_logits(trained: TrainedPart, features: np.ndarray | NpyRows) -> torch.Tensor:
    """Logits (on the CPU) from cached frozen features (an array or NpyRows, float16 or float32), on the trained part's device."""
    device = parameters_device(trained)
    return batched(lambda rows: trained(features_tensor(rows, device)).cpu(), features)


def parameters_device(module: nn.Module) -> torch.device:
    """Where a module's parameters live."""
    return next(module.parameters()).device


@torch.inference_mode()
def batched(function: Callable[[np.ndarray], torch.Tensor], inputs: np.ndarray | NpyRows,
            batch_size: int = INFERENCE_BATCH) -> torch.Tensor:
    """Apply `function` to `inputs` in batches and concatenate the results (inference mode)."""
    outputs = [function(inputs[start:start + batch_size]) for start in range(0, len(inputs), batch_size)]
    return torch.cat(outputs) if outputs else torch.empty(0)


class TrainedModel:
    """A saved classifier in eager PyTorch, with what is needed to use it alone: input size, normalisation, threshold.

    It runs on `device` (`auto`: CUDA when visible); results always come back as CPU arrays. For Python users
    who want the torch module; predict and serve run the ONNX model train writes beside it (carsketch.inference).
    """

    def __init__(self, classifier: CarSketchClassifier, config: dict, device: str | torch.device = "cpu"):
        self.device = resolve_device(device)
        self.classifier = classifier.eval().to(self.device)
        self.config = config
        self.threshold = config["threshold"]

    def predict_proba(self, bitmaps: np.ndarray, batch_size: int = INFERENCE_BATCH) -> np.ndarray:
        """P(car) for uint8 bitmaps, (N, 784) or (N, 28, 28), ink bright on black."""
        config = self.config

        def probabilities(rows):
            images = to_model_input(rows, config["image_size"], config["mean"], config["std"], self.device)
            with float32_convolutions():
                return torch.sigmoid(self.classifier(images)).cpu()
        return batched(probabilities, np.asarray(bitmaps, dtype=np.uint8).reshape(-1, BITMAP_PIXELS), batch_size).numpy()


def save_model(path: Path, state_dict: dict[str, torch.Tensor], config: dict) -> None:
    """A classifier's state dict (CPU tensors, so that a model trained on a GPU loads anywhere) and its config."""
    with atomic_path(path) as temporary, open(temporary, "wb") as out:  # a file object keeps the archive's
        torch.save({"state_dict": state_dict, "config": config}, out)  # inner name fixed


def model_config(image_size: int, trainable_blocks: int, weights: str | Path, categories: dict[str, list[str]],
                 threshold: float = 0.5) -> dict:
    """The metadata saved beside the weights."""
    return {"image_size": image_size, "mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD),
            "threshold": threshold, "trainable_blocks": trainable_blocks, "weights": str(weights),
            "categories": categories}


def load_trained_model(path: Path | str, device: str | torch.device = "cpu") -> TrainedModel:
    """Load a model saved by save_model on its own (no params.yaml or backbone weights needed) onto `device`.

    Tensors are mapped to the CPU first, so a file written on a GPU machine loads on a CPU-only one.
    """
    path = Path(path)
    if not path.is_file():
        raise PipelineError(f"model file {path} not found: run `dvc repro` first to train it")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
        config = checkpoint["config"]
        classifier = CarSketchClassifier(load_backbone(None), config["trainable_blocks"])
        classifier.load_state_dict(checkpoint["state_dict"])
    except Exception as error:
        raise PipelineError(f"{path} is not a car-sketch model saved by the train stage "
                            f"({type(error).__name__}: {str(error).splitlines()[0]})") from error
    return TrainedModel(classifier, config, device)
