"""featurize, train and evaluate on a GPU against the CPU, on the data of bench.unseen (real drawings from ../shared).

    python -m bench.gpu --prepare DIR                   # here: the drawings and weights into DIR, with real `dvc`
    python -m bench.gpu DIR [--runs NAME ...] [--out FILE]  # on a GPU machine: DIR is all it needs, no DVC

The GPU machine need not have DVC: each run copies DIR's downloads and the project's code into a fresh folder and
runs `python -m stages.<stage>` in dvc.yaml's order, as `dvc repro` would. It reports each stage's wall time
(start-up included), the test and unseen figures and evaluate's float32 cross-check of the cached features, for
the CPU and CUDA, default and best recipe, and what `workers: 2` on one GPU says; and featurize's rate on CUDA
over many drawings at three batch sizes, and how close its features are to the CPU's. It asserts nothing: compare
the ratios of one run.
"""

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml

from bench.project import REPO_ROOT, SHARED_DRAWINGS, SHARED_WEIGHTS, make_project, missing_from_shared, run
from bench.unseen import PARAMS, RECIPES
from carsketch.mirror import serve
from carsketch.paths import BACKBONE_FILE, DOWNLOAD_REPORT, EVALUATE_CHECKS, METRICS_FILE, RAW_DIR

DOWNLOADED = (RAW_DIR, DOWNLOAD_REPORT, BACKBONE_FILE, Path("params.yaml"))
BEST = {key: yaml.safe_load(value)
        for key, value in (setting.split("=", 1) for setting in RECIPES["trained5_stretched"])}
PIPELINE = ("preprocess", "featurize", "train", "snapshot", "adapt", "evaluate")
# device auto: CUDA for featurize and train, and ONNX Runtime's CPU provider for evaluate where it has no CUDA one
RUNS = {"cuda": ({"device": "auto"}, PIPELINE), "cpu": ({"device": "cpu"}, PIPELINE),
        "cuda_best": ({"device": "auto", **BEST, "seed": 1}, PIPELINE),
        "workers2_one_gpu": ({"device": "auto", "workers": 2}, ("preprocess", "featurize")),
        "cpu_best": ({"device": "cpu", **BEST, "seed": 1}, PIPELINE)}
FIGURES = ("accuracy", "unseen_car_recall", "unseen_false_car_rate", "unseen_roc_auc")
THROUGHPUT_DRAWINGS = 1 << 17
BATCH_SIZES = (64, 256, 1024)


def copy_downloads(source: Path, destination: Path) -> None:
    """DOWNLOADED, from one project folder to another."""
    for path in DOWNLOADED:
        (destination / path).parent.mkdir(parents=True, exist_ok=True)
        (shutil.copytree if (source / path).is_dir() else shutil.copy)(source / path, destination / path)


def prepare(directory: Path) -> None:
    """The benchmark's downloads, by the real download and weights stages from a loopback mirror of ../shared."""
    server = serve(SHARED_DRAWINGS)
    with tempfile.TemporaryDirectory() as scratch:
        project = Path(scratch)
        make_project(project, **PARAMS, base_url=server.url, weights=str(SHARED_WEIGHTS))
        run(project, "dvc", "repro", "weights", "download")
        server.shutdown()
        copy_downloads(project, directory)


