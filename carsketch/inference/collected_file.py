"""Drawings labelled by the people who draw: one Quick, Draw!-style ndjson line each, appended so that nothing
acknowledged is lost, read back skipping what a crash may have torn, and copied whole for the pipeline (snapshot).

A line is {"key_id", "label", "timestamp", "car_probability", "model", "drawing"}: a unique id, car or not_car, the
UTC time, the model's P(car) and the md5 of its file when the label was given, and the strokes as they were sent.
"""

import contextlib
import fcntl
import json
import os
import sys
from collections import Counter
from pathlib import Path
from typing import Callable, Iterator

from carsketch.errors import PipelineError
from carsketch.files import atomic_path
from carsketch.inference.drawings import TORN_LINE
from carsketch.labels import SIDES

# How far back from the end a torn last line is looked for: more than the longest line a request can make.
TAIL_BYTES = 4 << 20


def print_warning(message: str) -> None:
    """`warning: message` on stderr: something skipped, not an error."""
    print(f"warning: {message}", file=sys.stderr, flush=True)


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


def _cut_torn_tail(fd: int, size: int) -> int:
    """The file's size once a torn last line (bytes after the last newline that are no JSON line: a write that a crash
    cut short, never acknowledged) is cut off, or a whole last line without its newline is given one."""
    start = max(0, size - TAIL_BYTES)
    tail = os.pread(fd, size - start, start)
    if not tail or tail.endswith(b"\n"):
        return size
    newline = tail.rfind(b"\n")
    if newline < 0 and start > 0:  # longer than any line a request makes: start a fresh line, readers skip it
        os.write(fd, b"\n")
        return size + 1
    cut = start + newline + 1
    try:
        json.loads(tail[cut - start:])
    except ValueError:
        print_warning(f"cut a torn last line of {size - cut} bytes (a write cut short) from the labelled drawings")
        os.ftruncate(fd, cut)
        return cut
    os.write(fd, b"\n")
    return size + 1


def _fsync_folder(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def label_counts(path: Path | str) -> Counter:
    """The drawings kept in the file per label, 0 for a label with none."""
    counts = Counter(dict.fromkeys(SIDES, 0))
    counts.update(record["label"] for record in read_collected(path))
    return counts


class CollectedStore:
    """Labelled drawings appended to an ndjson file, each batch whole and on disk before `append` returns.

    Every append opens the file for appending, takes an exclusive lock (fcntl: other processes wait too), writes its
    lines in one write and fsyncs, so lines never interleave and a returned append survives a crash or a kill. A write
    that fails (a full disk, a file made unwritable) is cut back to where it began, leaving the file as it was, and the
    error goes to the caller. A torn last line left by a writer that died is cut off before the next append.
    """

    def __init__(self, path: Path | str):
        self.path = Path(path)
        self.counts = label_counts(self.path)

    def append(self, records: list[dict]) -> None:
        """Write `records`, a line each, and return once they are on disk; OSError where that is impossible."""
        data = "".join(json.dumps(record, separators=(",", ":")) + "\n" for record in records).encode()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        created = not self.path.exists()
        fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)  # read: a torn tail
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            start = _cut_torn_tail(fd, os.fstat(fd).st_size)
            try:
                written = 0
                while written < len(data):
                    written += os.write(fd, data[written:])
                os.fsync(fd)
                if created:  # the file's name, too, must survive a crash
                    _fsync_folder(self.path.parent)
            except OSError:
                with contextlib.suppress(OSError):
                    os.ftruncate(fd, start)
                    os.fsync(fd)
                raise
        finally:
            os.close(fd)  # and with it the lock
        self.counts.update(record["label"] for record in records)

    def summary(self) -> dict:
        """Drawings kept per label and in all, and the file."""
        return {**{label: self.counts[label] for label in SIDES}, "total": sum(self.counts.values()),
                "file": str(self.path)}


def snapshot(live: Path, destination: Path) -> None:
    """Copy the whole lines of the live file that the server appends to into `destination`, under the writers' lock,
    so the copy never holds half a batch. The pipeline learns from the copy: DVC hashes a stage's dependencies after
    it runs, so a label appended to a live dependency meanwhile would be recorded as learnt.

    Where the live file is missing and `destination` already has lines (a fresh clone after `dvc pull`, a queued
    experiment's workspace), the live file is restored from them instead, so that new labels add to the old."""
    try:
        fd = os.open(live, os.O_RDONLY)
    except FileNotFoundError:
        kept = destination.read_bytes() if destination.exists() else b""
        with atomic_path(live if kept else destination) as partial:  # no labels yet: an empty snapshot
            partial.write_bytes(kept)
        if kept:
            print_warning(f"{live} was missing: restored it from the snapshot that DVC keeps, so new labels add to "
                          f"those")
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_SH)  # a batch being written finishes first; the next waits for this read
        data = b"".join(iter(lambda: os.read(fd, 1 << 20), b""))
    finally:
        os.close(fd)  # and with it the lock
    with atomic_path(destination) as partial:
        partial.write_bytes(data[:data.rfind(b"\n") + 1])  # a torn last line (its writer died) is no drawing
