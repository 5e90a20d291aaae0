"""The balanced car / not-car data set: sampling evenly over categories, and the stratified splits.

Each label gets the same number of drawings, spread as evenly as the categories allow; the splits are
stratified by source category, so every category is in train, validation and test in proportion.
"""

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sklearn.model_selection import train_test_split

from carsketch.errors import PipelineError, missing_output
from carsketch.files import NpyRows
from carsketch.labels import LABEL_NAMES
from carsketch.params import Categories
from carsketch.quickdraw import BITMAP_PIXELS, category_file


def allocate_evenly(available: dict[str, int], total: int) -> dict[str, int]:
    """Split `total` drawings over categories as evenly as possible, none taking more than it has.

    Water-filling: the smallest categories give all they have, the rest share what is left equally.
    """
    allocation = {}
    remaining = total
    by_size = sorted(available, key=lambda category: (available[category], category))
    for position, category in enumerate(by_size):
        allocation[category] = min(available[category], remaining // (len(by_size) - position))
        remaining -= allocation[category]
    return {category: allocation[category] for category in available}


def download_plan(categories: Categories, unseen: Categories, max_rows: int | None, unseen_rows: int | None,
                  file_rows: dict[str, int | None] | None = None) -> tuple[dict[str, int | None], list[str]]:
    """Rows to fetch of each category (None: the whole file), and the not-car names skipped for want of a file.

    Listed categories get `max_rows`, unseen ones `unseen_rows` (None: `max_rows`). With `not_car: all` there
    are hundreds of not-car categories and balancing uses only as many not-car drawings as there are car ones:
    given `file_rows`, each file's rows as its header says (None: no such file), only the car rows are fetched,
    shared evenly over the not-car files that exist, as balanced_allocation will share them.
    """
    plan: dict[str, int | None] = dict.fromkeys(categories.car, max_rows)
    skipped: list[str] = []
    if not categories.not_car_all:
        plan.update(dict.fromkeys(categories.not_car, max_rows))
    else:
        rows = {name: count if count is None or max_rows is None else min(count, max_rows)
                for name, count in (file_rows or {}).items()}
        missing_car = [name for name in categories.car if rows.get(name) is None]
        if missing_car:
            raise PipelineError(f"no file for car categories {', '.join(missing_car)}; check the names and base_url")
        available = {name: rows[name] for name in categories.not_car if rows.get(name) is not None}
        skipped = [name for name in categories.not_car if name not in available]
        if not available:
            raise PipelineError("none of the not-car categories has a file; check base_url")
        car_rows = sum(rows[name] for name in categories.car)
        plan.update({name: count for name, count in allocate_evenly(available, car_rows).items() if count})
    plan.update(dict.fromkeys(unseen.labels(), unseen_rows or max_rows))
    return plan, skipped


def balanced_allocation(available: dict[str, int], labels: dict[str, int]) -> dict[str, int]:
    """How many drawings to take from each category so that both labels get the same number."""
    sides = {label: {c: n for c, n in available.items() if labels[c] == label} for label in LABEL_NAMES}
    per_label = min(sum(side.values()) for side in sides.values())
    if per_label == 0:
        empty = [LABEL_NAMES[label] for label, side in sides.items() if not sum(side.values())]
        raise PipelineError(f"no drawings for {', '.join(empty)}: check data/raw and categories")
    allocation = {}
    for side in sides.values():
        allocation.update(allocate_evenly(side, per_label))
    return allocation


@dataclass(frozen=True)
class BalancedSample:
    """The picked drawings, by reference: which row of which category's raw file each one is.

    Only these small index arrays live in memory; bitmaps are read from the raw files a chunk at a time.
    """

    names: np.ndarray  # the category names, sorted: category codes index into it
    sources: dict[int, NpyRows]  # code -> that category's raw rows
    category: np.ndarray  # each picked drawing's category code
    row: np.ndarray  # its row in that category's file
    y: np.ndarray  # its label

    def category_names(self, rows: np.ndarray) -> np.ndarray:
        """The source category names of the picked drawings at `rows`."""
        return self.names[self.category[rows]]

    def bitmaps(self, rows: np.ndarray) -> np.ndarray:
        """The bitmaps of the picked drawings at `rows`, read from the raw files in ascending row order."""
        out = np.empty((len(rows), BITMAP_PIXELS), np.uint8)
        codes, source_rows = self.category[rows], self.row[rows]
        for code in np.unique(codes):
            where = np.flatnonzero(codes == code)
            where = where[np.argsort(source_rows[where], kind="stable")]
            out[where] = self.sources[code][source_rows[where]]
        return out


def _raw_files(raw_dir: Path, labels: dict[str, int]) -> tuple[list[str], dict[str, int], dict[int, NpyRows]]:
    """The category names sorted, each name's code, and each code's raw file, read as rows are needed."""
    names = sorted(labels)  # codes in name order stratify the split exactly as the names themselves would
    code = {name: index for index, name in enumerate(names)}
    sources = {}
    for category in labels:
        path = Path(raw_dir) / category_file(category)
        if not path.exists():
            raise missing_output(path, "dvc repro download")
        sources[code[category]] = NpyRows(path)
    return names, code, sources


def _sample(names, code, sources, labels, picked: dict[str, np.ndarray]) -> BalancedSample:
    """The sample of the `picked` rows of each category (none at all is fine: empty arrays)."""
    return BalancedSample(
        names=np.array(names, dtype=str), sources=sources,
        category=np.concatenate([np.full(len(rows), code[c], np.int32) for c, rows in picked.items()]
                                + [np.empty(0, np.int32)]),
        row=np.concatenate([*picked.values(), np.empty(0, np.int64)]),
        y=np.concatenate([np.full(len(rows), labels[c], np.uint8) for c, rows in picked.items()]
                         + [np.empty(0, np.uint8)]))


def sample_balanced(raw_dir: Path, labels: dict[str, int], seed: int) -> BalancedSample:
    """Randomly (seeded) pick the balanced drawings, category by category in `labels` order."""
    rng = np.random.default_rng(seed)
    names, code, sources = _raw_files(raw_dir, labels)
    allocation = balanced_allocation({c: len(sources[code[c]]) for c in labels}, labels)
    picked = {c: np.sort(rng.permutation(len(sources[code[c]]))[:n]) for c, n in allocation.items()}
    return _sample(names, code, sources, labels, picked)


def every_drawing(raw_dir: Path, labels: dict[str, int]) -> BalancedSample:
    """All the drawings of the categories in `labels` (the unseen ones: download fetched as many as wanted)."""
    names, code, sources = _raw_files(raw_dir, labels)
    return _sample(names, code, sources, labels, {c: np.arange(len(sources[code[c]])) for c in labels})


def split_by_category(category: np.ndarray, test_size: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Row indices of the two parts (the second `test_size` of the rows), stratified by source category."""
    try:
        return train_test_split(np.arange(len(category)), test_size=test_size, random_state=seed,
                                stratify=category)
    except ValueError as error:
        raise PipelineError(f"cannot split {len(category)} drawings stratified by category with "
                            f"test_size={test_size} ({error}); raise max_per_category or test_size") from error


def split_train_val_test(category: np.ndarray, test_size: float, val_size: float, seed: int) -> dict[str, np.ndarray]:
    """Row indices of train, val and test: test is `test_size` of all rows, val `val_size` of the rest."""
    train, test = split_by_category(category, test_size, seed)
    if not val_size:
        return {"train": train, "val": train[:0], "test": test}
    fit, val = split_by_category(category[train], val_size, seed)
    return {"train": train[fit], "val": train[val], "test": test}


def label_counts(y: np.ndarray) -> dict[str, int]:
    """Drawings in all and per label."""
    return {"total": int(len(y)), **{name: int(np.sum(y == label)) for label, name in LABEL_NAMES.items()}}


def category_counts(category: np.ndarray) -> dict[str, int]:
    """Drawings per source category, by name."""
    return dict(sorted(Counter(category.tolist()).items()))
