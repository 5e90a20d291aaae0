"""A copy of the project in a fresh git + DVC repo, and running commands in it: shared by the tests and the benchmark."""

import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Iterable, NamedTuple

import yaml

from carsketch.quickdraw import category_file

REPO_ROOT = Path(__file__).resolve().parents[1]
# ../shared, beside the repository: the real Quick, Draw! files and ImageNet weights the benchmarks run on.
SHARED_DIR = REPO_ROOT.parent / "shared"
DRAWINGS_IN_SHARED = Path("quickdraw/numpy_bitmap")
WEIGHTS_IN_SHARED = Path("weights/mobilenet_v2_imagenet.pth")
SHARED_DRAWINGS = SHARED_DIR / DRAWINGS_IN_SHARED
SHARED_WEIGHTS = SHARED_DIR / WEIGHTS_IN_SHARED
# The car categories of ../shared; its other files are not car.
SHARED_CAR_CATEGORIES = ("car", "tractor")
PROJECT_FILES = ("dvc.yaml", "params.yaml", ".gitignore", ".dvcignore", "stages", "carsketch")
COMMAND_ENV = {"GIT_AUTHOR_NAME": "bench", "GIT_AUTHOR_EMAIL": "bench@example.com", "GIT_COMMITTER_NAME": "bench",
               "GIT_COMMITTER_EMAIL": "bench@example.com", "DVC_NO_ANALYTICS": "1",
               # the stages' `python` is this interpreter, whatever PATH says
               "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}


def command_line(*command: str) -> list[str]:
    """`dvc ...` as this interpreter's DVC; anything else as it is."""
    return [sys.executable, "-m", "dvc", *command[1:]] if command[0] == "dvc" else list(command)


def run(project: Path, *command: str) -> str:
    """Run a command in `project`; its stdout and stderr, or an AssertionError with them if it fails."""
    result = subprocess.run(command_line(*command), cwd=project, capture_output=True, text=True,
                            env={**os.environ, **COMMAND_ENV})
    if result.returncode:
        raise AssertionError(f"`{' '.join(command)}` failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return result.stdout + result.stderr


class Measured(NamedTuple):
    seconds: float
    peak_rss_mib: float
    exit_status: int
    output: str  # stdout and stderr together


def run_measured(project: Path, *command: str) -> Measured:
    """Run a command in `project` to its end: wall seconds, peak RSS, exit status and output.

    Peak RSS is ru_maxrss from os.wait4: the largest resident set of the command or of any process it waited
    for (dvc's stage processes). Linux carries a parent's peak into its children across exec, so a caller that
    measures this way imports nothing heavy before its last measured command.
    """
    with tempfile.TemporaryFile("w+") as output:
        start = time.perf_counter()
        process = subprocess.Popen(command_line(*command), cwd=project, env={**os.environ, **COMMAND_ENV},
                                   stdout=output, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(process.pid, 0)
        seconds = time.perf_counter() - start
        output.seek(0)
        return Measured(seconds, usage.ru_maxrss / 1024, os.waitstatus_to_exitcode(status), output.read())


def missing_from_shared(shared: Path = SHARED_DIR, categories: Iterable[str] = SHARED_CAR_CATEGORIES) -> str | None:
    """`skipped: no ...`, naming what a benchmark needs from `shared` and does not find there: the weights, the
    drawings folder and the files of `categories` in it; None where all of it is there."""
    needed = [shared / WEIGHTS_IN_SHARED, shared / DRAWINGS_IN_SHARED,
              *(shared / DRAWINGS_IN_SHARED / category_file(name) for name in categories)]
    missing = [str(path) for path in needed if not path.exists()]
    return f"skipped: no {', '.join(missing)}" if missing else None


def make_project(directory: Path, **overrides) -> dict:
    """The project copied into `directory` as a fresh git + DVC repo, params.yaml with `overrides`, committed."""
    for name in PROJECT_FILES:
        source = REPO_ROOT / name
        if source.is_dir():
            shutil.copytree(source, directory / name, ignore=shutil.ignore_patterns("__pycache__"))
        elif source.exists():
            shutil.copy(source, directory / name)
    params = yaml.safe_load((REPO_ROOT / "params.yaml").read_text())
    params.update(overrides)
    (directory / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    run(directory, "git", "init", "-q")
    run(directory, "dvc", "init", "-q")
    commit(directory, "project")
    return params


def commit(project: Path, message: str) -> None:
    run(project, "git", "add", "-A")
    run(project, "git", "commit", "-qm", message)


def stages_ran(dvc_output: str) -> list[str]:
    """The stages DVC says it ran, in order: what tells an experiment that re-ran too much."""
    return re.findall(r"^Running stage '([^']+)'", dvc_output, re.MULTILINE)
