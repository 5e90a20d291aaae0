"""The one transform from Quick, Draw! bitmaps to backbone input, shared by training, featurizing and prediction.

It is plain torch, so the exported ONNX models carry it too: they take the uint8 bitmaps themselves.
"""

from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from carsketch.quickdraw import BITMAP_SIDE

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def bitmaps_to_input(bitmaps: torch.Tensor, image_size: int, mean: Sequence[float] = IMAGENET_MEAN,
                     std: Sequence[float] = IMAGENET_STD) -> torch.Tensor:
    """A uint8 tensor of bitmaps, (N, 784) or (N, 28, 28), ink bright on black -> (N, 3, S, S) normalised floats.

    The grey level is resized to `image_size` and repeated as pseudo-RGB, then ImageNet-normalised.
    """
    grey = bitmaps.reshape(-1, 1, BITMAP_SIDE, BITMAP_SIDE).float() / 255
    if image_size != BITMAP_SIDE:
        grey = F.interpolate(grey, size=(image_size, image_size), mode="bilinear", align_corners=False)
    mean, std = (torch.tensor(values, device=grey.device).view(1, 3, 1, 1) for values in (mean, std))
    return (grey - mean) / std


def to_model_input(bitmaps: np.ndarray, image_size: int, mean: Sequence[float] = IMAGENET_MEAN,
                   std: Sequence[float] = IMAGENET_STD, device: torch.device = torch.device("cpu")) -> torch.Tensor:
    """bitmaps_to_input for any uint8 array, on `device`; channels_last, the faster layout for MobileNetV2 on CPU.

    The uint8 bitmaps go to the device and the transform runs there: at 128 px that moves 784 bytes a drawing
    instead of the 196,608 of its float input.
    """
    grey = torch.from_numpy(np.array(bitmaps, dtype=np.uint8)).to(device)
    return bitmaps_to_input(grey, image_size, mean, std).contiguous(memory_format=torch.channels_last)
