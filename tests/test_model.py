"""The classifier: frozen backbone, head shapes, training, weight sources and the cached-feature path."""

import copy
import math

import numpy as np
import pytest
import torch
import torchvision

from carsketch.backbone import FEATURE_DIM
from carsketch.batches import map_batches
from carsketch.checkpoint import model_config, save_model
from carsketch.errors import PipelineError
from carsketch.features import featurize_to_file, feature_function
from carsketch.model import CarSketchClassifier, build_classifier, build_trained_part
from carsketch.sketch import to_model_input
from carsketch.trained_model import load_trained_model
from carsketch.training import features_tensor, fit
from carsketch.weights import fetch_backbone_weights
from conftest import SHARED_DIR, labelled_bitmaps, make_bitmaps

IMAGE_SIZE = 32


def test_transform_makes_normalised_pseudo_rgb_of_the_requested_size():
    bitmaps = np.zeros((2, 784), np.uint8)
    bitmaps[1, :] = 255
    images = to_model_input(bitmaps, 40)
    assert images.shape == (2, 3, 40, 40) and images.is_contiguous(memory_format=torch.channels_last)
    assert torch.allclose(images[0, :, 0, 0], torch.tensor([-0.485 / 0.229, -0.456 / 0.224, -0.406 / 0.225]))
    assert torch.allclose(images[1, :, 5, 5], torch.tensor([0.515 / 0.229, 0.544 / 0.224, 0.594 / 0.225]))
    assert torch.equal(to_model_input(bitmaps.reshape(2, 28, 28), 40), images)


def test_head_shapes_and_frozen_backbone():
    classifier = build_classifier(None)
    assert [type(layer) for layer in classifier.head] == [torch.nn.Linear, torch.nn.ReLU, torch.nn.Dropout,
                                                          torch.nn.Linear]
    assert classifier.head[0].in_features == FEATURE_DIM and classifier.head[-1].out_features == 1
    assert classifier.head[2].p == 0.2
    assert not any(p.requires_grad for p in classifier.frozen.parameters())
    assert all(p.requires_grad for p in classifier.head.parameters())
    classifier.train()
    assert not classifier.frozen.training and classifier.head.training
    logits = classifier(to_model_input(make_bitmaps("car", 3), IMAGE_SIZE))
    assert logits.shape == (3,)


def separable_features(classifier, rows=96, seed=0):
    """Random frozen features of the right shape (random-init backbones output almost nothing) and labels."""
    generator = torch.Generator().manual_seed(seed)
    trainable = classifier.trained.trainable
    channels = FEATURE_DIM if not len(trainable) else trainable[0].conv[0][0].in_channels
    shape = (rows, channels) if not len(trainable) else (rows, channels, 1, 1)
    features = torch.randn(shape, generator=generator)
    return features.numpy(), (features.flatten(1)[:, 0] > 0).float().numpy()


@pytest.mark.parametrize("trainable_blocks", [0, 2])
def test_training_lowers_the_loss_and_trains_only_what_it_should(trainable_blocks):
    classifier = build_classifier(None, trainable_blocks, seed=0)
    frozen_before = {k: v.clone() for k, v in classifier.frozen.state_dict().items()}
    trainable_before = [p.clone() for p in classifier.trained.trainable.parameters()]
    features, labels = separable_features(classifier)
    log = fit(classifier.trained, features, labels, epochs=10, batch_size=16, lr=1e-3, seed=0)
    assert log[-1]["train_loss"] < 0.5 * log[0]["train_loss"]
    assert all(torch.equal(v, frozen_before[k]) for k, v in classifier.frozen.state_dict().items())
    assert all(not torch.equal(a, b) for a, b in zip(trainable_before, classifier.trained.trainable.parameters()))


def test_batchnorm_statistics_never_change_in_training_mode():
    classifier = build_classifier(None, trainable_blocks=2).train()
    statistics = {k: v.clone() for k, v in classifier.state_dict().items() if "running" in k}
    logits = classifier(to_model_input(make_bitmaps("car", 8), IMAGE_SIZE) * 3)
    logits.sum().backward()
    assert all(torch.equal(classifier.state_dict()[k], v) for k, v in statistics.items())
    assert classifier.frozen[0][0].weight.grad is None


