"""The benchmark's own parts: --set parsing, measuring a command, bytes accounting, the report, skipping.

The benchmark itself needs ../shared and takes minutes: run it by hand (`python -m bench.run`).
"""

import argparse
import resource
import subprocess
import sys

import numpy as np
import pytest
import torch

from bench import unseen
from bench.project import DRAWINGS_IN_SHARED, REPO_ROOT, WEIGHTS_IN_SHARED, missing_from_shared, stages_ran
from bench.run import download_volume, measure, override, parse_args, render_markdown


def test_set_takes_yaml_values_for_params_yaml_keys_only():
    args = parse_args(["--set", "image_size=64", "--set", "lr=0.0005", "--set", "lr_schedule=cosine",
                       "--set", "categories={car: [car], not_car: [apple]}", "--set", "max_per_category=null"])
    assert dict(args.set) == {"image_size": 64, "lr": 0.0005, "lr_schedule": "cosine",
                              "categories": {"car": ["car"], "not_car": ["apple"]}, "max_per_category": None}
    for wrong in ("image_sise=64", "image_size"):
        with pytest.raises(argparse.ArgumentTypeError, match=f"'{wrong}': expected key=value with a key of params"):
            override(wrong)


def test_measure_reports_the_commands_own_peak_memory_and_fails_loudly(tmp_path):
    mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024 + 256  # more than this process ever held
    allocate = f"import sys; data = b'x' * ({mib} << 20); print(\"Running stage 'train':\"); sys.stdout.flush()"
    measured = measure(tmp_path, sys.executable, "-c", allocate)
    assert measured["peak_rss_mib"] >= mib and measured["seconds"] > 0 and measured["stages_ran"] == ["train"]
    with pytest.raises(SystemExit, match="failed \\(3\\):\nboom"):
        measure(tmp_path, sys.executable, "-c", "import sys; print('boom'); sys.exit(3)")


def test_download_volume_counts_rows_and_each_files_header(tmp_path):
    for name in ("car", "tractor"):  # np.save writes a 128-byte header, as Google's files have
        np.save(tmp_path / f"{name}.npy", np.zeros((10, 784), np.uint8))
    needed = 4 * 784 + 128 + 6 * 784 + 128
    report = {"car": {"rows": 4, "bytes_fetched": needed + 100, "full_size_bytes": 10 * 784 + 128},
              "tractor": {"rows": 6, "bytes_fetched": 0, "full_size_bytes": 10 * 784 + 128}}
    assert download_volume(report, tmp_path) == {"bytes_fetched": needed + 100, "bytes_needed": needed,
                                                 "ratio_to_needed": (needed + 100) / needed,
                                                 "full_size_bytes": 2 * (10 * 784 + 128)}


def run_figures(command, seconds, ran):
    return {"command": command, "seconds": seconds, "peak_rss_mib": 512.4, "stages_ran": ran}


def test_report_renders_every_figure():
    metrics = {"accuracy": 0.9173, "loss": 0.2305, "roc_auc": 0.9714}
    report = {
        "machine": {"date": "2026-01-01T00:00:00+00:00", "cpus": 2, "load_start": 1.0, "load_end": 2.0,
                    "versions": {"python": "3.11.7", "torch": "2.14.1"}, "bench_rss_mib": 31.0},
        "settings": {"quick": True, "repeats": 1, "overrides": {"epochs": 2},
                     "params": {"max_per_category": 100, "image_size": 32, "epochs": 2,
                                "categories": {"car": ["car", "tractor"], "not_car": ["apple"]}}},
        "stages": [run_figures("dvc repro --single-item train", 2.04, ["train"])],
        "full_repro": run_figures("dvc repro --force", 30.0, ["train", "evaluate"]),
        "experiments": [{**run_figures("dvc exp run -S epochs=5", 7.5, ["train", "evaluate"]),
                         "all_seconds": [7.5], "torch_import_ratio": 3.125}],
        "imports": {"torch": 2.4, "stages.train": 3.1},
        "metrics": {"full repro": metrics, "-S epochs=5": {**metrics, "accuracy": 0.93}},
        "featurize": {"image_size": 32, "drawings": 80, "drawings_per_s": {"onnxruntime": 2500.4, "torch": 800.0}},
        "download": {"bytes_fetched": 3264, "bytes_needed": 3264, "ratio_to_needed": 1.0, "full_size_bytes": 6528},
    }
    markdown = render_markdown(report)
    for figure in ("| `dvc repro --single-item train` | 2.0 | 512 | train |",
                   "| `dvc exp run -S epochs=5` | 7.5 | 512 | train, evaluate |", "`torch` 2.40 s",
                   "median of 1: `dvc exp run -S epochs=5` **3.12x** (7.5 s) (misses the target of <= 3x)",
                   "re-ran only train and evaluate: yes", "onnxruntime 2500 drawings/s, torch 800 drawings/s",
                   "ratio **1.0000**; 50% of the files' full size", "| accuracy | 0.9173 | 0.9300 |",
                   "3 categories (car: car, tractor); max_per_category 100, image_size 32, epochs 2; overrides: epochs=2 (--quick)", "31 MiB"):
        assert figure in markdown
    report["experiments"][0]["stages_ran"] = ["featurize", "train", "evaluate"]
    assert "re-ran only train and evaluate: **NO**" in render_markdown(report)


