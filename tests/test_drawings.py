"""Turning images, .npy bitmaps and Quick, Draw! strokes into the dataset's 28x28 bitmaps."""

import json

import numpy as np
import pytest
from PIL import Image, ImageDraw

from conftest import AIRPLANE, SHARED_DIR
from carsketch.inference.images import image_to_bitmap
from carsketch.inference.inputs import ndjson_drawings, read_npy_bitmaps
from carsketch.strokes import strokes_to_bitmap
from carsketch.errors import PipelineError

NUMPY_BITMAP_DIR = SHARED_DIR / "quickdraw" / "numpy_bitmap"
needs_real_data = pytest.mark.skipif(not NUMPY_BITMAP_DIR.is_dir(), reason=f"{NUMPY_BITMAP_DIR} not found")

HORIZONTAL_LINE = [[[0, 255], [0, 0]]]
SQUARE_WITH_CROSS = [[[0, 255, 255, 0, 0], [0, 0, 255, 255, 0]], [[0, 255], [0, 255]], [[0, 255], [255, 0]]]


def mean_abs_diff(a, b):
    return np.abs(np.asarray(a, float) - np.asarray(b, float)).mean()


def draw_image(strokes, size, line_width, ink=0, paper=255, margin=20, mode="L"):
    """The strokes drawn as large as `size` allows, centred, with round-ended lines `line_width` px wide."""
    image = Image.new(mode, size, paper)
    draw = ImageDraw.Draw(image)
    points = np.concatenate([np.asarray(stroke, float) for stroke in strokes], axis=1)
    low, high = points.min(axis=1, keepdims=True), points.max(axis=1, keepdims=True)
    room = np.array(size, float).reshape(2, 1) - 2 * margin - line_width
    scale = (room / np.maximum(high - low, 1)).min()
    offset = np.array(size).reshape(2, 1) / 2 - (low + high) / 2 * scale
    for stroke in strokes:
        xy = [tuple(point) for point in (np.asarray(stroke, float) * scale + offset).T]
        draw.line(xy, fill=ink, width=line_width)
        for x, y in xy:
            draw.ellipse((x - line_width / 2, y - line_width / 2, x + line_width / 2, y + line_width / 2), fill=ink)
    return image


def test_a_horizontal_stroke_lands_in_the_middle_rows_centred_across():
    bitmap = strokes_to_bitmap(HORIZONTAL_LINE)
    assert bitmap.shape == (28, 28) and bitmap.dtype == np.uint8
    inked_rows = np.flatnonzero(bitmap.any(axis=1))
    assert inked_rows.tolist() == [13, 14]
    # 255 units and a 16-unit line in a 304-unit frame: ink from 1.5 px to 26.5 px
    inked_columns = np.flatnonzero(bitmap.any(axis=0))
    assert inked_columns.tolist() == list(range(1, 27))
    assert np.array_equal(bitmap, bitmap[:, ::-1])
    assert bitmap[13:15, 3:25].min() > 150


def test_strokes_keep_their_orientation():
    top_and_left = strokes_to_bitmap([[[0, 255], [0, 0]], [[0, 0], [0, 255]]])
    assert top_and_left[2, 20] > 100 and top_and_left[20, 2] > 100
    assert top_and_left[25, 20] == 0 and top_and_left[20, 25] == 0


def test_raw_strokes_are_scaled_like_simplified_ones():
    raw = [[list(np.asarray(x) * 3 + 40), list(np.asarray(y) * 3 + 7), list(range(len(x)))] for x, y in AIRPLANE]
    assert mean_abs_diff(strokes_to_bitmap(raw), strokes_to_bitmap(AIRPLANE)) < 0.5


@pytest.mark.parametrize("drawing, message", [([], "empty drawing"), ([[[], []]], "empty drawing"),
                                              ([[1, 2]], "malformed drawing"), ("abc", "malformed drawing"),
                                              (None, "malformed drawing"), ([[[[1]], [[2]]]], "malformed drawing"),
                                              ([[[1, 2], [3]]], "stroke 1 has 2 x but 1 y values"),
                                              ([[[0, float("nan")], [0, 5]]], "stroke 1 has a NaN or infinite"),
                                              ([[[0], [0]], [[0, 1], [float("-inf"), 5]]], "stroke 2 has a NaN")])
def test_unusable_strokes_are_refused(drawing, message):
    with pytest.raises(PipelineError, match=message):
        strokes_to_bitmap(drawing)


@needs_real_data
def test_strokes_render_like_googles_numpy_bitmap():
    rows = np.load(NUMPY_BITMAP_DIR / "airplane.npy")
    assert np.abs(rows - strokes_to_bitmap(AIRPLANE).reshape(1, 784).astype(float)).mean(axis=1).min() < 2.5


