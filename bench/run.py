"""Benchmark the pipeline under real `dvc` with the Quick, Draw! files and weights in ../shared.

    python -m bench.run [--quick] [--set key=value ...] [--shared PATH] [--out DIR]

Prints a markdown report and writes report.md and report.json to --out. It reports figures and asserts
none; bench/README.md says how each is measured and what earlier runs gave.
"""

import argparse
import datetime
import importlib.metadata
import json
import os
import platform
import resource
import shutil
import statistics
import sys
import tempfile
import timeit
from pathlib import Path
from typing import Iterable

import numpy as np
import yaml

from bench.project import (DRAWINGS_IN_SHARED, REPO_ROOT, SHARED_CAR_CATEGORIES, SHARED_DIR, WEIGHTS_IN_SHARED, commit,
                           make_project, missing_from_shared, run, run_measured, stages_ran)
from carsketch.errors import run_main
from carsketch.mirror import serve
from carsketch.params import FEATURIZE_ENGINES, load_params
from carsketch.paths import BACKBONE_FILE, DOWNLOAD_REPORT, METRICS_FILE, PROCESSED_DIR
from carsketch.quickdraw import BITMAP_PIXELS, category_file

BENCH_PARAMS = {"max_per_category": 1500}
# --quick: val and test need drawings of all 47 categories (100 a category is too few); at 32 px the shared
# weights' features are all zero (accuracy 0.5), at 64 px they tell car from not car.
QUICK_PARAMS = {"max_per_category": 200, "image_size": 64}
EXPERIMENTS = ("epochs=5", "seed=7")
IMPORTS = ("torch", "stages.train", "stages.adapt", "stages.evaluate")
# What an experiment re-runs: training, the labels' snapshot (every run: always_changed) and what it feeds
EXPERIMENT_STAGES = ("train", "snapshot", "adapt", "evaluate")
RATIO_TARGET = 5  # issue 23: an experiment takes at most 5x as long as `import torch`
TEST_METRICS = ("accuracy", "loss", "roc_auc")
FEATURIZE_DRAWINGS = 1024


def measure(project: Path, *command: str) -> dict:
    """Run `command` in `project` (bench.project.run_measured); its wall seconds, peak RSS and the stages DVC ran.

    This process imports nothing heavy until the last command has run, so that the peak RSS is the command's.
    """
    measured = run_measured(project, *command)
    if measured.exit_status:
        sys.exit(f"error: `{' '.join(command)}` failed ({measured.exit_status}):\n{measured.output}")
    print(f"bench: {' '.join(command)}: {measured.seconds:.1f} s, peak {measured.peak_rss_mib:.0f} MiB", file=sys.stderr)
    return {"command": " ".join(command), "seconds": measured.seconds, "peak_rss_mib": measured.peak_rss_mib,
            "stages_ran": stages_ran(measured.output)}


def import_seconds(project: Path, repeats: int) -> dict[str, float]:
    """Median seconds of `python -c "import <module>"` per module, taking turns so that load hits all alike."""
    seconds: dict[str, list[float]] = {module: [] for module in IMPORTS}
    for _ in range(repeats):
        for module in IMPORTS:
            seconds[module].append(measure(project, "python", "-c", f"import {module}")["seconds"])
    return {module: statistics.median(values) for module, values in seconds.items()}


def quality(project: Path) -> dict[str, float]:
    metrics = json.loads((project / METRICS_FILE).read_text())
    return {name: metrics[name] for name in TEST_METRICS}


def bench_pipeline(project: Path, repeats: int) -> dict:
    """Each stage in turn, a full forced repro, import times, then the experiments on the committed run."""
    stages = list(yaml.safe_load((project / "dvc.yaml").read_text())["stages"])
    report = {"stages": [measure(project, "dvc", "repro", "--single-item", stage) for stage in stages],
              "full_repro": measure(project, "dvc", "repro", "--force"), "metrics": {"full repro": quality(project)},
              "imports": import_seconds(project, repeats), "experiments": []}
    commit(project, "full run")
    for setting in EXPERIMENTS:
        runs = []
        for _ in range(repeats):  # each from the committed run
            restore_committed_run(project)
            runs.append(measure(project, "dvc", "exp", "run", "-S", setting))
        experiment = {**runs[-1], "seconds": statistics.median(row["seconds"] for row in runs),
                      "peak_rss_mib": max(row["peak_rss_mib"] for row in runs),
                      "all_seconds": [row["seconds"] for row in runs],
                      "stages_ran": list(dict.fromkeys(stage for row in runs for stage in row["stages_ran"]))}
        experiment["torch_import_ratio"] = experiment["seconds"] / report["imports"]["torch"]
        report["experiments"].append(experiment)
        report["metrics"][f"-S {setting}"] = quality(project)
    return report


