"""The pipeline at scale: real `dvc repro` at two sizes ten times apart, peak memory per stage, streaming predict.

    python -m bench.scale [--sizes 20000 200000] [--image-size 64] [--out bench/reports/scale.json]

Builds a mirror whose files hold as many rows as each size needs, by tiling the real rows of
../shared/quickdraw/numpy_bitmap (car + tractor are car, the other categories not car; one is held back),
serves it over HTTP with a byte count, and runs `dvc repro` in a fresh git + DVC copy of the project with
whole files (`max_per_category: null`). Each stage runs as its own `dvc repro -s`, waited for with
os.wait4, so its peak RSS is the stage's (or DVC's own, whichever is larger: `dvc status` gives DVC's).
Then `carsketch predict` classifies every drawing of the largest size from an .npy (time to the first
result, throughput, peak RSS), and the held-back category is added to measure what one more category fetches.
"""

import argparse
import json
import math
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml

from bench.project import (SHARED_CAR_CATEGORIES, SHARED_DRAWINGS, SHARED_WEIGHTS, commit, make_project,
                           missing_from_shared, run, run_measured, stages_ran)
from carsketch.files import NpyWriter
from carsketch.mirror import MirrorHandler, serve
from carsketch.paths import ONNX_MODEL_FILE
from carsketch.quickdraw import category_file

STAGES = ("weights", "download", "preprocess", "featurize", "train", "evaluate")


class CountingHandler(MirrorHandler):
    """The mirror, adding up the body bytes it sends (what the pipeline fetched, seen from the server)."""

    def copyfile(self, source, destination):
        start = source.tell()
        super().copyfile(source, destination)
        self.server.bytes_sent += source.tell() - start


def measured(project: Path, *command: str) -> dict:
    """Run a command in `project` (bench.project.run_measured); its wall time and peak RSS (MiB), and the rate
    featurize prints for its work alone, or an AssertionError if it fails."""
    result = run_measured(project, *command)
    if result.exit_status:
        raise AssertionError(f"`{' '.join(command)}` failed:\n{result.output[-3000:]}")
    rate = re.search(r"featurize: \d+ drawings in [\d.]+ s, (\d+) drawings/s", result.output)
    return {"seconds": round(result.seconds, 2), "max_rss_mib": round(result.peak_rss_mib, 1),
            **({"drawings_per_s": int(rate.group(1))} if rate else {})}


def tile_rows(source: Path, destination: Path, rows: int) -> None:
    """A Quick, Draw! file of `rows` rows: the real ones of `source`, repeated."""
    real = np.load(source, mmap_mode="r")
    with NpyWriter(destination, np.uint8, (rows, real.shape[1])) as out:
        for start in range(0, rows, len(real)):
            out.write(real[:rows - start])


def build_mirror(folder: Path, drawings: int, not_car: list[str]) -> None:
    """Files holding what `drawings` balanced drawings need: half over the car side, half over not_car."""
    folder.mkdir(parents=True)
    for names in (SHARED_CAR_CATEGORIES, not_car):
        for name in names:
            tile_rows(SHARED_DRAWINGS / category_file(name), folder / category_file(name),
                      math.ceil(drawings / 2 / len(names)))


def predict_run(project: Path, bitmaps: Path) -> dict:
    """`carsketch predict --json` over an .npy: time to its first result, throughput, peak RSS."""
    started = time.perf_counter()
    process = subprocess.Popen([sys.executable, "-m", "carsketch", "predict", "--json", "--model",
                                str(project / ONNX_MODEL_FILE), str(bitmaps)], cwd=project, stdout=subprocess.PIPE,
                               stderr=subprocess.DEVNULL)
    first = None
    lines = 0
    for _ in process.stdout:
        first = first or time.perf_counter() - started
        lines += 1
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - started
    return {"drawings": lines, "exit_status": os.waitstatus_to_exitcode(status), "seconds": round(seconds, 1),
            "first_result_s": round(first, 2), "drawings_per_s": round(lines / seconds, 1),
            "max_rss_mib": round(usage.ru_maxrss / 1024, 1)}


def run_size(drawings: int, image_size: int, workdir: Path, with_predict: bool) -> dict:
    """The whole pipeline at one size, each stage measured; then predict and one added category."""
    categories = sorted(path.stem for path in SHARED_DRAWINGS.glob(category_file("*")))
    not_car = [name for name in categories if name not in SHARED_CAR_CATEGORIES]
    held_back = not_car.pop()
    build_mirror(workdir / "mirror", drawings, not_car)
    tile_rows(SHARED_DRAWINGS / category_file(held_back), workdir / "mirror" / category_file(held_back),
              math.ceil(drawings / 2 / len(not_car)))
    server = serve(workdir / "mirror", handler=CountingHandler)
    server.bytes_sent = 0
    project = workdir / "project"
    project.mkdir()
    make_project(project, base_url=server.url, max_per_category=None, weights=str(SHARED_WEIGHTS),
                 image_size=image_size, categories={"car": list(SHARED_CAR_CATEGORIES), "not_car": not_car})
    result = {"drawings_asked": drawings, "dvc_alone": measured(project, "dvc", "status"), "stages": {}}
    for stage in STAGES:
        result["stages"][stage] = measured(project, "dvc", "repro", "-s", stage)
    counts = json.loads((project / "metrics/data.json").read_text())
    result["drawings"] = sum(split["total"] for split in counts.values())
    result["featurize_drawings_per_s"] = {  # the whole stage (start-up included), and its work alone
        "stage": round(result["drawings"] / result["stages"]["featurize"]["seconds"], 1),
        "work": result["stages"]["featurize"]["drawings_per_s"]}
    result["bytes_fetched"] = server.bytes_sent
    result["metrics"] = json.loads((project / "metrics/metrics.json").read_text())
    result["data_bytes"] = {folder: sum(p.stat().st_size for p in (project / "data" / folder).rglob("*") if p.is_file())
                            for folder in ("raw", "processed", "features")}
    if with_predict:
        bitmaps = workdir / "predict.npy"
        tile_rows(SHARED_DRAWINGS / category_file("car"), bitmaps, result["drawings"])
        result["predict"] = predict_run(project, bitmaps)
        bitmaps.unlink()
    commit(project, "full repro")
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["categories"]["not_car"].append(held_back)
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    server.bytes_sent = 0
    added = run(project, "dvc", "repro", "preprocess")
    result["add_one_category"] = {
        "category": held_back, "bytes_fetched": server.bytes_sent,
        "file_bytes": (workdir / "mirror" / category_file(held_back)).stat().st_size,
        "stages_ran": stages_ran(added)}
    server.shutdown()
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[20_000, 200_000], help="balanced drawings per run")
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--out", type=Path, default=Path("bench/reports/scale.json"))
    args = parser.parse_args(argv)
    skipped = missing_from_shared()
    if skipped:
        print(skipped)
        return 0
    report = {"image_size": args.image_size, "cpu_count": os.cpu_count(), "load_average_start": os.getloadavg(),
              "sizes": {}}
    for drawings in args.sizes:
        with tempfile.TemporaryDirectory(prefix="carsketch-scale-") as workdir:
            report["sizes"][drawings] = run_size(drawings, args.image_size, Path(workdir), drawings == max(args.sizes))
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2) + "\n")
        print(json.dumps(report["sizes"][drawings]), flush=True)
    report["load_average_end"] = os.getloadavg()
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
