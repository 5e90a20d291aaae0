"""End to end: the real `dvc` commands on a copy of the project in a temporary git repo."""

import hashlib
import json
import os
import re
import subprocess
import time

import httpx
import numpy as np
import pytest
import torch
from torchvision.models import mobilenet_v2

from carsketch.collected import collected_splits
from carsketch.inference.collected_store import CollectedStore
from carsketch.inference.onnx_model import OnnxModel
from carsketch.trained_model import load_trained_model
from carsketch.paths import COLLECTED_SNAPSHOT
from conftest import make_bitmaps, make_drawings, write_category_files
from dvc_project import COMMAND_ENV, command_line, commit, make_project, run, stages_ran
from servers import serve_process

pytestmark = pytest.mark.slow
TOKEN = "test-token"


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


def test_repro_then_experiment_reruns_only_train_adapt_and_evaluate(project):
    output = run(project, "dvc", "repro")
    for stage in ("weights", "download", "preprocess", "featurize", "train", "snapshot", "adapt", "evaluate"):
        assert f"Running stage '{stage}'" in output
    assert (project / "model_data/car_sketch_weights.pth").is_file()
    commit(project, "first run")

    for setting in ("epochs=2", "seed=7"):
        output = run(project, "dvc", "exp", "run", "-S", setting)
        assert stages_ran(output) == ["train", "snapshot", "adapt", "evaluate"], output  # snapshot: always_changed
    # the frozen part's precision (int8 by default) re-runs featurize and what follows, and compares like the rest
    output = run(project, "dvc", "exp", "run", "-S", "precision=float32")
    assert stages_ran(output) == ["featurize", "train", "snapshot", "adapt", "evaluate"], output

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


def changed_stages(project) -> set[str]:
    """The stages `dvc status` lists, snapshot aside (always changed, by design)."""
    return set(re.findall(r"^(\w+):", run(project, "dvc", "status"), re.MULTILINE)) - {"snapshot"}


def test_each_stage_reruns_only_for_the_code_it_runs_and_the_settings_that_shape_it(project):
    run(project, "dvc", "repro")
    assert changed_stages(project) == set()
    touched = {}
    for path in ("carsketch/inference/serve.py", "carsketch/inference/app.py", "carsketch/inference/predict.py",
                 "carsketch/inference/images.py", "carsketch/inference/static/index.html",
                 "carsketch/inference/onnx_model.py", "carsketch/model.py"):
        original = (project / path).read_text()
        (project / path).write_text(original + ("\n<!-- a comment -->\n" if path.endswith(".html") else "\n# a comment\n"))
        touched[path] = changed_stages(project)
        (project / path).write_text(original)
    # the server, predict, the image reader and the page: no stage
    assert all(not touched[path] for path in list(touched)[:5]), touched
    # the ONNX Runtime wrapper and the model: what runs the model, never what fetches and prepares the data
    assert touched["carsketch/inference/onnx_model.py"] == {"featurize", "train", "adapt", "evaluate"}
    assert touched["carsketch/model.py"] == {"featurize", "train", "adapt"}
    # featurize writes the same bytes in any number of processes; train does not
    params = (project / "params.yaml").read_text()
    (project / "params.yaml").write_text(params.replace("workers: 1", "workers: 2"))
    assert changed_stages(project) == {"train"}  # dvc status names the stages whose own deps changed


def test_new_weights_in_the_same_file_show_in_dvc_status(project, tmp_path):
    run(project, "dvc", "repro", "weights")
    assert "up to date" in run(project, "dvc", "status", "weights")
    torch.manual_seed(1)
    torch.save(mobilenet_v2().state_dict(), tmp_path / "weights.pth")
    status = run(project, "dvc", "status", "weights")
    assert "changed deps" in status and "weights.pth" in status
    output = run(project, "dvc", "repro", "featurize")
    assert "Running stage 'weights'" in output


def label(url: str, drawings: list, name: str) -> list[str]:
    """POST each drawing to /api/drawings with the label `name`, with the token; the ids it kept them under."""
    ids = []
    for drawing in drawings:
        response = httpx.post(f"{url}/api/drawings", json={"drawing": drawing, "label": name},
                              headers={"Authorization": f"Bearer {TOKEN}"}, timeout=60)
        assert response.status_code == 201, response.text
        ids.append(response.json()["id"])
    return ids


def snapshot_ids(project) -> set[str]:
    return {json.loads(line)["key_id"] for line in (project / COLLECTED_SNAPSHOT).read_text().splitlines()}


