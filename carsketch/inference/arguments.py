"""The command-line arguments that pick the model and where it runs, the same for `predict` and `serve`."""

import argparse

from carsketch.devices import DEVICES
from carsketch.paths import ONNX_MODEL_FILE


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """--model PATH and --device."""
    parser.add_argument("--model", default=ONNX_MODEL_FILE, metavar="PATH",
                        help=f"the trained model (default: {ONNX_MODEL_FILE})")
    parser.add_argument("--device", choices=DEVICES, default="auto",
                        help="where the model runs (default auto: CUDA where ONNX Runtime has it, else the CPU)")
