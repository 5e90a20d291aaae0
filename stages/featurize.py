"""featurize stage: run the frozen backbone once over every drawing and cache what it outputs.

The frozen blocks never change during training, so their output for a drawing is the same every
epoch: computing it once here lets `dvc exp run -S epochs=5` re-run only train and evaluate.
The frozen blocks run in ONNX Runtime by default (several times faster than eager PyTorch on CPU,
see README's benchmark) or in PyTorch (`featurize_engine: torch`).
"""

import io
import warnings

import numpy as np
import onnxruntime
import torch
from torch import nn

from stages.errors import PipelineError, run_main
from stages.files import load_npz, save_npz
from stages.model import batched, build_classifier
from stages.params import load_params
from stages.paths import FEATURES_DIR, PROCESSED_DIR
from stages.progress import progress
from stages.sketch import to_model_input

ENGINES = ("onnxruntime", "torch")


class _FrozenFeatures(nn.Module):
    """The classifier's frozen part as a module of its own, for export."""

    def __init__(self, classifier):
        super().__init__()
        self.classifier = classifier

    def forward(self, images):
        return self.classifier.frozen_features(images)


def onnxruntime_session(classifier, image_size):
    """The frozen blocks exported to ONNX and loaded in ONNX Runtime, using torch's thread count."""
    model = io.BytesIO()
    with warnings.catch_warnings():  # torch 2.14 calls the TorchScript exporter legacy; it is exact here
        warnings.simplefilter("ignore")
        torch.onnx.export(_FrozenFeatures(classifier).eval(), to_model_input(np.zeros(784, np.uint8), image_size), model,
                          input_names=["images"], output_names=["features"], dynamic_axes={"images": {0: "batch"}},
                          dynamo=False)
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    # Idle threads sleep rather than spin: spinning next to torch's own pool (or on a busy machine) starves both.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return onnxruntime.InferenceSession(model.getvalue(), options, providers=["CPUExecutionProvider"])


def feature_function(classifier, image_size, engine):
    """bitmaps -> frozen features, with `engine`."""
    if engine == "torch":
        return lambda bitmaps: classifier.frozen_features(to_model_input(bitmaps, image_size))
    if engine == "onnxruntime":
        session = onnxruntime_session(classifier, image_size)
        return lambda bitmaps: torch.from_numpy(
            session.run(None, {"images": to_model_input(bitmaps, image_size).contiguous().numpy()})[0])
    raise PipelineError(f"featurize_engine must be one of {', '.join(ENGINES)}, not {engine!r}")


def featurize(classifier, bitmaps, image_size, engine="torch", desc="featurize"):
    """The classifier's frozen features of uint8 bitmaps, batched, with a progress bar."""
    function = feature_function(classifier, image_size, engine)
    with progress(total=len(bitmaps), desc=desc, unit="drawing") as bar:
        return batched(function, bitmaps, bar=bar)


def main(params_path="params.yaml"):
    params = load_params(params_path)
    classifier = build_classifier(params["weights"], params["trainable_blocks"])
    for split in ("train", "test"):
        bitmaps = load_npz(PROCESSED_DIR / f"{split}.npz")["x"]
        features = featurize(classifier, bitmaps, params["image_size"], params["featurize_engine"], f"featurize {split}")
        save_npz(FEATURES_DIR / f"{split}.npz", features=features.contiguous().numpy())


if __name__ == "__main__":
    run_main(main)
