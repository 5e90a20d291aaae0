"""Balancing, splitting and the preprocess stage's outputs."""

import json

import numpy as np
import pytest

from carsketch.dataset import allocate_evenly, balanced_allocation, split_by_category
from carsketch.errors import PipelineError
from conftest import write_category_files, write_params
from stages import preprocess


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


@pytest.fixture
def raw_project(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_category_files(tmp_path / "data/raw", {"car": 30, "bus": 12, "apple": 50, "tree": 50})
    write_params(tmp_path, categories={"car": ["car", "bus"], "not_car": ["apple", "tree"]}, test_size=0.25,
                 val_size=0.25, split_seed=3)
    return tmp_path


def load_split(project, split):
    return {name: np.load(project / f"data/processed/{split}/{name}.npy") for name in ("x", "y", "category")}


def test_preprocess_writes_a_balanced_labelled_three_way_split(raw_project):
    preprocess.main()
    splits = {split: load_split(raw_project, split) for split in ("train", "val", "test")}
    for split in splits.values():
        assert split["x"].dtype == np.uint8 and split["x"].shape[1] == 784
        assert split["y"].dtype == np.uint8 and split["category"].dtype.kind == "U"
        assert set(split["y"][split["category"] == "car"]) == {1} and set(split["y"][split["category"] == "tree"]) == {0}
    y = np.concatenate([split["y"] for split in splits.values()])
    assert len(y) == 84 and y.sum() == 42  # 42 car drawings exist, so 42 of each label
    category = np.concatenate([split["category"] for split in splits.values()]).tolist()
    assert category.count("apple") == 21 and category.count("tree") == 21
    assert len(splits["test"]["y"]) == 21 and len(splits["val"]["y"]) == 16 and len(splits["train"]["y"]) == 47
    every_row = np.concatenate([split["x"] for split in splits.values()])
    assert len({row.tobytes() for row in every_row}) == len(every_row)  # no drawing in two splits
    raw_car = {row.tobytes() for row in np.load(raw_project / "data/raw/car.npy")}
    assert all(row.tobytes() in raw_car for row in splits["train"]["x"][splits["train"]["category"] == "car"])
    counts = json.loads((raw_project / "metrics/data.json").read_text())
    assert counts["test"]["total"] == 21 and counts["test"]["car"] + counts["test"]["not_car"] == 21
    assert counts["val"]["car"] + counts["val"]["not_car"] == 16
    per_category = json.loads((raw_project / "metrics/data_per_category.json").read_text())
    assert sum(per_category[split]["bus"] for split in ("train", "val", "test")) == 12


def test_preprocess_is_byte_identical_when_rerun(raw_project):
    preprocess.main()
    files = sorted((raw_project / "data/processed").rglob("*.npy"))
    first = [path.read_bytes() for path in files]
    assert len(files) == 12  # x, y, category of train, val, test and the (here empty) unseen split
    preprocess.main()
    assert first == [path.read_bytes() for path in files]


def test_the_training_seed_does_not_move_the_split(raw_project):
    preprocess.main()
    test = load_split(raw_project, "test")["x"]
    write_params(raw_project, categories={"car": ["car", "bus"], "not_car": ["apple", "tree"]}, test_size=0.25,
                 val_size=0.25, split_seed=3, seed=99)
    preprocess.main()
    assert np.array_equal(load_split(raw_project, "test")["x"], test)


def test_preprocess_without_download_says_what_to_run(raw_project):
    (raw_project / "data/raw/bus.npy").unlink()
    with pytest.raises(PipelineError, match=r"bus.npy is missing: run `dvc repro download` first"):
        preprocess.main()


def test_stretched_copies_join_the_train_split_only(raw_project):
    preprocess.main()
    plain = {split: load_split(raw_project, split) for split in ("train", "val", "test")}
    write_params(raw_project, categories={"car": ["car", "bus"], "not_car": ["apple", "tree"]}, test_size=0.25,
                 val_size=0.25, split_seed=3, augment_copies=2, augment_stretch=1.8)
    preprocess.main()
    train = load_split(raw_project, "train")
    originals = len(plain["train"]["y"])
    assert len(train["x"]) == 3 * originals
    assert np.array_equal(train["x"][:originals], plain["train"]["x"])
    assert np.array_equal(train["y"], np.tile(plain["train"]["y"], 3))
    assert np.array_equal(train["category"], np.tile(plain["train"]["category"], 3))
    copies = train["x"][originals:]
    assert np.mean([not np.array_equal(copy, original) for copy, original in
                    zip(copies, np.tile(plain["train"]["x"], (2, 1)))]) > 0.9
    for split in ("val", "test"):
        assert all(np.array_equal(load_split(raw_project, split)[name], plain[split][name]) for name in ("x", "y"))
    assert json.loads((raw_project / "metrics/data.json").read_text())["train"]["total"] == 3 * originals
