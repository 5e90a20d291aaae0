"""Shared test fixtures: tiny generated Quick, Draw!-style drawings and files, models that tell them apart, and real
HTTP servers on loopback."""

import copy
import os
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image, ImageDraw

from carsketch.strokes import strokes_to_bitmap
from carsketch.mirror import MirrorHandler, serve
from carsketch.checkpoint import model_config
from carsketch.model import CarSketchClassifier
from carsketch.export import save_onnx
from carsketch.paths import BACKBONE_FILE
from carsketch.quickdraw import BITMAP_PIXELS
from models import export_classifier, pretrain_backbone, train_classifier

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DIR = REPO_ROOT.parent / "shared"
PARAMS = yaml.safe_load((REPO_ROOT / "params.yaml").read_text())
# The categories whose generated drawings are car-like: params.yaml's own car list.
CAR_CATEGORIES = frozenset(PARAMS["categories"]["car"])
# The fixture models' input size: small, so that they are quick.
IMAGE_SIZE = 32
# The fixture models' config, as train writes it into the .onnx.
FIXTURE_CONFIG = model_config(IMAGE_SIZE, 0, "fixture", {"car": ["car"], "not_car": ["apple"]})
# A real simplified airplane (key_id 4572612074143744) from the Quick, Draw! dataset (Google, CC BY 4.0).
# A tiny project's params over params.yaml's: 4 categories of fixture drawings at 32 px, 2 quick epochs.
TINY_PROJECT = {"categories": {"car": ["car", "bus"], "not_car": ["apple", "tree"]}, "test_size": 0.25, "val_size": 0.2,
                "split_seed": 0, "seed": 0, "image_size": 32, "trainable_blocks": 0, "featurize_engine": "onnxruntime",
                "epochs": 2, "batch_size": 16, "lr": 0.001, "lr_schedule": "cosine"}

AIRPLANE = [[[205, 192, 182, 185, 194, 200, 215, 217, 200, 193, 189, 188],
             [81, 81, 87, 109, 124, 126, 117, 105, 78, 75, 76, 79]],
            [[192, 202, 252, 254, 255, 252, 243, 205], [85, 86, 76, 79, 91, 93, 94, 111]],
            [[181, 117, 48, 23, 9, 5, 0, 4, 11, 27, 114, 132, 155, 182, 205],
             [83, 104, 108, 106, 110, 112, 130, 151, 159, 167, 181, 178, 166, 147, 126]],
            [[94, 71, 69, 73, 93, 141, 130, 125, 120, 119], [102, 27, 2, 0, 10, 24, 29, 40, 70, 103]],
            [[127, 138, 161, 188, 193, 194], [182, 202, 225, 224, 219, 206]]]


def make_drawings(kind: str, count: int, seed: int = 0) -> list:
    """Quick, Draw!-style strokes that a model can tell apart: a 'car' is 2-4 long, nearly horizontal strokes in a band
    wider than it is tall; 'slanted' the same at 45 degrees; any other kind the same turned upright."""
    rng = np.random.default_rng(seed)
    drawings = []
    for _ in range(count):
        strokes = []
        for _ in range(rng.integers(2, 5)):
            start, length, across = rng.integers(0, 60), rng.integers(150, 196), rng.integers(0, 100)
            along, cross = [int(start), int(start + length)], [int(across), int(across + rng.integers(-10, 11))]
            if kind == "slanted":
                cross = [cross[0], cross[0] + int(length)]
            strokes.append([along, cross] if kind in ("car", "slanted") else [cross, along])
        drawings.append(strokes)
    return drawings


def make_bitmaps(kind: str, rows: int, seed: int = 0) -> np.ndarray:
    """make_drawings' drawings as the dataset's (rows, 784) uint8 bitmaps, rasterised as Google made them."""
    return np.array([strokes_to_bitmap(d) for d in make_drawings(kind, rows, seed)], np.uint8).reshape(rows, BITMAP_PIXELS)


