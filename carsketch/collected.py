"""The drawings labelled on the serve page as data: rasterised as predict rasterises them, and split by each
drawing's own id, so that adding drawings never moves one from the test share into training."""

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from carsketch.errors import PipelineError
from carsketch.inference.drawings import strokes_to_bitmap
from carsketch.inference.collected_file import print_warning, read_collected
from carsketch.labels import LABEL_NAMES
from carsketch.quickdraw import BITMAP_PIXELS

LABELS = {name: label for label, name in LABEL_NAMES.items()}


@dataclass(frozen=True)
class CollectedSplit:
    """Labelled drawings as the dataset's bitmaps (N, 784) and their labels."""

    bitmaps: np.ndarray
    y: np.ndarray


def held_out(key_id: str, test_size: float) -> bool:
    """Whether a drawing is kept for testing: its id's sha256 read as a fraction falls below `test_size`, so about
    that share of each label is held out, and a drawing's split never changes."""
    return int.from_bytes(hashlib.sha256(key_id.encode()).digest()[:8], "big") / 2 ** 64 < test_size


def collected_splits(path: Path, test_size: float) -> dict[str, CollectedSplit]:
    """The labelled drawings in `path` (none where it is empty or missing) as "train" and "test" splits. A line that
    is no usable drawing is left out with a warning (carsketch.inference.collected_file)."""
    rows: dict[str, list] = {"train": [], "test": []}
    for record in read_collected(path):
        try:
            bitmap = strokes_to_bitmap(record["drawing"])
        except PipelineError as error:
            print_warning(f"{path}: drawing {record['key_id']}: {error}, ignored")
            continue
        rows["test" if held_out(record["key_id"], test_size) else "train"].append((bitmap, LABELS[record["label"]]))
    return {split: CollectedSplit(np.array([bitmap for bitmap, _ in pairs], np.uint8).reshape(-1, BITMAP_PIXELS),
                                 np.array([label for _, label in pairs], np.uint8))
            for split, pairs in rows.items()}
