"""Recipes on drawings of categories never trained on, with the real Quick, Draw! files in ../shared.

    python -m bench.unseen [--recipe NAME ...] [--seeds 1 2 3] [--out bench/reports]

Runs the real `dvc` pipeline on a copy of the project in a temporary git + DVC repo, the files served over
HTTP from ../shared/quickdraw/numpy_bitmap: car is the only car category trained on, tractor an unseen car
category, UNSEEN_NOT_CAR unseen not-car categories, and `not_car: all` takes the other 35 files (the
mirror lacks the other 298 names: they are skipped), or, in the `default_listed_not_car` recipe, the 18 of
params.yaml's own not-car list that ../shared has. For each recipe and training seed it runs
`dvc exp run -S ...` and reports test accuracy, unseen tractor recall, the unseen false-car rate, the unseen
ROC AUC, Brier score, ECE and the experiment's wall time. Writes unseen.md and unseen.json to --out. Nothing here
asserts on timings: on a shared machine they are noisy.
"""

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

from bench.project import (REPO_ROOT, SHARED_DRAWINGS, SHARED_WEIGHTS, commit, make_project, missing_from_shared,
                           run)
from carsketch.mirror import serve
from carsketch.paths import METRICS_FILE, UNSEEN_PER_CATEGORY_FILE

# Non-vehicles, chosen before any run: shape look-alikes of what the model missed outside ../shared (a box on
# legs like a couch or a computer: piano; two joined circles like binoculars: headphones, scissors; a dome
# like a hat: mushroom; a low body on a line: snail; wheel-like rounds: donut, cookie) and plainer others.
UNSEEN_NOT_CAR = ["piano", "headphones", "mushroom", "snail", "donut", "cookie", "scissors", "flip flops", "pants",
                  "ladder"]
PARAMS = {"categories": {"car": ["car"], "not_car": "all"},
          "unseen": {"car": ["tractor"], "not_car": UNSEEN_NOT_CAR},
          "unseen_drawings": 300, "max_per_category": 1500, "split_seed": 42}
# The not-car categories of params.yaml's own list that ../shared has: broader negatives (all) against these.
LISTED_NOT_CAR = ["apple", "tree", "cloud", "bicycle", "train", "airplane", "helicopter", "sailboat", "house", "cat",
                  "dog", "fish", "bird", "flower", "clock", "book", "banana", "umbrella"]
RECIPES = {
    "default": [],
    "default_listed_not_car": [f"categories={{car: [car], not_car: [{', '.join(LISTED_NOT_CAR)}]}}"],
    "trained5": ["trainable_blocks=5", "epochs=10", "lr_schedule=cosine"],
    "trained5_5epochs": ["trainable_blocks=5", "epochs=5", "lr_schedule=cosine"],
    "stretched": ["augment_copies=3"],
    "trained5_stretched": ["trainable_blocks=5", "epochs=5", "lr_schedule=cosine", "augment_copies=3"],
    "int8": ["precision=int8"],
}
FIGURES = ("accuracy", "unseen_car_recall", "unseen_false_car_rate", "unseen_roc_auc", "brier", "ece")


def run_recipe(project: Path, settings: list[str], seed: int) -> dict:
    """`dvc exp run` with the recipe's settings and a training seed, from the committed params; its figures and wall
    time."""
    run(project, "git", "checkout", "--", "params.yaml")
    start = time.perf_counter()
    run(project, "dvc", "exp", "run", *[arg for setting in [*settings, f"seed={seed}"] for arg in ("-S", setting)])
    wall = time.perf_counter() - start
    metrics = json.loads((project / METRICS_FILE).read_text())
    return {"seed": seed, "wall_s": wall, **{key: metrics.get(key) for key in FIGURES},
            "unseen": json.loads((project / UNSEEN_PER_CATEGORY_FILE).read_text())}


def markdown(results: dict[str, list[dict]]) -> str:
    lines = ["| recipe | command | test accuracy | tractor recall | unseen false car | unseen AUC | Brier | ECE "
             "| exp run s |", "|---|---|---|---|---|---|---|---|---|"]
    for name, rows in results.items():
        mean = {key: statistics.mean(row[key] for row in rows) for key in (*FIGURES, "wall_s")}
        command = " ".join(f"-S {setting}" for setting in RECIPES[name]) or "(params.yaml)"
        lines.append(f"| {name} ({len(rows)} seed{'s' if len(rows) > 1 else ''}) | `{command}` | "
                     + " | ".join(f"{mean[key]:.3f}" for key in FIGURES) + f" | {mean['wall_s']:.0f} |")
    lines += ["", "Unseen not-car drawings called car, by category (mean over seeds):", ""]
    for name, rows in results.items():
        shares = {category: statistics.mean(row["unseen"][category]["predicted_car_share"] for row in rows)
                  for category, entry in rows[0]["unseen"].items() if entry["label"] == "not_car"}
        lines.append(f"- {name}: " + ", ".join(f"{c} {s:.2f}" for c, s in sorted(shares.items(), key=lambda i: -i[1])))
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", nargs="+", choices=list(RECIPES), default=list(RECIPES))
    parser.add_argument("--seeds", nargs="+", type=int, default=[1, 2, 3])
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "bench" / "reports")
    args = parser.parse_args()
    skipped = missing_from_shared(categories=[*PARAMS["categories"]["car"], *PARAMS["unseen"]["car"], *UNSEEN_NOT_CAR,
                                               *LISTED_NOT_CAR])
    if skipped:
        print(skipped)
        return 0
    server = serve(SHARED_DRAWINGS)
    results: dict[str, list[dict]] = {}
    try:
        with tempfile.TemporaryDirectory(prefix="bench-unseen-") as directory:
            project = Path(directory)
            make_project(project, base_url=server.url, weights=str(SHARED_WEIGHTS), **PARAMS)
            run(project, "dvc", "repro")
            commit(project, "default run")
            for name in args.recipe:
                for seed in args.seeds:
                    results.setdefault(name, []).append(run_recipe(project, RECIPES[name], seed))
                    print(f"{name} seed {seed}: " + ", ".join(f"{key} {results[name][-1][key]:.4f}"
                                                             for key in (*FIGURES, "wall_s")), flush=True)
    finally:
        server.shutdown()
        server.server_close()
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "unseen.json").write_text(json.dumps({"params": PARAMS, "recipes": RECIPES, "results": results},
                                                     indent=2) + "\n")
    report = markdown(results)
    (args.out / "unseen.md").write_text(report)
    print(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
