"""params.yaml is checked whole, before any work: every bad key and value named on a line of its own."""

import pytest
import yaml

from carsketch.errors import PipelineError
from carsketch.params import load_params
from conftest import REPO_ROOT, write_params


def test_the_projects_params_are_valid_and_typed(tmp_path):
    params = load_params(REPO_ROOT / "params.yaml")
    assert params.epochs == 3 and params.categories.labels()["firetruck"] == 1
    assert params.categories.labels()["bicycle"] == 0 and params.seed != "" and params.split_seed >= 0


def test_every_bad_setting_gets_its_own_line(tmp_path):
    write_params(tmp_path, epochs=0, lr_schedule="linear", test_size=1.5, image_size="big", max_per_category=-3,
                 weights=str(tmp_path / "nope.pth"), featurize_engine="tpu", trainable_blocks=19, batch_size=True,
                 categories={"car": ["car", "firetruk"], "not_car": ["car", "apple"]}, epoch=5, augment_copies=-1,
                 augment_stretch=0.5, collected_weight=-1, collected_test_size=1, adapt_blocks=19, adapt_lr=0)
    with pytest.raises(PipelineError) as error:
        load_params(tmp_path / "params.yaml")
    lines = str(error.value).splitlines()
    assert lines[0] == f"{tmp_path / 'params.yaml'} has 18 bad setting(s):"
    expected = [
        "epoch: unknown key; did you mean 'epochs'?",
        "categories.car: 'firetruk' is not a Quick, Draw! category; did you mean 'firetruck'?",
        "categories.not_car: 'car' is listed twice, here and in categories.car",
        "max_per_category: must be an integer of at least 1 or null, not -3",
        "test_size: must be a number above 0 and below 1, not 1.5",
        "augment_copies: must be an integer of at least 0, not -1",
        "augment_stretch: must be a number of at least 1, not 0.5",
        "weights: no such file",
        "image_size: must be an integer from 32 to 512, not 'big'",
        "trainable_blocks: must be an integer from 0 to 18, not 19",
        "featurize_engine: must be one of onnxruntime, torch, not 'tpu'",
        "epochs: must be an integer of at least 1, not 0",
        "batch_size: must be an integer of at least 1, not True",
        "lr_schedule: must be one of constant, cosine, not 'linear'",
        "collected_weight: must be a number of at least 0, not -1",
        "collected_test_size: must be a number from 0 and below 1, not 1",
        "adapt_blocks: must be an integer from 0 to 18, not 19",
        "adapt_lr: must be a number above 0, not 0",
    ]
    assert len(lines) == 1 + len(expected)
    for line, start in zip(lines[1:], expected):
        assert line.strip().startswith(start), (line, start)


def test_a_missing_key_and_bad_yaml_are_named(tmp_path):
    params = yaml.safe_load((REPO_ROOT / "params.yaml").read_text())
    del params["split_seed"]
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    with pytest.raises(PipelineError, match="split_seed: missing"):
        load_params(tmp_path / "params.yaml")
    del params["unseen"]  # the lists' own check needs both lists: without one, it is named missing like any key
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    with pytest.raises(PipelineError, match="unseen: missing\n  split_seed: missing"):
        load_params(tmp_path / "params.yaml")
    (tmp_path / "params.yaml").write_text("epochs: [3\n")
    with pytest.raises(PipelineError, match="is not valid YAML"):
        load_params(tmp_path / "params.yaml")


def test_an_empty_side_is_an_error(tmp_path):
    write_params(tmp_path, categories={"car": [], "not_car": ["apple"]})
    with pytest.raises(PipelineError, match="categories.car: must be a non-empty list"):
        load_params(tmp_path / "params.yaml")


def test_unseen_categories_are_checked_with_the_trained_ones(tmp_path):
    write_params(tmp_path, unseen={"car": ["tractor", "car"], "not_car": ["pianoo"], "other": []}, unseen_drawings=0)
    with pytest.raises(PipelineError) as error:
        load_params(tmp_path / "params.yaml")
    lines = [line.strip() for line in str(error.value).splitlines()[1:]]
    assert lines == ["unseen.other: unknown key (expected car and not_car)",
                     "unseen.car: 'car' is listed twice, here and in categories.car",
                     "unseen.not_car: 'pianoo' is not a Quick, Draw! category; did you mean 'piano'? (the 345 names are "
                     "in carsketch/quickdraw_categories.txt)",
                     "unseen_drawings: must be an integer of at least 1 or null, not 0"]
    write_params(tmp_path, unseen={"car": ["tractor"], "not_car": []}, unseen_drawings=None)
    assert load_params(tmp_path / "params.yaml").unseen.labels() == {"tractor": 1}


def test_not_car_all_is_every_other_category(tmp_path):
    write_params(tmp_path, categories={"car": ["car", "bus"], "not_car": "all"},
                 unseen={"car": ["tractor"], "not_car": ["piano"]})
    categories = load_params(tmp_path / "params.yaml").categories
    assert categories.not_car_all and len(categories.not_car) == 345 - 4
    assert not {"car", "bus", "tractor", "piano"} & set(categories.not_car) and "bicycle" in categories.not_car
    write_params(tmp_path, categories={"car": "all", "not_car": "everything"})
    with pytest.raises(PipelineError) as error:
        load_params(tmp_path / "params.yaml")
    assert "categories.car: must be a non-empty list of Quick, Draw! category names\n" in str(error.value) + "\n"
    assert "categories.not_car: must be a non-empty list of Quick, Draw! category names, or all" in str(error.value)
