"""ImageNet MobileNetV2's convolutional blocks, torchvision's `mobilenet_v2().features`: what the weights stage
fetches and checks, and what the classifier is built on."""

from pathlib import Path

from torch import nn

from carsketch.errors import PipelineError, missing_output

# The channels of the last block's output, which the head takes once pooled.
FEATURE_DIM = 1280


def load_backbone(path: Path | str | None, source: str | None = None) -> nn.Sequential:
    """MobileNetV2's convolutional blocks with the state dict in file `path`; random weights for None (tests)."""
    import torch
    from torchvision.models import mobilenet_v2  # here: a frozen backbone's training never builds it (2-4 s)

    backbone = mobilenet_v2()
    if path is not None:
        try:
            backbone.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
        except FileNotFoundError:
            raise missing_output(path, "dvc repro weights") from None
        except Exception as error:  # unpickling and key mismatches raise many types; all mean the same here
            raise PipelineError(f"{source or path} is not a torchvision mobilenet_v2 state dict: "
                                f"{str(error).splitlines()[0]}") from error
    return backbone.features
