"""precision int8: featurize quantizes the frozen part, train's and adapt's models carry it, and predict and serve run
it: an int8 pipeline on fixture drawings learns as the float32 one does, and everything that runs the model agrees."""

import json

import httpx
import numpy as np
import onnx
import pytest

from carsketch.evaluation import AGREEMENT_TOLERANCE
from carsketch.inference.predict import classify
from conftest import TINY_PROJECT, accuracy, mixed_drawings, write_category_files, write_params
from servers import serve_process
from stages import adapt, evaluate, featurize, preprocess, snapshot, train

PARAMS = {**TINY_PROJECT, "epochs": 3}
# How far an int8 pipeline's test accuracy may fall short of float32's: 3 of the 60 test drawings. Its features are
# within cosine 0.95 of float32's on the fixture backbone (tests/test_quantize.py), which quantizes worse than
# ImageNet's (bench/README: int8).
ACCURACY_TOLERANCE = 0.05


def quantized(path: str) -> bool:
    return any(node.op_type == "QuantizeLinear" for node in onnx.load(path).graph.node)


def run_pipeline(project, precision: str) -> dict:
    write_params(project, **PARAMS, precision=precision)
    for stage in (featurize, train, snapshot, adapt, evaluate):
        stage.main()
    return json.loads((project / "metrics/metrics.json").read_text())


@pytest.mark.slow
def test_an_int8_pipeline_learns_as_float32_does_and_predict_and_serve_agree_with_evaluate(tmp_path, monkeypatch,
                                                                                           backbone_file):
    monkeypatch.chdir(tmp_path)
    write_category_files(tmp_path / "data/raw", {"car": 60, "bus": 60, "apple": 60, "tree": 60})
    write_params(tmp_path, **PARAMS)
    preprocess.main()
    float32 = run_pipeline(tmp_path, "float32")
    assert not quantized("model_data/car_sketch.onnx")
    int8 = run_pipeline(tmp_path, "int8")
    assert quantized("model_data/frozen.onnx") and quantized("model_data/car_sketch.onnx")
    assert int8["accuracy"] >= 0.9 and int8["accuracy"] >= float32["accuracy"] - ACCURACY_TOLERANCE
    checks = json.loads((tmp_path / "metrics/evaluate_checks.json").read_text())
    assert checks["full_model_max_difference"] <= AGREEMENT_TOLERANCE  # the cached features are the model's own

    # predict gives evaluate's answer for every test drawing, and both are mostly right
    results, errors = classify(["data/processed/test/x.npy"], "model_data/car_sketch.onnx")
    confusion = json.loads((tmp_path / "metrics/plots/confusion.json").read_text())
    assert not errors and [result["label"] for result in results] == [row["predicted"] for row in confusion]
    assert accuracy([result["label"] for result in results], np.load("data/processed/test/y.npy")) >= 0.9

    # serve gives predict's answer for the same strokes
    drawings, truth = mixed_drawings(30, seed=5)
    (tmp_path / "drawings.ndjson").write_text("".join(json.dumps({"drawing": d}) + "\n" for d in drawings))
    predicted = [result["label"] for result in classify([tmp_path / "drawings.ndjson"], "model_data/car_sketch.onnx")[0]]
    with serve_process(tmp_path / "model_data/car_sketch.onnx", "--no-collect") as (_, url):
        served = httpx.post(f"{url}/api/predict", json={"drawings": drawings}, timeout=60).json()["results"]
    assert [result["label"] for result in served] == predicted and accuracy(predicted, truth) >= 0.9
