"""The drawings labelled on the page as training data: their split, their bitmaps, and what their weight does."""

import json

import numpy as np
import torch

from carsketch.collected import held_out, collected_splits
from carsketch.strokes import strokes_to_bitmap
from carsketch.inference.collected_store import CollectedStore
from carsketch.model import build_trained_part
from carsketch.training import fit
from conftest import make_drawings


def test_a_drawing_stays_in_its_split_however_many_come_after_it_and_however_often_it_is_sent():
    drawings = make_drawings("car", 2000, 1)
    test = [number for number, drawing in enumerate(drawings) if held_out(drawing, 0.2)]
    assert 0.17 < len(test) / len(drawings) < 0.23
    assert [n for n in range(100) if held_out(drawings[n], 0.2)] == [n for n in test if n < 100]
    assert not any(held_out(drawing, 0.0) for drawing in drawings) and all(held_out(d, 1.0) for d in drawings)
    # the split follows the strokes: the same drawing sent again, under another id, lands beside the first
    assert held_out(json.loads(json.dumps(drawings[test[0]])), 0.2)
    assert len({held_out(drawing, 0.2) for drawing in drawings[:50]}) == 2  # ... and not one side for all


def test_collected_drawings_become_bitmaps_and_labels_in_their_splits(tmp_path):
    store = CollectedStore(tmp_path / "drawings.ndjson")
    drawings = make_drawings("car", 30, 1) + make_drawings("other", 30, 2)
    records = [{"key_id": f"id{number}", "label": "car" if number < 30 else "not_car", "drawing": drawing}
               for number, drawing in enumerate(drawings)]
    store.append(records + [{**records[0], "key_id": "again"}])  # the first drawing, sent twice
    splits = collected_splits(store.path, 0.3)
    test = [number for number in range(60) if held_out(drawings[number], 0.3)]
    train = [number for number in range(60) if number not in test]
    again = [0] if 0 in test else []
    for split, numbers in (("train", train + [0] * (not again)), ("test", test + again)):
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
