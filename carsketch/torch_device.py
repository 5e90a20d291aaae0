"""Where torch runs, and how precisely: the `device` setting resolved, and convolutions kept in true float32."""

import contextlib
from typing import Iterator

import torch
from torch import nn

from carsketch.errors import PipelineError


def resolve_device(setting: str | torch.device = "cpu") -> torch.device:
    """`auto` is CUDA where a GPU is visible, else CPU. Asking for CUDA without one fails here, before any work."""
    if setting == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(setting)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise PipelineError(f"device {setting!r}, but torch sees no CUDA GPU here; use device auto or cpu")
    return device


def parameters_device(module: nn.Module) -> torch.device:
    """Where a module's parameters live."""
    return next(module.parameters()).device


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
