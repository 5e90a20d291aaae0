"""The file of drawings labelled by the people who draw, as the pipeline reads it: each line read back past what a
crash may have torn, and the whole lines copied for the pipeline (snapshot) under the lock the server writes with
(carsketch.inference.collected_store appends to it).

A line is {"key_id", "label", "timestamp", "car_probability", "model", "drawing"}: a unique id, car or not_car, the
UTC time, the model's P(car) and the md5 of its file when the label was given, and the strokes as they were sent.
"""

import contextlib
import fcntl
import json
import os
from collections import Counter
from pathlib import Path
from typing import Callable, Iterator

from carsketch.errors import PipelineError, print_warning
from carsketch.files import atomic_path
from carsketch.labels import SIDES

TORN_LINE = "a torn last line (a write cut short), ignored"


@contextlib.contextmanager
def locked(path: Path | str, flags: int, lock: int) -> Iterator[int]:
    """`path` opened with os.open `flags`, under the writers' lock (fcntl.flock: other processes wait too): LOCK_EX to
    append a batch, LOCK_SH to read whole batches only. The lock goes with the close."""
    fd = os.open(path, flags, 0o644)
    try:
        fcntl.flock(fd, lock)
        yield fd
    finally:
        os.close(fd)


def _problem(record: object) -> str | None:
    """What keeps a parsed line from being a labelled drawing, or None."""
    if not isinstance(record, dict):
        return "not a JSON object"
    if record.get("label") not in SIDES:
        return f"its label is not one of {', '.join(SIDES)}"
    if not isinstance(record.get("drawing"), list) or not isinstance(record.get("key_id"), str):
        return 'it lacks "drawing" or "key_id"'
    return None


def read_collected(path: Path | str, warn: Callable[[str], None] = print_warning) -> Iterator[dict]:
    """Each labelled drawing in the file, in order (none where there is no file). A line that is not one (a torn last
    line of a write cut short, or a line edited by hand) is skipped with a warning, never an error."""
    try:
        lines = open(path, encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return
    except OSError as error:
        raise PipelineError(f"cannot read the labelled drawings in {path} ({error.strerror})") from None
    with lines:
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                problem = _problem(record)
            except json.JSONDecodeError as error:
                problem = f"malformed JSON ({error.msg})"
            if problem is None:
                yield record
            elif not line.endswith("\n"):
                warn(f"{path} line {number}: {TORN_LINE}")
            else:
                warn(f"{path} line {number}: not a labelled drawing ({problem}), ignored")


def label_counts(path: Path | str) -> Counter:
    """The drawings kept in the file per label, 0 for a label with none."""
    counts = Counter(dict.fromkeys(SIDES, 0))
    counts.update(record["label"] for record in read_collected(path))
    return counts


def snapshot(live: Path, destination: Path) -> None:
    """Copy the whole lines of the live file that the server appends to into `destination`, under the writers' lock,
    so the copy never holds half a batch. The pipeline learns from the copy: DVC hashes a stage's dependencies after
    it runs, so a label appended to a live dependency meanwhile would be recorded as learnt.

    Where the live file is missing and `destination` already has lines (a fresh clone after `dvc pull`, a queued
    experiment's workspace), the live file is restored from them instead, so that new labels add to the old."""
    try:
        # a batch being written finishes first; the next waits for this read
        with locked(live, os.O_RDONLY, fcntl.LOCK_SH) as fd:
            data = b"".join(iter(lambda: os.read(fd, 1 << 20), b""))
    except FileNotFoundError:
        kept = destination.read_bytes() if destination.exists() else b""
        with atomic_path(live if kept else destination) as partial:  # no labels yet: an empty snapshot
            partial.write_bytes(kept)
        if kept:
            print_warning(f"{live} was missing: restored it from the snapshot that DVC keeps, so new labels add to "
                          f"those")
        return
    with atomic_path(destination) as partial:
        partial.write_bytes(data[:data.rfind(b"\n") + 1])  # a torn last line (its writer died) is no drawing
