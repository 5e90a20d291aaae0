"""`python -m carsketch serve`: a drawing page and a JSON API over the trained model, on a local port.

The model is loaded at start, and again whenever its file changes (carsketch.inference.reloading_model). `GET /` is a
self-contained page to draw on; `POST /api/predict` classifies Quick, Draw! strokes (JSON) or an image (multipart
field `file`), rasterised or read exactly as the predict command does, so both give the same P(car). Concurrent
requests are micro-batched into one model call. `POST /api/drawings` keeps a drawing with the label its drawer gives
it (carsketch.inference.collected_file), for the pipeline to learn from; concurrent labels are written and fsynced
together, and labelling needs the server's token where one is given. Bad input gets a 4xx with one line of JSON,
`{"error": "..."}`, and never takes the server down.
"""

import argparse
import asyncio
import contextlib
import datetime
import errno
import io
import ipaddress
import json
import secrets
import socket
import uuid
from pathlib import Path
from typing import Any, Callable, Literal

import numpy as np
import uvicorn
from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers, UploadFile
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp

from carsketch.inference.drawings import image_to_bitmap, load_image, strokes_to_bitmap
from carsketch.devices import DEVICES
from carsketch.errors import PipelineError
from carsketch.labels import SIDES
from carsketch.inference.collected_file import CollectedStore
from carsketch.inference.onnx_model import OnnxModel
from carsketch.inference.predict import label_for
from carsketch.inference.reloading_model import ReloadingModel
from carsketch.paths import COLLECTED_FILE, ONNX_MODEL_FILE

PAGE = Path(__file__).with_name("static") / "index.html"
MAX_BODY_BYTES = 1_000_000
# Per request, over all its drawings: enough for hundreds of drawings (Quick, Draw!'s have about 5 strokes
# and 50 points), and it keeps one request's rasterising under about 2 s.
MAX_STROKES = 1_000
MAX_POINTS = 100_000
# An upload may decode to this many pixels at most (a 1 MB PNG can hold hundreds of millions).
MAX_IMAGE_PIXELS = 5000 * 5000
# Drawings per model call at most; under load requests queue while the model runs and go in the next call.
MAX_BATCH = 64
# Labelled drawings written (and fsynced) together at most.
MAX_WRITE = 256

Strokes = list[list[list[float]]]


class PredictRequest(BaseModel):
    """POST /api/predict's JSON body: one drawing or several, as Quick, Draw! strokes in any coordinates."""

    model_config = ConfigDict(strict=True, extra="forbid")
    drawing: Strokes | None = Field(None, description="[[[x, ...], [y, ...]], ...]; further lists per stroke "
                                                       "(such as times) are ignored",
                                    examples=[[[[0, 255, 255, 0, 0], [0, 0, 255, 255, 0]]]])
    drawings: list[Strokes] | None = Field(None, description="several drawings; results come in this order")


class Result(BaseModel):
    car_probability: float
    label: Literal[SIDES] = Field(description="car from the model's threshold up")
    bitmap: list[list[int]] | None = Field(None, description="with ?bitmap=true: the 28x28 bitmap the model saw "
                                                             "(rows of 0-255, ink bright)")


class PredictResponse(BaseModel):
    results: list[Result]


class LabelRequest(BaseModel):
    """POST /api/drawings's JSON body: one drawing, as /api/predict takes it, and the label its drawer gives it."""

    model_config = ConfigDict(strict=True, extra="forbid")
    drawing: Strokes = Field(description="[[[x, ...], [y, ...]], ...], kept as sent",
                             examples=[[[[0, 255, 255, 0, 0], [0, 0, 255, 255, 0]]]])
    label: Literal[SIDES] = Field(description="car or not_car")


class Kept(BaseModel):
    car: int = Field(description="labelled drawings kept as car")
    not_car: int = Field(description="... and as not car")
    total: int
    file: str = Field(description="where they are kept, on the server")


class Saved(BaseModel):
    id: str = Field(description="the saved drawing's key_id")
    kept: Kept


UPLOAD_SCHEMA = {"type": "object", "required": ["file"],
                 "properties": {"file": {"type": "string", "format": "binary",
                                         "description": "an image (PNG, JPEG, ...), read as `predict` reads images"}}}
PREDICT_BODY = {"required": True, "content": {"application/json": {"schema": PredictRequest.model_json_schema()},
                                              "multipart/form-data": {"schema": UPLOAD_SCHEMA}}}


