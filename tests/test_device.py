"""The device setting: auto falls back to the CPU, CUDA is refused cleanly without a GPU, and a model saved on a
GPU machine loads and predicts on a CPU-only one. The tests marked needs_gpu run only where torch sees one (never in
CI): the frozen part on CUDA gives the CPU's float32 features, which evaluate's cross-check relies on."""

import numpy as np
import pytest
import torch
from torch import nn

from carsketch.errors import PipelineError
from carsketch.features import feature_function, featurize_to_file
from carsketch.model import (CarSketchClassifier, TrainedModel, build_classifier, load_trained_model, model_config,
                             resolve_device, save_model)
from carsketch.params import load_params
from carsketch.sketch import to_model_input
from conftest import write_params

no_gpu = pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU-only fallback")
needs_gpu = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@no_gpu
def test_auto_is_the_cpu_and_cuda_is_refused_without_a_gpu():
    assert resolve_device("auto") == torch.device("cpu")
    with pytest.raises(PipelineError, match="torch sees no CUDA GPU here; use device auto or cpu"):
        resolve_device("cuda")


@no_gpu
def test_a_model_saved_with_cuda_tensors_loads_and_predicts_on_the_cpu(tmp_path, monkeypatch):
    model = TrainedModel(build_classifier(None), model_config(32, 0, "random", {"car": ["car"], "not_car": ["cat"]}))
    with monkeypatch.context() as patch:  # what torch.save writes for tensors on a GPU
        patch.setattr(torch.serialization, "location_tag", lambda storage: "cuda:0")
        save_model(tmp_path / "model.pth", model.classifier.state_dict(), model.config)
    with pytest.raises(RuntimeError, match="CUDA"):
        torch.load(tmp_path / "model.pth", weights_only=True)
    loaded = load_trained_model(tmp_path / "model.pth", "auto")
    bitmaps = np.random.default_rng(0).integers(0, 256, (3, 784), dtype=np.uint8)
    assert loaded.device == torch.device("cpu")
    np.testing.assert_allclose(loaded.predict_proba(bitmaps), model.predict_proba(bitmaps), atol=1e-6)


def test_device_and_workers_are_validated(tmp_path):
    write_params(tmp_path, device="gpu", workers=0)
    with pytest.raises(PipelineError) as error:
        load_params(tmp_path / "params.yaml")
    assert "device: must be one of auto, cpu, cuda, not 'gpu'" in str(error.value)
    assert "workers: must be an integer of at least 1, not 0" in str(error.value)


def test_onnxruntime_providers_follow_the_device_setting(monkeypatch):
    import onnxruntime

    from carsketch.inference.onnx_model import providers

    monkeypatch.setattr(onnxruntime, "get_available_providers", lambda: ["CPUExecutionProvider"])
    assert providers("auto") == providers("cpu") == ["CPUExecutionProvider"]
    with pytest.raises(PipelineError, match="no CUDA provider \\(pip install onnxruntime-gpu\\); use device auto or cpu"):
        providers("cuda")
    monkeypatch.setattr(onnxruntime, "get_available_providers",
                        lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"])
    assert providers("auto", 1) == [("CUDAExecutionProvider", {"device_id": 1}), "CPUExecutionProvider"]
    assert providers("cpu") == ["CPUExecutionProvider"]


def relative_difference(actual: torch.Tensor | np.ndarray, expected: torch.Tensor | np.ndarray) -> float:
    actual, expected = torch.as_tensor(actual), torch.as_tensor(expected)
    return float((actual - expected).abs().max() / expected.abs().max())


def with_drawing_statistics(classifier: CarSketchClassifier, bitmaps: np.ndarray, image_size: int) -> CarSketchClassifier:
    """Random weights shrink the features to about 1e-9; BatchNorm statistics of the drawings themselves keep them
    near 1 (and P(car) varied), as ImageNet's do, so that a convolution computed less exactly shows."""
    norms = [module for module in classifier.modules() if isinstance(module, nn.BatchNorm2d)]
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None  # the plain mean over what it sees
        norm.train()
    with torch.no_grad():
        classifier.frozen_features(to_model_input(bitmaps, image_size))
    for norm in norms:
        norm.eval()
    return classifier


@needs_gpu
def test_the_frozen_part_on_cuda_gives_the_float32_features_of_the_cpu():
    torch.manual_seed(0)
    bitmaps = np.random.default_rng(0).integers(0, 256, (300, 784), dtype=np.uint8)
    classifier = with_drawing_statistics(build_classifier(None), bitmaps, 128)
    on_cpu = feature_function(classifier, 128, "torch")(bitmaps)
    on_cuda = feature_function(classifier, 128, "torch", torch.device("cuda"))(bitmaps)
    assert relative_difference(on_cuda, on_cpu) < 1e-4  # bench.gpu: TF32 convolutions are further off


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=needs_gpu)])
def test_featurize_runs_whole_batches_only_and_keeps_every_row(tmp_path, device):
    torch.manual_seed(0)
    function = feature_function(build_classifier(None), 64, "torch", torch.device(device))
    bitmaps = np.random.default_rng(1).integers(0, 256, (300, 784), dtype=np.uint8)
    batch_rows = []

    def recording(rows):
        batch_rows.append(len(rows))
        return function(rows)
    featurize_to_file(recording, bitmaps, tmp_path / "features.npy", batch_size=128)
    assert batch_rows == [128] * 4  # the shape probe, then 300 rows as 128, 128 and 44 + 84 blank (one CUDA shape)
    assert relative_difference(np.load(tmp_path / "features.npy"), function(bitmaps)) < 1e-4


@needs_gpu
def test_a_model_predicts_the_same_on_cuda_as_on_the_cpu(tmp_path):
    torch.manual_seed(0)
    bitmaps = np.random.default_rng(2).integers(0, 256, (100, 784), dtype=np.uint8)
    classifier = with_drawing_statistics(build_classifier(None), bitmaps, 128)
    model = TrainedModel(classifier, model_config(128, 0, "random", {"car": ["car"], "not_car": ["cat"]}))
    save_model(tmp_path / "model.pth", model.classifier.state_dict(), model.config)
    on_cuda = load_trained_model(tmp_path / "model.pth", "cuda")
    assert on_cuda.device.type == "cuda"
    np.testing.assert_allclose(on_cuda.predict_proba(bitmaps), model.predict_proba(bitmaps), atol=1e-5)
