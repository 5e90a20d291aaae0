"""End to end: the real `dvc` commands on a copy of the project in a temporary git repo."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import yaml

from bench.run import COMMAND_ENV, make_project
from conftest import REPO_ROOT, write_category_files

def run(project, *command):
    if command[0] == "dvc":
        command = (sys.executable, "-m", "dvc", *command[1:])
    result = subprocess.run(command, cwd=project, capture_output=True, text=True, env={**os.environ, **COMMAND_ENV})
    assert result.returncode == 0, f"{' '.join(command)} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout + result.stderr


@pytest.fixture
def project(tmp_path, quickdraw_server):
    """The project copied into a fresh git + DVC repo, its params pointed at tiny data on loopback."""
    write_category_files(quickdraw_server.folder, {"car": 60, "bus": 60, "apple": 60, "tree": 60, "cloud": 60})
    project = tmp_path / "project"
    project.mkdir()
    params = yaml.safe_load((REPO_ROOT / "params.yaml").read_text())
    params.update(base_url=quickdraw_server.url, max_per_category=40, weights="none", image_size=32, epochs=1,
                  categories={"car": ["car", "bus"], "not_car": ["apple", "tree", "cloud"]})
    make_project(project, params)
    return project


def test_repro_preprocess_builds_a_balanced_split_and_then_does_nothing(project, quickdraw_server):
    output = run(project, "dvc", "repro", "preprocess")
    assert "Running stage 'download'" in output and "Running stage 'preprocess'" in output
    assert all(header == f"bytes=0-{128 + 40 * 784 - 1}" for _, header in quickdraw_server.requests)
    train = np.load(project / "data/processed/train.npz")
    test = np.load(project / "data/processed/test.npz")
    y = np.concatenate([train["y"], test["y"]])
    assert len(y) == 160 and y.sum() == 80
    assert "/raw" in (project / "data/.gitignore").read_text().split()
    requests_so_far = len(quickdraw_server.requests)

    output = run(project, "dvc", "repro", "preprocess")
    assert "Running stage" not in output and "didn't change" in output
    assert len(quickdraw_server.requests) == requests_so_far
    assert "up to date" in run(project, "dvc", "status", "preprocess")


def test_repro_then_experiment_reruns_only_train_and_evaluate(project):
    output = run(project, "dvc", "repro")
    for stage in ("download", "preprocess", "featurize", "train", "evaluate"):
        assert f"Running stage '{stage}'" in output
    assert (project / "model_data/car_sketch_weights.pth").is_file()
    run(project, "git", "add", "-A")
    run(project, "git", "commit", "-qm", "first run")

    output = run(project, "dvc", "exp", "run", "-S", "epochs=2")
    assert "Running stage 'train'" in output and "Running stage 'evaluate'" in output
    for stage in ("download", "preprocess", "featurize"):
        assert f"Running stage '{stage}'" not in output

    diff = json.loads(run(project, "dvc", "metrics", "diff", "--all", "--json"))
    assert {"accuracy", "loss", "roc_auc"} <= set(diff["metrics/metrics.json"])
    assert diff["metrics/metrics.json"]["loss"]["old"] is not None
    table = run(project, "dvc", "metrics", "diff", "--all")
    assert "accuracy" in table and "loss" in table
    assert "epochs" in run(project, "dvc", "params", "diff")
