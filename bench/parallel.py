"""1 vs 2 processes: featurize and train throughput on this machine, and `dvc exp run -S workers=2` against workers=1.

Runs on the real drawings and weights in ../shared (without them it prints `skipped: ...` and exits 0), served by the
loopback mirror, in a copy of the project in a temporary git + DVC repo. Timings on a shared machine are noisy:
compare the ratios of one run. Run it as `python -m bench.parallel`.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml

from bench.project import (COMMAND_ENV, REPO_ROOT, SHARED_DRAWINGS, SHARED_WEIGHTS, commit, make_project,
                           missing_from_shared, run, stages_ran)
from carsketch.mirror import serve

REPORT = REPO_ROOT / "bench" / "reports" / "parallel.json"
CATEGORIES = {"car": ["car", "tractor"],
              "not_car": ["apple", "bicycle", "train", "airplane", "house", "cat", "tree", "clock"]}


def timed_stage(project: Path, stage: str, workers: int) -> float:
    """Wall seconds of `python -m stages.<stage>` with `workers` (start-up and any torchrun launch included)."""
    params_file = project / "params.yaml"
    params_file.write_text(yaml.safe_dump({**yaml.safe_load(params_file.read_text()), "workers": workers},
                                          sort_keys=False))
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", f"stages.{stage}"], cwd=project, check=True, capture_output=True,
                   env={**os.environ, **COMMAND_ENV})
    return time.perf_counter() - started


def test_accuracy(project: Path) -> float:
    return json.loads((project / "metrics/metrics.json").read_text())["accuracy"]


def featurize_md5(project: Path) -> str:
    """The md5 dvc.lock records for featurize's output folder."""
    lock = yaml.safe_load((project / "dvc.lock").read_text())
    return lock["stages"]["featurize"]["outs"][0]["md5"]


def measure(project: Path, epochs: int) -> dict:
    drawings = sum(len(np.load(path, mmap_mode="r")) for path in (project / "data/processed").glob("*/y.npy"))
    train_drawings = len(np.load(project / "data/processed/train/y.npy"))
    results = {"drawings": drawings, "train_drawings": train_drawings, "epochs": epochs}
    for workers in (1, 2):
        featurize_s, train_s = timed_stage(project, "featurize", workers), timed_stage(project, "train", workers)
        results[f"workers={workers}"] = {"featurize_s": featurize_s, "featurize_drawings_per_s": drawings / featurize_s,
                                         "train_s": train_s, "train_drawings_per_s": train_drawings * epochs / train_s}
        print(f"workers={workers}: featurize {featurize_s:.1f} s ({drawings / featurize_s:.0f} drawings/s), "
              f"train {train_s:.1f} s ({train_drawings * epochs / train_s:.0f} drawings/s)", flush=True)
    for key in ("featurize_s", "train_s"):
        results[f"{key} 2/1"] = results["workers=2"][key] / results["workers=1"][key]
    run(project, "git", "checkout", "params.yaml")
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-per-category", type=int, default=1000)
    parser.add_argument("--epochs", type=int, default=3)
    args = parser.parse_args()
    skipped = missing_from_shared(categories=[name for names in CATEGORIES.values() for name in names])
    if skipped:
        print(skipped)
        return 0
    server = serve(SHARED_DRAWINGS)
    try:
        with tempfile.TemporaryDirectory() as directory:
            project = Path(directory)
            make_project(project, base_url=server.url, weights=str(SHARED_WEIGHTS), categories=CATEGORIES,
                         max_per_category=args.max_per_category, epochs=args.epochs, device="cpu")
            started = time.perf_counter()
            run(project, "dvc", "repro")
            report = {"repro_workers=1_s": time.perf_counter() - started, "md5_workers=1": featurize_md5(project),
                      "accuracy_workers=1": test_accuracy(project)}
            commit(project, "workers=1")
            report["throughput"] = measure(project, args.epochs)
            started = time.perf_counter()
            output = run(project, "dvc", "exp", "run", "-S", "workers=2")
            report["exp_run_workers=2_s"] = time.perf_counter() - started
            report["exp_run_stages"] = stages_ran(output)
            report["md5_workers=2"] = featurize_md5(project)
            report["accuracy_workers=2"] = test_accuracy(project)
            report["md5_identical"] = report["md5_workers=1"] == report["md5_workers=2"]
    finally:
        server.shutdown()
        server.server_close()
    REPORT.parent.mkdir(parents=True, exist_ok=True)
    REPORT.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