def fixture_split(fixture_weights, fixture_classifier, trainable_blocks: int) -> CarSketchClassifier:
    """The fixture classifier (the fixture backbone and its trained head) with its last `trainable_blocks` blocks on
    the trained side: the same network, whose answers depend on the drawing and are right on the fixture drawings."""
    classifier = build_classifier(fixture_weights, trainable_blocks)
    classifier.trained.head = copy.deepcopy(fixture_classifier.head)
    return classifier.eval()


@pytest.mark.parametrize("trainable_blocks", [0, 1])
def test_cached_features_give_the_full_models_output(trainable_blocks, fixture_weights, fixture_classifier):
    classifier = fixture_split(fixture_weights, fixture_classifier, trainable_blocks)
    bitmaps, labels = labelled_bitmaps(10, seed=7)
    features = torch.cat(map_batches(feature_function(classifier, IMAGE_SIZE, "torch"), bitmaps))
    with torch.inference_mode():
        cached = classifier.trained(features)
        full = classifier(to_model_input(bitmaps, IMAGE_SIZE))
    assert features.shape[:2] == ((20, FEATURE_DIM) if trainable_blocks == 0 else (20, 320))
    assert torch.allclose(cached, full, atol=1e-4 * full.abs().max().item())
    assert ((full > 0).numpy() == labels).mean() >= 0.9


@pytest.mark.parametrize("trainable_blocks", [0, 1])
def test_onnxruntime_features_match_torch(trainable_blocks, fixture_weights):
    classifier = build_classifier(fixture_weights, trainable_blocks)
    bitmaps = make_bitmaps("other", 10)
    by_torch = torch.cat(map_batches(feature_function(classifier, IMAGE_SIZE, "torch"), bitmaps))
    by_onnxruntime = torch.cat(map_batches(feature_function(classifier, IMAGE_SIZE, "onnxruntime"), bitmaps))
    assert by_onnxruntime.shape == by_torch.shape
    assert (by_onnxruntime - by_torch).abs().max() <= 1e-4 * by_torch.abs().max()


def test_featurize_to_file_streams_batches_into_an_npy(tmp_path, fixture_weights):
    classifier = build_classifier(fixture_weights)
    bitmaps = np.concatenate([make_bitmaps("car", 4), make_bitmaps("other", 3)])
    featurize_to_file(feature_function(classifier, IMAGE_SIZE, "torch"), bitmaps, tmp_path / "f.npy", batch_size=3)
    stored = np.load(tmp_path / "f.npy")
    assert stored.dtype == np.float32 and stored.shape == (7, FEATURE_DIM)
    one_by_one = np.concatenate([feature_function(classifier, IMAGE_SIZE, "torch")(row[None]).numpy() for row in bitmaps])
    assert np.allclose(stored, one_by_one, atol=1e-5 * np.abs(one_by_one).max())
    assert np.abs(stored[:4].mean(0) - stored[4:].mean(0)).max() > 0.1  # rows in order: cars first, then the others
    assert [path.name for path in tmp_path.iterdir()] == ["f.npy"]


def test_training_is_deterministic_for_a_seed():
    features, labels = separable_features(build_classifier(None))
    logs = [fit(build_trained_part(None, seed=5), features, labels, 2, 16, 1e-3, seed=5) for _ in range(2)]
    assert logs[0] == logs[1]


def test_local_weights_file_loads(tmp_path):
    reference = torchvision.models.mobilenet_v2()
    torch.save(reference.state_dict(), tmp_path / "weights.pth")
    classifier = build_classifier(tmp_path / "weights.pth")
    assert torch.equal(classifier.frozen[0][0].weight, reference.features[0][0].weight)


def test_missing_weights_file_is_a_clear_error(tmp_path):
    with pytest.raises(PipelineError, match="nope.pth is missing: run `dvc repro weights` first"):
        build_classifier(tmp_path / "nope.pth")


def test_fetching_weights_copies_and_checks_a_local_file(tmp_path):
    reference = torchvision.models.mobilenet_v2()
    torch.save(reference.state_dict(), tmp_path / "weights.pth")
    fetch_backbone_weights(str(tmp_path / "weights.pth"), tmp_path / "out/backbone.pth")
    assert (tmp_path / "out/backbone.pth").read_bytes() == (tmp_path / "weights.pth").read_bytes()
    torch.save({"conv.weight": torch.zeros(3)}, tmp_path / "other.pth")
    with pytest.raises(PipelineError, match="other.pth is not a torchvision mobilenet_v2 state dict"):
        fetch_backbone_weights(str(tmp_path / "other.pth"), tmp_path / "out/other.pth")
    assert sorted(path.name for path in (tmp_path / "out").iterdir()) == ["backbone.pth"]


