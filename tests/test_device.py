"""The device setting: auto falls back to the CPU, CUDA is refused cleanly without a GPU, and a model saved on a
GPU machine loads and predicts on a CPU-only one. Nothing here needs a GPU."""

import numpy as np
import pytest
import torch

from carsketch.errors import PipelineError
from carsketch.model import TrainedModel, build_classifier, load_trained_model, model_config, resolve_device, save_model
from carsketch.params import load_params
from conftest import write_params

no_gpu = pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU-only fallback")


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


def test_device_autocast_and_workers_are_validated(tmp_path):
    write_params(tmp_path, device="gpu", autocast="yes", workers=0)
    with pytest.raises(PipelineError) as error:
        load_params(tmp_path / "params.yaml")
    assert "device: must be one of auto, cpu, cuda, not 'gpu'" in str(error.value)
    assert "autocast: must be true or false, not 'yes'" in str(error.value)
    assert "workers: must be an integer of at least 1, not 0" in str(error.value)


def test_onnxruntime_providers_follow_the_device_setting(monkeypatch):
    import onnxruntime

    from carsketch.inference import providers

    monkeypatch.setattr(onnxruntime, "get_available_providers", lambda: ["CPUExecutionProvider"])
    assert providers("auto") == providers("cpu") == ["CPUExecutionProvider"]
    with pytest.raises(PipelineError, match="no CUDA provider \\(pip install onnxruntime-gpu\\); use device auto or cpu"):
        providers("cuda")
    monkeypatch.setattr(onnxruntime, "get_available_providers",
                        lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"])
    assert providers("auto", 1) == [("CUDAExecutionProvider", {"device_id": 1}), "CPUExecutionProvider"]
    assert providers("cpu") == ["CPUExecutionProvider"]
