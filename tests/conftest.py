"""Shared test fixtures: tiny generated Quick, Draw!-style files and a real HTTP server on loopback."""

import http.server
import re
import threading
from pathlib import Path

import numpy as np
import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DIR = REPO_ROOT.parent / "shared"


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


class QuickDrawHandler(http.server.BaseHTTPRequestHandler):
    """Serves files from server.folder, honouring Range unless told otherwise; can fail on purpose.

    server.faults maps a URL path to a list of faults, consumed one per request:
    'ignore_range' (answer 200 with the whole file), '500', and 'cut' (send half the body, then hang up).
    """

    def log_message(self, *args):
        pass

    def do_GET(self):
        self.server.requests.append((self.path, self.headers.get("Range")))
        faults = self.server.faults.get(self.path, [])
        fault = faults.pop(0) if faults else None
        path = self.server.folder / self.path.lstrip("/").replace("%20", " ")
        if fault == "500":
            self.send_error(500)
            return
        if not path.is_file():
            self.send_error(404)
            return
        body = path.read_bytes()
        match = re.fullmatch(r"bytes=(\d+)-(\d*)", self.headers.get("Range") or "")
        if match and fault != "ignore_range":
            start = int(match[1])
            end = min(int(match[2]) if match[2] else len(body) - 1, len(body) - 1)
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{end}/{len(body)}")
            body = body[start:end + 1]
        else:
            self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        try:
            if fault == "cut":
                self.wfile.write(body[:len(body) // 2])
                self.wfile.flush()
                self.close_connection = True
                return
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client stopped reading once it had the rows it wanted


@pytest.fixture
def quickdraw_server(tmp_path):
    """A real HTTP server on 127.0.0.1 serving tmp_path/'mirror'; yields it (with .url, .folder, .faults)."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), QuickDrawHandler)
    server.daemon_threads = True
    server.folder = tmp_path / "mirror"
    server.folder.mkdir()
    server.faults = {}
    server.requests = []
    server.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
