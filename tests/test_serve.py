"""`carsketch serve`: the API against ground truth and against the predict command, bad input, micro-batching, a new
model file taken up while serving, and the command itself.

Everything goes over real HTTP: uvicorn on a free loopback port with the fixture model, which calls make_drawings'
cars car and the rest not_car.
"""

import asyncio
import datetime
import hashlib
import io
import json
import os
import shutil
import signal
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pytest
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from carsketch.cli import main as carsketch_main
from carsketch.strokes import strokes_to_bitmap
from carsketch.collected_file import read_collected
from carsketch.inference.collected_store import CollectedStore
from carsketch.inference.onnx_model import OnnxModel
from carsketch.inference.reloading_model import ReloadingModel
from carsketch.inference.app import create_app
from carsketch.inference.http_errors import MAX_BODY_BYTES
from conftest import AIRPLANE, accuracy, draw_png, make_drawings, mixed_drawings
from servers import printed_token, running, serve_process

SQUARE = [[[0, 255, 255, 0, 0], [0, 0, 255, 255, 0]]]
# The airplane as the raw data records it: screen pixels, anywhere, with times (a third list) per stroke.
RAW_AIRPLANE = [[[x * 2.5 + 130 for x in xs], [y * 2.5 + 41 for y in ys], list(range(len(xs)))] for xs, ys in AIRPLANE]


@pytest.fixture(scope="module")
def url(model_path):
    with running(create_app(OnnxModel(model_path))) as base_url:
        yield base_url


@pytest.fixture
def client(url):
    with httpx.Client(base_url=url, timeout=30) as session:
        yield session


def predict_command(paths, model_path, capsys) -> list[dict]:
    """What `python -m carsketch predict --json` prints for these files."""
    assert carsketch_main(["predict", "--json", "--model", str(model_path), *map(str, paths)]) == 0
    return [json.loads(line) for line in capsys.readouterr().out.splitlines()]


@pytest.mark.parametrize("count", [1, 63, 64, 65, 200])
def test_the_api_gives_each_drawing_its_label_in_order_in_requests_of_any_size(client, count):
    drawings, truth = mixed_drawings(count, seed=8000 + count)
    response = client.post("/api/predict", json={"drawings": drawings})
    assert response.status_code == 200
    labels = [result["label"] for result in response.json()["results"]]
    assert accuracy(labels, truth) >= (1 if count == 1 else 0.95)


def test_the_api_gives_what_predict_gives_for_the_same_strokes(client, model_path, tmp_path, capsys):
    drawings = [*make_drawings("car", 2, 8500), AIRPLANE, SQUARE, RAW_AIRPLANE, *make_drawings("other", 2, 8500)]
    (tmp_path / "drawings.ndjson").write_text("".join(json.dumps({"drawing": d}) + "\n" for d in drawings))
    expected = predict_command([tmp_path / "drawings.ndjson"], model_path, capsys)
    response = client.post("/api/predict", json={"drawings": drawings})
    assert response.status_code == 200
    results = response.json()["results"]
    assert [result["label"] for result in results] == [result["label"] for result in expected]
    assert accuracy([results[i]["label"] for i in (0, 1, 5, 6)], [1, 1, 0, 0]) == 1
    assert np.allclose([r["car_probability"] for r in results], [r["car_probability"] for r in expected],
                       rtol=0, atol=1e-6)
    single = client.post("/api/predict", json={"drawing": AIRPLANE}).json()["results"]
    assert len(single) == 1 and single[0]["car_probability"] == pytest.approx(results[2]["car_probability"], abs=1e-6)
    raw = client.post("/api/predict", json={"drawing": RAW_AIRPLANE}).json()["results"][0]  # screen pixels, times
    assert raw["car_probability"] == pytest.approx(single[0]["car_probability"], abs=1e-6)


