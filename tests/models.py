"""Models for the tests: a backbone 'pretrained' on the fixture drawings, as ImageNet's weights are on photos, and a
classifier trained on its features as the pipeline trains one; and the classifier as the ONNX file train writes."""

from pathlib import Path

import numpy as np
import onnx
import torch
from torch import nn
from torchvision.models import mobilenet_v2

from carsketch.export import export_frozen, export_model
from carsketch.features import feature_function
from carsketch.batches import map_batches
from carsketch.model import CarSketchClassifier, build_classifier
from carsketch.sketch import to_model_input
from carsketch.training import fit


def pretrain_backbone(bitmaps: np.ndarray, labels: np.ndarray, image_size: int, path: Path, epochs: int = 3) -> None:
    """Train a whole mobilenet_v2 for a few seconds to tell `bitmaps` apart by `labels` (0/1, as 2 of its 1000 classes)
    and save its state dict at `path`. Its BatchNorm statistics are then those of all the drawings, so that in eval
    mode, frozen, it gives the features it learnt: a random backbone's say almost nothing of a drawing."""
    torch.manual_seed(0)
    network = mobilenet_v2()
    optimizer = torch.optim.Adam(network.parameters(), lr=1e-3)
    targets = torch.as_tensor(labels, dtype=torch.long)
    generator = torch.Generator().manual_seed(0)
    network.train()
    for _ in range(epochs):
        for batch in torch.randperm(len(bitmaps), generator=generator).split(32):
            loss = nn.functional.cross_entropy(network(to_model_input(bitmaps[batch.numpy()], image_size)),
                                               targets[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    norms = [module for module in network.modules() if isinstance(module, nn.BatchNorm2d)]
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None  # a plain mean over the pass below
    with torch.no_grad():
        network(to_model_input(bitmaps, image_size))
    torch.save(network.state_dict(), path)


def train_classifier(weights: Path, bitmaps: np.ndarray, labels: np.ndarray, image_size: int,
                     epochs: int = 3) -> CarSketchClassifier:
    """A classifier on the frozen `weights` whose head the library's fit trained on the drawings' features."""
    classifier = build_classifier(weights)
    features = torch.cat(map_batches(feature_function(classifier, image_size, "torch"), bitmaps)).numpy()
    fit(classifier.trained, features, labels, epochs=epochs, batch_size=32, lr=1e-3, seed=0)
    return classifier.eval()


def export_classifier(classifier: CarSketchClassifier, config: dict) -> onnx.ModelProto:
    """A whole classifier, split where it is, as the ONNX model train writes: featurize's frozen export joined to the
    trained part."""
    frozen = export_frozen(classifier, config["image_size"])
    with torch.inference_mode():
        example = torch.zeros(1, 3, config["image_size"], config["image_size"])
        feature_shape = tuple(classifier.frozen_features(example).shape[1:])
    return export_model(frozen, classifier.trained, feature_shape, config)
