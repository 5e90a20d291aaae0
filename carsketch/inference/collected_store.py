"""The server's side of the labelled drawings' file (carsketch.collected_file): appending them so that nothing
acknowledged is lost and no line is ever half there."""

import contextlib
import fcntl
import json
import os
from pathlib import Path

from carsketch.collected_file import label_counts, locked
from carsketch.errors import print_warning
from carsketch.labels import SIDES

# How far back from the end a torn last line is looked for: more than the longest line a request can make.
TAIL_BYTES = 4 << 20


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


class CollectedStore:
    """Labelled drawings appended to an ndjson file, each batch whole and on disk before `append` returns.

    Every append opens the file for appending, takes the writers' lock, writes its lines in one write and fsyncs, so
    lines never interleave and a returned append survives a crash or a kill. A write that fails (a full disk, a file
    made unwritable) is cut back to where it began, leaving the file as it was, and the error goes to the caller. A
    torn last line left by a writer that died is cut off before the next append.
    """

    def __init__(self, path: Path | str):
        self.path = Path(path)
        self.counts = label_counts(self.path)

    def append(self, records: list[dict]) -> None:
        """Write `records`, a line each, and return once they are on disk; OSError where that is impossible."""
        data = "".join(json.dumps(record, separators=(",", ":")) + "\n" for record in records).encode()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        created = not self.path.exists()
        # read and write: a torn tail is read, then cut
        with locked(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, fcntl.LOCK_EX) as fd:
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
        self.counts.update(record["label"] for record in records)

    def summary(self) -> dict:
        """Drawings kept per label and in all, and the file."""
        return {**{label: self.counts[label] for label in SIDES}, "total": sum(self.counts.values()),
                "file": str(self.path)}
