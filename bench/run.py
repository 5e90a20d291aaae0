"""Benchmark the pipeline on this machine with the real Quick, Draw! files in ../shared.

    python bench/run.py [--quick] [--repeats N] [--out bench/reports] [--set key=value ...]

Runs the real `dvc` pipeline on a copy of the project in a temporary git + DVC repo, its data served
over HTTP from ../shared/quickdraw/numpy_bitmap by the project's Range-capable mirror, and measures:
each stage's wall time and peak memory, a full `dvc repro --force`, `dvc exp run -S epochs=5`
against it, featurize throughput per engine and image size, the seed's training loop against
featurize-once + fit, the bytes downloaded, and the model's test metrics. Writes report.md and
report.json to --out and prints the markdown. Nothing here asserts on timings: it reports them.
"""

import argparse
import contextlib
import copy
import datetime
import importlib.metadata
import io
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import NamedTuple

import numpy as np
import onnxruntime
import torch
import yaml
from torch import nn

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:  # run as `python bench/run.py`, the project's modules are one level up
    sys.path.insert(0, str(REPO_ROOT))

from stages.download import ROW_BYTES, parse_npy_header  # noqa: E402
from stages.featurize import ENGINES, feature_function  # noqa: E402
from carsketch.files import load_npz  # noqa: E402
from carsketch.mirror import serve  # noqa: E402
from carsketch.model import INFERENCE_BATCH, batched, build_classifier  # noqa: E402
from carsketch.paths import DOWNLOAD_REPORT, METRICS_FILE, PER_CATEGORY_FILE, PROCESSED_DIR, TRAIN_METRICS  # noqa: E402
from carsketch.sketch import to_model_input  # noqa: E402
from stages.train import fit  # noqa: E402

