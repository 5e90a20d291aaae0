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
                 categories={"car": ["car", "firetruk"], "not_car": ["car", "apple"]}, epoch=5)
    with pytest.raises(PipelineError) as error:
        load_params(tmp_path / "params.yaml")
    lines = str(error.value).splitlines()
    assert lines[0] == f"{tmp_path / 'params.yaml'} has 12 bad setting(s):"
    expected = [
        "epoch: unknown key",
        "categories.car: 'firetruk' is not a Quick, Draw! category; did you mean 'firetruck'?",
        "categories.not_car: 'car' is listed in both car and not_car",
        "max_per_category: must be an integer of at least 1 or null, not -3",
        "test_size: must be a number above 0 and below 1, not 1.5",
        f"weights: no such file",
        "image_size: must be an integer from 32 to 512, not 'big'",
        "trainable_blocks: must be an integer from 0 to 18, not 19",
        "featurize_engine: must be one of onnxruntime, torch, not 'tpu'",
        "epochs: must be an integer of at least 1, not 0",
        "batch_size: must be an integer of at least 1, not True",
        "lr_schedule: must be one of constant, cosine, not 'linear'",
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
    (tmp_path / "params.yaml").write_text("epochs: [3\n")
    with pytest.raises(PipelineError, match="is not valid YAML"):
        load_params(tmp_path / "params.yaml")


def test_an_empty_side_is_an_error(tmp_path):
    write_params(tmp_path, categories={"car": [], "not_car": ["apple"]})
    with pytest.raises(PipelineError, match="categories.car: must be a non-empty list"):
        load_params(tmp_path / "params.yaml")
