"""Writing outputs so that a crash never leaves a half-written file that a later run would trust."""

import contextlib
import json
import math
import os
import tempfile
from pathlib import Path
from typing import Callable

import numpy as np

from carsketch.errors import PipelineError

# Rows written at a time by save_rows: 16k bitmaps are 12.8 MB.
CHUNK_ROWS = 1 << 14
_UMASK = os.umask(0o022)
os.umask(_UMASK)


@contextlib.contextmanager
def atomic_path(destination: Path | str):
    """Yield a temporary path beside `destination`; rename it into place only if the block succeeds."""
    destination = Path(destination)
    destination.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(dir=destination.parent, prefix=f".{destination.name}.", suffix=".tmp")
    os.close(fd)
    try:
        yield Path(temporary)
        os.chmod(temporary, 0o666 & ~_UMASK)  # mkstemp makes it private; give it a normal file's mode
        os.replace(temporary, destination)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)


def create_npy(path: Path, dtype: np.dtype | type, shape: tuple[int, ...]) -> np.memmap:
    """A new .npy of `shape` at `path`, memory-mapped for writing, its disk space reserved up front.

    Writing through a memory map to a full disk kills the process with SIGBUS; reserving the space first
    turns that into an OSError (ENOSPC) here, before any work, which run_main reports in one line.
    """
    header = {"descr": np.lib.format.dtype_to_descr(np.dtype(dtype)), "fortran_order": False, "shape": shape}
    with open(path, "wb") as out:
        np.lib.format.write_array_header_1_0(out, header)
        size = out.tell() + math.prod(shape) * np.dtype(dtype).itemsize
        try:
            os.posix_fallocate(out.fileno(), 0, size)
        except OSError as error:
            raise OSError(error.errno, error.strerror, str(path)) from None
    return np.lib.format.open_memmap(path, mode="r+")


def save_rows(path: Path, gather: Callable[[np.ndarray], np.ndarray], rows: np.ndarray,
              chunk_rows: int = CHUNK_ROWS) -> None:
    """Save gather(rows) as one .npy, atomically, a chunk of rows at a time: memory is bounded by the chunk."""
    empty = gather(rows[:0])
    with atomic_path(path) as temporary:
        out = create_npy(temporary, empty.dtype, (len(rows), *empty.shape[1:]))
        for start in range(0, len(rows), chunk_rows):
            out[start:start + chunk_rows] = gather(rows[start:start + chunk_rows])
        out.flush()
        del out  # unmapped before the rename


def load_array(path: Path, mmap: bool = True) -> np.ndarray:
    """An .npy written by an earlier stage, memory-mapped read-only by default (no pickles)."""
    try:
        return np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
    except FileNotFoundError:
        raise PipelineError(f"{path} is missing: run the stages before this one first (dvc repro)") from None


def save_json(path: Path | str, data) -> None:
    """Write JSON atomically, indented and with a final newline (these files are committed to git)."""
    with atomic_path(path) as temporary:
        temporary.write_text(json.dumps(data, indent=2) + "\n")