class Batcher:
    """Runs `process` once for all the jobs waiting, rather than once per request.

    While one call runs (in a thread, so the server keeps accepting requests), new jobs queue; the next call takes
    all of them, up to `max_size` (counted by `size`). A batch costs far less than its jobs one by one: a model call,
    or a write and an fsync. `process` returns one result a job; if it raises, every job of the batch fails with it.
    """

    def __init__(self, process: Callable[[list], list], max_size: int, size: Callable[[Any], int] = lambda job: 1):
        self.process, self.max_size, self.size = process, max_size, size
        self.queue: asyncio.Queue = asyncio.Queue()

    def waiting(self) -> int:
        """The jobs queued for the next call."""
        return self.queue.qsize()

    async def submit(self, job: Any) -> Any:
        """`job`'s result, from a call with whatever else is waiting."""
        future = asyncio.get_running_loop().create_future()
        self.queue.put_nowait((job, future))
        return await future

    async def run(self) -> None:
        """Forever: wait for a job, take every other one already waiting, and answer them with one call."""
        while True:
            batch = [await self.queue.get()]
            size = self.size(batch[0][0])
            while size < self.max_size and not self.queue.empty():
                batch.append(self.queue.get_nowait())
                size += self.size(batch[-1][0])
            try:
                results = await asyncio.to_thread(self.process, [job for job, _ in batch])
            except Exception as error:  # the callers' requests fail with it; the batcher goes on
                results, failure = [None] * len(batch), error
            else:
                failure = None
            for (_, future), result in zip(batch, results):
                if not future.done():  # its client may have gone
                    future.set_exception(failure) if failure else future.set_result(result)


def model_batcher(served: ReloadingModel) -> Batcher:
    """For each job's bitmaps (N, 784), their P(car) and the model that gave it: one call, for all the jobs waiting, of
    the model current when the batch starts."""
    def predict(jobs: list[np.ndarray]) -> list[tuple[np.ndarray, OnnxModel]]:
        model = served.model  # taken once: a model taken up meanwhile answers from the next batch on
        probabilities = model.predict_proba(np.concatenate(jobs))
        return [(part, model) for part in np.split(probabilities, np.cumsum([len(bitmaps) for bitmaps in jobs])[:-1])]
    return Batcher(predict, MAX_BATCH, len)


def writer_batcher(store: CollectedStore) -> Batcher:
    """Each job a labelled drawing's record, written and fsynced with all the others waiting."""
    def write(records: list[dict]) -> list[None]:
        store.append(records)
        return [None] * len(records)
    return Batcher(write, MAX_WRITE)


class BodyLimit:
    """ASGI middleware: a request body over max_bytes (declared or streamed) fails with 413 as it is read."""

    def __init__(self, app: ASGIApp, max_bytes: int = MAX_BODY_BYTES):
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = Headers(scope=scope).get("content-length", "")
        received = int(declared) if declared.isdigit() else 0

        async def limited_receive():
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.max_bytes:
                raise HTTPException(413, f"request body over {self.max_bytes:,} bytes")
            return message

        await self.app(scope, limited_receive, send)


def _one_line(error: ValidationError | RequestValidationError) -> str:
    """A validation error as one line: where and what of the first problem, and how many more there are."""
    problems = error.errors()
    first = problems[0]
    where = ".".join(str(part) for part in first["loc"] if part != "body")
    more = f" (and {len(problems) - 1} more problems)" if len(problems) > 1 else ""
    return f"{where + ': ' if where else ''}{first['msg']}{more}"


def _error(status: int, message: str, headers=None) -> JSONResponse:
    return JSONResponse({"error": " ".join(str(message).split())}, status, headers=headers)


async def _http_error(request: Request, error: HTTPException) -> JSONResponse:
    return _error(error.status_code, error.detail, error.headers)


async def _invalid_request(request: Request, error: RequestValidationError) -> JSONResponse:
    return _error(422, _one_line(error))


async def _server_error(request: Request, error: Exception) -> JSONResponse:
    return _error(500, f"internal error ({type(error).__name__}); the server goes on")


