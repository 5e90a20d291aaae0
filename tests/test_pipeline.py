"""End to end: the real `dvc` commands on a copy of the project in a temporary git repo."""

import json

import httpx
import numpy as np
import pytest
import torch
import yaml
from torchvision.models import mobilenet_v2

from carsketch.collected import collected_splits
from carsketch.inference.collected_file import CollectedStore
from carsketch.inference.onnx_model import OnnxModel
from carsketch.inference.serve import create_app
from conftest import make_drawings, write_category_files
from dvc_project import commit, make_project, run, stages_ran
from servers import running

pytestmark = pytest.mark.slow


@pytest.fixture
def project(tmp_path, quickdraw_server, fixture_weights):
    """The project copied into a fresh git + DVC repo, its params pointed at tiny data on loopback."""
    write_category_files(quickdraw_server.folder, {"car": 60, "bus": 60, "apple": 60, "tree": 60, "cloud": 60})
    weights = tmp_path / "weights.pth"
    weights.write_bytes(fixture_weights.read_bytes())
    project = tmp_path / "project"
    project.mkdir()
    make_project(project, base_url=quickdraw_server.url, max_per_category=40, weights=str(weights), image_size=32,
                 epochs=1, categories={"car": ["car", "bus"], "not_car": ["apple", "tree", "cloud"]})
    return project


def test_repro_preprocess_builds_a_balanced_split_and_then_does_nothing(project, quickdraw_server):
    output = run(project, "dvc", "repro", "preprocess")
    assert "Running stage 'download'" in output and "Running stage 'preprocess'" in output
    assert all(header == f"bytes=0-{128 + 40 * 784 - 1}" for _, header in quickdraw_server.requests)
    y = np.concatenate([np.load(project / f"data/processed/{split}/y.npy") for split in ("train", "val", "test")])
    assert len(y) == 160 and y.sum() == 80
    assert "/raw" in (project / "data/.gitignore").read_text().split()
    requests_so_far = len(quickdraw_server.requests)

    output = run(project, "dvc", "repro", "preprocess")
    assert "Running stage" not in output and "didn't change" in output
    assert len(quickdraw_server.requests) == requests_so_far
    assert "up to date" in run(project, "dvc", "status", "preprocess")


def test_repro_then_experiment_reruns_only_train_and_evaluate(project):
    output = run(project, "dvc", "repro")
    for stage in ("weights", "download", "preprocess", "featurize", "train", "evaluate"):
        assert f"Running stage '{stage}'" in output
    assert (project / "model_data/car_sketch_weights.pth").is_file()
    commit(project, "first run")

    for setting in ("epochs=2", "seed=7"):
        output = run(project, "dvc", "exp", "run", "-S", setting)
        assert stages_ran(output) == ["train", "evaluate"], output

    diff = json.loads(run(project, "dvc", "metrics", "diff", "--all", "--json"))
    assert {"accuracy", "loss", "roc_auc"} <= set(diff["metrics/metrics.json"])
    assert diff["metrics/metrics.json"]["loss"]["old"] is not None
    table = run(project, "dvc", "metrics", "diff", "--all")
    assert "accuracy" in table and "loss" in table
    assert "seed" in run(project, "dvc", "params", "diff")

    # the confusion plot (a row per test drawing) is in DVC's cache, not git, and still compares across revisions
    assert "metrics/plots/confusion.json" not in run(project, "git", "ls-files", "metrics")
    plots = json.loads(run(project, "dvc", "plots", "diff", "HEAD", "--json"))["data"]
    confusion = plots["metrics/plots/confusion.json"][0]
    assert confusion["revisions"] == ["workspace", "HEAD"]
    assert {row["rev"] for row in confusion["content"]["data"]["values"]} == {"workspace", "HEAD"}


def test_new_weights_in_the_same_file_show_in_dvc_status(project, tmp_path):
    run(project, "dvc", "repro", "weights")
    assert "up to date" in run(project, "dvc", "status", "weights")
    torch.manual_seed(1)
    torch.save(mobilenet_v2().state_dict(), tmp_path / "weights.pth")
    status = run(project, "dvc", "status", "weights")
    assert "changed deps" in status and "weights.pth" in status
    output = run(project, "dvc", "repro", "featurize")
    assert "Running stage 'weights'" in output


def test_drawings_labelled_on_the_page_retrain_the_model_without_featurize(project):
    params = yaml.safe_load((project / "params.yaml").read_text())
    # 96 drawings to train on here, not thousands: a label counts for 3 of them, not 10
    (project / "params.yaml").write_text(yaml.safe_dump({**params, "epochs": 3, "collected_weight": 3}))
    run(project, "dvc", "repro")
    before = json.loads((project / "metrics/metrics.json").read_text())
    assert not any(key.startswith("collected") for key in before)  # no labelled drawings: the metrics as ever
    commit(project, "first run")

    # people draw slanted strokes, a kind the data never showed, and say they are cars
    model = OnnxModel(project / "model_data/car_sketch.onnx")
    store = CollectedStore(project / "data/collected/drawings.ndjson")
    with running(create_app(model, store)) as url:
        for drawing in make_drawings("slanted", 60, seed=9900):
            response = httpx.post(f"{url}/api/drawings", json={"drawing": drawing, "label": "car"})
            assert response.status_code == 201
    status = run(project, "dvc", "status")
    assert "changed deps" in status and "drawings.ndjson" in status and "featurize" not in status
    held_out = collected_splits(store.path, 0.2)["test"]
    assert len(held_out.y) >= 5 and held_out.y.all()
    called_car_before = float(np.mean(model.predict_proba(held_out.bitmaps) >= 0.5))

    output = run(project, "dvc", "repro")
    assert stages_ran(output) == ["train", "evaluate"], output
    after = json.loads((project / "metrics/metrics.json").read_text())
    assert after["collected_test_drawings"] == len(held_out.y)
    assert after["collected_accuracy"] >= 0.9 and after["collected_accuracy"] > called_car_before
    assert before["accuracy"] >= 0.95 and after["accuracy"] >= 0.9  # and it still knows the rest
    assert "Data and pipelines are up to date" in run(project, "dvc", "status")
