"""Data parallel featurize and train over gloo with 2 CPU processes: the same bytes, the same training recipe.

In-library checks run in 2 processes started with torch.multiprocessing; the stage checks run the stages as DVC
does, with `workers: 2`, so that they re-launch themselves under torchrun.
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.distributed as dist

from carsketch.distributed import rank_and_size
from carsketch.features import featurize_to_file
from carsketch.model import build_trained_part
from carsketch.training import fit
from conftest import REPO_ROOT, TINY_PROJECT, write_category_files, write_params


def _in_two_processes(function, tmp_path, *args) -> None:
    """function(*args) in 2 processes joined in a gloo process group."""
    torch.multiprocessing.spawn(_joined, args=(str(tmp_path / "rendezvous"), function, args), nprocs=2)


def _joined(rank, rendezvous, function, args):
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{rendezvous}", rank=rank, world_size=2)
    try:
        function(*args)
    finally:
        dist.destroy_process_group()


def _first_four_pixels(bitmaps):
    return torch.from_numpy(np.asarray(bitmaps)[:, :4].astype(np.float32))


def test_two_processes_write_the_same_file_as_one(tmp_path):
    bitmaps = np.random.default_rng(0).integers(0, 256, (10, 784), dtype=np.uint8)  # batches of 3: 3, 3, 3, 1
    featurize_to_file(_first_four_pixels, bitmaps, tmp_path / "one.npy", batch_size=3)
    _in_two_processes(featurize_to_file, tmp_path, _first_four_pixels, bitmaps, tmp_path / "two.npy", "two", 3)
    assert (tmp_path / "two.npy").read_bytes() == (tmp_path / "one.npy").read_bytes()
    assert sorted(path.name for path in tmp_path.iterdir() if path.name != "rendezvous") == ["one.npy", "two.npy"]


def _fit_and_save(features, labels, destination):
    trained = build_trained_part(None, seed=0)
    trained.head[2].p = 0  # dropout off: each process draws its own masks, so only then are the two runs alike
    log = fit(trained, features, labels, epochs=2, batch_size=10, lr=0.01, seed=0, lr_schedule="cosine")
    if rank_and_size()[0] == 0:
        torch.save({"state": trained.head.state_dict(), "log": log}, destination)


def test_two_processes_train_as_one_with_the_same_global_batch_and_learning_rate(tmp_path):
    generator = torch.Generator().manual_seed(0)
    features = torch.randn(37, 1280, generator=generator).numpy()  # the last batch of 7 splits 4 + 3
    labels = (features[:, 0] > 0).astype(np.float32)
    _fit_and_save(features, labels, tmp_path / "one.pt")
    _in_two_processes(_fit_and_save, tmp_path, features, labels, tmp_path / "two.pt")
    one, two = torch.load(tmp_path / "one.pt"), torch.load(tmp_path / "two.pt")
    for name, tensor in one["state"].items():
        # summing the gradient in another order differs in the last float bits, which Adam's step (about lr,
        # whatever the gradient's size) can carry to ~1e-4 where a gradient is near zero
        torch.testing.assert_close(two["state"][name], tensor, atol=2e-4, rtol=1e-4)
    assert [row["train_loss"] for row in two["log"]] == pytest.approx([row["train_loss"] for row in one["log"]], rel=1e-4)


PARAMS = {**TINY_PROJECT, "batch_size": 32, "lr_schedule": "constant"}


def run_stage(project, stage, workers):
    """`python -m stages.<stage>` in `project` as dvc.yaml runs it, with `workers` processes; its output."""
    write_params(project, **PARAMS, workers=workers)
    result = subprocess.run([sys.executable, "-m", f"stages.{stage}"], cwd=project, capture_output=True, text=True,
                            env={**os.environ, "PYTHONPATH": str(REPO_ROOT)})
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout + result.stderr


@pytest.fixture(scope="module")
def project(tmp_path_factory, fixture_weights):
    """Preprocessed drawings: 720 to train (3 featurize batches of 256), 180 to validate, 300 to test."""
    project = tmp_path_factory.mktemp("project")
    write_category_files(project / "data/raw", {"car": 300, "bus": 300, "apple": 300, "tree": 300})
    (project / "model_data").mkdir()
    (project / "model_data/backbone.pth").write_bytes(fixture_weights.read_bytes())
    run_stage(project, "preprocess", workers=1)
    return project


def features_and_accuracy(project, workers):
    for stage in ("featurize", "train", "snapshot", "adapt", "evaluate"):
        run_stage(project, stage, workers)
    features = {split: (project / f"data/features/{split}.npy").read_bytes() for split in ("train", "val", "test")}
    return features, json.loads((project / "metrics/metrics.json").read_text())["accuracy"]


@pytest.mark.slow
def test_stages_with_two_torchrun_workers_match_one_process(project):
    one_features, one_accuracy = features_and_accuracy(project, workers=1)
    two_features, two_accuracy = features_and_accuracy(project, workers=2)
    assert two_features == one_features
    assert one_accuracy >= 0.95 and abs(two_accuracy - one_accuracy) <= 0.005