def stage_seconds(project: Path, stage: str) -> tuple[float, str]:
    """Wall seconds of `python -m stages.<stage>` in `project`, and the last line of its output, or if it failed the
    last lines of its errors."""
    started = time.perf_counter()
    result = subprocess.run([sys.executable, "-m", f"stages.{stage}"], cwd=project, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if result.returncode:
        return seconds, f"exit {result.returncode}: " + " | ".join(result.stderr.strip().splitlines()[-5:])
    return seconds, (result.stdout.strip().splitlines() or [""])[-1]


def pipeline(downloads: Path, settings: dict, stages: tuple[str, ...] = PIPELINE) -> dict:
    """The stages after download with `settings` over params.yaml, in a fresh copy: seconds and figures."""
    with tempfile.TemporaryDirectory() as scratch:
        project = Path(scratch)
        for name in ("stages", "carsketch"):
            shutil.copytree(REPO_ROOT / name, project / name, ignore=shutil.ignore_patterns("__pycache__"))
        copy_downloads(downloads, project)
        # the weights file as the weights stage left it (params.yaml's own path is on the machine that downloaded)
        params = {**yaml.safe_load((project / "params.yaml").read_text()), "weights": str(BACKBONE_FILE), **settings}
        (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
        result = {}
        for stage in stages:
            result[f"{stage}_s"], result[f"{stage}_says"] = stage_seconds(project, stage)
            if result[f"{stage}_says"].startswith("exit") or stage == stages[-1] != "evaluate":
                return result
        metrics = json.loads((project / METRICS_FILE).read_text())
        checks = json.loads((project / EVALUATE_CHECKS).read_text())
        return {**result, **{key: metrics.get(key) for key in FIGURES},
                "full_model_max_difference": checks["full_model_max_difference"]}


def featurize_figures(downloads: Path, device: str = "cuda") -> dict:
    """featurize on CUDA at 128 px: drawings/s over THROUGHPUT_DRAWINGS real drawings (tiled) per batch size, and how
    far its features are from ONNX Runtime's on the CPU (max difference over max feature), against TF32's."""
    import torch

    from carsketch.features import feature_function, featurize_to_file
    from carsketch.model import build_classifier
    from carsketch.sketch import to_model_input
    car = np.load(downloads / RAW_DIR / "car.npy")
    bitmaps = np.resize(car, (THROUGHPUT_DRAWINGS, car.shape[1]))
    classifier = build_classifier(downloads / BACKBONE_FILE, 0)
    on_cpu = feature_function(classifier, 128, "onnxruntime")(car[:1024])
    function = feature_function(classifier, 128, "torch", torch.device(device))
    with torch.inference_mode():
        torch.backends.cudnn.conv.fp32_precision = "tf32"  # cuDNN's default, which the pipeline no longer uses
        tf32 = classifier.frozen_features(to_model_input(car[:1024], 128, device=torch.device(device))).cpu()
    figures = {f"{name}_relative_difference": float((features - on_cpu).abs().max() / on_cpu.abs().max())
               for name, features in (("float32", function(car[:1024])), ("tf32", tf32))}
    for batch_size in BATCH_SIZES:
        with tempfile.TemporaryDirectory() as scratch:
            featurize_to_file(function, bitmaps[:4096], Path(scratch) / "warm.npy", batch_size=batch_size)
            started = time.perf_counter()
            featurize_to_file(function, bitmaps, Path(scratch) / "features.npy", batch_size=batch_size)
            figures[f"drawings_per_s_batch{batch_size}"] = THROUGHPUT_DRAWINGS / (time.perf_counter() - started)
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("directory", type=Path)
    parser.add_argument("--prepare", action="store_true", help="download into DIRECTORY (here, with dvc, ../shared)")
    parser.add_argument("--runs", nargs="*", choices=RUNS, default=list(RUNS), help="pipeline runs (default: all)")
    parser.add_argument("--out", type=Path, help="write the report here as JSON too")
    args = parser.parse_args()
    if args.prepare:
        skipped = missing_from_shared(categories=[*PARAMS["categories"]["car"], *PARAMS["unseen"]["car"],
                                                  *PARAMS["unseen"]["not_car"]])
        if skipped:
            print(skipped)
        else:
            prepare(args.directory)
        return 0
    import torch
    if not torch.cuda.is_available():
        print("skipped: torch sees no CUDA GPU here")
        return 0
    report = {"gpu": torch.cuda.get_device_name(), "torch": torch.__version__,
              "featurize": featurize_figures(args.directory)}
    print("featurize", json.dumps(report["featurize"]), flush=True)
    for name in args.runs:
        report[name] = pipeline(args.directory, *RUNS[name])
        print(name, json.dumps(report[name]), flush=True)
    print(json.dumps(report, indent=1))
    if args.out:
        args.out.write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
