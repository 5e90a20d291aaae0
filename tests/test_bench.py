"""bench/run.py's pure parts: --set parsing, interleaved medians, download volume and the markdown report.

The benchmark itself needs ../shared and takes minutes: run it by hand (`python bench/run.py`).
"""

import numpy as np
import pytest

from bench.run import download_volume, interleaved_medians, parse_overrides, render_markdown, stages_ran


def test_set_overrides_parse_yaml_values_and_reject_unknown_keys():
    params = {"image_size": 96, "lr_schedule": "constant", "lr": 0.001, "categories": {}}
    assert parse_overrides(["image_size=128", "lr_schedule=cosine", "lr=0.0005", "categories={car: [car]}"],
                           params) == {"image_size": 128, "lr_schedule": "cosine", "lr": 0.0005,
                                       "categories": {"car": ["car"]}}
    with pytest.raises(ValueError, match="no key 'image_sise'"):
        parse_overrides(["image_sise=128"], params)
    with pytest.raises(ValueError, match="key=value"):
        parse_overrides(["image_size"], params)


def test_interleaved_medians_warm_up_once_then_take_turns():
    calls = []
    medians = interleaved_medians({"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}, repeats=2)
    assert calls == ["a", "b"] * 3
    assert set(medians) == {"a", "b"}


def small_report(download):
    metrics = {"test": {"accuracy": 0.9173, "loss": 0.2305, "roc_auc": 0.9714, "precision": 0.8893, "recall": 0.953,
                        "f1": 0.92},
               "train_loss": 0.2453,
               "per_category": {"car": {"label": "car", "drawings": 294, "accuracy": 0.952,
                                        "predicted_car_share": 0.952}}}
    stage = {"seconds": 2.0, "max_rss_mib": 60.0}
    return {
        "machine": {"date": "2026-01-01T00:00:00+00:00", "cpu_count": 2, "load_average_start": 1.0,
                    "load_average_end": 2.0, "torch_threads": 2, "thread_env": {"OMP_WAIT_POLICY": "PASSIVE"},
                    "python": "3.11.7", "torch": "2.14.1", "onnxruntime": "1.32.0", "dvc": "3.67.1",
                    "platform": "Linux"},
        "settings": {"quick": False, "repeats": 3, "drawings": 512, "image_sizes": [96], "categories": 3,
                     "overrides": {"image_size": 128},
                     "params": {"max_per_category": 1500, "image_size": 128, "trainable_blocks": 0}},
        "pipeline": {"dvc_alone": stage, "stages": {"train": stage},
                     "full_repro": {"seconds": 100.0, "max_rss_mib": 900.0, "stages_ran": ["train"]},
                     "experiment": {"command": "dvc exp run -S epochs=5", "seconds": 4.2, "max_rss_mib": 500.0,
                                    "ratio_to_full_repro": 0.042, "target": 0.05, "stages_ran": ["train", "evaluate"],
                                    "only_train_and_evaluate": True},
                     "metrics_full_repro": metrics, "metrics_after_experiment": metrics},
        "models": {"featurize": {"drawings": 512, "batch": 256, "engine": "onnxruntime", "results": [
                       {"image_size": 96, "drawings_per_s": {"onnxruntime": 300.0, "torch": 120.0},
                        "ours_over_onnxruntime": 1.0, "torch_over_onnxruntime": 0.4}]},
                   "training": {"drawings": 512, "epochs": 3, "engine": "onnxruntime", "results": [
                       {"image_size": 96, "seed_seconds": 30.0, "ours_seconds": 5.0, "seed_over_ours": 6.0}]}},
        "download": download,
    }


def test_report_counts_download_bytes_and_renders_every_figure(tmp_path):
    np.save(tmp_path / "car.npy", np.zeros((10, 784), np.uint8))  # a 128-byte header, as Google's files have
    download = download_volume({"bytes_fetched": 4 * 784 + 128, "full_size_bytes": 10 * 784 + 128,
                                "categories": {"car": {"rows": 4, "bytes_fetched": 4 * 784 + 128,
                                                       "full_size_bytes": 10 * 784 + 128}}}, tmp_path)
    assert download["bytes_needed"] == 4 * 784 + 128 and download["ratio_to_needed"] == 1.0

    markdown = render_markdown(small_report(download))
    for figure in ("| `train` | 2.0 | 60 |", "**0.042** (meets the target of <= 0.05)", "only train and evaluate",
                   "| 96 | 300 | 120 | 1.00 | 0.40 |", "| 96 | 30.00 | 5.00 | 6.0 |", "ratio **1.0000**",
                   "| accuracy | 0.9173 | 0.9173 |", "| final train loss | 0.2453 | 0.2453 |", "`image_size=128`",
                   "OMP_WAIT_POLICY=PASSIVE",
                   "| car | car | 294 | 0.952 | 0.952 | 0.952 |"):
        assert figure in markdown


def test_stages_ran_reads_dvc_output():
    output = "Stage 'download' didn't change, skipping\nRunning stage 'train':\n> python -m stages.train\n" \
             "Running stage 'evaluate':\n"
    assert stages_ran(output) == ["train", "evaluate"]