def _rasterise(drawings: list[Strokes]) -> list[np.ndarray]:
    """Each drawing's 28x28 bitmap, as `predict` makes it from an .ndjson line; 422 names a bad drawing."""
    bitmaps = []
    for number, drawing in enumerate(drawings, 1):
        try:
            bitmaps.append(strokes_to_bitmap(drawing))
        except PipelineError as error:
            raise HTTPException(422, f"drawing {number}: {error}" if len(drawings) > 1 else str(error)) from None
    return bitmaps


async def _parse(request: Request, body_model: type[BaseModel]) -> BaseModel:
    """The JSON body as `body_model`: 415 for another content type, 400 for malformed JSON, 422 for a wrong shape."""
    content_type = _content_type(request)
    if content_type != "application/json":
        raise HTTPException(415, f"expected application/json, not {content_type or 'no content type'}")
    try:
        return body_model.model_validate_json(await request.body())
    except ValidationError as error:
        first = error.errors()[0]
        if first["type"] == "json_invalid":
            raise HTTPException(400, f"malformed JSON ({first['msg'].removeprefix('Invalid JSON: ')})") from None
        raise HTTPException(422, _one_line(error)) from None


async def _bitmaps(drawings: list[Strokes]) -> list[np.ndarray]:
    """The drawings' bitmaps, after the limits on their size (413)."""
    strokes = sum(len(drawing) for drawing in drawings)
    points = sum(len(stroke[0]) for drawing in drawings for stroke in drawing if stroke)
    if strokes > MAX_STROKES or points > MAX_POINTS:
        raise HTTPException(413, f"too large: {strokes:,} strokes and {points:,} points; a request may have "
                                 f"{MAX_STROKES:,} strokes and {MAX_POINTS:,} points at most")
    return await run_in_threadpool(_rasterise, drawings)


async def _json_bitmaps(request: Request) -> list[np.ndarray]:
    body = await _parse(request, PredictRequest)
    if (body.drawing is None) == (body.drawings is None):
        raise HTTPException(422, 'expected a JSON object with either "drawing" or "drawings"')
    drawings = [body.drawing] if body.drawings is None else body.drawings
    if not drawings:
        raise HTTPException(422, '"drawings" is empty')
    return await _bitmaps(drawings)


def _image_bitmap(data: bytes) -> np.ndarray:
    try:
        return image_to_bitmap(load_image(io.BytesIO(data), MAX_IMAGE_PIXELS))
    except PipelineError as error:
        raise HTTPException(422, str(error)) from None


def _content_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


def token_check(token: str | None) -> Callable:
    """A dependency that answers 401 unless labelling is open (no token) or the request carries
    `Authorization: Bearer <token>`."""
    def check(credentials: HTTPAuthorizationCredentials | None = Depends(HTTPBearer(auto_error=False))) -> None:
        given = "" if credentials is None else credentials.credentials
        if token is not None and not secrets.compare_digest(given.encode(), token.encode()):
            raise HTTPException(401, "labelling needs the server's token: open the page at the URL with ?token= that "
                                     "`carsketch serve` printed, or send Authorization: Bearer TOKEN",
                                {"WWW-Authenticate": "Bearer"})
    return check


def _save_error(error: OSError, store: CollectedStore) -> HTTPException:
    """A write that failed, as the one-line 5xx of the request that asked for it."""
    if error.errno in (errno.ENOSPC, errno.EDQUOT):
        return HTTPException(507, f"the disk holding {store.path} is full: the drawing was not saved")
    return HTTPException(500, f"cannot write {store.path} ({error.strerror or error}): the drawing was not saved")


async def _upload_bitmaps(request: Request) -> list[np.ndarray]:
    upload = (await request.form()).get("file")
    if not isinstance(upload, UploadFile):
        raise HTTPException(422, 'expected an image file in the multipart field "file"')
    return [await run_in_threadpool(_image_bitmap, await upload.read())]


