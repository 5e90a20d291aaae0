"""The download stage under the real `dvc`, against a loopback mirror that counts requests: only what changed is fetched."""

import json
import subprocess

import numpy as np
import pytest
import yaml

from dvc_project import command_line, commit, make_project, run
from conftest import write_category_files

pytestmark = pytest.mark.slow

CATEGORIES = {"car": ["car", "pickup truck"], "not_car": ["apple", "tree"]}


@pytest.fixture
def project(tmp_path, quickdraw_server):
    """The project in a fresh git + DVC repo, its params pointed at tiny files (one name with a space) on loopback."""
    write_category_files(quickdraw_server.folder, {"car": 40, "pickup truck": 40, "apple": 40, "tree": 40, "cloud": 40})
    project = tmp_path / "project"
    project.mkdir()
    make_project(project, base_url=quickdraw_server.url, max_per_category=30, categories=CATEGORIES)
    return project


def set_categories(project, categories):
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["categories"] = categories
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def fetched(server):
    """The files requested since the last call."""
    paths = sorted(path for path, _ in server.requests)
    server.requests.clear()
    return paths


def test_changing_categories_fetches_only_the_changed_file(project, quickdraw_server):
    output = run(project, "dvc", "repro", "preprocess")
    assert "Running stage 'download'" in output
    assert fetched(quickdraw_server) == ["/apple.npy", "/car.npy", "/pickup%20truck.npy", "/tree.npy"]
    assert np.load(project / "data/raw/pickup truck.npy").shape == (30, 784)
    report = json.loads((project / "metrics/download.json").read_text())["categories"]["pickup truck"]
    assert report["rows"] == 30 and report["source"] == f"{quickdraw_server.url}/pickup%20truck.npy"
    commit(project, "first run")

    set_categories(project, {"car": CATEGORIES["car"], "not_car": [*CATEGORIES["not_car"], "cloud"]})
    output = run(project, "dvc", "repro", "preprocess")
    assert fetched(quickdraw_server) == ["/cloud.npy"]
    assert "Running stage 'preprocess'" in output

    set_categories(project, {"car": ["car", "pickup truck", "tree"], "not_car": ["apple", "cloud"]})  # tree moves
    run(project, "dvc", "repro", "preprocess")
    assert fetched(quickdraw_server) == []
    category = np.load(project / "data/processed/train/category.npy")
    y = np.load(project / "data/processed/train/y.npy")
    assert set(y[category == "tree"]) == {1}

    set_categories(project, {"car": ["car", "pickup truck"], "not_car": ["apple"]})  # two removed
    output = run(project, "dvc", "repro", "preprocess")
    assert fetched(quickdraw_server) == [] and "Running stage 'preprocess'" in output
    assert "tree" not in set(np.load(project / "data/processed/train/category.npy").tolist())
    assert sorted(path.stem for path in (project / "data/raw").iterdir()) == ["apple", "car", "pickup truck"]

    params = yaml.safe_load((project / "params.yaml").read_text())
    params["max_per_category"] = 20  # other rows: every file again
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    run(project, "dvc", "repro", "preprocess")
    assert fetched(quickdraw_server) == ["/apple.npy", "/car.npy", "/pickup%20truck.npy"]
    assert np.load(project / "data/raw/car.npy").shape == (20, 784)


def test_one_failed_category_leaves_the_others(project, quickdraw_server):
    (quickdraw_server.folder / "tree.npy").unlink()
    failed = subprocess.run(command_line("dvc", "repro", "preprocess"), cwd=project, capture_output=True, text=True)
    assert failed.returncode != 0
    assert "1 of 4 categories failed; the others are kept, and a re-run fetches only these" in failed.stderr
    assert "tree.npy (HTTP 404)" in failed.stderr
    assert sorted(path.name for path in (project / "data/raw").glob("*.npy")) == ["apple.npy", "car.npy",
                                                                                  "pickup truck.npy"]
    assert "tree" not in json.loads((project / "metrics/download.json").read_text())["categories"]
    fetched(quickdraw_server)

    write_category_files(quickdraw_server.folder, {"tree": 40})
    run(project, "dvc", "repro", "preprocess")
    assert fetched(quickdraw_server) == ["/tree.npy"]
    assert "up to date" in run(project, "dvc", "status", "preprocess")