def test_stages_ran_reads_dvc_output():
    output = "Stage 'download' didn't change, skipping\nRunning stage 'train':\n> python -m stages.train\n" \
             "Running stage 'evaluate':\n"
    assert stages_ran(output) == ["train", "evaluate"]


def test_without_the_shared_data_the_benchmark_skips(tmp_path):
    result = subprocess.run([sys.executable, "-m", "bench.run", "--quick", "--shared", str(tmp_path / "missing")],
                            cwd=REPO_ROOT, capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout.startswith("skipped: no "), result.stderr


def test_a_benchmark_names_each_file_it_lacks_in_the_shared_folder(tmp_path):
    (tmp_path / DRAWINGS_IN_SHARED).mkdir(parents=True)
    (tmp_path / WEIGHTS_IN_SHARED).parent.mkdir(parents=True)
    (tmp_path / WEIGHTS_IN_SHARED).write_bytes(b"weights")
    (tmp_path / DRAWINGS_IN_SHARED / "car.npy").write_bytes(b"drawings")
    assert missing_from_shared(tmp_path, ["car"]) is None
    assert missing_from_shared(tmp_path, ["car", "school bus"]) == \
        f"skipped: no {tmp_path / DRAWINGS_IN_SHARED / 'school bus.npy'}"
    assert missing_from_shared(tmp_path) == f"skipped: no {tmp_path / DRAWINGS_IN_SHARED / 'tractor.npy'}"


def test_unseen_report_gives_each_recipes_mean_over_seeds():
    def seed_row(seed, accuracy, recall, auc, headphones):
        return {"seed": seed, "wall_s": 10.0 * seed, "accuracy": accuracy, "unseen_car_recall": recall,
                "unseen_false_car_rate": 0.1, "unseen_roc_auc": auc, "brier": 0.04, "ece": 0.02,
                "unseen": {"tractor": {"label": "car", "predicted_car_share": recall},
                           "headphones": {"label": "not_car", "predicted_car_share": headphones},
                           "ladder": {"label": "not_car", "predicted_car_share": 0.0}}}

    report = unseen.markdown({"default": [seed_row(1, 0.94, 0.5, 0.90, 0.4), seed_row(2, 0.96, 0.7, 0.92, 0.2)]})
    assert "| default (2 seeds) | `(params.yaml)` | 0.950 | 0.600 | 0.100 | 0.910 | 0.040 | 0.020 | 15 |" in report
    assert "- default: headphones 0.30, ladder 0.00" in report


@pytest.mark.skipif(torch.cuda.is_available(), reason="with a GPU it would run the GPU benchmark")
def test_the_gpu_benchmark_skips_without_a_gpu(tmp_path):
    result = subprocess.run([sys.executable, "-m", "bench.gpu", str(tmp_path)], cwd=REPO_ROOT, capture_output=True,
                            text=True)
    assert (result.returncode, result.stdout) == (0, "skipped: torch sees no CUDA GPU here\n"), result.stderr
