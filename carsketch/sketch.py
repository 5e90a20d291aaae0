"""The one transform from Quick, Draw! bitmaps to backbone input, shared by training, featurizing and prediction."""

import numpy as np
import torch
import torch.nn.functional as F

from carsketch.quickdraw import BITMAP_SIDE

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def to_model_input(bitmaps, image_size, mean=IMAGENET_MEAN, std=IMAGENET_STD):
    """uint8 bitmaps, (N, 784) or (N, 28, 28), ink bright on black -> (N, 3, S, S) normalised float tensor.

    The grey level is resized to `image_size` and repeated as pseudo-RGB, then ImageNet-normalised;
    the result is channels_last, the faster layout for MobileNetV2 on CPU.
    """
    grey = torch.from_numpy(np.array(bitmaps, dtype=np.uint8).reshape(-1, 1, BITMAP_SIDE, BITMAP_SIDE))
    grey = grey.float().div_(255)
    if image_size != BITMAP_SIDE:
        grey = F.interpolate(grey, size=(image_size, image_size), mode="bilinear", align_corners=False)
    mean = torch.tensor(mean).view(1, 3, 1, 1)
    std = torch.tensor(std).view(1, 3, 1, 1)
    return ((grey - mean) / std).contiguous(memory_format=torch.channels_last)
