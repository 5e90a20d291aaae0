"""Facts of the Quick, Draw! dataset: its bitmap size, its 345 category names and how its files are named."""

import difflib
from pathlib import Path

BITMAP_SIDE = 28
BITMAP_PIXELS = BITMAP_SIDE * BITMAP_SIDE
CATEGORY_LIST = Path(__file__).with_name("quickdraw_categories.txt")
CATEGORIES = tuple(CATEGORY_LIST.read_text().splitlines())


def category_file(category: str) -> str:
    """The name of a category's numpy_bitmap file, in Google's bucket as in data/raw."""
    return f"{category}.npy"


def unknown_category_message(name: str) -> str | None:
    """None for a real category name; else why not, with the closest real name."""
    if name in CATEGORIES:
        return None
    close = difflib.get_close_matches(str(name), CATEGORIES, n=1, cutoff=0.5)
    hint = f"; did you mean '{close[0]}'?" if close else ""
    return f"'{name}' is not a Quick, Draw! category{hint} (the 345 names are in carsketch/{CATEGORY_LIST.name})"
