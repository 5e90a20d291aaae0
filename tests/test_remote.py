"""A shared DVC remote: one clone labels drawings, runs the pipeline and pushes; a second clone pulls, has nothing to
re-run, and gets the labels back."""

import json
import sys

import numpy as np
import pytest

from carsketch.inference.collected_store import CollectedStore
from conftest import make_drawings, write_category_files
from dvc_project import commit, make_project, run, stages_ran

pytestmark = pytest.mark.slow

OUTPUTS = ("model_data/backbone.pth", "data/raw/car.npy", "data/processed/test/x.npy", "data/features/test.npy",
           "model_data/car_sketch_weights.pth", "data/collected_snapshot/drawings.ndjson")
LIVE_LABELS = "data/collected/drawings.ndjson"


def test_a_second_clone_pulls_every_output_runs_nothing_and_predicts(tmp_path, quickdraw_server, fixture_weights):
    drawings = write_category_files(quickdraw_server.folder, {"car": 40, "bus": 40, "apple": 40, "tree": 40})
    weights = tmp_path / "weights.pth"
    weights.write_bytes(fixture_weights.read_bytes())
    first, second = tmp_path / "first", tmp_path / "second"
    first.mkdir()
    make_project(first, base_url=quickdraw_server.url, max_per_category=30, weights=str(weights), image_size=32,
                 epochs=1, device="cpu", categories={"car": ["car", "bus"], "not_car": ["apple", "tree"]})
    CollectedStore(first / LIVE_LABELS).append([{"key_id": f"k{number}", "label": "car", "drawing": drawing}
                                                 for number, drawing in enumerate(make_drawings("slanted", 12, 77))])
    run(first, "dvc", "repro")
    run(first, "dvc", "remote", "add", "-d", "shared", str(tmp_path / "remote"))
    commit(first, "a run, and the team's remote")
    assert "pushed" in run(first, "dvc", "push")
    requests = len(quickdraw_server.requests)

    run(tmp_path, "git", "clone", "-q", str(first), str(second))
    assert not (second / "model_data/car_sketch_weights.pth").exists()
    run(second, "dvc", "pull")
    for output in OUTPUTS:
        assert (second / output).read_bytes() == (first / output).read_bytes(), output
    assert not (second / LIVE_LABELS).exists()  # git ignores the live file: DVC keeps the labels
    status = run(second, "dvc", "status")
    assert status.split() == ["snapshot:", "always", "changed"], status
    assert stages_ran(run(second, "dvc", "repro")) == ["snapshot"]  # which restores the labels, and changes nothing
    assert (second / LIVE_LABELS).read_bytes() == (first / LIVE_LABELS).read_bytes()
    assert len(quickdraw_server.requests) == requests

    np.save(second / "drawings.npy", drawings["car"][:3])
    rows = [json.loads(line) for line in run(second, sys.executable, "-m", "carsketch", "predict", "--json",
                                             "drawings.npy").splitlines() if line.startswith("{")]
    assert [row["index"] for row in rows] == [0, 1, 2] and all(0 <= row["car_probability"] <= 1 for row in rows)