def test_collected_drawings_adapt_the_model_without_featurize_or_train(project):
    output = run(project, "dvc", "repro")
    assert "warning" not in output.lower()  # nobody labelled anything: nothing to say about it
    before = json.loads((project / "metrics/metrics.json").read_text())
    assert not any(key.startswith("collected") for key in before)  # nobody labelled: the metrics as ever
    # no labels: train's model goes on untouched, and evaluate checks the cached path against it
    for name in ("car_sketch.onnx", "car_sketch_weights.pth"):
        assert (project / "model_data" / name).read_bytes() == (project / "model_data/trained" / name).read_bytes()
    assert json.loads((project / "metrics/evaluate_checks.json").read_text())["full_model_max_difference"] < 1e-3
    commit(project, "first run")
    assert "data/collected_snapshot" not in run(project, "git", "ls-files")  # DVC keeps the labels, not git

    # people draw slanted strokes, a kind the data never showed, and say they are cars, through the real server
    model = OnnxModel(project / "model_data/car_sketch.onnx")
    with serve_process(project / "model_data/car_sketch.onnx", "--token", TOKEN, cwd=project) as (_, url):
        label(url, make_drawings("slanted", 60, seed=9900), "car")
        status = run(project, "dvc", "status")
        assert "snapshot" in status and "always changed" in status
        assert not {"featurize", "train"} & set(re.findall(r"^(\w+):", status, re.MULTILINE))
        held_out = collected_splits(project / "data/collected/drawings.ndjson", 0.2)["test"]
        assert len(held_out.y) >= 5 and held_out.y.all()
        called_car_before = float(np.mean(model.predict_proba(held_out.bitmaps) >= 0.5))

        output = run(project, "dvc", "repro")
        assert stages_ran(output) == ["snapshot", "adapt", "evaluate"], output
        # the server that stayed up answers with the new model within seconds
        adapted_md5 = hashlib.md5((project / "model_data/car_sketch.onnx").read_bytes()).hexdigest()
        assert adapted_md5 != model.md5
        for _ in range(600):  # up to a minute on a busy machine; a second or two here
            if httpx.get(f"{url}/api/health").json()["model_md5"] == adapted_md5:
                break
            time.sleep(0.1)
        assert httpx.get(f"{url}/api/health").json()["model_md5"] == adapted_md5
        served = [httpx.post(f"{url}/api/predict", json={"drawing": drawing}).json()["results"][0]["label"]
                  for drawing in make_drawings("slanted", 20, seed=9902)]
        assert served.count("car") >= 18
    after = json.loads((project / "metrics/metrics.json").read_text())
    assert after["collected_test_drawings"] == after["collected_test_car_drawings"] == len(held_out.y)
    assert after["collected_not_car_accuracy"] is None
    assert after["collected_car_recall"] == after["collected_accuracy"]
    assert after["collected_accuracy"] >= 0.9 and after["collected_accuracy"] > called_car_before
    assert before["accuracy"] >= 0.95 and after["accuracy"] >= 0.9  # and it still knows the rest
    adapted = OnnxModel(project / "model_data/car_sketch.onnx")
    assert adapted.config["adapted"]["collected_drawings"] == 60 - len(held_out.y)
    # the adapted .pth is the same model as the .onnx, loaded alone: its frozen part in float32 where the .onnx carries
    # it in int8 (params.yaml's precision), which moves P(car) by a few thousandths here
    bitmaps = np.concatenate([held_out.bitmaps, make_bitmaps("other", 20, seed=9901)])
    np.testing.assert_allclose(load_trained_model(project / "model_data/car_sketch_weights.pth").predict_proba(bitmaps),
                               adapted.predict_proba(bitmaps), atol=0.02)
    output = run(project, "dvc", "repro")  # the same labels: the snapshot alone runs, and changes nothing
    assert stages_ran(output) == ["snapshot"], output


def test_a_label_sent_during_repro_is_learnt_by_the_next(project):
    run(project, "dvc", "repro")
    commit(project, "first run")
    with serve_process(project / "model_data/car_sketch.onnx", "--token", TOKEN, cwd=project) as (_, url):
        label(url, make_drawings("slanted", 10, seed=9910), "car")
        repro = subprocess.Popen(command_line("dvc", "repro"), cwd=project, stdout=subprocess.PIPE,
                                 stderr=subprocess.STDOUT, text=True, env={**os.environ, **COMMAND_ENV})
        output = []
        for line in repro.stdout:  # until adapt starts: the snapshot is taken
            output.append(line)
            if line.startswith("Running stage 'adapt'"):
                break
        [late] = label(url, make_drawings("slanted", 1, seed=9911), "car")
        assert repro.poll() is None, "dvc repro ended before the label came: nothing raced"
        output += repro.stdout.readlines()
        assert repro.wait() == 0, "".join(output)
    assert late not in snapshot_ids(project)
    output = run(project, "dvc", "repro")
    assert "adapt" in stages_ran(output), output
    assert late in snapshot_ids(project)


def test_the_labels_that_dvc_keeps_are_restored_where_the_live_file_is_missing(project):
    (project / "data/collected").mkdir(parents=True)
    CollectedStore(project / "data/collected/drawings.ndjson").append(
        [{"key_id": f"k{number}", "label": "car", "drawing": drawing}
         for number, drawing in enumerate(make_drawings("slanted", 20, seed=9920))])
    run(project, "dvc", "repro", "snapshot")
    kept = (project / COLLECTED_SNAPSHOT).read_bytes()
    (project / "data/collected/drawings.ndjson").unlink()  # a fresh clone has DVC's copy, not the live file
    output = run(project, "dvc", "repro", "snapshot")
    assert "restored it from the snapshot" in output
    assert (project / "data/collected/drawings.ndjson").read_bytes() == kept == (project / COLLECTED_SNAPSHOT).read_bytes()
