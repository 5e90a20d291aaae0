"""The ONNX model train writes: the same P(car) as the PyTorch classifier, from bitmaps and from cached features,
built the way the stages build it, and run without importing torch."""

import subprocess
import sys

import numpy as np
import pytest
import torch
import torchvision

from carsketch.errors import PipelineError
from carsketch.export import export_classifier, export_frozen, export_model, save_onnx
from carsketch.features import featurize
from carsketch.inference import OnnxModel
from carsketch.model import (TrainedModel, build_classifier, build_trained_part, full_state_dict, load_trained_model,
                             model_config, save_model)
from conftest import REPO_ROOT, make_bitmaps

IMAGE_SIZE = 40
CATEGORIES = {"car": ["car"], "not_car": ["apple"]}


@pytest.fixture(scope="module")
def calibrated_weights(tmp_path_factory):
    """Random mobilenet_v2 weights whose BatchNorm statistics come from real forward passes, so that features are
    of order 1 (a freshly initialised backbone's are about 1e-9, too small to tell two models apart)."""
    torch.manual_seed(1)
    backbone = torchvision.models.mobilenet_v2()
    for module in backbone.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.momentum = None  # a plain average over the passes
    with torch.no_grad():
        backbone.train()(torch.randn(32, 3, IMAGE_SIZE, IMAGE_SIZE))
    path = tmp_path_factory.mktemp("weights") / "calibrated.pth"
    torch.save(backbone.state_dict(), path)
    return path


def perturbed(trained):
    """The trained part with every parameter moved, as training would move it."""
    generator = torch.Generator().manual_seed(7)
    with torch.no_grad():
        for parameter in trained.parameters():
            parameter.add_(0.1 * torch.randn(parameter.shape, generator=generator))
    return trained


@pytest.mark.parametrize("trainable_blocks", [0, 2])
def test_the_onnx_model_gives_the_torch_models_probabilities(tmp_path, calibrated_weights, trainable_blocks):
    classifier = build_classifier(calibrated_weights, trainable_blocks, seed=2)
    config = model_config(IMAGE_SIZE, trainable_blocks, "calibrated", CATEGORIES)
    save_onnx(export_classifier(classifier, config), tmp_path / "model.onnx")
    model = OnnxModel(tmp_path / "model.onnx", "cpu")
    bitmaps = np.concatenate([make_bitmaps("car", 6), make_bitmaps("other", 6)])
    expected = TrainedModel(classifier, config).predict_proba(bitmaps)
    assert expected.std() > 1e-3  # the classifier tells these drawings apart, so agreement means something
    assert model.config == config and model.threshold == 0.5
    np.testing.assert_allclose(model.predict_proba(bitmaps), expected, atol=1e-4)
    features = featurize(classifier, bitmaps, IMAGE_SIZE, "torch").numpy()
    np.testing.assert_allclose(model.proba_from_frozen(features.astype(np.float16)), expected, atol=2e-3)
    np.testing.assert_allclose(model.proba_from_frozen(features), expected, atol=1e-4)


@pytest.mark.parametrize("trainable_blocks", [0, 1])
def test_what_train_saves_from_its_part_is_the_whole_classifier(tmp_path, calibrated_weights, trainable_blocks):
    """train builds only the part it trains, then writes the .pth from the backbone file and the .onnx by joining
    featurize's frozen export: both must be the classifier that part belongs to."""
    trained = perturbed(build_trained_part(calibrated_weights, trainable_blocks, seed=4))
    config = model_config(IMAGE_SIZE, trainable_blocks, "calibrated", CATEGORIES)
    save_model(tmp_path / "model.pth", full_state_dict(calibrated_weights, trained), config)
    classifier = build_classifier(calibrated_weights, trainable_blocks)
    features = featurize(classifier, make_bitmaps("car", 2), IMAGE_SIZE, "onnxruntime")
    save_onnx(export_model(export_frozen(classifier, IMAGE_SIZE), trained, features.shape[1:], config),
              tmp_path / "model.onnx")

    whole = build_classifier(calibrated_weights, trainable_blocks)
    whole.trained.load_state_dict(trained.state_dict())
    bitmaps = make_bitmaps("car", 8)
    expected = TrainedModel(whole, config).predict_proba(bitmaps)
    np.testing.assert_allclose(load_trained_model(tmp_path / "model.pth").predict_proba(bitmaps), expected, atol=1e-6)
    np.testing.assert_allclose(OnnxModel(tmp_path / "model.onnx").predict_proba(bitmaps), expected, atol=1e-4)


def test_a_pth_or_a_broken_file_is_refused_with_what_to_do(tmp_path):
    (tmp_path / "model.pth").write_bytes(b"weights")
    with pytest.raises(PipelineError, match="not an ONNX model: give the .onnx file that train writes"):
        OnnxModel(tmp_path / "model.pth")
    (tmp_path / "model.onnx").write_bytes(b"not onnx")
    with pytest.raises(PipelineError, match="model.onnx is not a car-sketch model saved by the train stage"):
        OnnxModel(tmp_path / "model.onnx")
    with pytest.raises(PipelineError, match="missing.onnx not found: run `dvc repro` first"):
        OnnxModel(tmp_path / "missing.onnx")


def test_the_experiment_loop_and_predict_import_only_what_they_use():
    """train with a frozen backbone needs neither torchvision nor torch._dynamo (which torch.optim imports);
    evaluate, predict and serve need neither torch nor scikit-learn: together about 9 s of imports on two cores."""
    check = ("import sys, numpy, stages.train\n"
             "from carsketch.model import build_trained_part\n"
             "from carsketch.training import fit\n"
             "features = numpy.random.default_rng(0).normal(size=(20, 1280)).astype(numpy.float32)\n"
             "fit(build_trained_part('unused', 0), features, features[:, 0] > 0, 1, 8, 1e-3, 0, 'cosine')\n"
             "print(sorted(m for m in ('torchvision', 'torch._dynamo') if m in sys.modules))\n"
             "import subprocess\n"
             "code = 'import sys, stages.evaluate, carsketch.predict, carsketch.serve; "
             "print(sorted(m for m in (\"torch\", \"sklearn\", \"torchvision\") if m in sys.modules))'\n"
             "print(subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, check=True).stdout)")
    result = subprocess.run([sys.executable, "-c", check], cwd=REPO_ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["[]", "[]"]
