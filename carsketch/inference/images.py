"""Image files (PNG, JPEG, any size, either polarity, or ink on a transparent layer) read into the 28x28 bitmaps the
model was trained on: the drawing cropped, scaled and centred as carsketch.strokes places a drawing's strokes."""

from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, ImageOps

from carsketch.errors import PipelineError
from carsketch.strokes import CANVAS_SIDE, DRAWING_UNITS, LINE_PX, LINE_UNITS, PX_PER_UNIT, reduce_canvas

# An image's ink must stand this far (of 255) from its paper to count as a drawing.
MIN_CONTRAST = 32
# Where an image's ink reaches this share of its strongest, it is line rather than anti-aliasing or noise.
LINE_LEVEL = 0.5


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
    return reduce_canvas(_widen(canvas) if thin else canvas)


def _widen(canvas):
    """The canvas's lines redrawn at the dataset's width, round-ended: ink wherever a line is within reach."""
    from scipy import ndimage  # here: importing it takes 0.15 s, which only a thin-lined image needs

    lines = np.asarray(canvas) > 0
    reach = max(0, LINE_PX - _stroke_width(lines)) / 2
    return Image.fromarray(np.uint8(255) * (ndimage.distance_transform_edt(~lines) <= reach))
