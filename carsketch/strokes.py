"""Quick, Draw! strokes rasterised into the bitmaps the model was trained on, as Google made its numpy_bitmap files.

The model only ever saw those files: uint8 28x28, ink 255 on black 0. Google rendered them from the simplified strokes
(0-255, the longer side spanning 0..255) with cairo in a 304-unit frame: the drawing's bounding box centred in a
256-unit square, then 16 units of padding and half a line each side (16 + 16 + 16 = 48), lines 16 units wide with
round caps and joins, anti-aliased straight at 28x28 (github.com/googlecreativelab/quickdraw-dataset/issues/19). The
renderer here copies that geometry on a canvas SUPERSAMPLE times finer, whose box-filtered reduction stands in for
cairo's anti-aliasing; the image reader (carsketch.inference.images) places an image's drawing in the same geometry.
Training reads the labelled drawings through this module, so it holds nothing else.
"""

import numpy as np
from PIL import Image, ImageDraw

from carsketch.errors import PipelineError
from carsketch.quickdraw import BITMAP_SIDE

DRAWING_UNITS = 255  # a simplified drawing's longer side, between the centres of its outermost lines
LINE_UNITS = 16
PADDING_UNITS = 16
FRAME_UNITS = 256 + 2 * PADDING_UNITS + LINE_UNITS
# 19 makes the line exactly 28 canvas pixels wide: on a real drawing this renderer then differs from its
# numpy_bitmap row by about 1.4 grey levels per pixel on average (8 gives 3).
SUPERSAMPLE = 19
CANVAS_SIDE = BITMAP_SIDE * SUPERSAMPLE
PX_PER_UNIT = CANVAS_SIDE / FRAME_UNITS
LINE_PX = LINE_UNITS * PX_PER_UNIT
MALFORMED = "malformed drawing: expected strokes like [[x, ...], [y, ...]]"


def reduce_canvas(canvas: Image.Image) -> np.ndarray:
    """A CANVAS_SIDE canvas box-filtered down to a 28x28 uint8 bitmap."""
    return np.asarray(canvas.reduce(SUPERSAMPLE), dtype=np.uint8)


def _stroke(stroke, number):
    """One stroke as a (2, n) float array of x and y; further rows (a raw drawing's times) are dropped."""
    try:
        x, y = (np.asarray(values, dtype=float) for values in stroke[:2])
    except (TypeError, ValueError, KeyError):
        raise PipelineError(MALFORMED) from None
    if x.ndim != 1 or y.ndim != 1:
        raise PipelineError(MALFORMED)
    if len(x) != len(y):
        raise PipelineError(f"malformed drawing: stroke {number} has {len(x)} x but {len(y)} y values")
    if not (np.isfinite(x).all() and np.isfinite(y).all()):
        raise PipelineError(f"malformed drawing: stroke {number} has a NaN or infinite coordinate")
    return np.stack([x, y])


def _strokes(drawing):
    """A drawing's strokes as (2, n) float arrays of x and y; a one-line PipelineError says what is wrong."""
    try:
        strokes = [_stroke(stroke, number) for number, stroke in enumerate(drawing, 1)]
    except TypeError:  # not a list at all
        raise PipelineError(MALFORMED) from None
    if not sum(stroke.shape[1] for stroke in strokes):
        raise PipelineError("empty drawing (no points)")
    return strokes


def strokes_to_bitmap(drawing: list) -> np.ndarray:
    """Rasterise a drawing's strokes, [[[x, ...], [y, ...]], ...], the way Google made the numpy_bitmap files.

    The longer side is scaled to span 255 units first, as Google's simplification did: simplified drawings
    are left as they are, and raw ones (in screen pixels) come out as their simplified version would.
    """
    strokes = _strokes(drawing)
    points = np.concatenate(strokes, axis=1)
    low, high = points.min(axis=1, keepdims=True), points.max(axis=1, keepdims=True)
    scale = DRAWING_UNITS / max((high - low).max(), 1) * PX_PER_UNIT
    offset = CANVAS_SIDE / 2 - (low + high) / 2 * scale
    canvas = Image.new("L", (CANVAS_SIDE, CANVAS_SIDE))
    draw = ImageDraw.Draw(canvas)
    radius = LINE_PX / 2
    for stroke in strokes:
        xy = list(map(tuple, (stroke * scale + offset).T))
        draw.line(xy, fill=255, width=round(LINE_PX))
        for x, y in xy:  # round caps and joins
            draw.ellipse((x - radius, y - radius, x + radius, y + radius), fill=255)
    return reduce_canvas(canvas)
