"""What the benchmarks share: where ../shared keeps the real drawings and weights, and measuring a command.

The project copy in a fresh git + DVC repo and the commands run in it are the tests' own (tests/dvc_project.py).
"""

import os
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Iterable, NamedTuple

from carsketch.quickdraw import category_file
from tests.dvc_project import COMMAND_ENV, REPO_ROOT, command_line, commit, make_project, run, stages_ran

__all__ = ["COMMAND_ENV", "REPO_ROOT", "commit", "make_project", "run", "stages_ran"]

# ../shared, beside the repository: the real Quick, Draw! files and ImageNet weights the benchmarks run on.
SHARED_DIR = REPO_ROOT.parent / "shared"
DRAWINGS_IN_SHARED = Path("quickdraw/numpy_bitmap")
WEIGHTS_IN_SHARED = Path("weights/mobilenet_v2_imagenet.pth")
SHARED_DRAWINGS = SHARED_DIR / DRAWINGS_IN_SHARED
SHARED_WEIGHTS = SHARED_DIR / WEIGHTS_IN_SHARED
# The car categories of ../shared; its other files are not car.
SHARED_CAR_CATEGORIES = ("car", "tractor")


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
