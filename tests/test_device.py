"""The device setting: auto falls back to the CPU, CUDA is refused cleanly without a GPU, and a model saved on a
GPU machine loads and predicts on a CPU-only one. The tests marked needs_gpu run only where torch sees one (never in
CI): the frozen part on CUDA gives the CPU's float32 features, which evaluate's cross-check relies on."""

import copy

import numpy as np
import pytest
import torch

from carsketch.checkpoint import save_model
from carsketch.errors import PipelineError
from carsketch.features import feature_function, featurize_to_file
from carsketch.model import build_classifier
from carsketch.params import load_params
from carsketch.torch_device import resolve_device
from carsketch.trained_model import TrainedModel, load_trained_model
from conftest import FIXTURE_CONFIG, labelled_bitmaps, write_params

no_gpu = pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU-only fallback")
needs_gpu = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@no_gpu
def test_auto_is_the_cpu_and_cuda_is_refused_without_a_gpu():
    assert resolve_device("auto") == torch.device("cpu")
    with pytest.raises(PipelineError, match="torch sees no CUDA GPU here; use device auto or cpu"):
        resolve_device("cuda")


@no_gpu
def test_a_model_saved_with_cuda_tensors_loads_and_predicts_on_the_cpu(tmp_path, monkeypatch, fixture_classifier):
    model = TrainedModel(copy.deepcopy(fixture_classifier), FIXTURE_CONFIG)
    with monkeypatch.context() as patch:  # what torch.save writes for tensors on a GPU
        patch.setattr(torch.serialization, "location_tag", lambda storage: "cuda:0")
        save_model(tmp_path / "model.pth", model.classifier.state_dict(), model.config)
    with pytest.raises(RuntimeError, match="CUDA"):
        torch.load(tmp_path / "model.pth", weights_only=True)
    loaded = load_trained_model(tmp_path / "model.pth", "auto")
    bitmaps, labels = labelled_bitmaps(10, seed=9)
    assert loaded.device == torch.device("cpu")
    probabilities = loaded.predict_proba(bitmaps)
    np.testing.assert_allclose(probabilities, model.predict_proba(bitmaps), atol=1e-6)
    assert ((probabilities > 0.5) == labels).mean() >= 0.9


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


@needs_gpu
def test_the_frozen_part_on_cuda_gives_the_float32_features_of_the_cpu(fixture_weights):
    bitmaps = labelled_bitmaps(150, seed=10)[0]
    classifier = build_classifier(fixture_weights)
    on_cpu = feature_function(classifier, 128, "torch")(bitmaps)
    on_cuda = feature_function(classifier, 128, "torch", torch.device("cuda"))(bitmaps)
    assert relative_difference(on_cuda, on_cpu) < 1e-4  # bench.gpu: TF32 convolutions are further off


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=needs_gpu)])
def test_featurize_runs_whole_batches_only_and_keeps_every_row(tmp_path, device, fixture_weights):
    function = feature_function(build_classifier(fixture_weights), 64, "torch", torch.device(device))
    bitmaps = labelled_bitmaps(150, seed=11)[0]
    batch_rows = []

    def recording(rows):
        batch_rows.append(len(rows))
        return function(rows)
    featurize_to_file(recording, bitmaps, tmp_path / "features.npy", batch_size=128)
    assert batch_rows == [128] * 4  # the shape probe, then 300 rows as 128, 128 and 44 + 84 blank (one CUDA shape)
    assert relative_difference(np.load(tmp_path / "features.npy"), function(bitmaps)) < 1e-4


@needs_gpu
def test_a_model_predicts_the_same_on_cuda_as_on_the_cpu(tmp_path, fixture_classifier):
    bitmaps, labels = labelled_bitmaps(50, seed=12)
    model = TrainedModel(copy.deepcopy(fixture_classifier), FIXTURE_CONFIG)
    save_model(tmp_path / "model.pth", model.classifier.state_dict(), model.config)
    on_cuda = load_trained_model(tmp_path / "model.pth", "cuda")
    assert on_cuda.device.type == "cuda"
    probabilities = on_cuda.predict_proba(bitmaps)
    np.testing.assert_allclose(probabilities, model.predict_proba(bitmaps), atol=1e-5)
    assert ((probabilities > 0.5) == labels).mean() >= 0.9
