"""The backbone's ImageNet weights: fetched from a URL or copied from a file, and checked before they are kept."""

import shutil
import urllib.parse
from pathlib import Path

from carsketch.errors import PipelineError
from carsketch.files import atomic_path
from carsketch.http_retry import download
from carsketch.backbone import load_backbone

LOCAL_WEIGHTS_EXAMPLE = "../shared/weights/mobilenet_v2_imagenet.pth"


def fetch_backbone_weights(source: str, destination: Path) -> None:
    """Put the MobileNetV2 state dict at `source` (an http(s):// URL or a file) at `destination`, checked.

    The file must load into torchvision's mobilenet_v2 exactly; nothing is left at `destination` otherwise.
    """
    with atomic_path(destination) as partial:
        if urllib.parse.urlsplit(source).scheme in ("http", "https"):
            try:
                download(source, partial)
            except PipelineError as error:
                raise PipelineError(f"could not download backbone weights: {error}. Offline? Set `weights` in "
                                    f"params.yaml to a local state-dict file, e.g. `weights: {LOCAL_WEIGHTS_EXAMPLE}`"
                                    ) from error
        else:
            shutil.copyfile(source, partial)
        load_backbone(partial, source)
