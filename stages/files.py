"""Writing outputs so that a crash never leaves a half-written file that a later run would trust."""

import contextlib
import json
import os
import tempfile
import zipfile
from pathlib import Path

import numpy as np

from stages.errors import PipelineError

# A fixed timestamp inside .npz archives, so that the same arrays give byte-identical files.
_ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)
_UMASK = os.umask(0o022)
os.umask(_UMASK)


@contextlib.contextmanager
def atomic_path(destination):
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


def save_npz(path, **arrays):
    """Save arrays as an uncompressed .npz, atomically and byte-identically for identical arrays."""
    with atomic_path(path) as temporary, zipfile.ZipFile(temporary, "w", zipfile.ZIP_STORED) as archive:
        for name, array in arrays.items():
            info = zipfile.ZipInfo(f"{name}.npy", date_time=_ZIP_EPOCH)
            with archive.open(info, "w", force_zip64=True) as member:
                np.lib.format.write_array(member, np.asarray(array), allow_pickle=False)


def load_npz(path):
    """Load every array of an .npz into a dict (no pickles)."""
    try:
        with np.load(path, allow_pickle=False) as archive:
            return {name: archive[name] for name in archive.files}
    except FileNotFoundError:
        raise PipelineError(f"{path} is missing: run the stages before this one first (dvc repro)") from None


def save_json(path, data):
    """Write JSON atomically, indented and with a final newline (these files are committed to git)."""
    with atomic_path(path) as temporary:
        temporary.write_text(json.dumps(data, indent=2) + "\n")
