"""`python -m carsketch serve`: a drawing page and a JSON API over the trained model, on a local port.

The model is loaded once. `GET /` is a self-contained page to draw on; `POST /api/predict` classifies
Quick, Draw! strokes (JSON) or an image (multipart field `file`), rasterised or read exactly as the predict
command does, so both give the same P(car). Concurrent requests are micro-batched into one model call.
Bad input gets a 4xx with one line of JSON, `{"error": "..."}`, and never takes the server down.
"""

import argparse
import asyncio
import contextlib
import io
import socket
from pathlib import Path
from typing import Callable, Literal

import numpy as np
import uvicorn
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers, UploadFile
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp

from carsketch.inference.drawings import image_to_bitmap, load_image, strokes_to_bitmap
from carsketch.devices import DEVICES
from carsketch.errors import PipelineError
from carsketch.labels import SIDES
from carsketch.inference.onnx_model import OnnxModel
from carsketch.paths import ONNX_MODEL_FILE
from carsketch.inference.predict import label_for

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


UPLOAD_SCHEMA = {"type": "object", "required": ["file"],
                 "properties": {"file": {"type": "string", "format": "binary",
                                         "description": "an image (PNG, JPEG, ...), read as `predict` reads images"}}}
PREDICT_BODY = {"required": True, "content": {"application/json": {"schema": PredictRequest.model_json_schema()},
                                              "multipart/form-data": {"schema": UPLOAD_SCHEMA}}}


class MicroBatcher:
    """Runs the model once for all the drawings waiting, rather than once per request.

    While one model call runs (in a thread, so the server keeps accepting requests), new requests queue; the
    next call takes all of them, up to max_batch drawings. A batch costs far less than its drawings one by one.
    """

    def __init__(self, predict_proba: Callable[[np.ndarray], np.ndarray], max_batch: int = MAX_BATCH):
        self.predict_proba = predict_proba
        self.max_batch = max_batch
        self.queue: asyncio.Queue = asyncio.Queue()

    def waiting(self) -> int:
        """The requests queued for the next model call."""
        return self.queue.qsize()

    async def predict(self, bitmaps: np.ndarray) -> np.ndarray:
        """P(car) for these bitmaps, computed in a batch with whatever else is waiting."""
        future = asyncio.get_running_loop().create_future()
        self.queue.put_nowait((bitmaps, future))
        return await future

    async def run(self) -> None:
        """Forever: wait for a request, take every other one already waiting, and answer them with one call."""
        while True:
            jobs = [await self.queue.get()]
            size = len(jobs[0][0])
            while size < self.max_batch and not self.queue.empty():
                jobs.append(self.queue.get_nowait())
                size += len(jobs[-1][0])
            try:
                probabilities = await asyncio.to_thread(self.predict_proba, np.concatenate([b for b, _ in jobs]))
            except Exception as error:  # the callers' requests fail with it; the batcher goes on
                for _, future in jobs:
                    if not future.done():
                        future.set_exception(error)
                continue
            ends = np.cumsum([len(bitmaps) for bitmaps, _ in jobs])
            for (_, future), part in zip(jobs, np.split(probabilities, ends[:-1])):
                if not future.done():  # its client may have gone
                    future.set_result(part)


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


async def _json_bitmaps(request: Request) -> list[np.ndarray]:
    try:
        body = PredictRequest.model_validate_json(await request.body())
    except ValidationError as error:
        first = error.errors()[0]
        if first["type"] == "json_invalid":
            raise HTTPException(400, f"malformed JSON ({first['msg'].removeprefix('Invalid JSON: ')})") from None
        raise HTTPException(422, _one_line(error)) from None
    if (body.drawing is None) == (body.drawings is None):
        raise HTTPException(422, 'expected a JSON object with either "drawing" or "drawings"')
    drawings = [body.drawing] if body.drawings is None else body.drawings
    if not drawings:
        raise HTTPException(422, '"drawings" is empty')
    strokes = sum(len(drawing) for drawing in drawings)
    points = sum(len(stroke[0]) for drawing in drawings for stroke in drawing if stroke)
    if strokes > MAX_STROKES or points > MAX_POINTS:
        raise HTTPException(413, f"too large: {strokes:,} strokes and {points:,} points; a request may have "
                                 f"{MAX_STROKES:,} strokes and {MAX_POINTS:,} points at most")
    return await run_in_threadpool(_rasterise, drawings)


