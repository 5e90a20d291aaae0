"""The labelling loop, measured with the real Quick, Draw! files in ../shared: label, `dvc repro`, and how the model
then does on drawings nobody labelled.

    python -m bench.collect [--counts 25 50 100 200] [--seeds 42 1 2] [--set key=value ...] [--retrain]
                            [--out bench/reports]

Car is the only car kind trained on (bench.unseen's set-up: `not_car: all` against car, tractor and ten non-vehicles
never trained on), with params.yaml's defaults and any --set. After a full `dvc repro`, for each training seed it
trains the model of that seed (no labels: adapt passes it on), then for each count N goes back to that model, starts
the real `carsketch serve` on it and, through POST /api/drawings, labels N tractors as car and N unseen non-vehicles
that the model calls car as not_car, all from the first half of each file; then times the `dvc repro` that follows
and reads adapt's own time from its output. Tractor recall and the unseen false-car rate are measured on the second
half of each file, drawings nobody labelled, with the model's own threshold. ../shared has bitmaps, not strokes: each
is traced into short strokes between neighbouring ridge pixels (bitmap_strokes), which the server rasterises back much
as it was. --retrain also times train with the last 5 blocks trained from scratch (the way labels were learnt
before adapt). Writes collect-NAME.md and .json to --out (NAME: default, or the --set values); it asserts nothing.
"""

import argparse
import json
import re
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
import yaml

from bench.project import SHARED_DRAWINGS, SHARED_WEIGHTS, commit, make_project, missing_from_shared, run, stages_ran
from bench.unseen import PARAMS, UNSEEN_NOT_CAR
from carsketch.strokes import strokes_to_bitmap
from carsketch.inference.onnx_model import OnnxModel
from carsketch.mirror import serve
from carsketch.paths import COLLECTED_FILE, METRICS_FILE, ONNX_MODEL_FILE
from carsketch.quickdraw import category_file
from tests.servers import printed_token, serve_process

# Every row of the unseen files goes through the pipeline (its unseen figures); the benchmark splits them itself.
COLLECT_PARAMS = {**PARAMS, "unseen_drawings": None}
PIXEL_UNITS = 255 / 27  # a bitmap pixel in Quick, Draw!'s 0-255 drawing units
RIDGE_LEVEL = 96
NEIGHBOURS = ((0, 1), (1, -1), (1, 0), (1, 1))  # each pair of neighbouring pixels once


def bitmap_strokes(bitmap: np.ndarray) -> list:
    """A 28x28 bitmap as strokes in 0-255 units: a 2-point stroke between each two neighbouring ridge pixels (ink at
    least RIDGE_LEVEL and no darker than its neighbours across or along), a 1-point stroke for a ridge pixel alone."""
    image = np.pad(np.asarray(bitmap, float).reshape(28, 28), 1)
    centre = image[1:-1, 1:-1]
    ridge = (centre >= RIDGE_LEVEL) & (((centre >= image[1:-1, :-2]) & (centre >= image[1:-1, 2:]))
                                       | ((centre >= image[:-2, 1:-1]) & (centre >= image[2:, 1:-1])))
    points = set(zip(*np.nonzero(ridge)))
    strokes = []
    for y, x in sorted(points):
        linked = [(y + dy, x + dx) for dy, dx in NEIGHBOURS if (y + dy, x + dx) in points]
        alone = not linked and not any((y - dy, x - dx) in points for dy, dx in NEIGHBOURS)
        for to_y, to_x in linked or ([(y, x)] if alone else []):
            ends = [(x, y), (to_x, to_y)] if linked else [(x, y)]
            strokes.append([[round(float(px) * PIXEL_UNITS) for px, _ in ends],
                            [round(float(py) * PIXEL_UNITS) for _, py in ends]])
    return strokes


