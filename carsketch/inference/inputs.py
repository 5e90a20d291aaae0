"""The predict command's other inputs as the dataset's bitmaps: .npy files of bitmaps and Quick, Draw! .ndjson lines
(rasterised by carsketch.strokes), and how messages name a drawing in them."""

import json
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from carsketch.collected_file import TORN_LINE
from carsketch.errors import PipelineError
from carsketch.quickdraw import BITMAP_PIXELS, BITMAP_SIDE
from carsketch.strokes import strokes_to_bitmap


def read_npy_bitmaps(path: Path | str) -> np.ndarray:
    """The bitmaps in an .npy file as (N, 28, 28) uint8: Google's (N, 784) rows, or (N, 28, 28), memory-mapped."""
    try:
        array = np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError) as error:
        raise PipelineError(f"not a readable .npy file ({error})") from None
    if array.ndim not in (2, 3) or array.shape[1:] not in ((BITMAP_PIXELS,), (BITMAP_SIDE, BITMAP_SIDE)):
        raise PipelineError(f"expected bitmaps of shape (N, 784) or (N, 28, 28), not {array.shape}")
    if array.dtype != np.uint8:
        raise PipelineError(f"expected uint8 bitmaps (0 to 255), not {array.dtype}: save them with .astype(np.uint8)")
    return array.reshape(-1, BITMAP_SIDE, BITMAP_SIDE)


class Skipped(str):
    """A message about a line left out without fault (a torn last line), for a warning rather than an error."""


def _ndjson_drawing(line):
    """The strokes of one line of a Quick, Draw! .ndjson file; a line that ends the file unfinished is Skipped."""
    try:
        record = json.loads(line)
    except json.JSONDecodeError as error:
        if not line.endswith("\n"):
            raise PipelineError(Skipped(TORN_LINE)) from None
        raise PipelineError(f"malformed JSON ({error.msg} at column {error.colno})") from None
    if not isinstance(record, dict) or "drawing" not in record:
        raise PipelineError('malformed line: expected a JSON object with a "drawing" field')
    return record["drawing"]


def ndjson_drawings(lines: Iterable[str]) -> Iterator[tuple[int, np.ndarray | str]]:
    """For each non-blank line of Quick, Draw! ndjson, one at a time: (line number, bitmap) or (line number, why not).

    A last line without its newline that is no JSON is a write cut short (a server killed mid-write): it is Skipped."""
    for number, line in enumerate(lines, 1):
        if line.strip():
            try:
                yield number, strokes_to_bitmap(_ndjson_drawing(line))
            except PipelineError as error:
                yield number, error.args[0]


def drawing_name(path: Path | str, index: int | None) -> str:
    """How messages and tables name a drawing: 'file', 'file row 3' (.npy, from 0) or 'file line 3' (from 1)."""
    if index is None:
        return str(path)
    return f"{path} {'row' if Path(path).suffix.lower() == '.npy' else 'line'} {index}"
