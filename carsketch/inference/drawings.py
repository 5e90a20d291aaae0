"""Turning user inputs (images, .npy bitmaps, Quick, Draw! strokes) into the bitmaps the model was trained on.

The model only ever saw Google's numpy_bitmap files: uint8 28x28, ink 255 on black 0. Google rendered them
from the simplified strokes (0-255, the longer side spanning 0..255) with cairo in a 304-unit frame: the
drawing's bounding box centred in a 256-unit square, then 16 units of padding and half a line each side
(16 + 16 + 16 = 48), lines 16 units wide with round caps and joins, anti-aliased straight at 28x28
(github.com/googlecreativelab/quickdraw-dataset/issues/19). Both renderers here copy that geometry on a
canvas SUPERSAMPLE times finer, whose box-filtered reduction stands in for cairo's anti-aliasing.
"""

import json
from pathlib import Path
from typing import BinaryIO, Iterable, Iterator

import numpy as np
from PIL import Image, ImageDraw, ImageOps

from carsketch.errors import PipelineError
from carsketch.quickdraw import BITMAP_PIXELS, BITMAP_SIDE

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
# An image's ink must stand this far (of 255) from its paper to count as a drawing.
MIN_CONTRAST = 32
# Where an image's ink reaches this share of its strongest, it is line rather than anti-aliasing or noise.
LINE_LEVEL = 0.5


def _reduce(canvas):
    """The canvas box-filtered down to a 28x28 uint8 bitmap."""
    return np.asarray(canvas.reduce(SUPERSAMPLE), dtype=np.uint8)


MALFORMED = "malformed drawing: expected strokes like [[x, ...], [y, ...]]"


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
    return _reduce(canvas)


def load_image(path: Path | str | BinaryIO, max_pixels: int | None = None) -> Image.Image:
    """An image file, decoded in full (so that a corrupt or truncated file fails here) and turned upright.

    With max_pixels, a larger image is refused before it is decoded: a small file can hold a huge image.
    """
    try:
        with Image.open(path) as image:
            if max_pixels is not None and image.width * image.height > max_pixels:
                raise PipelineError(f"image too large: {image.width}x{image.height} pixels, "
                                    f"over {max_pixels:,}")
            return ImageOps.exif_transpose(image)
    except Image.UnidentifiedImageError:
        raise PipelineError("not an image file (not in any format Pillow reads)") from None
    except (OSError, Image.DecompressionBombError) as error:
        raise PipelineError(f"not a readable image ({error})") from None


def _ink(image):
    """The image's ink as floats 0..1, bright on black, whether it is dark on light paper or light on dark.

    An image with transparent pixels was drawn on a transparent layer: its opacity is the ink. Otherwise the
    paper is the median of the border pixels, and ink is how far a pixel stands from the paper.
    """
    grey = image.convert("L")
    if image.has_transparency_data:
        alpha = image.convert("RGBA").getchannel("A")
        grey = alpha if alpha.getextrema()[0] < 255 else grey
    grey = np.asarray(grey, dtype=np.float32)
    paper = np.median(np.concatenate([grey[0], grey[-1], grey[:, 0], grey[:, -1]]))
    ink = np.clip(paper - grey if paper > 127.5 else grey - paper, 0, None)
    if ink.max() < MIN_CONTRAST:
        raise PipelineError("empty drawing (blank image)")
    return ink / ink.max()


def _stroke_width(lines):
    """The lines' typical width in pixels: twice their area over their outline (exact for long strokes)."""
    padded = np.pad(lines, 1)
    inside = lines & padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:]
    return 2 * lines.sum() / (lines.sum() - inside.sum())


def image_to_bitmap(image: Image.Image | Path | str) -> np.ndarray:
    """The drawing in an image (a PIL image or a file, any size, either polarity) as a 28x28 dataset bitmap.

    It is cropped to its ink and scaled, keeping its aspect ratio, to where the dataset's drawings sit.
    Lines thinner than the dataset's are redrawn at its width: a fine pen scaled down to 28 px would
    otherwise fade to faint grey, which the model never saw.
    """
    if not isinstance(image, Image.Image):
        image = load_image(image)
    ink = _ink(image)
    rows, cols = np.nonzero(ink >= LINE_LEVEL)
    ink = ink[rows.min():rows.max() + 1, cols.min():cols.max() + 1]
    lines = ink >= LINE_LEVEL
    stroke, longer = _stroke_width(lines), max(ink.shape)
    # Put the outermost lines' centres 255 units apart, as in the dataset; lines already at least as bold
    # as the dataset's (or filled shapes) fit the whole ink box to the dataset's instead.
    scale = DRAWING_UNITS * PX_PER_UNIT / max(longer - stroke, 1)
    thin = stroke * scale < LINE_PX
    if not thin:
        scale = (DRAWING_UNITS + LINE_UNITS) * PX_PER_UNIT / longer
    size = (max(1, round(ink.shape[1] * scale)), max(1, round(ink.shape[0] * scale)))
    # BOX treats a pixel as a square of ink, so it neither blurs nor drops anything; and so a thin line marks
    # every canvas pixel it touches, however faintly, which _widen then takes as line.
    drawing = Image.fromarray(np.uint8(255 * (lines if thin else ink))).resize(size, Image.Resampling.BOX)
    canvas = Image.new("L", (CANVAS_SIDE, CANVAS_SIDE))
    canvas.paste(drawing, ((CANVAS_SIDE - size[0]) // 2, (CANVAS_SIDE - size[1]) // 2))
    return _reduce(_widen(canvas) if thin else canvas)


def _widen(canvas):
    """The canvas's lines redrawn at the dataset's width, round-ended: ink wherever a line is within reach."""
    from scipy import ndimage  # here: only images need it, and strokes are rasterised in every experiment (0.15 s)

    lines = np.asarray(canvas) > 0
    reach = max(0, LINE_PX - _stroke_width(lines)) / 2
    return Image.fromarray(np.uint8(255) * (ndimage.distance_transform_edt(~lines) <= reach))


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


TORN_LINE = Skipped("a torn last line (a write cut short), ignored")


def _ndjson_drawing(line):
    """The strokes of one line of a Quick, Draw! .ndjson file; a line that ends the file unfinished is Skipped."""
    try:
        record = json.loads(line)
    except json.JSONDecodeError as error:
        if not line.endswith("\n"):
            raise PipelineError(TORN_LINE) from None
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

