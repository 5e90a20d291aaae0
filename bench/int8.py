"""float32 against int8 frozen parts on the real drawings and ImageNet weights in ../shared: speed and closeness.

    python -m bench.int8 [--image-size 128] [--rounds 7] [--blocks 0 5] [--predict-drawings 30000] [--requests 2000]

For each `trainable_blocks`, exports the frozen part as featurize does, quantizes it with carsketch.quantize on 512
drawings (rows 0-299 of each file) and times that; then runs both parts in ONNX Runtime at batch 64 over 1,024 other
drawings (rows 300-) in interleaved rounds, so that other work on the machine slows both alike, and reports the
median drawings/s, the median of the rounds' int8 / float32 ratios and the features' cosine (min, mean). Then the
whole model, float32 and int8 (the frozen backbone's part joined to one head): predict's drawings/s on
--predict-drawings real bitmaps, and serve's requests/s under bench.serve_load's 16-client load.
"""

import argparse
import json
import os
import subprocess
import sys
import time

import tempfile
from pathlib import Path

import numpy as np
import onnx

from bench.project import SHARED_DRAWINGS, SHARED_WEIGHTS, missing_from_shared
from bench.serve_load import benchmark
from carsketch.backbone import FEATURE_DIM
from carsketch.checkpoint import model_config
from carsketch.export import export_frozen, export_model, save_onnx
from carsketch.inference.onnx_model import OnnxModel
from carsketch.inference.onnx_model import BITMAPS, CPU_PROVIDER, FROZEN_FEATURES, run_batched, session
from carsketch.model import build_classifier
from carsketch.quantize import DEFAULT_CALIBRATION_DRAWINGS, calibration_sample, quantize_frozen

POOL_ROWS, TEST_DRAWINGS, BATCH = 300, 1024, 64
PREDICT_ROUNDS = 6


def drawings_per_second(model_session, bitmaps: np.ndarray) -> float:
    started = time.perf_counter()
    run_batched(model_session, bitmaps, BITMAPS, FROZEN_FEATURES, BATCH)
    return len(bitmaps) / (time.perf_counter() - started)


def whole_models(folder: Path, image_size: int, calibration: np.ndarray) -> dict[str, Path]:
    """The whole model twice, as train writes it with `precision` float32 and int8: the same head on each frozen part."""
    classifier = build_classifier(SHARED_WEIGHTS)
    float_part = export_frozen(classifier, image_size)
    parts = {"float32": float_part,
             "int8": onnx.load_from_string(quantize_frozen(float_part.SerializeToString(), calibration))}
    config = model_config(image_size, 0, "imagenet", {"car": ["car"], "not_car": ["apple"]})
    for name, part in parts.items():
        save_onnx(export_model(part, classifier.trained, (FEATURE_DIM,), config), folder / f"{name}.onnx")
    return {name: folder / f"{name}.onnx" for name in parts}


def predict_and_serve(image_size: int, pool: np.ndarray, bitmaps: np.ndarray, requests: int) -> dict:
    """predict's drawings/s on `bitmaps` (float32 and int8 taking turns over shares of them), then serve's requests/s,
    for each precision."""
    with tempfile.TemporaryDirectory(prefix="bench-int8-") as folder:
        paths = whole_models(Path(folder), image_size, calibration_sample(pool, DEFAULT_CALIBRATION_DRAWINGS, seed=0))
        models = {name: OnnxModel(path, "cpu") for name, path in paths.items()}
        seconds = dict.fromkeys(models, 0.0)
        for share in np.array_split(bitmaps, PREDICT_ROUNDS):  # in turns, so that other work slows both alike
            for name, model in models.items():
                started = time.perf_counter()
                model.predict_proba(share)
                seconds[name] += time.perf_counter() - started
        figures = {name: {"predict_drawings_per_s": round(len(bitmaps) / seconds[name], 1)} for name in models}
        for name, path in paths.items():
            served = benchmark(path, requests, clients=16)
            figures[name].update(serve_requests_per_s=round(served["requests_per_s"], 1), serve_errors=served["errors"],
                                 serve_p99_ms=round(served["p99_ms"], 1))
    return {"predict_drawings": len(bitmaps), **figures,
            "predict_int8_over_float32": round(figures["int8"]["predict_drawings_per_s"]
                                               / figures["float32"]["predict_drawings_per_s"], 2),
            "serve_int8_over_float32": round(figures["int8"]["serve_requests_per_s"]
                                             / figures["float32"]["serve_requests_per_s"], 2)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--blocks", type=int, nargs="+", default=[0, 5])
    parser.add_argument("--predict-drawings", type=int, default=30_000)
    parser.add_argument("--requests", type=int, default=2000)
    args = parser.parse_args()
    skipped = missing_from_shared()
    if skipped:
        print(skipped)
        return 0
    files = [np.load(path) for path in sorted(SHARED_DRAWINGS.glob("*.npy"))]
    pool = np.concatenate([rows[:POOL_ROWS] for rows in files])
    held_out = np.concatenate([rows[POOL_ROWS:] for rows in files])
    test = held_out[np.sort(np.random.default_rng(1).choice(len(held_out), TEST_DRAWINGS, replace=False))]
    flags = subprocess.run("lscpu | grep -o 'avx512_vnni\\|amx[a-z_]*\\|avx_vnni' | sort -u", shell=True,
                           capture_output=True, text=True).stdout.split()
    report = {"image_size": args.image_size, "cpu_flags": flags, "cores": os.cpu_count(),
              "load_average_before": os.getloadavg()[0], "parts": {}}
    for blocks in args.blocks:
        float_model = export_frozen(build_classifier(SHARED_WEIGHTS, blocks), args.image_size).SerializeToString()
        started = time.perf_counter()
        int8_model = quantize_frozen(float_model, calibration_sample(pool, DEFAULT_CALIBRATION_DRAWINGS, seed=0))
        quantize_s = time.perf_counter() - started
        sessions = {name: session(model, [CPU_PROVIDER]) for name, model in (("float32", float_model),
                                                                              ("int8", int8_model))}
        features = {name: run_batched(s, test, BITMAPS, FROZEN_FEATURES).reshape(len(test), -1)
                    for name, s in sessions.items()}
        a, b = features["float32"], features["int8"]
        cosine = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
        rates = {name: [] for name in sessions}
        for _ in range(args.rounds):
            for name, s in sessions.items():
                rates[name].append(drawings_per_second(s, test[:BATCH * 4]))
        report["parts"][f"trainable_blocks={blocks}"] = {
            "calibrate_and_quantize_s": round(quantize_s, 1), "bytes": {"float32": len(float_model),
                                                                        "int8": len(int8_model)},
            "cosine_min": float(cosine.min()), "cosine_mean": float(cosine.mean()),
            **{f"{name}_drawings_per_s": round(float(np.median(r)), 1) for name, r in rates.items()},
            "int8_over_float32": round(float(np.median(np.divide(rates["int8"], rates["float32"]))), 2),
            "rounds": {name: [round(rate) for rate in r] for name, r in rates.items()}}
    whole = held_out[np.random.default_rng(2).choice(len(held_out), args.predict_drawings, replace=False)]
    report["whole_model"] = predict_and_serve(args.image_size, pool, whole, args.requests)
    report["load_average_after"] = os.getloadavg()[0]
    json.dump(report, sys.stdout, indent=2)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
