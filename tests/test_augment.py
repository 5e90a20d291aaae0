"""Stretched copies of training drawings."""

import numpy as np
import torch
import torch.nn.functional as F

from carsketch.augment import stretch, stretch_factors, stretched_copies
from carsketch.quickdraw import BITMAP_SIDE


def bar(rows: slice, columns: slice) -> np.ndarray:
    image = np.zeros((BITMAP_SIDE, BITMAP_SIDE), np.uint8)
    image[rows, columns] = 255
    return image.reshape(1, -1)


def ink_extent(bitmap: np.ndarray) -> tuple[int, int]:
    """How many columns and rows hold any ink."""
    ink = bitmap.reshape(BITMAP_SIDE, BITMAP_SIDE) > 0
    return int(ink.any(axis=0).sum()), int(ink.any(axis=1).sum())


def test_stretch_scales_each_axis_about_the_centre_on_its_own():
    horizontal = bar(slice(13, 15), slice(10, 18))  # 8 columns, 2 rows, centred
    assert ink_extent(horizontal) == (8, 2)
    wide = stretch(horizontal, np.array([[2.0, 1.0]]))
    columns, rows = ink_extent(wide)
    assert 16 <= columns <= 18 and rows == 2
    inked = np.flatnonzero(wide.reshape(BITMAP_SIDE, BITMAP_SIDE).any(axis=0))
    assert inked[0] + inked[-1] == BITMAP_SIDE - 1  # still centred
    columns, rows = ink_extent(stretch(horizontal, np.array([[0.5, 1.0]])))
    assert 4 <= columns <= 6 and rows == 2


def test_stretch_leaves_unit_factors_alone_and_matches_torch_grid_sample():
    rng = np.random.default_rng(0)
    bitmaps = rng.integers(0, 256, (40, BITMAP_SIDE * BITMAP_SIDE), dtype=np.uint8)
    assert np.array_equal(stretch(bitmaps, np.ones((40, 2))), bitmaps)
    factors = stretch_factors(rng, 40, 2.0)
    theta = torch.zeros(40, 2, 3)
    theta[:, 0, 0], theta[:, 1, 1] = torch.from_numpy(1 / factors[:, 0]), torch.from_numpy(1 / factors[:, 1])
    images = torch.from_numpy(bitmaps).reshape(40, 1, BITMAP_SIDE, BITMAP_SIDE).float()
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    expected = F.grid_sample(images, grid, align_corners=False).round().to(torch.uint8).reshape(40, -1).numpy()
    assert np.abs(stretch(bitmaps, factors).astype(int) - expected).max() <= 1  # float rounding at .5 only


def test_stretch_factors_span_both_ways_within_the_limit():
    factors = stretch_factors(np.random.default_rng(1), 2000, 2.0)
    assert factors.shape == (2000, 2)
    assert factors.min() >= 0.5 and factors.max() <= 2.0
    assert (factors < 0.7).mean() > 0.2 and (factors > 1.4).mean() > 0.2  # log-uniform: as many squeezed as stretched


def test_stretched_copies_follow_the_originals_and_are_seeded():
    rows, factors = stretched_copies(np.array([5, 2, 9]), 2, 1.5, seed=3)
    assert rows.tolist() == [5, 2, 9, 5, 2, 9, 5, 2, 9]
    assert np.array_equal(factors[:3], np.ones((3, 2))) and (factors[3:] != 1).all()
    assert np.array_equal(stretched_copies(np.array([5, 2, 9]), 2, 1.5, seed=3)[1], factors)
    assert not np.array_equal(stretched_copies(np.array([5, 2, 9]), 2, 1.5, seed=4)[1], factors)
    rows, factors = stretched_copies(np.array([5, 2, 9]), 0, 1.5, seed=3)
    assert rows.tolist() == [5, 2, 9] and np.array_equal(factors, np.ones((3, 2)))