def test_the_bitmap_the_model_saw_comes_back_on_request(client):
    plain, with_bitmap = (client.post(f"/api/predict{query}", json={"drawing": AIRPLANE}).json()["results"][0]
                          for query in ("", "?bitmap=true"))
    assert "bitmap" not in plain
    assert np.array_equal(np.array(with_bitmap["bitmap"]), strokes_to_bitmap(AIRPLANE))


def test_an_uploaded_image_gets_its_label_as_predict_reads_it(client, model_path, tmp_path, capsys):
    for kind, label in (("car", "car"), ("other", "not_car")):
        path = draw_png(tmp_path / f"{kind}.png", make_drawings(kind, 1, 8600)[0])
        expected = predict_command([path], model_path, capsys)[0]
        response = client.post("/api/predict", files={"file": (path.name, path.read_bytes())})
        assert response.status_code == 200
        result = response.json()["results"][0]
        assert result["label"] == expected["label"] == label
        assert result["car_probability"] == pytest.approx(expected["car_probability"], abs=1e-6)


def test_health_gives_the_models_facts(client, model_path):
    health = client.get("/api/health").json()
    loaded_at = datetime.datetime.fromisoformat(health.pop("model_loaded_at"))
    assert loaded_at.utcoffset() == datetime.timedelta(0)
    assert abs(datetime.datetime.now(datetime.timezone.utc) - loaded_at) < datetime.timedelta(hours=1)
    assert health == {
        "status": "ok", "model_md5": md5(model_path), "image_size": 32, "threshold": 0.5,
        "categories": {"car": ["car"], "not_car": ["apple"]},
        "params": {"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225], "trainable_blocks": 0,
                   "weights": "fixture"}, "collect": None}


def test_the_page_is_one_self_contained_file(client):
    response = client.get("/")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/html")
    page = response.text
    assert "<canvas" in page and "pointerdown" in page
    assert not any(marker in page for marker in ("http://", "https://", "src=", "<link", "@import"))


def test_the_openapi_docs_describe_both_kinds_of_body(client):
    assert client.get("/docs").status_code == 200
    body = client.get("/openapi.json").json()["paths"]["/api/predict"]["post"]["requestBody"]
    assert set(body["content"]) == {"application/json", "multipart/form-data"}


def json_body(value):
    return {"content": value, "headers": {"Content-Type": "application/json"}}


def png_bytes(colour, size=(64, 64), mode="RGB"):
    buffer = io.BytesIO()
    Image.new(mode, size, colour).save(buffer, "PNG")
    return buffer.getvalue()


