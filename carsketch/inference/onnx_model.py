"""The trained model's ONNX file in ONNX Runtime: what predict, serve and evaluate run, with no torch to import.

The file (written by carsketch.export) takes uint8 bitmaps and returns P(car); its config (input size,
threshold, categories...) is in its metadata. Its frozen part's output is a named tensor, so the same file
also scores cached frozen features, as evaluate does.
"""

import hashlib
import json
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from carsketch.batches import INFERENCE_BATCH, map_batches
from carsketch.errors import PipelineError, missing_output, not_a_model
from carsketch.files import NpyRows
from carsketch.quickdraw import BITMAP_PIXELS

if TYPE_CHECKING:  # imported when a session is made: importing this module stays light
    import onnxruntime

# The model's tensors: its input, the frozen part's output (what featurize caches) and its output.
BITMAPS = "bitmaps"
FROZEN_FEATURES = "frozen_features"
CAR_PROBABILITY = "car_probability"
CONFIG_KEY = "carsketch_config"
CPU_PROVIDER = "CPUExecutionProvider"


def providers(device: str = "auto", index: int = 0) -> list:
    """ONNX Runtime's providers for a `device` setting: auto is CUDA (GPU `index`) where this onnxruntime has it,
    else the CPU."""
    import onnxruntime

    has_cuda = "CUDAExecutionProvider" in onnxruntime.get_available_providers()
    if device == "cuda" and not has_cuda:
        raise PipelineError("device cuda, but this onnxruntime has no CUDA provider (pip install onnxruntime-gpu); "
                            "use device auto or cpu")
    if has_cuda and device != "cpu":
        return [("CUDAExecutionProvider", {"device_id": index}), CPU_PROVIDER]
    return [CPU_PROVIDER]


def session(model: bytes | str, device_providers: list, threads: int = 0) -> "onnxruntime.InferenceSession":
    """An ONNX Runtime session for a model (bytes or a path); `threads` 0 lets ONNX Runtime choose."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    # Idle threads sleep rather than spin: spinning next to torch's own pool (or on a busy machine) starves both.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return onnxruntime.InferenceSession(model, options, providers=device_providers)


def run_batched(model_session: "onnxruntime.InferenceSession", inputs: np.ndarray | NpyRows, input_name: str,
                output_name: str, batch_size: int = INFERENCE_BATCH, dtype: type | None = None) -> np.ndarray:
    """A session's `output_name` for `inputs` (as `dtype`), computed `batch_size` rows at a time and concatenated."""
    outputs = map_batches(lambda rows: model_session.run([output_name], {input_name: np.asarray(rows, dtype)})[0],
                          inputs, batch_size)
    return np.concatenate(outputs) if outputs else np.empty(0, np.float32)


class OnnxModel:
    """A model file written by the train stage (`.onnx`), loaded on its own (no params.yaml, torch or backbone)."""

    def __init__(self, path: Path | str, device: str = "auto"):
        self.path = Path(path)
        if not self.path.is_file():
            raise missing_output(self.path)
        if self.path.suffix != ".onnx":
            raise PipelineError(f"{self.path} is not an ONNX model: give the .onnx file that train writes beside "
                                f"the .pth (the .pth loads in Python with carsketch.trained_model.load_trained_model)")
        self.device, self.providers = device, providers(device)
        try:
            data = self.path.read_bytes()
        except OSError as error:
            raise PipelineError(f"cannot read the model file {self.path} ({error.strerror or error})") from None
        # The md5 of the bytes loaded, as dvc.lock records it: which model gave an answer, even once the file changes.
        self.md5 = hashlib.md5(data).hexdigest()
        try:
            self.session = session(data, self.providers)
            self.config = json.loads(self.session.get_modelmeta().custom_metadata_map[CONFIG_KEY])
        except Exception as error:  # onnxruntime raises its own types for a file it cannot read
            raise not_a_model(self.path, error) from error
        self.threshold = self.config["threshold"]
        self._from_frozen = None

    def predict_proba(self, bitmaps: np.ndarray | NpyRows, batch_size: int = INFERENCE_BATCH) -> np.ndarray:
        """P(car) for uint8 bitmaps, (N, 784) or (N, 28, 28), ink bright on black; or an .npy's rows (N, 784),
        read a batch at a time."""
        if not isinstance(bitmaps, NpyRows):
            bitmaps = np.asarray(bitmaps, dtype=np.uint8).reshape(-1, BITMAP_PIXELS)
        return run_batched(self.session, bitmaps, BITMAPS, CAR_PROBABILITY, batch_size)

    def proba_from_frozen(self, features: np.ndarray | NpyRows, batch_size: int = INFERENCE_BATCH) -> np.ndarray:
        """P(car) from cached frozen features (an array or NpyRows, float16 or float32), a batch at a time."""
        if self._from_frozen is None:  # the part after the frozen features, cut out of the same file
            import onnx  # here, not above: predict and serve never need it (0.1 s)
            import onnx.utils

            part = onnx.utils.Extractor(onnx.load(self.path)).extract_model([FROZEN_FEATURES], [CAR_PROBABILITY])
            self._from_frozen = session(part.SerializeToString(), self.providers)
        return run_batched(self._from_frozen, features, FROZEN_FEATURES, CAR_PROBABILITY, batch_size, np.float32)
