"""The drawings labelled on the page as training data: their split, their bitmaps, and what their weight does."""

import numpy as np
import torch

from carsketch.collected import held_out, collected_splits
from carsketch.inference.drawings import strokes_to_bitmap
from carsketch.inference.collected_file import CollectedStore
from carsketch.model import build_trained_part
from carsketch.training import fit
from conftest import make_drawings


def test_a_drawing_stays_in_its_split_however_many_come_after_it():
    ids = [f"{number:032x}" for number in range(4000)]
    test = [key for key in ids if held_out(key, 0.2)]
    assert 0.18 < len(test) / len(ids) < 0.22
    assert [key for key in ids[:100] if held_out(key, 0.2)] == [key for key in test if key in ids[:100]]
    assert not any(held_out(key, 0.0) for key in ids) and all(held_out(key, 1.0) for key in ids)


def test_labelled_drawings_become_bitmaps_and_labels_in_their_splits(tmp_path):
    store = CollectedStore(tmp_path / "drawings.ndjson")
    drawings = make_drawings("car", 30, 1) + make_drawings("other", 30, 2)
    store.append([{"key_id": f"id{number}", "label": "car" if number < 30 else "not_car", "drawing": drawing}
                  for number, drawing in enumerate(drawings)])
    splits = collected_splits(store.path, 0.3)
    test = [number for number in range(60) if held_out(f"id{number}", 0.3)]
    train = [number for number in range(60) if number not in test]
    for split, numbers in (("train", train), ("test", test)):
        np.testing.assert_array_equal(splits[split].bitmaps,
                                      np.array([strokes_to_bitmap(drawings[n]) for n in numbers]).reshape(-1, 784))
        assert splits[split].y.tolist() == [1 if n < 30 else 0 for n in numbers]
    empty = collected_splits(tmp_path / "none.ndjson", 0.3)["train"]
    assert empty.bitmaps.shape == (0, 784) and empty.y.shape == (0,)


def test_a_rows_weight_is_what_its_loss_counts_for():
    """One row labelled against the others: ignored at weight 0, learnt at a heavy weight."""
    features = torch.randn(64, 1280, generator=torch.Generator().manual_seed(0)).numpy()
    features[:, 0] *= 10  # the feature that tells the labels apart stands out
    labels = (features[:, 0] > 0).astype(np.float32)
    odd = int(np.argmax(features[:, 0]))  # the most car-like row, labelled not car
    labels[odd] = 0
    answers = {}
    for weight in (0.0, 200.0):
        weights = np.ones(64, np.float32)
        weights[odd] = weight
        part = build_trained_part(None, seed=0)
        fit(part, features, labels, epochs=20, batch_size=16, lr=1e-2, seed=0, sample_weights=weights)
        with torch.no_grad():
            answers[weight] = torch.sigmoid(part(torch.from_numpy(features[odd:odd + 1]))).item()
    assert answers[0.0] > 0.5 > answers[200.0]