STROKE = "[[0, 1], [0, 1]]"
BAD_INPUTS = {
    "malformed JSON": (json_body('{"drawing": [[[0, 1], [0'), 400, "malformed JSON"),
    "JSON that is not an object": (json_body("[1, 2]"), 422, "Input should be an object"),
    "a drawing that is a string": (json_body('{"drawing": "car"}'), 422, "drawing: Input should be a valid array"),
    "a coordinate that is a string": (json_body('{"drawing": [[["1"], [1]]]}'), 422, "valid number"),
    "a stroke that is a number": (json_body('{"drawing": [7]}'), 422, "drawing.0: Input should be a valid array"),
    "a stroke without y": (json_body('{"drawing": [[[0, 1]]]}'), 422, "expected strokes like"),
    "neither drawing nor drawings": (json_body("{}"), 422, 'either "drawing" or "drawings"'),
    "both drawing and drawings": (json_body(f'{{"drawing": [{STROKE}], "drawings": [[{STROKE}]]}}'), 422,
                                  'either "drawing" or "drawings"'),
    "an unknown field": (json_body(f'{{"drawing": [{STROKE}], "colour": "red"}}'), 422, "colour: Extra inputs"),
    "x and y of different lengths": (json_body('{"drawing": [[[0, 1, 2], [0, 1]]]}'), 422,
                                     "stroke 1 has 3 x but 2 y values"),
    "NaN": (json_body('{"drawing": [[[0, NaN], [0, 1]]]}'), 422, "NaN or infinite"),
    "Infinity": (json_body('{"drawing": [[[0, 1], [-Infinity, 1]]]}'), 422, "NaN or infinite"),
    "a number too large for a float": (json_body('{"drawing": [[[0, 1e999], [0, 1]]]}'), 422, "NaN or infinite"),
    "an empty drawing": (json_body('{"drawing": []}'), 422, "empty drawing"),
    "strokes without points": (json_body('{"drawing": [[[], []], [[], []]]}'), 422, "empty drawing"),
    "no drawings": (json_body('{"drawings": []}'), 422, '"drawings" is empty'),
    "one bad drawing among good ones": (json_body(f'{{"drawings": [[{STROKE}], [[[0], []]]]}}'), 422,
                                        "drawing 2: malformed drawing: stroke 1 has 1 x but 0 y values"),
    "a body over 1 MB": (json_body('{"drawing": [[[' + "1," * (MAX_BODY_BYTES // 2) + "1], [1]]]}"), 413,
                         "request body over 1,000,000 bytes"),
    "more than 1,000 strokes": (json_body('{"drawing": [' + ", ".join([STROKE] * 1001) + "]}"), 413,
                                "1,001 strokes"),
    "more than 100,000 points": (json_body('{"drawing": [[[' + "1," * 100_000 + "1], [1]]]}"), 413,
                                 "100,001 points"),
    "a file that is not an image": ({"files": {"file": ("car.png", b"\x89PNG\r\n\x1a\n not really")}}, 422,
                                    "not an image file"),
    "a blank image": ({"files": {"file": ("blank.png", png_bytes("white"))}}, 422, "empty drawing (blank image)"),
    "an image of over 25 million pixels in a small file": (
        {"files": {"file": ("huge.png", png_bytes(1, (6000, 5000), "1"))}}, 422, "image too large: 6000x5000"),
    "an upload without a file field": ({"files": {"image": ("car.png", png_bytes("black"))}}, 422,
                                       'multipart field "file"'),
    "a form field instead of a file": ({"data": {"file": "car"}, "files": {"other": ("x", b"x")}}, 422,
                                       'multipart field "file"'),
    "a multipart body without a boundary": ({"content": b"car", "headers": {"Content-Type": "multipart/form-data"}},
                                            400, "boundary"),
    "a wrong content type": ({"content": "car", "headers": {"Content-Type": "text/plain"}}, 415,
                             "not text/plain"),
    "no content type": ({"content": b'{"drawing": [[[0], [0]]]}'}, 415, "not no content type"),
    "a form-encoded body": ({"data": {"drawing": "x"}}, 415, "application/x-www-form-urlencoded"),
    "a query flag that is not a boolean": ({"params": {"bitmap": "maybe"}, "json": {"drawing": AIRPLANE}}, 422,
                                           "query.bitmap: Input should be a valid boolean"),
}


@pytest.mark.parametrize("request_args, status, message", BAD_INPUTS.values(), ids=BAD_INPUTS.keys())
def test_bad_input_gets_a_4xx_with_one_line_and_the_server_goes_on(client, request_args, status, message):
    response = client.post("/api/predict", **request_args)
    assert response.status_code == status, response.text
    body = response.json()
    assert list(body) == ["error"] and message in body["error"] and "\n" not in body["error"], body
    assert client.post("/api/predict", json={"drawing": AIRPLANE}).status_code == 200


def padded(body: bytes, size: int) -> bytes:
    """A JSON body grown to exactly `size` bytes with white space, which JSON allows anywhere between values."""
    assert len(body) <= size
    return body + b" " * (size - len(body))


@pytest.mark.parametrize("size, status", [(600_000, 200), (MAX_BODY_BYTES, 200), (MAX_BODY_BYTES + 1, 413)])
def test_a_json_body_is_refused_only_over_1_mb(client, size, status):
    body = padded(json.dumps({"drawing": AIRPLANE}).encode(), size)
    response = client.post("/api/predict", **json_body(body))
    assert response.status_code == status, response.text
    if status == 413:
        assert response.json() == {"error": "request body over 1,000,000 bytes"}
    else:
        assert response.json() == client.post("/api/predict", json={"drawing": AIRPLANE}).json()


def chunks(body: bytes, size: int = 64 << 10):
    """`body` sent in pieces with no Content-Length (chunked), as a client streaming it does."""
    for start in range(0, len(body), size):
        yield body[start:start + size]


@pytest.mark.parametrize("size, status", [(600_000, 200), (MAX_BODY_BYTES + 1, 413)])
def test_a_chunked_body_is_counted_as_it_streams_in(client, size, status):
    body = padded(json.dumps({"drawing": AIRPLANE}).encode(), size)
    response = client.post("/api/predict", content=chunks(body), headers={"Content-Type": "application/json"})
    assert response.status_code == status, response.text
    assert "content-length" not in response.request.headers


def png_of_size(path, size: int) -> bytes:
    """A car's drawing as a PNG of exactly `size` bytes: an uncompressed text chunk makes up the rest, as a photo's
    metadata can."""
    image = Image.open(draw_png(path, make_drawings("car", 1, 8800)[0]))
    plain = io.BytesIO()
    image.save(plain, "PNG")
    info = PngInfo()
    info.add_text("padding", "x" * (size - len(plain.getvalue()) - 20))  # 20: the chunk's own bytes
    grown = io.BytesIO()
    image.save(grown, "PNG", pnginfo=info)
    assert len(grown.getvalue()) == size
    return grown.getvalue()


@pytest.mark.parametrize("size, status", [(690_018, 200), (1_100_000, 413)])
def test_an_image_upload_is_refused_only_over_1_mb(client, tmp_path, size, status):
    response = client.post("/api/predict", files={"file": ("car.png", png_of_size(tmp_path / "car.png", size))})
    assert response.status_code == status, response.text
    if status == 200:
        assert response.json()["results"][0]["label"] == "car"


def test_a_declared_length_over_1_mb_is_refused_before_the_body_comes(url):
    """Headers alone, saying 2 MB follow: the answer comes without the body."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=60) as connection:
        connection.sendall(b"POST /api/predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                           b"Content-Length: 2000000\r\n\r\n")
        answer = connection.recv(65536)
    assert answer.startswith(b"HTTP/1.1 413 ") and answer.endswith(b'{"error":"request body over 1,000,000 bytes"}')


@pytest.mark.parametrize("method, path, status", [("GET", "/nowhere", 404), ("POST", "/api/nowhere", 404),
                                                  ("GET", "/api/predict", 405), ("POST", "/api/health", 405)])
def test_unknown_routes_and_methods_get_one_line_errors(client, method, path, status):
    response = client.request(method, path)
    assert response.status_code == status and list(response.json()) == ["error"]


def held(model: OnnxModel, seconds: float) -> tuple[list[int], threading.Event]:
    """`model` made to record the drawings of each call and to wait, up to `seconds`, for the event returned before it
    answers: the first call holds the model while the other requests queue."""
    calls, release, predict_proba = [], threading.Event(), model.predict_proba

    def held_predict_proba(bitmaps):
        calls.append(len(bitmaps))
        release.wait(seconds)
        return predict_proba(bitmaps)

    model.predict_proba = held_predict_proba
    return calls, release


def test_concurrent_requests_are_micro_batched_and_each_gets_its_own_answer(model_path):
    model = OnnxModel(model_path)
    calls, release = held(model, 10)  # until all the other requests are waiting
    drawings, truth = mixed_drawings(17, seed=8700)
    app = create_app(model)
    with running(app) as base_url, httpx.Client(base_url=base_url, timeout=30) as session:
        def post(drawing):
            return session.post("/api/predict", json={"drawing": drawing}).json()["results"][0]

        with ThreadPoolExecutor(len(drawings)) as pool:
            first = pool.submit(post, drawings[0])
            while not calls:
                time.sleep(0.01)
            rest = [pool.submit(post, drawing) for drawing in drawings[1:]]
            while app.state.batcher.queue.qsize() < len(rest):  # they all arrive while the model is busy
                time.sleep(0.01)
            release.set()
            results = [first.result()] + [future.result() for future in rest]
    assert calls == [1, 16]
    assert accuracy([result["label"] for result in results], truth) == 1
    expected = OnnxModel(model_path).predict_proba(np.stack([strokes_to_bitmap(drawing) for drawing in drawings]))
    assert np.allclose([result["car_probability"] for result in results], expected, rtol=0, atol=1e-6)


def md5(path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def wait_for(condition, timeout: float = 60):
    """Poll `condition` until it holds; fail where it still does not after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "the server did not get there in time"
        time.sleep(0.05)


def serving_md5(url: str) -> str:
    return httpx.get(f"{url}/api/health").json()["model_md5"]


def car_share(url: str, drawings: list) -> float:
    """The share of `drawings` the server calls car."""
    results = httpx.post(f"{url}/api/predict", json={"drawings": drawings}).json()["results"]
    return float(np.mean([result["label"] == "car" for result in results]))


def replace_model(path, data: bytes, how: str) -> None:
    """Write a new model file at `path`: renamed into place from beside it, or rewritten in place (as DVC copies)."""
    if how == "renamed":
        path.with_suffix(".new").write_bytes(data)
        os.replace(path.with_suffix(".new"), path)
    else:
        path.write_bytes(data)


@pytest.fixture
def served_model(model_path, tmp_path):
    """A copy of the fixture model, for a server to serve while a test changes it."""
    return shutil.copyfile(model_path, tmp_path / "car_sketch.onnx")


CARS = make_drawings("car", 20, 9900)


@pytest.mark.slow
@pytest.mark.parametrize("how", ["renamed", "rewritten"])
def test_the_command_takes_up_a_new_model_file(served_model, inverted_model_path, how):
    with serve_process(served_model, "--no-collect") as (_, url):
        assert serving_md5(url) == md5(served_model) and car_share(url, CARS) >= 0.9
        replace_model(served_model, inverted_model_path.read_bytes(), how)
        wait_for(lambda: serving_md5(url) == md5(inverted_model_path))
        assert car_share(url, CARS) <= 0.1  # the inverted model calls the cars not car


@pytest.mark.slow
@pytest.mark.parametrize("broken", ["garbage", "half-written", "missing"])
def test_a_model_file_that_cannot_be_loaded_leaves_the_old_model_serving_with_one_warning(
        served_model, inverted_model_path, broken, capfd):
    old_md5, new_model = md5(served_model), inverted_model_path.read_bytes()
    stderr = ""
    with serve_process(served_model, "--no-collect") as (_, url):
        if broken == "missing":
            served_model.unlink()
        else:
            served_model.write_bytes(b"\x00garbage" * 1000 if broken == "garbage" else new_model[:len(new_model) // 2])

        def warned() -> bool:
            nonlocal stderr
            stderr += capfd.readouterr().err
            return "warning" in stderr

        wait_for(warned)
        assert serving_md5(url) == old_md5 and car_share(url, CARS) >= 0.9
        replace_model(served_model, new_model, "renamed")  # once it changes again, it is loaded
        wait_for(lambda: serving_md5(url) == md5(inverted_model_path))
        assert car_share(url, CARS) <= 0.1
    stderr += capfd.readouterr().err
    [line] = stderr.splitlines()  # one warning, though the broken file stayed there for polls on end
    assert line.startswith(f"warning: {served_model} changed but cannot be loaded (")
    assert line.endswith(f"); still serving model {old_md5[:8]}")


def test_a_file_that_cannot_be_loaded_is_tried_once_until_it_changes_again(served_model, inverted_model_path,
                                                                            capsys):
    """Poll by poll: a change is loaded once the stat has held for a poll, and a broken file only once."""
    served = ReloadingModel(OnnxModel(served_model))
    old_md5 = served.model.md5

    def polls(count: int) -> None:
        for _ in range(count):
            asyncio.run(served.poll())

    served_model.write_bytes(b"\x00garbage" * 1000)
    polls(1)  # the file changed since the last poll: it may still be being written
    assert capsys.readouterr().err == ""
    polls(5)
    [warning] = capsys.readouterr().err.splitlines()
    assert warning.startswith(f"warning: {served_model} changed but cannot be loaded (") and served.model.md5 == old_md5
    replace_model(served_model, inverted_model_path.read_bytes(), "renamed")
    polls(2)
    assert served.model.md5 == md5(inverted_model_path) and capsys.readouterr().err == ""


def test_a_batch_begun_on_the_old_model_ends_on_it_and_the_next_runs_the_new_one(served_model, inverted_model_path,
                                                                                  tmp_path):
    """A label's P(car) and model md5 come from the model that answered it, whatever the file holds by then."""
    model = OnnxModel(served_model)
    calls, release = held(model, 30)  # the first batch holds the old model until the new one is served
    store = CollectedStore(tmp_path / "drawings.ndjson")
    old_md5, car = md5(served_model), CARS[0]
    app = create_app(ReloadingModel(model, poll_seconds=0.05), store)
    with running(app) as url, ThreadPoolExecutor(1) as pool:
        first = pool.submit(httpx.post, f"{url}/api/drawings", json={"drawing": car, "label": "car"}, timeout=60)
        wait_for(lambda: calls)
        replace_model(served_model, inverted_model_path.read_bytes(), "renamed")
        wait_for(lambda: serving_md5(url) == md5(inverted_model_path))
        release.set()
        assert first.result().status_code == 201
        assert httpx.post(f"{url}/api/drawings", json={"drawing": car, "label": "car"}).status_code == 201
        assert car_share(url, [car]) == 0
    begun_on_old, after = read_collected(store.path)
    assert begun_on_old["model"] == old_md5 and begun_on_old["car_probability"] > 0.5
    assert after["model"] == md5(inverted_model_path) and after["car_probability"] < 0.5
    assert calls == [1]  # the old model answered its one batch and no other


@pytest.mark.slow
def test_the_command_listens_on_loopback_and_stops_cleanly_on_ctrl_c(model_path, tmp_path, capfd):
    collected = tmp_path / "labelled.ndjson"
    with serve_process(model_path, "--collect", str(collected)) as (process, base_url):
        assert base_url.startswith("http://127.0.0.1:")
        assert httpx.get(f"{base_url}/api/health").json()["collect"] == {"file": str(collected), "token_needed": True}
        printed_token(process)
        process.send_signal(signal.SIGINT)
        stdout, _ = process.communicate(timeout=30)
    assert process.returncode == 0 and stdout == "stopped\n" and capfd.readouterr().err == ""


def test_a_missing_model_says_to_run_dvc_repro(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        carsketch_main(["serve", "--model", str(tmp_path / "none.pth")])
    assert exit_info.value.code == 1
    assert capsys.readouterr().err.splitlines() == [
        f"error: {tmp_path / 'none.pth'} is missing: run `dvc repro` first, which makes it"]


def test_a_port_in_use_is_a_one_line_error(model_path, capsys):
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        with pytest.raises(SystemExit) as exit_info:
            carsketch_main(["serve", "--model", str(model_path), "--port", str(port)])
    assert exit_info.value.code == 1
    error = capsys.readouterr().err.splitlines()
    assert len(error) == 1 and error[0].startswith(f"error: cannot listen on 127.0.0.1:{port}")
