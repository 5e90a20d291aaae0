"""A trained classifier on disk: its state dict (CPU tensors) and the config that makes it usable alone."""

from pathlib import Path

import torch

from carsketch.backbone import load_backbone
from carsketch.errors import missing_output, not_a_model
from carsketch.files import atomic_path
from carsketch.model import CarSketchClassifier, TrainedPart
from carsketch.sketch import IMAGENET_MEAN, IMAGENET_STD


def full_state_dict(backbone_file: Path | str, trained: TrainedPart) -> dict[str, torch.Tensor]:
    """A CarSketchClassifier's state dict (on the CPU) from the backbone file and a trained part, without
    building the backbone: its frozen blocks are the file's blocks (features.0, features.1...) before the trained
    ones."""
    backbone = torch.load(backbone_file, map_location="cpu", weights_only=True)
    block = {name: int(name.split(".")[1]) for name in backbone if name.startswith("features.")}
    boundary = max(block.values()) + 1 - len(trained.trainable)
    state = {f"frozen.{name.removeprefix('features.')}": backbone[name] for name in block if block[name] < boundary}
    state.update({f"trained.{name}": tensor.cpu() for name, tensor in trained.state_dict().items()})
    return state


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


def load_checkpoint(path: Path | str) -> tuple[CarSketchClassifier, dict]:
    """The classifier saved by save_model at `path`, on the CPU, and its config; no params.yaml or backbone file needed.

    Tensors are mapped to the CPU first, so a file written on a GPU machine loads on a CPU-only one.
    """
    path = Path(path)
    if not path.is_file():
        raise missing_output(path)
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
        config = checkpoint["config"]
        classifier = CarSketchClassifier(load_backbone(None), config["trainable_blocks"])
        classifier.load_state_dict(checkpoint["state_dict"])
    except Exception as error:
        raise not_a_model(path, error) from error
    return classifier, config
