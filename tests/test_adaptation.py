"""Fine-tuning the trained model on collected drawings: it learns a kind it never saw from tens of labels and keeps
what it knew; re-splitting it changes nothing by itself; the replay sample is the drawings it says it is."""

import copy

import numpy as np
import pytest
import torch

from carsketch.adaptation import adapt, replay_sample, split_at
from carsketch.evaluation import AGREEMENT_TOLERANCE
from carsketch.export import save_onnx
from carsketch.files import NpyRows
from carsketch.inference.onnx_model import OnnxModel
from carsketch.sketch import to_model_input
from conftest import FIXTURE_CONFIG as CONFIG, IMAGE_SIZE, labelled_bitmaps, make_bitmaps


def called_car(classifier, bitmaps: np.ndarray) -> np.ndarray:
    with torch.inference_mode():
        return (classifier.eval()(to_model_input(bitmaps, IMAGE_SIZE)) > 0).numpy()


@pytest.fixture
def classifier(fixture_classifier):
    """train's model: a head trained on car against other drawings on the frozen fixture backbone; a copy, since
    adapting trains the modules it is given."""
    return copy.deepcopy(fixture_classifier)


@pytest.mark.parametrize("blocks", [0, 3])
def test_splitting_elsewhere_keeps_the_model_and_frees_only_the_blocks_asked(classifier, blocks):
    bitmaps, _ = labelled_bitmaps(20, seed=4000)
    with torch.inference_mode():
        before = classifier(to_model_input(bitmaps, IMAGE_SIZE))
        resplit = split_at(classifier, blocks).eval()
        np.testing.assert_allclose(resplit(to_model_input(bitmaps, IMAGE_SIZE)), before, atol=1e-5)
    assert len(resplit.trained.trainable) == blocks
    trainable = {name for name, parameter in resplit.named_parameters() if parameter.requires_grad}
    assert trainable and all(name.startswith("trained.") for name in trainable)
    assert not any(parameter.requires_grad for parameter in resplit.frozen.parameters())


def test_tens_of_labels_teach_a_new_kind_and_it_keeps_what_it_knew(classifier, tmp_path):
    # a kind of drawing train never saw, that the model mostly calls car and people say is not
    slanted = make_bitmaps("slanted", 50, seed=4100)
    held_out_slanted = make_bitmaps("slanted", 100, seed=4101)
    known, known_truth = labelled_bitmaps(50, seed=4102)
    assert called_car(classifier, held_out_slanted).mean() > 0.5
    replay, replay_y = labelled_bitmaps(100, seed=4103)
    adapted, exported = adapt(classifier, 3, np.concatenate([slanted, replay]),
                              np.concatenate([np.zeros(50), replay_y]), np.concatenate([np.full(50, 3.0), np.ones(200)]),
                              CONFIG, epochs=8, batch_size=32, lr=1e-3, seed=0)
    assert called_car(adapted, held_out_slanted).mean() <= 0.1
    assert np.mean(called_car(adapted, known) == known_truth.astype(bool)) >= 0.95
    # the ONNX model is the same model, and says it was adapted
    save_onnx(exported, tmp_path / "adapted.onnx")
    onnx_model = OnnxModel(tmp_path / "adapted.onnx")
    bitmaps = np.concatenate([held_out_slanted, known])
    with torch.inference_mode():
        torch_probability = torch.sigmoid(adapted(to_model_input(bitmaps, IMAGE_SIZE))).numpy()
    np.testing.assert_allclose(onnx_model.predict_proba(bitmaps), torch_probability, atol=AGREEMENT_TOLERANCE)
    assert onnx_model.config == CONFIG


def test_the_replay_sample_is_seeded_and_keeps_each_drawing_with_its_label(tmp_path):
    bitmaps, labels = labelled_bitmaps(60, seed=4200)
    np.save(tmp_path / "x.npy", bitmaps)
    sample, sample_y = replay_sample(NpyRows(tmp_path / "x.npy"), labels, 30, seed=1)
    rows = [int(np.flatnonzero((bitmaps == row).all(axis=1))[0]) for row in sample]
    assert len(set(rows)) == 30 and rows == sorted(rows)
    np.testing.assert_array_equal(sample_y, labels[rows])
    again, _ = replay_sample(NpyRows(tmp_path / "x.npy"), labels, 30, seed=1)
    other, _ = replay_sample(NpyRows(tmp_path / "x.npy"), labels, 30, seed=2)
    assert (again == sample).all() and not (other == sample).all()
    everything, _ = replay_sample(bitmaps, labels, 1000, seed=1)
    assert len(everything) == 120
