"""Serve a folder of Quick, Draw! `<category>.npy` files over HTTP, answering Range requests as the bucket does.

For offline runs, benchmarks and tests (Python's http.server ignores Range):

    python -m carsketch mirror /path/to/numpy_bitmap --port 8000
    dvc exp run -S base_url=http://127.0.0.1:8000
"""

import argparse
import functools
import http.server
import os
import re
import shutil
import threading

_SINGLE_RANGE = re.compile(r"bytes=(\d+)-(\d*)")


class MirrorHandler(http.server.SimpleHTTPRequestHandler):
    """Static files with single `Range: bytes=start-[end]` support (206 Partial Content)."""

    byte_range = None  # (start, length) of the part being sent, or None for the whole file

    def log_message(self, *args):
        pass

    def send_head(self):
        self.byte_range = None
        match = _SINGLE_RANGE.fullmatch(self.headers.get("Range") or "")
        path = self.translate_path(self.path)
        if not match:
            return super().send_head()
        try:
            file = open(path, "rb")
        except OSError:
            self.send_error(404)
            return None
        size = os.fstat(file.fileno()).st_size
        start = int(match[1])
        end = min(int(match[2]) if match[2] else size - 1, size - 1)
        if start > end:
            file.close()
            self.send_error(416)
            return None
        file.seek(start)
        self.byte_range = (start, end - start + 1)
        self.send_response(206)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
        self.send_header("Content-Length", str(end - start + 1))
        self.end_headers()
        return file

    def copyfile(self, source, destination):
        try:
            if self.byte_range is None:
                shutil.copyfileobj(source, destination)
            else:
                destination.write(source.read(self.byte_range[1]))
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client stopped reading once it had the rows it wanted


def serve(folder: str | os.PathLike, port: int = 0,
          handler: type[http.server.BaseHTTPRequestHandler] = MirrorHandler) -> http.server.ThreadingHTTPServer:
    """Start serving `folder` on 127.0.0.1 in a background thread; returns the server (`.url` is its address)."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), functools.partial(handler, directory=str(folder)))
    server.daemon_threads = True
    server.url = f"http://127.0.0.1:{server.server_address[1]}"
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    return server


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The `mirror` subcommand's arguments."""
    parser.add_argument("folder", help="folder of <category>.npy files")
    parser.add_argument("--port", type=int, default=8000, help="port on 127.0.0.1 (0: any free one)")


def run(args: argparse.Namespace) -> int:
    """Serve args.folder until Ctrl-C."""
    server = serve(args.folder, args.port)
    print(f"serving {args.folder} at {server.url} (Ctrl-C to stop)", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        server.shutdown()
    return 0
