"""The drawings labelled on the serve page as data: rasterised as predict rasterises them, and split by a hash of
each drawing's strokes, so that adding drawings never moves one from the test share into training, and the same
drawing sent twice lands on one side."""

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from carsketch.collected_file import read_collected
from carsketch.errors import PipelineError, print_warning
from carsketch.labels import LABEL_NUMBERS
from carsketch.quickdraw import BITMAP_PIXELS
from carsketch.strokes import strokes_to_bitmap


@dataclass(frozen=True)
class CollectedSplit:
    """Collected drawings as the dataset's bitmaps (N, 784) and their labels."""

    bitmaps: np.ndarray
    y: np.ndarray


def held_out(drawing: list, test_size: float) -> bool:
    """Whether a drawing is kept for testing: the sha256 of its strokes (as compact JSON) read as a fraction falls
    below `test_size`, so about that share of each label is held out, whatever its id or when it was sent."""
    strokes = json.dumps(drawing, separators=(",", ":")).encode()
    return int.from_bytes(hashlib.sha256(strokes).digest()[:8], "big") / 2 ** 64 < test_size


def collected_splits(path: Path, test_size: float) -> dict[str, CollectedSplit]:
    """The collected drawings in `path` (none where it is empty or missing) as "train" and "test" splits. A line that
    is no usable drawing is left out with a warning (carsketch.collected_file)."""
    rows: dict[str, list] = {"train": [], "test": []}
    for record in read_collected(path):
        try:
            bitmap = strokes_to_bitmap(record["drawing"])
        except PipelineError as error:
            print_warning(f"{path}: drawing {record['key_id']}: {error}, ignored")
            continue
        rows["test" if held_out(record["drawing"], test_size) else "train"].append((bitmap, LABEL_NUMBERS[record["label"]]))
    return {split: CollectedSplit(np.array([bitmap for bitmap, _ in pairs], np.uint8).reshape(-1, BITMAP_PIXELS),
                                  np.array([label for _, label in pairs], np.uint8))
            for split, pairs in rows.items()}
