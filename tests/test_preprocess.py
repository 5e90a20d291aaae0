"""Balancing, splitting and the preprocess stage's outputs."""

import json

import numpy as np
import pytest

from conftest import write_category_files
from stages import preprocess
from stages.errors import PipelineError
from stages.params import category_labels
from stages.preprocess import allocate_evenly, balanced_allocation, split_by_category


def test_allocate_evenly_fills_small_categories_and_shares_the_rest():
    assert allocate_evenly({"a": 2, "b": 100, "c": 100}, 20) == {"a": 2, "b": 9, "c": 9}
    assert allocate_evenly({"a": 10, "b": 10, "c": 10}, 10) == {"a": 3, "b": 3, "c": 4}
    assert allocate_evenly({"a": 5, "b": 7}, 12) == {"a": 5, "b": 7}


def test_balanced_allocation_gives_both_labels_the_same_total():
    labels = {"car": 1, "bus": 1, "apple": 0, "tree": 0, "cloud": 0}
    allocation = balanced_allocation({"car": 30, "bus": 10, "apple": 100, "tree": 5, "cloud": 100}, labels)
    assert allocation == {"car": 30, "bus": 10, "apple": 17, "tree": 5, "cloud": 18}


def test_balanced_allocation_needs_drawings_on_both_sides():
    with pytest.raises(PipelineError, match="no drawings for car"):
        balanced_allocation({"car": 0, "apple": 10}, {"car": 1, "apple": 0})


def test_split_is_stratified_by_category_and_seeded():
    category = np.array(["car"] * 40 + ["bus"] * 20 + ["apple"] * 60)
    train, test = split_by_category(category, 0.25, seed=1)
    assert sorted(np.concatenate([train, test])) == list(range(120))
    assert {c: int(np.sum(category[test] == c)) for c in ("car", "bus", "apple")} == {"car": 10, "bus": 5, "apple": 15}
    again, _ = split_by_category(category, 0.25, seed=1)
    other, _ = split_by_category(category, 0.25, seed=2)
    assert np.array_equal(train, again) and not np.array_equal(train, other)


def test_split_too_small_to_stratify_says_what_to_do():
    with pytest.raises(PipelineError, match="raise max_per_category or test_size"):
        split_by_category(np.array(["car", "bus", "apple", "tree"]), 0.25, seed=0)


@pytest.mark.parametrize("categories, message", [
    ({"car": ["car", "apple"], "not_car": ["apple"]}, "'apple' is listed in both car and not_car"),
    ({"car": ["car"], "not_car": ["aple"]}, "categories.not_car: 'aple' is not a Quick, Draw! category; "
                                            "did you mean 'apple'"),
    ({"car": [], "not_car": ["apple"]}, "categories.car in params.yaml is empty"),
])
def test_category_errors(categories, message):
    with pytest.raises(PipelineError, match=message):
        category_labels({"categories": categories})


@pytest.fixture
def raw_project(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_category_files(tmp_path / "data/raw", {"car": 30, "bus": 12, "apple": 50, "tree": 50})
    (tmp_path / "params.yaml").write_text(
        "categories: {car: [car, bus], not_car: [apple, tree]}\ntest_size: 0.25\nseed: 3\n")
    return tmp_path


def test_preprocess_writes_a_balanced_labelled_split(raw_project):
    preprocess.main()
    train, test = (np.load(raw_project / f"data/processed/{split}.npz") for split in ("train", "test"))
    for split in (train, test):
        assert split["x"].dtype == np.uint8 and split["x"].shape[1] == 784
        assert split["y"].dtype == np.uint8 and split["category"].dtype.kind == "U"
        assert set(split["y"][split["category"] == "car"]) == {1} and set(split["y"][split["category"] == "tree"]) == {0}
    y = np.concatenate([train["y"], test["y"]])
    assert len(y) == 84 and y.sum() == 42  # 42 car drawings exist, so 42 of each label
    category = np.concatenate([train["category"], test["category"]]).tolist()
    assert category.count("apple") == 21 and category.count("tree") == 21
    raw_car = np.load(raw_project / "data/raw/car.npy")
    car_rows = {row.tobytes() for row in raw_car}
    assert all(row.tobytes() in car_rows for row in train["x"][train["category"] == "car"])
    counts = json.loads((raw_project / "metrics/data.json").read_text())
    assert counts["test"]["total"] == len(test["y"]) == 21
    assert counts["train"]["per_category"]["bus"] + counts["test"]["per_category"]["bus"] == 12


def test_preprocess_is_byte_identical_when_rerun(raw_project):
    preprocess.main()
    first = [(raw_project / f"data/processed/{s}.npz").read_bytes() for s in ("train", "test")]
    preprocess.main()
    assert first == [(raw_project / f"data/processed/{s}.npz").read_bytes() for s in ("train", "test")]


def test_preprocess_without_download_says_what_to_run(raw_project):
    (raw_project / "data/raw/bus.npy").unlink()
    with pytest.raises(PipelineError, match=r"bus.npy is missing: run the download stage first"):
        preprocess.main()