def restore_committed_run(project: Path) -> None:
    """The workspace as committed after the full run, and no run cache: the next experiment re-runs its stages
    as a user's first one does, instead of restoring an earlier repeat's outputs."""
    run(project, "git", "checkout", "--", ".")
    run(project, "dvc", "checkout", "--force")
    shutil.rmtree(project / ".dvc" / "cache" / "runs", ignore_errors=True)


def featurize_throughput(project: Path, image_size: int, trainable_blocks: int, repeats: int) -> dict:
    """Drawings per second of each featurize engine on the project's test drawings, engine set-up not counted."""
    from carsketch.features import feature_function  # torch: imported only now, see measure()
    import torch

    from carsketch.batches import map_batches
    from carsketch.model import build_classifier

    classifier = build_classifier(project / BACKBONE_FILE, trainable_blocks)
    bitmaps = np.load(project / PROCESSED_DIR / "test" / "x.npy")[:FEATURIZE_DRAWINGS]
    rates = {}
    for engine in FEATURIZE_ENGINES:
        function = feature_function(classifier, image_size, engine)
        function(bitmaps[:64])  # warm-up
        seconds = timeit.repeat(lambda: torch.cat(map_batches(function, bitmaps)), number=1, repeat=repeats)
        rates[engine] = len(bitmaps) / statistics.median(seconds)
    return {"image_size": image_size, "drawings": len(bitmaps), "drawings_per_s": rates}


def download_volume(reports: dict[str, dict], drawings_dir: Path) -> dict:
    """Bytes fetched against the least a download can fetch: each category's rows x 784 plus its .npy header.

    `reports` are the download stages' per-category reports, by category."""
    needed = sum(entry["rows"] * BITMAP_PIXELS + np.load(drawings_dir / category_file(name), mmap_mode="r").offset
                 for name, entry in reports.items())
    fetched = sum(entry["bytes_fetched"] for entry in reports.values())
    return {"bytes_fetched": fetched, "bytes_needed": needed, "ratio_to_needed": fetched / needed,
            "full_size_bytes": sum(entry["full_size_bytes"] for entry in reports.values())}


def table(headers: Iterable[str], rows: Iterable[Iterable]) -> list[str]:
    headers = list(headers)
    return ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers),
            *("| " + " | ".join(str(cell) for cell in row) + " |" for row in rows)]


def render_markdown(report: dict) -> str:
    """The report for people: one table of commands, the ratios and rates, and the test metrics."""
    machine, settings, imports = report["machine"], report["settings"], report["imports"]
    categories = settings["params"]["categories"]
    featurize, download, experiments = report["featurize"], report["download"], report["experiments"]
    runs = [*report["stages"], report["full_repro"], *experiments]
    only_training = all(row["stages_ran"] == list(EXPERIMENT_STAGES) for row in experiments)
    meets = all(row["torch_import_ratio"] <= RATIO_TARGET for row in experiments)
    return "\n".join([
        "# Car Sketch Classifier benchmark", "",
        f"{machine['date']}, {machine['cpus']} CPUs, load {machine['load_start']:.1f} at the start and "
        f"{machine['load_end']:.1f} at the end; " + ", ".join(f"{name} {version}" for name, version
                                                         in machine["versions"].items()) + ".",
        f"{sum(map(len, categories.values()))} categories (car: {', '.join(categories['car'])}); "
        + ", ".join(f"{key} {settings['params'][key]}" for key in ("max_per_category", "image_size", "epochs"))
        + f"; overrides: {', '.join(f'{k}={v}' for k, v in settings['overrides'].items()) or 'none'}"
        + (" (--quick)" if settings["quick"] else "") + ".", "",
        *table(("command", "wall s", "peak RSS MiB", "stages ran"),
               ((f"`{row['command']}`", f"{row['seconds']:.1f}", f"{row['peak_rss_mib']:.0f}",
                 ", ".join(row["stages_ran"]) or "-") for row in runs)), "",
        f"- import (median of {settings['repeats']}): " + ", ".join(f"`{module}` {seconds:.2f} s"
                                                                   for module, seconds in imports.items()),
        f"- experiment / `import torch`, median of {settings['repeats']}: "
        + ", ".join(f"`{row['command']}` **{row['torch_import_ratio']:.2f}x** "
                    f"({', '.join(f'{seconds:.1f}' for seconds in row['all_seconds'])} s)" for row in experiments)
        + f" ({'meets' if meets else 'misses'} the target of <= {RATIO_TARGET}x)",
        f"- the experiments re-ran only {', '.join(EXPERIMENT_STAGES)}: {'yes' if only_training else '**NO**'}",
        f"- featurize at {featurize['image_size']} px, {featurize['drawings']} drawings: "
        + ", ".join(f"{engine} {rate:.0f} drawings/s" for engine, rate in featurize["drawings_per_s"].items()),
        f"- download: {download['bytes_fetched']:,} bytes fetched; rows x {BITMAP_PIXELS} + headers "
        f"{download['bytes_needed']:,}: ratio **{download['ratio_to_needed']:.4f}**; "
        f"{download['bytes_fetched'] / download['full_size_bytes']:.0%} of the files' full size",
        f"- this process's own peak RSS before the commands: {machine['bench_rss_mib']:.0f} MiB "
        "(no command can report less)", "",
        *table(("test metric", *report["metrics"]),
               ((name, *(f"{values[name]:.4f}" for values in report["metrics"].values())) for name in TEST_METRICS)),
    ]) + "\n"


