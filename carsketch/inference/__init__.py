"""Using a trained model, without torch: the ONNX model in ONNX Runtime, drawings turned into the dataset's bitmaps,
and the `predict` and `serve` commands. `pip install carsketch` installs this part alone.

    from carsketch.inference import OnnxModel
    OnnxModel("model_data/car_sketch.onnx").predict_proba(bitmaps)   # P(car) for uint8 (N, 784) bitmaps
"""

from carsketch.inference.onnx_model import OnnxModel

__all__ = ["OnnxModel"]
