"""The labelling loop, measured with the real Quick, Draw! files in ../shared: label, `dvc repro`, and how the model
then does on drawings nobody labelled.

    python -m bench.collect [--recipe default] [--counts 25 50 100 200] [--weights 10] [--seeds 42]
                            [--out bench/reports]

Car is the only car kind trained on (bench.unseen's set-up: `not_car: all` against car, tractor and ten
non-vehicles never trained on), with one of bench.unseen's recipes. After a full `dvc repro`, for each weight, count
N and training seed it goes back to that run,
starts the real `carsketch serve` on its model and, through POST /api/drawings, labels N tractors as car and N
unseen non-vehicles that the model calls car as not_car, all from the first half of each file; then times the
`dvc repro` that follows. Tractor recall and the unseen false-car rate are measured on the second half of each file,
drawings nobody labelled, with the model's own threshold. ../shared has bitmaps, not strokes: each is traced into
short strokes between neighbouring ridge pixels (bitmap_strokes), which the server rasterises back much as it was.
Writes collect-RECIPE.md and .json to --out; it asserts nothing.
"""

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
import yaml

from bench.project import SHARED_DRAWINGS, SHARED_WEIGHTS, commit, make_project, missing_from_shared, run, stages_ran
from bench.unseen import PARAMS, RECIPES, UNSEEN_NOT_CAR
from carsketch.inference.drawings import strokes_to_bitmap
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


def recipe_params(name: str) -> dict:
    """A bench.unseen recipe's `key=value` settings as params."""
    return dict((key, yaml.safe_load(value)) for key, _, value in (setting.partition("=") for setting in RECIPES[name]))


def set_params(project: Path, **values) -> None:
    params = yaml.safe_load((project / "params.yaml").read_text())
    (project / "params.yaml").write_text(yaml.safe_dump({**params, **values}, sort_keys=False))


def loop(project: Path, count: int, weight: float, seed: int, pools: dict, held_out: dict) -> dict:
    """From the committed run: label `count` tractors and as many called-car non-vehicles, then `dvc repro`."""
    run(project, "git", "checkout", "--", ".")
    run(project, "dvc", "checkout", "--force")
    shutil.rmtree(project / ".dvc" / "cache" / "runs", ignore_errors=True)
    set_params(project, collected_weight=weight, seed=seed)
    with serve_process(project / ONNX_MODEL_FILE, "--collect", str(project / COLLECTED_FILE)) as (process, url):
        token = printed_token(process)
        label(url, token, pools["tractor"][:count], "car")
        label(url, token, pools["called_car"][:count], "not_car")
    start = time.perf_counter()
    output = run(project, "dvc", "repro")
    seconds = time.perf_counter() - start
    metrics = json.loads((project / METRICS_FILE).read_text())
    figures = unlabelled_figures(OnnxModel(project / ONNX_MODEL_FILE), held_out["tractor"], held_out["non_vehicle"])
    return {"count": count, "weight": weight, "seed": seed, "labelled_not_car": min(count, len(pools["called_car"])), **figures,
            "accuracy": metrics["accuracy"], "collected_accuracy": metrics.get("collected_accuracy"),
            "retrain_s": seconds, "stages_ran": stages_ran(output)}


def markdown(report: dict) -> str:
    lines = [f"Recipe {report['recipe']}. Full `dvc repro` {report['full_repro_s']:.1f} s; before any label: tractor recall "
             f"{report['before']['tractor_recall']:.3f}, unseen false car {report['before']['unseen_false_car']:.3f} "
             f"({report['held_out']['tractor']} tractors and {report['held_out']['non_vehicle']} non-vehicles nobody "
             f"labelled).", "",
             "| N | weight | seed | tractor recall | unseen false car | test accuracy | collected accuracy | re-train s "
             "| re-train / full | stages |", "|---|---|---|---|---|---|---|---|---|---|"]
    for row in report["runs"]:
        lines.append(f"| {row['count']} (+{row['labelled_not_car']} not car) | {row['weight']:g} | {row['seed']} | "
                     f"{row['tractor_recall']:.3f} | {row['unseen_false_car']:.3f} | {row['accuracy']:.3f} | "
                     f"{row['collected_accuracy'] if row['collected_accuracy'] is None else round(row['collected_accuracy'], 3)} | "
                     f"{row['retrain_s']:.1f} | {row['retrain_s'] / report['full_repro_s']:.2f} | "
                     f"{', '.join(row['stages_ran'])} |")
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", choices=list(RECIPES), default="default")
    parser.add_argument("--counts", nargs="+", type=int, default=[25, 50, 100, 200])
    parser.add_argument("--weights", nargs="+", type=float, default=[10])
    parser.add_argument("--seeds", nargs="+", type=int, default=[42])
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "reports")
    args = parser.parse_args()
    skipped = missing_from_shared(categories=["car", "tractor", *UNSEEN_NOT_CAR])
    if skipped:
        print(skipped)
        return 0
    tractor_pool, tractors = halves("tractor")
    non_vehicle_pool, non_vehicles = map(np.concatenate, zip(*map(halves, UNSEEN_NOT_CAR)))
    server = serve(SHARED_DRAWINGS)
    try:
        with tempfile.TemporaryDirectory(prefix="bench-collect-") as directory:
            project = Path(directory)
            params = {**COLLECT_PARAMS, **recipe_params(args.recipe)}
            make_project(project, base_url=server.url, weights=str(SHARED_WEIGHTS), **params)
            start = time.perf_counter()
            run(project, "dvc", "repro")
            report = {"recipe": args.recipe, "full_repro_s": time.perf_counter() - start, "params": params,
                      "held_out": {"tractor": len(tractors), "non_vehicle": len(non_vehicles)}, "runs": []}
            commit(project, "the model trained with car as the only car kind")
            model = OnnxModel(project / ONNX_MODEL_FILE)
            report["before"] = unlabelled_figures(model, tractors, non_vehicles)
            strokes = [bitmap_strokes(bitmap) for bitmap in non_vehicle_pool]
            rendered = np.stack([strokes_to_bitmap(drawing) for drawing in strokes]).reshape(len(strokes), -1)
            called_car = model.predict_proba(rendered) >= model.threshold  # what the server would call car
            pools = {"tractor": [bitmap_strokes(bitmap) for bitmap in tractor_pool[:max(args.counts)]],
                     "called_car": [drawing for drawing, car in zip(strokes, called_car) if car]}
            print(f"full dvc repro {report['full_repro_s']:.1f} s; before: {report['before']}; "
                  f"{len(pools['called_car'])} of {len(strokes)} pool non-vehicles called car", flush=True)
            held_out = {"tractor": tractors, "non_vehicle": non_vehicles}
            for weight in args.weights:
                for count in args.counts:
                    for seed in args.seeds:
                        report["runs"].append(loop(project, count, weight, seed, pools, held_out))
                        print(json.dumps(report["runs"][-1]), flush=True)
    finally:
        server.shutdown()
        server.server_close()
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"collect-{args.recipe}.json").write_text(json.dumps(report, indent=2) + "\n")
    (args.out / f"collect-{args.recipe}.md").write_text(markdown(report))
    print(markdown(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