def halves(name: str) -> tuple[np.ndarray, np.ndarray]:
    """A ../shared file's rows: the first half, where labels come from, and the second, which nobody labels."""
    rows = np.load(SHARED_DRAWINGS / category_file(name))
    return rows[:len(rows) // 2], rows[len(rows) // 2:]


def label(url: str, token: str, drawings: list, name: str) -> None:
    """POST each drawing to /api/drawings with the label `name`, and the server's labelling `token`."""
    with httpx.Client(base_url=url, timeout=60, headers={"Authorization": f"Bearer {token}"}) as client:
        for drawing in drawings:
            response = client.post("/api/drawings", json={"drawing": drawing, "label": name})
            response.raise_for_status()


def unlabelled_figures(model: OnnxModel, tractors: np.ndarray, non_vehicles: np.ndarray) -> dict:
    """Tractor recall and the false-car rate on the halves nobody labelled."""
    return {"tractor_recall": float(np.mean(model.predict_proba(tractors) >= model.threshold)),
            "unseen_false_car": float(np.mean(model.predict_proba(non_vehicles) >= model.threshold))}


def set_params(project: Path, **values) -> None:
    params = yaml.safe_load((project / "params.yaml").read_text())
    (project / "params.yaml").write_text(yaml.safe_dump({**params, **values}, sort_keys=False))


def back_to(project: Path, commit: str) -> None:
    """The project as committed at `commit`, its outputs too, and no labels."""
    run(project, "git", "reset", "-q", "--hard", commit)
    run(project, "dvc", "checkout", "--force")
    shutil.rmtree(project / ".dvc" / "cache" / "runs", ignore_errors=True)  # every stage runs for real
    (project / COLLECTED_FILE).unlink(missing_ok=True)


def seconds_of_adapt(output: str) -> float | None:
    found = re.search(r"^adapt: done in ([0-9.]+) s$", output, re.MULTILINE)
    return float(found[1]) if found else None


def loop(project: Path, count: int, pools: dict, held_out: dict) -> dict:
    """From the project as it is: label `count` tractors and as many called-car non-vehicles, then `dvc repro`."""
    with serve_process(project / ONNX_MODEL_FILE, "--collect", str(project / COLLECTED_FILE),
                       cwd=project) as (process, url):
        token = printed_token(process)
        label(url, token, pools["tractor"][:count], "car")
        label(url, token, pools["called_car"][:count], "not_car")
    start = time.perf_counter()
    output = run(project, "dvc", "repro")
    seconds = time.perf_counter() - start
    metrics = json.loads((project / METRICS_FILE).read_text())
    figures = unlabelled_figures(OnnxModel(project / ONNX_MODEL_FILE), held_out["tractor"], held_out["non_vehicle"])
    return {"count": count, "labelled_not_car": min(count, len(pools["called_car"])), **figures,
            "accuracy": metrics["accuracy"], "collected_accuracy": metrics.get("collected_accuracy"),
            "collected_car_recall": metrics.get("collected_car_recall"),
            "collected_not_car_accuracy": metrics.get("collected_not_car_accuracy"),
            "repro_s": seconds, "adapt_s": seconds_of_adapt(output), "stages_ran": stages_ran(output)}


def figure(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def markdown(report: dict) -> str:
    lines = [f"Params: {report['settings'] or 'defaults'}. Full `dvc repro` {report['full_repro_s']:.1f} s. "
             f"{report['held_out']['tractor']} tractors and {report['held_out']['non_vehicle']} non-vehicles nobody "
             f"labelled.", "",
             "| seed | N tractors (+ not car) | tractor recall | unseen false car | test accuracy | collected car recall "
             "| collected not-car accuracy | adapt s | `dvc repro` s | stages |", "|---|---|---|---|---|---|---|---|---|---|"]
    for seed, before in report["before"].items():
        lines.append(f"| {seed} | 0 (before) | {figure(before['tractor_recall'])} | "
                     f"{figure(before['unseen_false_car'])} | {figure(before['accuracy'])} | | | | | |")
        for row in (row for row in report["runs"] if row["seed"] == int(seed)):
            lines.append(f"| {seed} | {row['count']} (+{row['labelled_not_car']}) | {figure(row['tractor_recall'])} | "
                         f"{figure(row['unseen_false_car'])} | {figure(row['accuracy'])} | "
                         f"{figure(row['collected_car_recall'])} | {figure(row['collected_not_car_accuracy'])} | "
                         f"{row['adapt_s'] or 0:.1f} | {row['repro_s']:.1f} | {', '.join(row['stages_ran'])} |")
    lines += ["", "Mean over seeds:", "", "| N | tractor recall | unseen false car | test accuracy | adapt s |",
              "|---|---|---|---|---|"]
    for count in sorted({row["count"] for row in report["runs"]}):
        rows = [row for row in report["runs"] if row["count"] == count]
        lines.append(f"| {count} | " + " | ".join(figure(statistics.mean(row[key] for row in rows))
                                                  for key in ("tractor_recall", "unseen_false_car", "accuracy"))
                     + f" | {statistics.mean(row['adapt_s'] or 0 for row in rows):.1f} |")
    befores = list(report["before"].values())
    lines.append("| before | " + " | ".join(figure(statistics.mean(row[key] for row in befores))
                                            for key in ("tractor_recall", "unseen_false_car", "accuracy")) + " | |")
    if report.get("retrain_s"):
        lines += ["", f"train with the last 5 blocks trained from scratch (5 epochs): {report['retrain_s']:.1f} s"]
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--counts", nargs="+", type=int, default=[25, 50, 100, 200])
    parser.add_argument("--seeds", nargs="+", type=int, default=[42, 1, 2])
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="params on top of the defaults")
    parser.add_argument("--retrain", action="store_true", help="also time train with 5 blocks trained from scratch")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "reports")
    args = parser.parse_args()
    skipped = missing_from_shared(categories=["car", "tractor", *UNSEEN_NOT_CAR])
    if skipped:
        print(skipped)
        return 0
    settings = dict((key, yaml.safe_load(value)) for key, _, value in (item.partition("=") for item in args.set))
    tractor_pool, tractors = halves("tractor")
    non_vehicle_pool, non_vehicles = map(np.concatenate, zip(*map(halves, UNSEEN_NOT_CAR)))
    server = serve(SHARED_DRAWINGS)
    try:
        with tempfile.TemporaryDirectory(prefix="bench-collect-") as directory:
            project = Path(directory)
            make_project(project, base_url=server.url, weights=str(SHARED_WEIGHTS), **COLLECT_PARAMS, **settings)
            start = time.perf_counter()
            run(project, "dvc", "repro")
            report = {"settings": args.set, "full_repro_s": time.perf_counter() - start, "before": {}, "runs": [],
                      "held_out": {"tractor": len(tractors), "non_vehicle": len(non_vehicles)}}
            commit(project, "the model trained with car as the only car kind")
            base = run(project, "git", "rev-parse", "HEAD").strip()
            held_out = {"tractor": tractors, "non_vehicle": non_vehicles}
            for seed in args.seeds:
                back_to(project, base)
                set_params(project, seed=seed)
                run(project, "dvc", "repro")
                run(project, "git", "add", "-A")
                run(project, "git", "commit", "-q", "--allow-empty", "-m", f"seed {seed}")
                seeded = run(project, "git", "rev-parse", "HEAD").strip()
                model = OnnxModel(project / ONNX_MODEL_FILE)
                accuracy = json.loads((project / METRICS_FILE).read_text())["accuracy"]
                report["before"][seed] = {**unlabelled_figures(model, tractors, non_vehicles), "accuracy": accuracy}
                strokes = [bitmap_strokes(bitmap) for bitmap in non_vehicle_pool]
                rendered = np.stack([strokes_to_bitmap(drawing) for drawing in strokes]).reshape(len(strokes), -1)
                called_car = model.predict_proba(rendered) >= model.threshold  # what the server would call car
                pools = {"tractor": [bitmap_strokes(bitmap) for bitmap in tractor_pool[:max(args.counts)]],
                         "called_car": [drawing for drawing, car in zip(strokes, called_car) if car]}
                print(f"seed {seed}: before {report['before'][seed]}; {len(pools['called_car'])} of {len(strokes)} "
                      f"pool non-vehicles called car", flush=True)
                for count in args.counts:
                    back_to(project, seeded)
                    report["runs"].append({"seed": seed, **loop(project, count, pools, held_out)})
                    print(json.dumps(report["runs"][-1]), flush=True)
            if args.retrain:
                back_to(project, base)
                set_params(project, trainable_blocks=5, epochs=5, lr_schedule="cosine")
                run(project, "dvc", "repro", "featurize")
                start = time.perf_counter()
                run(project, "dvc", "repro", "--single-item", "train")
                report["retrain_s"] = time.perf_counter() - start
    finally:
        server.shutdown()
        server.server_close()
    name = "-".join(args.set) or "default"
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"collect-{name}.json").write_text(json.dumps(report, indent=2) + "\n")
    (args.out / f"collect-{name}.md").write_text(markdown(report))
    print(markdown(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
