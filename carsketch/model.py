"""The car-sketch classifier: a frozen ImageNet MobileNetV2 backbone and a small trainable head (plain torch).

The backbone is split at a boundary: blocks before it are frozen and their output can be cached
(the featurize stage); the last `trainable_blocks` blocks (0 by default) and the head are trained.
"""

from pathlib import Path
from typing import Self

import torch
import torch.nn.functional as F
from torch import nn

from carsketch.backbone import FEATURE_DIM, load_backbone


def car_sketch_head(in_features: int = FEATURE_DIM, hidden: int = 128, dropout: float = 0.2) -> nn.Sequential:
    """The seed's head on the pooled 1280-d features; it outputs a logit (sigmoid gives P(car))."""
    return nn.Sequential(nn.Linear(in_features, hidden), nn.ReLU(inplace=True), nn.Dropout(dropout),
                         nn.Linear(hidden, 1))


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
