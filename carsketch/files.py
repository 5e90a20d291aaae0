"""Writing outputs so that a crash never leaves a half-written file that a later run would trust."""

import contextlib
import json
import math
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, BinaryIO, Callable, Iterator

import numpy as np

from carsketch.errors import PipelineError, missing_output

# Rows written at a time by save_rows: 16k bitmaps are 12.8 MB.
CHUNK_ROWS = 1 << 14
# Files up to this size are read whole by NpyRows.small_in_memory: random batches are then a gather in memory
# instead of a read per run of rows (train's 10 MB of features on the benchmark data: 0.38 s of reads).
IN_MEMORY_BYTES = 256 << 20
# The .npy header formats numpy writes, by version.
_NPY_HEADER_READERS = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}
_UMASK = os.umask(0o022)
os.umask(_UMASK)


def read_npy_header(stream: BinaryIO) -> tuple[tuple[int, ...], bool, np.dtype]:
    """An .npy file's shape, Fortran order and dtype, read from `stream`, left at the first row; a ValueError for
    what is not a version 1 or 2 .npy header (ending in "EOF" where the stream ends inside it)."""
    version = np.lib.format.read_magic(stream)
    if version not in _NPY_HEADER_READERS:
        raise ValueError(f"unsupported .npy format version {version}")
    return _NPY_HEADER_READERS[version](stream)


@contextlib.contextmanager
def atomic_path(destination: Path | str) -> Iterator[Path]:
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


class NpyWriter:
    """A new .npy written a block of rows at a time, in order, with plain writes (see NpyRows for why)."""

    def __init__(self, path: Path, dtype: np.dtype | type, shape: tuple[int, ...]):
        self.dtype, self.shape, self.rows_written = np.dtype(dtype), shape, 0
        self.file = open(path, "wb")
        header = {"descr": np.lib.format.dtype_to_descr(self.dtype), "fortran_order": False, "shape": shape}
        np.lib.format.write_array_header_1_0(self.file, header)
        try:  # reserve the space: a full disk fails here, before any work (run_main reports it in one line)
            os.posix_fallocate(self.file.fileno(), 0, self.file.tell() + math.prod(shape) * self.dtype.itemsize)
        except OSError as error:
            self.file.close()
            raise OSError(error.errno, error.strerror, str(path)) from None

    def write(self, rows: np.ndarray) -> None:
        """Append `rows` (of the file's row shape) after those already written."""
        self.file.write(np.ascontiguousarray(rows, self.dtype).tobytes())
        self.rows_written += len(rows)

    def close(self) -> None:
        self.file.close()
        if self.rows_written != self.shape[0]:
            raise ValueError(f"{self.rows_written} rows written of {self.shape[0]}")

    def __enter__(self) -> "NpyWriter":
        return self

    def __exit__(self, *exc_info) -> None:
        if exc_info[0] is None:
            self.close()
        else:
            self.file.close()


class NpyRows:
    """Rows of an .npy file, read on demand with plain reads: `rows[i:j]`, `rows[index_array]`, len and shape.

    A memory map would do the same with less code, but every page it touches counts in the process's resident
    memory until it is unmapped, so a stage that reads a whole file through one has a peak RSS that grows with
    the data. Pages read this way stay in the page cache, where the kernel can drop them.
    """

    def __init__(self, path: Path | str):
        try:
            self.file = open(path, "rb")
        except FileNotFoundError:
            raise missing_output(path) from None
        self.shape, fortran_order, self.dtype = read_npy_header(self.file)
        if fortran_order:
            raise PipelineError(f"{path}: Fortran-ordered arrays are not read here")
        self.offset = self.file.tell()
        self.row_bytes = math.prod(self.shape[1:]) * self.dtype.itemsize

    def __len__(self) -> int:
        return self.shape[0]

    def small_in_memory(self, limit: int = IN_MEMORY_BYTES) -> "np.ndarray | NpyRows":
        """All rows as an array where they take at most `limit` bytes, else these rows, read on demand: random
        access is fast where the data are small, and memory stays bounded where they are not."""
        return self[:] if len(self) * self.row_bytes <= limit else self

    def _read(self, start: int, count: int) -> np.ndarray:
        data = os.pread(self.file.fileno(), count * self.row_bytes, self.offset + start * self.row_bytes)
        return np.frombuffer(data, self.dtype).reshape(count, *self.shape[1:])

    def __getitem__(self, index: slice | np.ndarray) -> np.ndarray:
        if isinstance(index, slice):
            start, stop, step = index.indices(len(self))
            rows = self._read(start, max(stop - start, 0))
            return rows[::step] if step != 1 else rows
        index = np.asarray(index, dtype=np.int64)
        out = np.empty((len(index), *self.shape[1:]), self.dtype)
        order = np.argsort(index, kind="stable")
        ordered = index[order]
        runs = np.flatnonzero(np.diff(ordered) != 1) + 1  # consecutive rows are read in one go
        for positions in np.split(np.arange(len(ordered)), runs):
            if len(positions):
                first = ordered[positions[0]]
                block = self._read(first, ordered[positions[-1]] - first + 1)
                out[order[positions]] = block[ordered[positions] - first]
        return out


def save_rows(path: Path, gather: Callable[[np.ndarray], np.ndarray], rows: np.ndarray,
              chunk_rows: int = CHUNK_ROWS) -> None:
    """Save gather(rows) as one .npy, atomically, a chunk of rows at a time: memory is bounded by the chunk."""
    empty = gather(rows[:0])
    with atomic_path(path) as temporary, NpyWriter(temporary, empty.dtype, (len(rows), *empty.shape[1:])) as out:
        for start in range(0, len(rows), chunk_rows):
            out.write(gather(rows[start:start + chunk_rows]))


def copy_file(source: Path, destination: Path) -> None:
    """A copy of an earlier stage's output at `destination`, written atomically."""
    try:
        with atomic_path(destination) as partial:
            shutil.copyfile(source, partial)
    except FileNotFoundError:
        raise missing_output(source) from None


def load_array(path: Path) -> np.ndarray:
    """A small .npy written by an earlier stage, read whole (no pickles); big ones: NpyRows."""
    try:
        return np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise missing_output(path) from None


def load_json(path: Path | str, default: Any = None) -> Any:
    """A JSON file written by save_json, or `default` where there is none yet."""
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        return default


def save_json(path: Path | str, data: Any) -> None:
    """Write JSON atomically, indented and with a final newline (these files are committed to git)."""
    with atomic_path(path) as temporary:
        temporary.write_text(json.dumps(data, indent=2) + "\n")