def create_app(model: OnnxModel | ReloadingModel, store: CollectedStore | None = None,
               token: str | None = None) -> FastAPI:
    """The web app around a loaded model, taken up again whenever its file changes: the page, the API and its docs at
    /docs. Labelled drawings go to `store` (None: none are kept); labelling needs `token` where one is given."""
    served = model if isinstance(model, ReloadingModel) else ReloadingModel(model)
    batcher = model_batcher(served)
    writer = writer_batcher(store) if store is not None else None

    @contextlib.asynccontextmanager
    async def lifespan(app):
        workers = [asyncio.create_task(each.run()) for each in (batcher, writer) if each is not None]
        workers.append(asyncio.create_task(served.watch()))
        yield
        for worker in workers:
            worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await worker

    app = FastAPI(title="Car Sketch Classifier", lifespan=lifespan,
                  description="Tells car from not car in Quick, Draw! sketches. Draw at `/`.",
                  exception_handlers={HTTPException: _http_error, RequestValidationError: _invalid_request,
                                      Exception: _server_error})
    app.add_middleware(BodyLimit)
    app.state.batcher, app.state.writer = batcher, writer

    @app.get("/", include_in_schema=False)
    def page() -> FileResponse:
        return FileResponse(PAGE)

    @app.get("/api/health")
    async def health() -> dict:
        """The model served: its file's md5 (as dvc.lock records it), when it was loaded (UTC), input size, threshold,
        categories and the rest of its recipe; and where labelled drawings go (null: none are kept), and whether
        labelling needs a token."""
        model, config = served.model, served.model.config
        return {"status": "ok", "model_md5": model.md5,
                "model_loaded_at": served.loaded_at.isoformat(timespec="seconds"),
                "image_size": config["image_size"], "threshold": model.threshold,
                "categories": config["categories"],
                "params": {key: value for key, value in config.items()
                           if key not in ("image_size", "threshold", "categories")},
                "collect": None if store is None else {"file": str(store.path), "token_needed": token is not None}}

    @app.post("/api/predict", response_model=PredictResponse, response_model_exclude_none=True,
              openapi_extra={"requestBody": PREDICT_BODY})
    async def predict(request: Request, bitmap: bool = False) -> dict:
        """P(car) and the label for each drawing: JSON strokes, or an image in the multipart field `file`."""
        content_type = _content_type(request)
        if content_type == "multipart/form-data":
            bitmaps = await _upload_bitmaps(request)
        elif content_type == "application/json":
            bitmaps = await _json_bitmaps(request)
        else:
            raise HTTPException(415, f"expected application/json or multipart/form-data, "
                                     f"not {content_type or 'no content type'}")
        probabilities, model = await batcher.submit(np.stack(bitmaps))
        return {"results": [{"car_probability": float(probability), "label": label_for(probability, model.threshold),
                             "bitmap": image.tolist() if bitmap else None}
                            for probability, image in zip(probabilities, bitmaps)]}

    def kept_store() -> CollectedStore:
        if store is None:
            raise HTTPException(404, "this server keeps no labelled drawings (it was started with --no-collect)")
        return store

    @app.post("/api/drawings", status_code=201, response_model=Saved, dependencies=[Depends(token_check(token))],
              openapi_extra={"requestBody": {
                  "required": True, "content": {"application/json": {"schema": LabelRequest.model_json_schema()}}}})
    async def label_drawing(request: Request) -> dict:
        """Keep a drawing with the label its drawer gives it, for the pipeline to learn from. 201 means it is on disk.
        Where the server has a token (`carsketch serve` makes one unless told --no-token), this needs
        `Authorization: Bearer TOKEN`."""
        kept = kept_store()
        body = await _parse(request, LabelRequest)
        bitmaps = await _bitmaps([body.drawing])
        probabilities, model = await batcher.submit(np.stack(bitmaps))
        probability = float(probabilities[0])
        record = {"key_id": uuid.uuid4().hex, "label": body.label,
                  "timestamp": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="milliseconds"),
                  "car_probability": round(probability, 6), "model": model.md5,
                  "drawing": json.loads(await request.body())["drawing"]}  # the strokes exactly as sent
        try:
            await writer.submit(record)
        except OSError as error:
            raise _save_error(error, kept) from None
        return {"id": record["key_id"], "kept": kept.summary()}

    @app.get("/api/drawings", response_model=Kept)
    def collected_counts() -> dict:
        """How many labelled drawings are kept, per label, and where."""
        return kept_store().summary()

    return app


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
    parser.add_argument("--model", default=ONNX_MODEL_FILE, metavar="PATH",
                        help=f"the trained model (default: {ONNX_MODEL_FILE})")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to listen on (default: 127.0.0.1, this machine only; 0.0.0.0: everyone)")
    parser.add_argument("--port", type=int, default=8000, help="port to listen on (default: 8000; 0: any free one)")
    parser.add_argument("--device", choices=DEVICES, default="auto",
                        help="where the model runs (default auto: CUDA where ONNX Runtime has it, else the CPU)")
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
