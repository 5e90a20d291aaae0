"""`python -m carsketch serve`: the drawing page and the JSON API (carsketch.inference.app) over the trained model, on
a local port, with a token for labelling. The model is loaded at start, and again whenever its file changes
(carsketch.inference.reloading_model).
"""

import argparse
import contextlib
import ipaddress
import secrets
import socket
from pathlib import Path

import uvicorn

from carsketch.errors import PipelineError
from carsketch.inference.app import create_app
from carsketch.inference.arguments import add_model_arguments
from carsketch.inference.collected_store import CollectedStore
from carsketch.inference.onnx_model import OnnxModel
from carsketch.paths import COLLECTED_FILE


def is_loopback(host: str) -> bool:
    """Whether `host` is this machine only (127.0.0.0/8, ::1 or localhost)."""
    try:
        return host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def listen(host: str, port: int) -> socket.socket:
    """A socket listening on host:port (port 0: any free one); a one-line error where that is not possible."""
    try:
        return socket.create_server((host, port), family=socket.AF_INET6 if ":" in host else socket.AF_INET)
    except OSError as error:
        raise PipelineError(f"cannot listen on {host}:{port} ({error.strerror or error}): "
                            f"pick another --port, or a --host of this machine") from None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The `serve` subcommand's arguments."""
    add_model_arguments(parser)
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to listen on (default: 127.0.0.1, this machine only; 0.0.0.0: everyone)")
    parser.add_argument("--port", type=int, default=8000, help="port to listen on (default: 8000; 0: any free one)")
    collect = parser.add_mutually_exclusive_group()
    collect.add_argument("--collect", default=COLLECTED_FILE, type=Path, metavar="PATH",
                         help=f"where labelled drawings are appended (default: {COLLECTED_FILE})")
    collect.add_argument("--no-collect", action="store_true", help="keep no labelled drawings")
    who = parser.add_mutually_exclusive_group()
    who.add_argument("--token", help="the token labelling needs (default: a new one, printed with the page's URL)")
    who.add_argument("--no-token", action="store_true",
                     help="label without a token, with a loopback --host only: for scripts on a one-user machine")


def run(args: argparse.Namespace) -> int:
    """Serve until Ctrl-C; says where it listens first, and where labelled drawings go with the token to label."""
    if args.no_token and not is_loopback(args.host):
        raise PipelineError(f"--no-token would let anyone who reaches {args.host} label drawings, and every label is "
                            f"trained on: use it with a loopback --host (127.0.0.1) only")
    model = OnnxModel(args.model, args.device)  # the model `predict` runs, so they agree
    store = None if args.no_collect else CollectedStore(args.collect)
    token = None if store is None or args.no_token else args.token or secrets.token_urlsafe(18)
    sock = listen(args.host, args.port)
    host, port = sock.getsockname()[:2]
    url = f"http://{f'[{host}]' if ':' in host else host}:{port}/"
    print(f"serving {args.model} at {url} (API docs at {url}docs); Ctrl-C to stop", flush=True)
    if store is not None:
        print(f"labelled drawings go to {store.path} ({store.summary()['total']} kept so far); "
              + (f"labelling needs the token: open {url}?token={token}" if token else
                 "anyone on this machine may label (--no-token)"), flush=True)
    server = uvicorn.Server(uvicorn.Config(create_app(model, store, token), log_level="warning"))
    with contextlib.suppress(KeyboardInterrupt):  # uvicorn shuts down cleanly, then re-raises the Ctrl-C
        server.run(sockets=[sock])
    print("stopped", flush=True)
    return 0
