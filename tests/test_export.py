"""The ONNX model train writes: the same P(car) as the PyTorch classifier, from bitmaps and from cached features,
built the way the stages build it."""

import numpy as np
import pytest
import torch

from carsketch.batches import map_batches
from carsketch.checkpoint import full_state_dict, model_config, save_model
from carsketch.errors import PipelineError
from carsketch.export import export_frozen, export_model, save_onnx
from carsketch.features import feature_function
from carsketch.inference.onnx_model import OnnxModel
from carsketch.model import build_classifier, build_trained_part
from carsketch.trained_model import TrainedModel, load_trained_model
from conftest import make_bitmaps
from models import export_classifier

IMAGE_SIZE = 40
CATEGORIES = {"car": ["car"], "not_car": ["apple"]}


def perturbed(trained):
    """The trained part with every parameter moved, as training would move it."""
    generator = torch.Generator().manual_seed(7)
    with torch.no_grad():
        for parameter in trained.parameters():
            parameter.add_(0.1 * torch.randn(parameter.shape, generator=generator))
    return trained


@pytest.mark.parametrize("trainable_blocks", [0, 2])
def test_the_onnx_model_gives_the_torch_models_probabilities(tmp_path, fixture_weights, trainable_blocks):
    classifier = build_classifier(fixture_weights, trainable_blocks, seed=2)
    config = model_config(IMAGE_SIZE, trainable_blocks, "fixture", CATEGORIES)
    save_onnx(export_classifier(classifier, config), tmp_path / "model.onnx")
    model = OnnxModel(tmp_path / "model.onnx", "cpu")
    bitmaps = np.concatenate([make_bitmaps("car", 6), make_bitmaps("other", 6)])
    expected = TrainedModel(classifier, config).predict_proba(bitmaps)
    assert expected.std() > 1e-3  # the classifier tells these drawings apart, so agreement means something
    assert model.config == config and model.threshold == 0.5
    np.testing.assert_allclose(model.predict_proba(bitmaps), expected, atol=1e-4)
    features = torch.cat(map_batches(feature_function(classifier, IMAGE_SIZE, "torch"), bitmaps)).numpy()
    np.testing.assert_allclose(model.proba_from_frozen(features.astype(np.float16)), expected, atol=2e-3)
    np.testing.assert_allclose(model.proba_from_frozen(features), expected, atol=1e-4)


@pytest.mark.parametrize("trainable_blocks", [0, 1])
def test_what_train_saves_from_its_part_is_the_whole_classifier(tmp_path, fixture_weights, trainable_blocks):
    """train builds only the part it trains, then writes the .pth from the backbone file and the .onnx by joining
    featurize's frozen export: both must be the classifier that part belongs to."""
    trained = perturbed(build_trained_part(fixture_weights, trainable_blocks, seed=4))
    config = model_config(IMAGE_SIZE, trainable_blocks, "fixture", CATEGORIES)
    save_model(tmp_path / "model.pth", full_state_dict(fixture_weights, trained), config)
    classifier = build_classifier(fixture_weights, trainable_blocks)
    features = torch.cat(map_batches(feature_function(classifier, IMAGE_SIZE, "onnxruntime"), make_bitmaps("car", 2)))
    save_onnx(export_model(export_frozen(classifier, IMAGE_SIZE), trained, features.shape[1:], config),
              tmp_path / "model.onnx")

    whole = build_classifier(fixture_weights, trainable_blocks)
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
    with pytest.raises(PipelineError, match="missing.onnx is missing: run `dvc repro` first"):
        OnnxModel(tmp_path / "missing.onnx")