def test_wrong_weights_file_is_a_clear_error(tmp_path):
    torch.save({"conv.weight": torch.zeros(3)}, tmp_path / "other.pth")
    (tmp_path / "text.pth").write_text("hello")
    for name in ("other.pth", "text.pth"):
        with pytest.raises(PipelineError, match=f"{name} is not a torchvision mobilenet_v2 state dict"):
            build_classifier(tmp_path / name)


def test_an_unreachable_weights_url_says_how_to_use_a_local_file(tmp_path, quickdraw_server):
    url = f"{quickdraw_server.url}/mobilenet_v2.pth"  # a real server on loopback, without that file
    with pytest.raises(PipelineError, match="Offline\\? Set `weights` in params.yaml to a local state-dict file"):
        fetch_backbone_weights(url, tmp_path / "backbone.pth")
    assert list(tmp_path.glob("backbone*")) == []


def test_weights_are_fetched_over_http(tmp_path, quickdraw_server, fixture_weights):
    (quickdraw_server.folder / "w.pth").write_bytes(fixture_weights.read_bytes())
    fetch_backbone_weights(f"{quickdraw_server.url}/w.pth", tmp_path / "backbone.pth")
    assert (tmp_path / "backbone.pth").read_bytes() == fixture_weights.read_bytes()


@pytest.mark.skipif(not (SHARED_DIR / "weights/mobilenet_v2_imagenet.pth").exists(), reason="no ../shared weights")
def test_shared_imagenet_weights_load():
    classifier = build_classifier(SHARED_DIR / "weights/mobilenet_v2_imagenet.pth")
    assert len(classifier.frozen) == 19


def test_saved_model_is_usable_alone(tmp_path, fixture_weights, fixture_classifier):
    classifier = fixture_split(fixture_weights, fixture_classifier, trainable_blocks=1)
    config = model_config(IMAGE_SIZE, 1, "fixture", {"car": ["car"], "not_car": ["apple"]})
    save_model(tmp_path / "model.pth", classifier.state_dict(), config)
    loaded = load_trained_model(tmp_path / "model.pth")
    bitmaps, labels = labelled_bitmaps(10, seed=8)
    assert loaded.config == config
    probabilities = loaded.predict_proba(bitmaps)
    with torch.inference_mode():
        expected = torch.sigmoid(classifier(to_model_input(bitmaps, IMAGE_SIZE))).numpy()
    assert np.allclose(probabilities, expected, atol=1e-5)
    assert ((probabilities > 0.5) == labels).mean() >= 0.9


def test_missing_model_file_says_run_dvc_repro(tmp_path):
    with pytest.raises(PipelineError, match="run `dvc repro` first"):
        load_trained_model(tmp_path / "missing.pth")


@pytest.mark.parametrize("schedule", ["constant", "cosine"])
def test_the_cosine_schedule_anneals_the_learning_rate_to_zero(schedule, monkeypatch):
    rates = []
    step = torch.optim.Adam.step

    def recording_step(self, *args, **kwargs):
        rates.append(self.param_groups[0]["lr"])
        return step(self, *args, **kwargs)

    monkeypatch.setattr(torch.optim.Adam, "step", recording_step)
    features, labels = separable_features(build_classifier(None), rows=40)
    fit(build_trained_part(None, seed=1), features, labels, epochs=2, batch_size=10, lr=1e-2, seed=1,
        lr_schedule=schedule)
    assert len(rates) == 8 and rates[0] == 1e-2
    if schedule == "constant":
        assert rates == [1e-2] * 8
    else:  # half a cosine from 1e-2 down, reaching 0 after the last of the 8 steps
        assert rates == pytest.approx([1e-2 * (1 + math.cos(math.pi * step / 8)) / 2 for step in range(8)])


@pytest.mark.parametrize("dtype", [np.float16, np.float32])
def test_cached_features_become_the_same_float32_tensor_whatever_their_storage(dtype, recwarn):
    rows = np.random.default_rng(0).normal(size=(5, FEATURE_DIM)).astype(dtype)
    rows.flags.writeable = False  # as NpyRows and in-memory feature files give slices
    tensor = features_tensor(rows, torch.device("cpu"))
    assert tensor.dtype == torch.float32 and torch.equal(tensor, torch.from_numpy(rows.astype(np.float32)))
    assert not [w for w in recwarn if "not writable" in str(w.message)]
