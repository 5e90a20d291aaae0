"""Shared test fixtures: tiny generated Quick, Draw!-style files, a tiny model and real HTTP servers on loopback."""

import contextlib
import os
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import uvicorn
import yaml
from torchvision.models import mobilenet_v2

from carsketch.mirror import MirrorHandler, serve
from carsketch.export import export_classifier, save_onnx
from carsketch.model import build_classifier, model_config
from carsketch.paths import BACKBONE_FILE
from carsketch.serve import listen

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DIR = REPO_ROOT.parent / "shared"
# A real simplified airplane (key_id 4572612074143744) from the Quick, Draw! dataset (Google, CC BY 4.0).
AIRPLANE = [[[205, 192, 182, 185, 194, 200, 215, 217, 200, 193, 189, 188],
             [81, 81, 87, 109, 124, 126, 117, 105, 78, 75, 76, 79]],
            [[192, 202, 252, 254, 255, 252, 243, 205], [85, 86, 76, 79, 91, 93, 94, 111]],
            [[181, 117, 48, 23, 9, 5, 0, 4, 11, 27, 114, 132, 155, 182, 205],
             [83, 104, 108, 106, 110, 112, 130, 151, 159, 167, 181, 178, 166, 147, 126]],
            [[94, 71, 69, 73, 93, 141, 130, 125, 120, 119], [102, 27, 2, 0, 10, 24, 29, 40, 70, 103]],
            [[127, 138, 161, 188, 193, 194], [182, 202, 225, 224, 219, 206]]]


def write_params(folder: Path, **overrides) -> dict:
    """params.yaml in `folder`: the project's own, with `overrides`; returns what it wrote."""
    params = yaml.safe_load((REPO_ROOT / "params.yaml").read_text())
    params.update(overrides)
    (folder / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return params


@pytest.fixture(scope="session")
def random_weights(tmp_path_factory) -> Path:
    """A mobilenet_v2 state dict with random (seeded) weights: a stand-in for ImageNet's in tests."""
    path = tmp_path_factory.mktemp("weights") / "random_mobilenet_v2.pth"
    torch.manual_seed(0)
    torch.save(mobilenet_v2().state_dict(), path)
    return path


@pytest.fixture(scope="session")
def model_path(tmp_path_factory):
    """A tiny untrained ONNX model (random weights, 32 px input), as train writes: enough to run the whole path quickly."""
    path = tmp_path_factory.mktemp("model") / "m.onnx"
    config = model_config(image_size=32, trainable_blocks=0, weights="random",
                          categories={"car": ["car"], "not_car": ["apple"]})
    save_onnx(export_classifier(build_classifier(None), config), path)
    return path


@contextlib.contextmanager
def running(app):
    """The web app served by uvicorn on a free loopback port, in a thread; yields its base URL, then stops it."""
    sock = listen("127.0.0.1", 0)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not server.started:
        assert thread.is_alive(), "the server did not start"
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


@pytest.fixture
def backbone_file(tmp_path, random_weights) -> Path:
    """The weights stage's output in a project at tmp_path, as if `dvc repro weights` had run."""
    path = tmp_path / BACKBONE_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(random_weights.read_bytes())
    return path


def make_bitmaps(kind, rows, seed=0):
    """Tiny drawings that a model can tell apart: 'car' has horizontal strokes, others vertical ones."""
    rng = np.random.default_rng(seed)
    bitmaps = np.zeros((rows, 28, 28), np.uint8)
    for row in bitmaps:
        for _ in range(3):
            line, start = rng.integers(4, 24), rng.integers(2, 10)
            if kind == "car":
                row[line, start:start + 14] = 255
            else:
                row[start:start + 14, line] = 255
    return bitmaps.reshape(rows, 784)


def write_category_files(folder, sizes):
    """Write `<category>.npy` files of the given row counts; returns {category: array}."""
    folder.mkdir(parents=True, exist_ok=True)
    arrays = {}
    for index, (category, rows) in enumerate(sizes.items()):
        arrays[category] = make_bitmaps("car" if category in ("car", "bus", "van") else "other", rows, seed=index)
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