SHARED_DIR = REPO_ROOT.parent / "shared"
DRAWINGS_DIR = SHARED_DIR / "quickdraw" / "numpy_bitmap"
WEIGHTS_FILE = SHARED_DIR / "weights" / "mobilenet_v2_imagenet.pth"
PROJECT_FILES = ("dvc.yaml", "params.yaml", ".gitignore", "stages")
STAGES = ("download", "preprocess", "featurize", "train", "evaluate")
CAR_CATEGORIES = ("car", "tractor")
MAX_PER_CATEGORY = 1500
EXPERIMENT = ("epochs", 5)
EXPERIMENT_STAGES = ["train", "evaluate"]
EXPERIMENT_RATIO_TARGET = 0.05
DOWNLOAD_RATIO_TARGET = 1.05
REFERENCE_ENGINE = "onnxruntime"  # ONNX Runtime as a peer: the other engines are reported relative to it
# Environment variables that change how torch's threads behave; a busy machine makes them matter a lot.
THREAD_ENV = ("OMP_NUM_THREADS", "OMP_WAIT_POLICY", "MKL_NUM_THREADS")
TEST_METRICS = ("accuracy", "loss", "roc_auc", "precision", "recall", "f1")
COMMAND_ENV = {"GIT_AUTHOR_NAME": "bench", "GIT_AUTHOR_EMAIL": "bench@example.com", "GIT_COMMITTER_NAME": "bench",
               "GIT_COMMITTER_EMAIL": "bench@example.com", "DVC_NO_ANALYTICS": "1",
               # the stages' `python` is this interpreter, whatever PATH says
               "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}


class Settings(NamedTuple):
    image_sizes: tuple
    repeats: int
    drawings: int


FULL = Settings(image_sizes=(64, 96, 128, 224), repeats=3, drawings=512)
QUICK = Settings(image_sizes=(32,), repeats=1, drawings=64)


class Measured(NamedTuple):
    seconds: float
    max_rss_mib: float
    output: str


def say(message):
    print(f"bench: {message}", flush=True)


# --- parameters -------------------------------------------------------------------------------------

def parse_overrides(assignments, params):
    """`key=value` strings -> {key: YAML-parsed value}; a key params.yaml lacks is an error, since the
    stages would silently ignore it and the benchmark would measure the defaults under a wrong label."""
    overrides = {}
    for assignment in assignments:
        key, equals, value = assignment.partition("=")
        if not equals:
            raise ValueError(f"--set {assignment!r}: expected key=value")
        if key not in params:
            raise ValueError(f"--set {assignment!r}: params.yaml has no key {key!r}")
        overrides[key] = yaml.safe_load(value)
    return overrides


def bench_params(base_url, overrides):
    """params.yaml pointed at the real files (every category but the car ones is not-car), then `overrides`."""
    params = yaml.safe_load((REPO_ROOT / "params.yaml").read_text())
    others = sorted(path.stem for path in DRAWINGS_DIR.glob("*.npy") if path.stem not in CAR_CATEGORIES)
    params.update(base_url=base_url, weights=str(WEIGHTS_FILE), max_per_category=MAX_PER_CATEGORY,
                  categories={"car": list(CAR_CATEGORIES), "not_car": others})
    params.update(overrides)
    return params


def missing_inputs():
    """Why the benchmark cannot run here (None when it can): it needs the real data, not generated data."""
    if not WEIGHTS_FILE.is_file():
        return f"no weights file at {WEIGHTS_FILE}"
    missing = [name for name in CAR_CATEGORIES if not (DRAWINGS_DIR / f"{name}.npy").is_file()]
    if missing:
        return f"no {', '.join(missing)} drawings in {DRAWINGS_DIR}"
    return None


# --- running commands -------------------------------------------------------------------------------

# Runs argv[2:] and writes its ru_maxrss (KiB) from os.wait4 to the file argv[1]. A child of the benchmark
# itself would not do: Linux carries a process's peak RSS across exec, so the child would report ours
# (torch loaded: hundreds of MiB) as its own. This helper is small and starts the command afresh.
_PEAK_RSS_HELPER = """
import os, sys
pid = os.posix_spawnp(sys.argv[2], sys.argv[2:], os.environ)
_, status, usage = os.wait4(pid, 0)
with open(sys.argv[1], "w") as out:
    out.write(str(usage.ru_maxrss))
sys.exit(os.waitstatus_to_exitcode(status))
"""


def run_command(project, *command):
    """Run a command in `project` to completion; its wall time, peak memory and output (stdout + stderr).

    Peak memory is ru_maxrss from os.wait4 on the command's process: on Linux the largest resident set
    of it or of any descendant it waited for, i.e. of dvc itself or of the stage process it started.
    """
    if command[0] == "dvc":
        command = (sys.executable, "-m", "dvc", *command[1:])
    with tempfile.TemporaryDirectory() as scratch:
        peak_file = Path(scratch) / "max_rss_kib"
        start = time.perf_counter()
        result = subprocess.run([sys.executable, "-S", "-c", _PEAK_RSS_HELPER, str(peak_file), *command],
                                cwd=project, env={**os.environ, **COMMAND_ENV}, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)
        seconds = time.perf_counter() - start
        if result.returncode:
            sys.exit(f"error: `{' '.join(command)}` failed with exit status {result.returncode}:\n{result.stdout}")
        return Measured(seconds, int(peak_file.read_text()) / 1024, result.stdout)


def stages_ran(dvc_output):
    """The stages DVC says it ran, in order."""
    return re.findall(r"Running stage '([^']+)'", dvc_output)


@contextlib.contextmanager
def mirror(folder):
    """The project's HTTP mirror of `folder` on 127.0.0.1, for the duration of the block."""
    server = serve(folder)
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def make_project(directory, params):
    """The project copied into `directory` as a fresh git + DVC repo with `params`, committed."""
    for name in PROJECT_FILES:
        source = REPO_ROOT / name
        if source.is_dir():
            shutil.copytree(source, directory / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(source, directory / name)
    (directory / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    run_command(directory, "git", "init", "-q")
    run_command(directory, "dvc", "init", "-q")
    commit(directory, "project")


def commit(project, message):
    run_command(project, "git", "add", "-A")
    run_command(project, "git", "commit", "-qm", message)


def read_json(path):
    return json.loads(Path(path).read_text())


def model_metrics(project):
    """The metrics the pipeline wrote: test metrics, the final training loss and the per-category table."""
    test = read_json(project / METRICS_FILE)
    return {"test": {name: test[name] for name in TEST_METRICS},
            "train_loss": read_json(project / TRAIN_METRICS)["train_loss"],
            "per_category": read_json(project / PER_CATEGORY_FILE)}


# --- the pipeline under dvc --------------------------------------------------------------------------

def bench_pipeline(project):
    """Each stage alone, then the full pipeline, then an epochs experiment on top of the committed run."""
    baseline = run_command(project, "dvc", "status")
    report = {"dvc_alone": {"seconds": baseline.seconds, "max_rss_mib": baseline.max_rss_mib}, "stages": {}}
    for stage in STAGES:
        measured = run_command(project, "dvc", "repro", "--single-item", "--force", stage)
        report["stages"][stage] = {"seconds": measured.seconds, "max_rss_mib": measured.max_rss_mib}
        say(f"stage {stage}: {measured.seconds:.1f} s, peak {measured.max_rss_mib:.0f} MiB")
    full = run_command(project, "dvc", "repro", "--force")
    report["full_repro"] = {"seconds": full.seconds, "max_rss_mib": full.max_rss_mib,
                            "stages_ran": stages_ran(full.output)}
    say(f"full dvc repro --force: {full.seconds:.1f} s ({', '.join(report['full_repro']['stages_ran'])})")
    report["metrics_full_repro"] = model_metrics(project)
    commit(project, "full run")
    key, value = EXPERIMENT
    experiment = run_command(project, "dvc", "exp", "run", "-S", f"{key}={value}")
    ran = stages_ran(experiment.output)
    report["experiment"] = {"command": f"dvc exp run -S {key}={value}", "seconds": experiment.seconds,
                            "max_rss_mib": experiment.max_rss_mib,
                            "ratio_to_full_repro": experiment.seconds / full.seconds,
                            "target": EXPERIMENT_RATIO_TARGET, "stages_ran": ran,
                            "only_train_and_evaluate": ran == EXPERIMENT_STAGES}
    report["metrics_after_experiment"] = model_metrics(project)
    say(f"{report['experiment']['command']}: {experiment.seconds:.1f} s "
        f"({report['experiment']['ratio_to_full_repro']:.3f} of the full repro; ran {', '.join(ran) or 'nothing'})")
    return report


# --- download volume ---------------------------------------------------------------------------------

def header_bytes(path):
    """The .npy header's length: the least a Range request for the first rows must fetch besides them."""
    with open(path, "rb") as stream:
        return parse_npy_header(stream, path).data_offset


def download_volume(download_report, drawings_dir):
    """Bytes fetched against the least that could be (rows x 784 + header) and against the whole files."""
    rows = []
    for category, entry in sorted(download_report["categories"].items()):
        needed = entry["rows"] * ROW_BYTES + header_bytes(drawings_dir / f"{category}.npy")
        rows.append({"category": category, "rows": entry["rows"], "bytes_fetched": entry["bytes_fetched"],
                     "bytes_needed": needed, "full_size_bytes": entry["full_size_bytes"]})
    fetched = download_report["bytes_fetched"]
    needed = sum(row["bytes_needed"] for row in rows)
    return {"bytes_fetched": fetched, "bytes_needed": needed, "full_size_bytes": download_report["full_size_bytes"],
            "ratio_to_needed": fetched / needed, "target": DOWNLOAD_RATIO_TARGET,
            "ratio_to_full_size": fetched / download_report["full_size_bytes"], "categories": rows}


# --- in-process timings ------------------------------------------------------------------------------

def timed(function):
    start = time.perf_counter()
    function()
    return time.perf_counter() - start


def interleaved_medians(runs, repeats):
    """Median seconds of each named run over `repeats` rounds after one warm-up round. The runs take
    turns within a round, so that load from others on this shared machine hits all of them alike."""
    for run in runs.values():
        run()
    seconds = {name: [] for name in runs}
    for _ in range(repeats):
        for name, run in runs.items():
            seconds[name].append(timed(run))
    return {name: statistics.median(values) for name, values in seconds.items()}


def featurize_throughput(classifier, bitmaps, image_size, our_engine, repeats):
    """Drawings per second of each featurize engine on the same batches (engine set-up not counted), and
    ours (the configured engine) and torch relative to ONNX Runtime, the peer."""
    functions = {engine: feature_function(classifier, image_size, engine) for engine in ENGINES}
    runs = {engine: (lambda function=function: batched(function, bitmaps)) for engine, function in functions.items()}
    seconds = interleaved_medians(runs, repeats)
    rates = {engine: len(bitmaps) / seconds[engine] for engine in ENGINES}
    return {"image_size": image_size, "drawings_per_s": rates,
            "ours_over_onnxruntime": rates[our_engine] / rates[REFERENCE_ENGINE],
            "torch_over_onnxruntime": rates["torch"] / rates[REFERENCE_ENGINE]}


def seed_style_training(classifier, bitmaps, labels, image_size, params):
    """The seed notebooks' loop: every epoch runs the whole model, frozen backbone included, in eager
    torch with autograd on, over every drawing, and Adam steps the head. This is the cost featurize removes."""
    torch.manual_seed(params["seed"])
    generator = torch.Generator().manual_seed(params["seed"])
    optimizer = torch.optim.Adam([p for p in classifier.parameters() if p.requires_grad], lr=params["lr"])
    loss_function = nn.BCEWithLogitsLoss()
    classifier.train()
    for _ in range(params["epochs"]):
        for batch in torch.randperm(len(labels), generator=generator).split(params["batch_size"]):
            loss = loss_function(classifier(to_model_input(bitmaps[batch.numpy()], image_size)), labels[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    classifier.eval()


def featurize_once_training(classifier, bitmaps, labels, image_size, params):
    """The pipeline's way: featurize once with the configured engine (set-up included), then fit the head."""
    features = batched(feature_function(classifier, image_size, params["featurize_engine"]), bitmaps)
    with contextlib.redirect_stdout(io.StringIO()):  # fit prints a line per epoch
        fit(classifier, features, labels, params["epochs"], params["batch_size"], params["lr"], params["seed"],
            params["lr_schedule"])


def training_seconds(classifier, bitmaps, labels, image_size, params, repeats):
    """Seconds for the seed's loop and for ours, each run from the same untrained classifier."""
    runs = {name: (lambda train=train: train(copy.deepcopy(classifier), bitmaps, labels, image_size, params))
            for name, train in (("seed", seed_style_training), ("ours", featurize_once_training))}
    return interleaved_medians(runs, repeats)


def bench_models(project, params, settings):
    """Featurize throughput and training time per image size, on real drawings from the project's split."""
    classifier = build_classifier(params["weights"], params["trainable_blocks"], params["seed"])
    test_bitmaps = load_npz(project / PROCESSED_DIR / "test.npz")["x"][:settings.drawings]
    train = load_npz(project / PROCESSED_DIR / "train.npz")
    train_bitmaps = train["x"][:settings.drawings]
    train_labels = torch.from_numpy(train["y"][:settings.drawings].astype(np.float32))
    featurize, training = [], []
    for image_size in settings.image_sizes:
        featurize.append(featurize_throughput(classifier, test_bitmaps, image_size, params["featurize_engine"],
                                              settings.repeats))
        say(f"featurize {image_size}px: " + ", ".join(f"{engine} {rate:.0f}/s"
                                                     for engine, rate in featurize[-1]["drawings_per_s"].items()))
        seconds = training_seconds(classifier, train_bitmaps, train_labels, image_size, params, settings.repeats)
        training.append({"image_size": image_size, "seed_seconds": seconds["seed"], "ours_seconds": seconds["ours"],
                         "seed_over_ours": seconds["seed"] / seconds["ours"]})
        say(f"training {image_size}px: seed {seconds['seed']:.1f} s, ours {seconds['ours']:.1f} s")
    engine = params["featurize_engine"]
    return {"featurize": {"drawings": len(test_bitmaps), "batch": INFERENCE_BATCH, "engine": engine,
                          "results": featurize},
            "training": {"drawings": len(train_labels), "epochs": params["epochs"], "engine": engine,
                         "results": training}}


def machine_facts():
    """What the timings depend on; the load average says how much other work shared the CPUs."""
    return {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "cpu_count": os.cpu_count(), "load_average_start": os.getloadavg()[0],
            "torch_threads": torch.get_num_threads(),
            "thread_env": {name: os.environ[name] for name in THREAD_ENV if name in os.environ},
            "python": platform.python_version(),
            "torch": torch.__version__, "onnxruntime": onnxruntime.__version__,
            "dvc": importlib.metadata.version("dvc"), "platform": platform.platform()}


# --- the report --------------------------------------------------------------------------------------

def markdown_table(headers, rows):
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def verdict(value, target):
    return f"{'meets' if value <= target else 'misses'} the target of <= {target}"


def render_pipeline(pipeline):
    baseline = pipeline["dvc_alone"]
    rows = [("dvc alone (`dvc status`)", f"{baseline['seconds']:.1f}", f"{baseline['max_rss_mib']:.0f}")]
    rows += [(f"`{name}`", f"{stage['seconds']:.1f}", f"{stage['max_rss_mib']:.0f}")
             for name, stage in pipeline["stages"].items()]
    full, experiment = pipeline["full_repro"], pipeline["experiment"]
    rows.append(("full `dvc repro --force`", f"{full['seconds']:.1f}", f"{full['max_rss_mib']:.0f}"))
    rows.append((f"`{experiment['command']}`", f"{experiment['seconds']:.1f}", f"{experiment['max_rss_mib']:.0f}"))
    ran = ", ".join(experiment["stages_ran"]) or "nothing"
    expected = "only train and evaluate, as expected" if experiment["only_train_and_evaluate"] else "NOT as expected"
    return "\n".join([
        "## Pipeline under DVC",
        "",
        "Each stage by `dvc repro --single-item --force <stage>`, in order; then the whole pipeline; then, "
        "after committing, the experiment. Peak RSS: ru_maxrss of the dvc process from os.wait4, i.e. the "
        "largest of dvc itself and the stage processes it ran (a row at dvc's own figure means a smaller stage).",
        "",
        markdown_table(("run", "wall s", "peak RSS MiB"), rows),
        "",
        f"- experiment / full repro: **{experiment['ratio_to_full_repro']:.3f}** "
        f"({verdict(experiment['ratio_to_full_repro'], experiment['target'])})",
        f"- stages the experiment ran: {ran} ({expected})",
    ])


def render_featurize(featurize, repeats):
    rows = [(result["image_size"], *(f"{result['drawings_per_s'][engine]:.0f}" for engine in ENGINES),
             f"{result['ours_over_onnxruntime']:.2f}", f"{result['torch_over_onnxruntime']:.2f}")
            for result in featurize["results"]]
    headers = ("image size", *(f"{engine} drawings/s" for engine in ENGINES),
               f"ours ({featurize['engine']}) / {REFERENCE_ENGINE}", f"torch / {REFERENCE_ENGINE}")
    return "\n".join([
        "## Featurize throughput",
        "",
        f"`stages.featurize.feature_function` over the same {featurize['drawings']} test drawings in batches of "
        f"{featurize['batch']}; median of {repeats} timed run(s) after a warm-up, engines interleaved, engine set-up "
        f"not counted. Ratios are throughput relative to ONNX Runtime, the peer; above 1 is faster. Ours is the "
        f"configured `featurize_engine`: when that is onnxruntime, its ratio is 1 by construction.",
        "",
        markdown_table(headers, rows),
    ])


def render_training(training, repeats):
    rows = [(result["image_size"], f"{result['seed_seconds']:.2f}", f"{result['ours_seconds']:.2f}",
             f"{result['seed_over_ours']:.1f}") for result in training["results"]]
    return "\n".join([
        "## Training: the seed's way vs featurize once",
        "",
        f"{training['epochs']} epochs on {training['drawings']} train drawings, median of {repeats} timed run(s) "
        "after a warm-up. Seed: every epoch runs the whole model (frozen backbone in eager torch, autograd on) on "
        f"every drawing. Ours: featurize once with `featurize_engine` ({training['engine']}, set-up included), then "
        "`stages.train.fit` on the cached features.",
        "",
        markdown_table(("image size", "seed s", "ours s", "seed / ours"), rows),
    ])


def render_download(download):
    rows = [(row["category"], row["rows"], f"{row['bytes_fetched']:,}", f"{row['bytes_needed']:,}",
             f"{row['bytes_fetched'] / row['bytes_needed']:.3f}", f"{row['full_size_bytes']:,}")
            for row in download["categories"]]
    return "\n".join([
        "## Download",
        "",
        f"- fetched **{download['bytes_fetched']:,}** bytes; rows fetched x {ROW_BYTES} + headers = "
        f"{download['bytes_needed']:,}: ratio **{download['ratio_to_needed']:.4f}** "
        f"({verdict(download['ratio_to_needed'], download['target'])})",
        f"- the files' full size: {download['full_size_bytes']:,} bytes; fetched / full = "
        f"{download['ratio_to_full_size']:.3f}",
        "",
        markdown_table(("category", "rows", "bytes fetched", "rows x 784 + header", "ratio", "full size"), rows),
    ])


def render_quality(before, after, experiment_command):
    rows = [(name, f"{before['test'][name]:.4f}", f"{after['test'][name]:.4f}") for name in TEST_METRICS]
    rows.append(("final train loss", f"{before['train_loss']:.4f}", f"{after['train_loss']:.4f}"))
    categories = [(name, row["label"], row["drawings"], f"{row['accuracy']:.3f}", f"{row['predicted_car_share']:.3f}",
                   f"{after['per_category'][name]['accuracy']:.3f}") for name, row in before["per_category"].items()]
    return "\n".join([
        "## Model quality",
        "",
        f"Test metrics of the full repro and after `{experiment_command}`.",
        "",
        markdown_table(("metric", "full repro", "after experiment"), rows),
        "",
        markdown_table(("category", "label", "test drawings", "accuracy", "predicted car", "accuracy after experiment"),
                       categories),
    ])


def render_markdown(report):
    machine, settings = report["machine"], report["settings"]
    overrides = ", ".join(f"`{key}={value}`" for key, value in settings["overrides"].items()) or "none"
    thread_env = ", ".join(f"{name}={value}" for name, value in machine["thread_env"].items()) or "OMP/MKL unset"
    return "\n\n".join([
        "# Car Sketch Classifier benchmark",
        f"{machine['date']}; {machine['cpu_count']} CPUs, torch threads {machine['torch_threads']} ({thread_env}), "
        f"load average (1 min) {machine['load_average_start']:.1f} at the start, "
        f"{machine['load_average_end']:.1f} at the end; "
        f"Python {machine['python']}, torch {machine['torch']}, onnxruntime {machine['onnxruntime']}, "
        f"dvc {machine['dvc']}; {machine['platform']}.\n"
        f"Real Quick, Draw! drawings ({settings['categories']} categories, car = {', '.join(CAR_CATEGORIES)}), "
        f"max_per_category {settings['params']['max_per_category']}, image_size {settings['params']['image_size']}, "
        f"trainable_blocks {settings['params']['trainable_blocks']}; overrides: {overrides}"
        f"{'; --quick' if settings['quick'] else ''}.",
        render_pipeline(report["pipeline"]),
        render_featurize(report["models"]["featurize"], settings["repeats"]),
        render_training(report["models"]["training"], settings["repeats"]),
        render_download(report["download"]),
        render_quality(report["pipeline"]["metrics_full_repro"], report["pipeline"]["metrics_after_experiment"],
                       report["pipeline"]["experiment"]["command"]),
    ]) + "\n"


# --- main --------------------------------------------------------------------------------------------

def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny settings (one small image size, one repeat)")
    parser.add_argument("--repeats", type=int, help="timed runs per measurement (default 3; 1 with --quick)")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "bench" / "reports", help="where report.md/.json go")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a params.yaml value (YAML), e.g. --set image_size=128; repeatable")
    args = parser.parse_args(argv)
    if args.repeats is not None and args.repeats < 1:
        parser.error("--repeats must be at least 1")
    return args


def main(argv=None):
    args = parse_args(argv)
    machine = machine_facts()
    reason = missing_inputs()
    if reason:
        print(f"skipped: {reason}")
        return 0
    settings = QUICK if args.quick else FULL
    settings = settings._replace(repeats=args.repeats or settings.repeats)
    try:
        overrides = parse_overrides(args.overrides, yaml.safe_load((REPO_ROOT / "params.yaml").read_text()))
    except ValueError as error:
        sys.exit(f"error: {error}")
    with mirror(DRAWINGS_DIR) as server, tempfile.TemporaryDirectory(prefix="car-sketch-bench-") as directory:
        project = Path(directory)
        params = bench_params(server.url, overrides)
        make_project(project, params)
        say(f"project in {project}, drawings served at {server.url}")
        pipeline = bench_pipeline(project)
        download = download_volume(read_json(project / DOWNLOAD_REPORT), DRAWINGS_DIR)
        models = bench_models(project, params, settings)
    report = {"machine": {**machine, "load_average_end": os.getloadavg()[0]},
              "settings": {"quick": args.quick, "repeats": settings.repeats, "drawings": settings.drawings,
                           "image_sizes": list(settings.image_sizes), "overrides": overrides,
                           "categories": len(params["categories"]["car"]) + len(params["categories"]["not_car"]),
                           "params": params},
              "pipeline": pipeline, "models": models, "download": download}
    markdown = render_markdown(report)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    (args.out / "report.md").write_text(markdown)
    print(markdown)
    say(f"wrote {args.out / 'report.md'} and {args.out / 'report.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
