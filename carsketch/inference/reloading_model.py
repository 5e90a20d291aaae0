"""The model `carsketch serve` answers with, taken up again from its file whenever `dvc repro` writes a new one."""

import asyncio
import datetime
import os
from pathlib import Path

from carsketch.errors import print_warning
from carsketch.inference.onnx_model import OnnxModel

# What tells that a file changed, short of reading it: (mtime in ns, size, inode), or None where there is no file.
FileStat = tuple[int, int, int] | None


def file_stat(path: Path) -> FileStat:
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return stat.st_mtime_ns, stat.st_size, stat.st_ino


def utc_now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


class ReloadingModel:
    """The current OnnxModel of a model file, replaced by the file's new model when the file changes.

    `watch` polls the file's stat every `poll_seconds` and loads it (in a thread, so the server keeps answering) once
    its stat has stayed the same for one poll, so that a file still being written is left alone. Whether `dvc repro`
    renames a new file into place or copies it over the old one, the next batch runs the new model; a batch already
    running finishes on the one it took. A file that cannot be loaded (half-written, not a model, gone) leaves the
    old model serving, with one warning, and is tried again only once it changes again.
    """

    def __init__(self, model: OnnxModel, poll_seconds: float = 1.0):
        self.model, self.loaded_at = model, utc_now()
        self.poll_seconds = poll_seconds
        self._seen = self._tried = file_stat(model.path)  # the stat at the last poll, and the last one loaded

    @property
    def path(self) -> Path:
        return self.model.path

    async def watch(self) -> None:
        """Forever: poll the file, and take up its new model once it has settled."""
        while True:
            await asyncio.sleep(self.poll_seconds)
            await self.poll()

    async def poll(self) -> None:
        """Load the file where it changed before the last poll and not since, unless that version was tried already."""
        stat = file_stat(self.path)
        settled, self._seen = stat == self._seen, stat
        if not settled or stat == self._tried:
            return
        self._tried = stat
        try:
            model = await asyncio.to_thread(OnnxModel, self.path, self.model.device)
        except Exception as error:  # PipelineError for a file that is no model; anything else must not stop the watch
            reason = " ".join(str(error).split())
            print_warning(f"{self.path} changed but cannot be loaded ({reason}); still serving model "
                          f"{self.model.md5[:8]}")
            return
        print(f"serving the new model in {self.path}: {model.md5[:8]} (was {self.model.md5[:8]})", flush=True)
        self.model, self.loaded_at = model, utc_now()