@pytest.mark.parametrize("size, line_width, ink, paper, suffix", [
    ((400, 400), 3, 0, 255, ".png"),  # thin pen, dark on light
    ((1000, 700), 5, 255, 0, ".png"),  # thin pen, light on dark, wider than tall
    ((400, 400), 20, 0, 255, ".png"),  # lines as bold as the dataset's
    ((360, 480), 4, 40, 200, ".jpg"),  # grey paper, JPEG artefacts
])
def test_an_image_gives_what_its_strokes_give(tmp_path, size, line_width, ink, paper, suffix):
    path = tmp_path / f"square{suffix}"
    draw_image(SQUARE_WITH_CROSS, size, line_width, ink, paper).save(path)
    assert mean_abs_diff(image_to_bitmap(path), strokes_to_bitmap(SQUARE_WITH_CROSS)) < 8


@pytest.mark.parametrize("size, strokes", [((300, 50), HORIZONTAL_LINE), ((50, 300), [[[0, 0], [0, 255]]])])
def test_odd_sized_images_keep_their_aspect_ratio(tmp_path, size, strokes):
    draw_image(strokes, size, 4, margin=5).save(tmp_path / "line.png")
    assert mean_abs_diff(image_to_bitmap(tmp_path / "line.png"), strokes_to_bitmap(strokes)) < 4


def test_ink_on_a_transparent_layer_counts_as_ink():
    opaque = draw_image(SQUARE_WITH_CROSS, (300, 300), 3)
    layer = Image.new("RGBA", opaque.size, (0, 0, 0, 0))
    layer.putalpha(Image.eval(opaque, lambda value: 255 - value))
    assert mean_abs_diff(image_to_bitmap(layer), image_to_bitmap(opaque)) < 1


def test_blank_and_unreadable_images_are_refused(tmp_path):
    Image.new("RGB", (64, 48), (250, 250, 250)).save(tmp_path / "blank.png")
    (tmp_path / "text.png").write_text("not an image")
    with pytest.raises(PipelineError, match="empty drawing"):
        image_to_bitmap(tmp_path / "blank.png")
    with pytest.raises(PipelineError, match="not an image file"):
        image_to_bitmap(tmp_path / "text.png")


@needs_real_data
@pytest.mark.parametrize("export", [
    lambda image: image.resize((280, 280), Image.Resampling.BICUBIC),
    lambda image: Image.eval(image.resize((280, 280), Image.Resampling.BICUBIC), lambda value: 255 - value),
    lambda image: image,
])
def test_real_drawings_survive_a_round_trip_through_png(tmp_path, export):
    rows = np.load(NUMPY_BITMAP_DIR / "car.npy")[:40].reshape(-1, 28, 28)
    differences = []
    for number, row in enumerate(rows):
        export(Image.fromarray(row)).save(tmp_path / f"{number}.png")
        differences.append(mean_abs_diff(image_to_bitmap(tmp_path / f"{number}.png"), row))
    assert np.mean(differences) < 12


@pytest.mark.parametrize("shape", [(3, 784), (3, 28, 28)])
def test_npy_bitmaps_in_either_shape(tmp_path, shape):
    bitmaps = np.random.default_rng(0).integers(0, 256, (3, 784), dtype=np.uint8)
    np.save(tmp_path / "bitmaps.npy", bitmaps.reshape(shape))
    assert np.array_equal(read_npy_bitmaps(tmp_path / "bitmaps.npy"), bitmaps.reshape(3, 28, 28))


@pytest.mark.parametrize("array, message", [(np.zeros((2, 28)), r"shape .* not \(2, 28\)"),
                                            (np.zeros((28, 28), np.uint8), r"not \(28, 28\)"),
                                            (np.zeros((2, 784)), "uint8 bitmaps .* not float64"),
                                            (np.zeros((2, 784), np.int64), "not int64")])
def test_npy_files_that_are_not_bitmaps_are_refused(tmp_path, array, message):
    np.save(tmp_path / "bad.npy", array)
    with pytest.raises(PipelineError, match=message):
        read_npy_bitmaps(tmp_path / "bad.npy")


def test_ndjson_drawings_and_bad_lines_are_numbered_from_1():
    lines = [json.dumps({"word": "airplane", "drawing": AIRPLANE}), "", '{"drawing": [[[0, 255], [0, 0]]]}',
             "{not json", '{"drawing": []}', '{"word": "car"}', '{"drawing": [[1, 2]]}']
    results = list(ndjson_drawings(line + "\n" for line in lines))
    assert [number for number, _ in results] == [1, 3, 4, 5, 6, 7]
    assert np.array_equal(results[0][1], strokes_to_bitmap(AIRPLANE))
    assert results[2:] == [(4, "malformed JSON (Expecting property name enclosed in double quotes at column 2)"),
                           (5, "empty drawing (no points)"),
                           (6, 'malformed line: expected a JSON object with a "drawing" field'),
                           (7, "malformed drawing: expected strokes like [[x, ...], [y, ...]]")]