def override(assignment: str) -> tuple[str, object]:
    """`key=value` as (key, YAML value); a key params.yaml lacks is an error, as no stage would read it."""
    key, equals, value = assignment.partition("=")
    if not equals or key not in yaml.safe_load((REPO_ROOT / "params.yaml").read_text()):
        raise argparse.ArgumentTypeError(f"{assignment!r}: expected key=value with a key of params.yaml")
    return key, yaml.safe_load(value)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help=f"a tiny run: {QUICK_PARAMS}, one repeat")
    parser.add_argument("--set", type=override, action="append", default=[], metavar="KEY=VALUE",
                        help="a params.yaml value (YAML) for the benchmarked project; repeatable")
    parser.add_argument("--shared", type=Path, default=SHARED_DIR,
                        help=f"folder with {DRAWINGS_IN_SHARED}/ and {WEIGHTS_IN_SHARED} (default: ../shared)")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "bench" / "reports", help="where the report goes")
    return parser.parse_args(argv)


def machine_facts() -> dict:
    """What the timings depend on; the load average says how much other work shared the CPUs."""
    return {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "cpus": os.cpu_count(), "load_start": os.getloadavg()[0],
            "versions": {"python": platform.python_version(),
                         **{name: importlib.metadata.version(name) for name in ("torch", "onnxruntime", "dvc")}}}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    drawings_dir, weights = args.shared / DRAWINGS_IN_SHARED, args.shared / WEIGHTS_IN_SHARED
    skipped = missing_from_shared(args.shared)
    if skipped:
        print(skipped)
        return 0
    repeats = 1 if args.quick else 3
    not_car = sorted(path.stem for path in drawings_dir.glob(category_file("*"))
                     if path.stem not in SHARED_CAR_CATEGORIES)
    machine = machine_facts()
    server = serve(drawings_dir)
    try:
        with tempfile.TemporaryDirectory(prefix="car-sketch-bench-") as directory:
            project = Path(directory)
            written = make_project(project, **{
                "base_url": server.url, "weights": str(weights), **BENCH_PARAMS,
                "categories": {"car": list(SHARED_CAR_CATEGORIES), "not_car": not_car},
                **(QUICK_PARAMS if args.quick else {}), **dict(args.set)})
            params = load_params(project / "params.yaml")  # a bad --set value stops here, before any work
            machine["bench_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            report = bench_pipeline(project, repeats)
            reports = json.loads((project / DOWNLOAD_REPORT).read_text())["categories"]
            report["download"] = download_volume(reports, drawings_dir)
            report["featurize"] = featurize_throughput(project, params.image_size, params.trainable_blocks, repeats)
    finally:
        server.shutdown()
        server.server_close()
    report["machine"] = {**machine, "load_end": os.getloadavg()[0]}
    report["settings"] = {"quick": args.quick, "repeats": repeats, "overrides": dict(args.set), "params": written}
    markdown = render_markdown(report)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    (args.out / "report.md").write_text(markdown)
    print(markdown)
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