def labelled_bitmaps(count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """`count` car bitmaps then `count` others, and their labels (1 for car)."""
    bitmaps = np.concatenate([make_bitmaps("car", count, seed), make_bitmaps("other", count, seed + 1)])
    return bitmaps, np.repeat(np.array([1, 0], np.float32), count)


def mixed_drawings(count: int, seed: int) -> tuple[list, np.ndarray]:
    """`count` drawings, cars and others shuffled together, and which are cars (1): the ground truth of a test."""
    truth = np.random.default_rng(seed).integers(0, 2, count)
    cars, others = iter(make_drawings("car", count, seed)), iter(make_drawings("other", count, seed + 1))
    return [next(cars) if car else next(others) for car in truth], truth


def accuracy(labels: list[str], truth: np.ndarray) -> float:
    """The share of `labels` ("car" / "not_car") that are `truth` (1 for car), position by position."""
    assert len(labels) == len(truth)
    return float(np.mean([label == ("car" if car else "not_car") for label, car in zip(labels, truth)]))


def draw_png(path: Path, strokes: list, size: tuple[int, int] = (300, 200)) -> Path:
    """The strokes (0-255) drawn in black on white, 6 px wide, as a user's image file."""
    image = Image.new("L", size, 255)
    scale = (min(size) - 40) / 255
    for xs, ys in strokes:
        ImageDraw.Draw(image).line([(20 + x * scale, 20 + y * scale) for x, y in zip(xs, ys)], fill=0, width=6)
    image.save(path)
    return path


def write_params(folder: Path, **overrides) -> dict:
    """params.yaml in `folder`: the project's own, with `overrides`; returns what it wrote."""
    params = {**PARAMS, **overrides}
    (folder / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return params


@pytest.fixture(scope="session")
def fixture_weights(tmp_path_factory) -> Path:
    """A mobilenet_v2 state dict pretrained for a few seconds on the fixture drawings: the stand-in for ImageNet's
    weights, whose frozen features carry what tells a car drawing from another, so the pipeline learns on them."""
    path = tmp_path_factory.mktemp("weights") / "fixture_mobilenet_v2.pth"
    pretrain_backbone(*labelled_bitmaps(400, seed=1000), IMAGE_SIZE, path)
    return path


@pytest.fixture(scope="session")
def fixture_classifier(fixture_weights) -> CarSketchClassifier:
    """The frozen fixture backbone and a head trained on fixture drawings: make_drawings' cars are car, the rest not."""
    return train_classifier(fixture_weights, *labelled_bitmaps(200, seed=2000), IMAGE_SIZE)


@pytest.fixture(scope="session")
def model_path(tmp_path_factory, fixture_classifier) -> Path:
    """The fixture classifier as train writes it (.onnx): its P(car) depends on the drawing and is right on
    make_drawings' drawings."""
    path = tmp_path_factory.mktemp("model") / "fixture.onnx"
    save_onnx(export_classifier(fixture_classifier, FIXTURE_CONFIG), path)
    return path


@pytest.fixture(scope="session")
def inverted_model_path(tmp_path_factory, fixture_classifier) -> Path:
    """The fixture model with its head's last layer negated, so that its P(car) is 1 - the fixture model's: another
    model, wrong on make_drawings' drawings, so that a test can tell which of the two answered."""
    inverted = copy.deepcopy(fixture_classifier)
    with torch.no_grad():
        for parameter in inverted.head[-1].parameters():
            parameter.neg_()
    path = tmp_path_factory.mktemp("model") / "inverted.onnx"
    save_onnx(export_classifier(inverted, FIXTURE_CONFIG), path)
    return path


@pytest.fixture
def backbone_file(tmp_path, fixture_weights) -> Path:
    """The weights stage's output in a project at tmp_path, as if `dvc repro weights` had run."""
    path = tmp_path / BACKBONE_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(fixture_weights.read_bytes())
    return path


def write_category_files(folder: Path, sizes: dict[str, int]) -> dict[str, np.ndarray]:
    """Write `<category>.npy` files of the given row counts, car-like drawings for CAR_CATEGORIES; returns them."""
    folder.mkdir(parents=True, exist_ok=True)
    arrays = {}
    for index, (category, rows) in enumerate(sizes.items()):
        arrays[category] = make_bitmaps("car" if category in CAR_CATEGORIES else "other", rows, seed=index)
        np.save(folder / f"{category}.npy", arrays[category])
    return arrays


class FaultyMirrorHandler(MirrorHandler):
    """The mirror, recording each request and failing on purpose where server.faults says.

    server.faults maps a URL path to a list of faults, consumed one per request:
    'ignore_range' (answer 200 with the whole file), '500', and 'cut' (send half the body, then hang up).
    """

    def do_GET(self):
        self.server.requests.append((self.path, self.headers.get("Range")))
        faults = self.server.faults.get(self.path, [])
        self.fault = faults.pop(0) if faults else None
        if self.fault == "500":
            self.send_error(500)
            return
        if self.fault == "ignore_range":
            del self.headers["Range"]
        super().do_GET()

    def copyfile(self, source, destination):
        if self.fault == "cut":
            length = self.byte_range[1] if self.byte_range else os.fstat(source.fileno()).st_size
            destination.write(source.read(length // 2))
            self.close_connection = True
            return
        super().copyfile(source, destination)


@pytest.fixture
def quickdraw_server(tmp_path):
    """A real HTTP server on 127.0.0.1 serving tmp_path/'mirror'; yields it (with .url, .folder, .faults)."""
    folder = tmp_path / "mirror"
    folder.mkdir()
    server = serve(folder, handler=FaultyMirrorHandler)
    server.folder, server.faults, server.requests = folder, {}, []
    yield server
    server.shutdown()
    server.server_close()
