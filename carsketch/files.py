"""Writing outputs so that a crash never leaves a half-written file that a later run would trust."""

import contextlib
import json
import os
import tempfile
from pathlib import Path

import numpy as np

from carsketch.errors import PipelineError

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


def save_array(path: Path, array: np.ndarray) -> None:
    """Save one array as a plain .npy (memory-mappable by later stages), atomically."""
    with atomic_path(path) as temporary, open(temporary, "wb") as out:
        np.lib.format.write_array(out, np.asarray(array), allow_pickle=False)


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
