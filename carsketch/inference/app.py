"""The web app of `carsketch serve`: the page to draw on and the JSON API over the served model.

`POST /api/predict` classifies Quick, Draw! strokes (JSON) or an image (multipart field `file`), rasterised or read
exactly as the predict command does, so both give the same P(car); concurrent requests are micro-batched into one
model call. `POST /api/drawings` keeps a drawing with the label its drawer gives it, for the pipeline to learn from;
concurrent labels are written and fsynced together, and labelling needs the server's token where one is given. Bad
input gets a 4xx with one line of JSON and never takes the server down (carsketch.inference.http_errors).
"""

import asyncio
import contextlib
import datetime
import errno
import io
import secrets
import uuid
from pathlib import Path
from typing import Callable

import numpy as np
from fastapi import Depends, FastAPI, Request
from fastapi.responses import FileResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException

from carsketch.errors import PipelineError
from carsketch.inference.batcher import Batcher
from carsketch.inference.collected_store import CollectedStore
from carsketch.inference.http_errors import HANDLERS, BodyLimit, one_line
from carsketch.inference.images import image_to_bitmap, load_image
from carsketch.inference.onnx_model import OnnxModel
from carsketch.inference.predict import label_for
from carsketch.inference.reloading_model import ReloadingModel
from carsketch.inference.schemas import (LABEL_BODY, PREDICT_BODY, Kept, LabelRequest, PredictRequest,
                                         PredictResponse, Saved, Strokes)
from carsketch.strokes import strokes_to_bitmap

PAGE = Path(__file__).with_name("static") / "index.html"
JSON, MULTIPART = "application/json", "multipart/form-data"
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


def _content_type(request: Request, accepted: tuple[str, ...]) -> str:
    """The request's content type, which must be one of `accepted` (415)."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type not in accepted:
        raise HTTPException(415, f"expected {' or '.join(accepted)}, not {content_type or 'no content type'}")
    return content_type


async def _parse(request: Request, body_model: type[BaseModel]) -> BaseModel:
    """The JSON body as `body_model`, parsed and validated in one pass: 400 for malformed JSON, 422 for a wrong
    shape."""
    try:
        return body_model.model_validate_json(await request.body())
    except ValidationError as error:
        first = error.errors()[0]
        if first["type"] == "json_invalid":
            raise HTTPException(400, f"malformed JSON ({first['msg'].removeprefix('Invalid JSON: ')})") from None
        raise HTTPException(422, one_line(error)) from None


def _rasterise(drawings: list[Strokes]) -> list[np.ndarray]:
    """Each drawing's 28x28 bitmap, as `predict` makes it from an .ndjson line; 422 names a bad drawing."""
    bitmaps = []
    for number, drawing in enumerate(drawings, 1):
        try:
            bitmaps.append(strokes_to_bitmap(drawing))
        except PipelineError as error:
            raise HTTPException(422, f"drawing {number}: {error}" if len(drawings) > 1 else str(error)) from None
    return bitmaps


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


async def _upload_bitmaps(request: Request) -> list[np.ndarray]:
    upload = (await request.form()).get("file")
    if not isinstance(upload, UploadFile):
        raise HTTPException(422, 'expected an image file in the multipart field "file"')
    return [await run_in_threadpool(_image_bitmap, await upload.read())]


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


def _health(served: ReloadingModel, store: CollectedStore | None, token: str | None) -> dict:
    """GET /api/health's answer (documented there)."""
    model, config = served.model, served.model.config
    return {"status": "ok", "model_md5": model.md5,
            "model_loaded_at": served.loaded_at.isoformat(timespec="seconds"),
            "image_size": config["image_size"], "threshold": model.threshold,
            "categories": config["categories"],
            "params": {key: value for key, value in config.items()
                       if key not in ("image_size", "threshold", "categories")},
            "collect": None if store is None else {"file": str(store.path), "token_needed": token is not None}}


def _label_record(body: LabelRequest, probability: float, model: OnnxModel) -> dict:
    """A labelled drawing's line in the collected file (carsketch.collected_file)."""
    return {"key_id": uuid.uuid4().hex, "label": body.label,
            "timestamp": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="milliseconds"),
            "car_probability": round(probability, 6), "model": model.md5, "drawing": body.drawing}


def _lifespan(*forever: Callable) -> Callable:
    """An app lifespan that runs each coroutine function of `forever` as a task while the app serves."""
    @contextlib.asynccontextmanager
    async def lifespan(app):
        tasks = [asyncio.create_task(run()) for run in forever]
        yield
        for task in tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    return lifespan


def create_app(model: OnnxModel | ReloadingModel, store: CollectedStore | None = None,
               token: str | None = None) -> FastAPI:
    """The web app around a loaded model, taken up again whenever its file changes: the page, the API and its docs at
    /docs. Labelled drawings go to `store` (None: none are kept); labelling needs `token` where one is given."""
    served = model if isinstance(model, ReloadingModel) else ReloadingModel(model)
    batcher = model_batcher(served)
    writer = writer_batcher(store) if store is not None else None
    app = FastAPI(title="Car Sketch Classifier", exception_handlers=HANDLERS,
                  lifespan=_lifespan(served.watch, batcher.run, *([writer.run] if writer else [])),
                  description="Tells car from not car in Quick, Draw! sketches. Draw at `/`.")
    app.add_middleware(BodyLimit)
    app.state.batcher = batcher

    @app.get("/", include_in_schema=False)
    def page() -> FileResponse:
        return FileResponse(PAGE)

    @app.get("/api/health")
    async def health() -> dict:
        """The model served: its file's md5 (as dvc.lock records it), when it was loaded (UTC), input size, threshold,
        categories and the rest of its recipe; and where labelled drawings go (null: none are kept), and whether
        labelling needs a token."""
        return _health(served, store, token)

    @app.post("/api/predict", response_model=PredictResponse, response_model_exclude_none=True,
              openapi_extra={"requestBody": PREDICT_BODY})
    async def predict(request: Request, bitmap: bool = False) -> dict:
        """P(car) and the label for each drawing: JSON strokes, or an image in the multipart field `file`."""
        if _content_type(request, (JSON, MULTIPART)) == MULTIPART:
            bitmaps = await _upload_bitmaps(request)
        else:
            bitmaps = await _json_bitmaps(request)
        probabilities, model = await batcher.submit(np.stack(bitmaps))
        return {"results": [{"car_probability": float(probability), "label": label_for(probability, model.threshold),
                             "bitmap": image.tolist() if bitmap else None}
                            for probability, image in zip(probabilities, bitmaps)]}

    def kept_store() -> CollectedStore:
        if store is None:
            raise HTTPException(404, "this server keeps no labelled drawings (it was started with --no-collect)")
        return store

    @app.post("/api/drawings", status_code=201, response_model=Saved, dependencies=[Depends(token_check(token))],
              openapi_extra={"requestBody": LABEL_BODY})
    async def label_drawing(request: Request) -> dict:
        """Keep a drawing with the label its drawer gives it, for the pipeline to learn from. 201 means it is on disk.
        Where the server has a token (`carsketch serve` makes one unless told --no-token), this needs
        `Authorization: Bearer TOKEN`."""
        kept = kept_store()
        _content_type(request, (JSON,))
        body = await _parse(request, LabelRequest)
        probabilities, model = await batcher.submit(np.stack(await _bitmaps([body.drawing])))
        record = _label_record(body, float(probabilities[0]), model)
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
