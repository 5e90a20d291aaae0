"""The web app on a loopback port: in a thread of the test process, or as the real `carsketch serve` command."""

import contextlib
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import uvicorn

from carsketch.inference.serve import listen

REPO_ROOT = Path(__file__).resolve().parents[1]
CARSKETCH = (sys.executable, "-m", "carsketch")


@contextlib.contextmanager
def running(app) -> Iterator[str]:
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


@contextlib.contextmanager
def serve_process(model: Path, *options: str, cwd: Path = REPO_ROOT,
                  command: tuple[str, ...] = CARSKETCH) -> Iterator[tuple[subprocess.Popen, str]]:
    """`python -m carsketch serve --model MODEL OPTIONS...` on a free port; yields (process, the base URL it printed)
    once it listens; Ctrl-C stops it after, unless it has already stopped."""
    process = subprocess.Popen([*command, "serve", "--model", str(model), "--port", "0", *options], cwd=cwd,
                               stdout=subprocess.PIPE, text=True)  # its stderr is ours
    started = re.search(r" at (http://\S+?)/? ", process.stdout.readline())
    if not started:
        process.kill()
        raise RuntimeError("the server did not start: its error is above")
    try:
        yield process, started[1]
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            process.wait(30)


def printed_token(process: subprocess.Popen) -> str:
    """The labelling token in the URL of the line `carsketch serve` prints after the one serve_process read."""
    line = process.stdout.readline()
    found = re.search(r"\?token=(\S+)$", line)
    if not found:
        raise RuntimeError(f"no URL with ?token= in {line!r}")
    return found[1]