def _image_bitmap(data: bytes) -> np.ndarray:
    try:
        return image_to_bitmap(load_image(io.BytesIO(data), MAX_IMAGE_PIXELS))
    except PipelineError as error:
        raise HTTPException(422, str(error)) from None


async def _upload_bitmaps(request: Request) -> list[np.ndarray]:
    upload = (await request.form()).get("file")
    if not isinstance(upload, UploadFile):
        raise HTTPException(422, 'expected an image file in the multipart field "file"')
    return [await run_in_threadpool(_image_bitmap, await upload.read())]


def create_app(model: OnnxModel) -> FastAPI:
    """The web app around a loaded model: the page, the API and its docs at /docs."""
    batcher = MicroBatcher(model.predict_proba)

    @contextlib.asynccontextmanager
    async def lifespan(app):
        worker = asyncio.create_task(batcher.run())
        yield
        worker.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await worker

    app = FastAPI(title="Car Sketch Classifier", lifespan=lifespan,
                  description="Tells car from not car in Quick, Draw! sketches. Draw at `/`.",
                  exception_handlers={HTTPException: _http_error, RequestValidationError: _invalid_request,
                                      Exception: _server_error})
    app.add_middleware(BodyLimit)
    app.state.batcher = batcher

    @app.get("/", include_in_schema=False)
    def page() -> FileResponse:
        return FileResponse(PAGE)

    @app.get("/api/health")
    def health() -> dict:
        """The model's facts: input size, threshold, categories and the rest of its recipe."""
        config = model.config
        return {"status": "ok", "image_size": config["image_size"], "threshold": model.threshold,
                "categories": config["categories"],
                "params": {key: value for key, value in config.items()
                           if key not in ("image_size", "threshold", "categories")}}

    @app.post("/api/predict", response_model=PredictResponse, response_model_exclude_none=True,
              openapi_extra={"requestBody": PREDICT_BODY})
    async def predict(request: Request, bitmap: bool = False) -> dict:
        """P(car) and the label for each drawing: JSON strokes, or an image in the multipart field `file`."""
        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if content_type == "application/json":
            bitmaps = await _json_bitmaps(request)
        elif content_type == "multipart/form-data":
            bitmaps = await _upload_bitmaps(request)
        else:
            raise HTTPException(415, f"expected application/json or multipart/form-data, "
                                     f"not {content_type or 'no content type'}")
        probabilities = await batcher.predict(np.stack(bitmaps))
        return {"results": [{"car_probability": float(probability), "label": label_for(probability, model.threshold),
                             "bitmap": image.tolist() if bitmap else None}
                            for probability, image in zip(probabilities, bitmaps)]}

    return app


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


def run(args: argparse.Namespace) -> int:
    """Serve until Ctrl-C; says where it listens first."""
    model = OnnxModel(args.model, args.device)  # the model `predict` runs, so they agree
    sock = listen(args.host, args.port)
    host, port = sock.getsockname()[:2]
    url = f"http://{f'[{host}]' if ':' in host else host}:{port}/"
    print(f"serving {args.model} at {url} (API docs at {url}docs); Ctrl-C to stop", flush=True)
    server = uvicorn.Server(uvicorn.Config(create_app(model), log_level="warning"))
    with contextlib.suppress(KeyboardInterrupt):  # uvicorn shuts down cleanly, then re-raises the Ctrl-C
        server.run(sockets=[sock])
    print("stopped", flush=True)
    return 0
