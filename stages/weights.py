"""weights stage: the ImageNet MobileNetV2 backbone weights, fetched or copied from `weights` and checked.

dvc.yaml names `weights` (a URL or a file) as this stage's dependency, so DVC notices new weights there.
"""

from carsketch.errors import run_main
from carsketch.params import load_params
from carsketch.paths import BACKBONE_FILE
from carsketch.weights import fetch_backbone_weights


def main() -> None:
    fetch_backbone_weights(load_params().weights, BACKBONE_FILE)


if __name__ == "__main__":
    run_main(main)
