"""Labelling drawings: POST /api/drawings and the file it appends to, under load, a kill, a full disk and an
unwritable file; who may label; and reading the file back (the pipeline and predict) past a torn last line."""

import errno
import hashlib
import json
import os
import signal
import subprocess
import sys
import threading
import types
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from carsketch.cli import main as carsketch_main
from carsketch.collected_file import read_collected
from carsketch.inference import collected_store
from carsketch.inference.collected_store import CollectedStore
from carsketch.inference.app import MAX_STROKES, create_app
from carsketch.inference.onnx_model import OnnxModel
from carsketch.labels import LABEL_NAMES
from conftest import REPO_ROOT, accuracy, make_drawings, mixed_drawings
from servers import printed_token, running, serve_process


@pytest.fixture(scope="module")
def model(model_path):
    return OnnxModel(model_path)


@pytest.fixture
def served(model, tmp_path):
    """The app on loopback with a store in tmp_path; yields (client, store)."""
    store = CollectedStore(tmp_path / "collected" / "drawings.ndjson")
    with running(create_app(model, store)) as url, httpx.Client(base_url=url, timeout=60) as client:
        yield client, store


def lines(path) -> list[dict]:
    """Every line of the file, each of which must be a whole JSON line."""
    text = path.read_text()
    assert text == "" or text.endswith("\n")
    return [json.loads(line) for line in text.splitlines()]


def test_a_label_is_kept_with_the_drawing_as_sent_the_models_answer_and_an_id(served, model):
    client, store = served
    drawing = make_drawings("other", 1, 9300)[0]
    response = client.post("/api/drawings", json={"drawing": drawing, "label": "not_car"})
    assert response.status_code == 201
    saved = response.json()
    assert saved["kept"] == {"car": 0, "not_car": 1, "total": 1, "file": str(store.path)}
    [record] = lines(store.path)
    assert list(record) == ["key_id", "label", "timestamp", "car_probability", "model", "drawing"]
    assert record["key_id"] == saved["id"] and record["label"] == "not_car" and record["drawing"] == drawing
    assert f'"drawing":{json.dumps(drawing, separators=(",", ":"))}' in store.path.read_text()  # ints stay ints
    predicted = client.post("/api/predict", json={"drawing": drawing}).json()["results"][0]["car_probability"]
    assert record["car_probability"] == pytest.approx(predicted, abs=1e-6) and predicted < 0.5
    assert record["model"] == hashlib.md5(model.path.read_bytes()).hexdigest()
    assert record["timestamp"].endswith("+00:00")
    assert client.get("/api/drawings").json() == saved["kept"]


def test_predict_reads_the_collected_file_as_it_is(served, model_path, capsys):
    client, store = served
    drawings, truth = mixed_drawings(6, seed=9400)
    for drawing, car in zip(drawings, truth):
        assert client.post("/api/drawings", json={"drawing": drawing, "label": LABEL_NAMES[car]}).status_code == 201
    assert carsketch_main(["predict", "--json", "--model", str(model_path), str(store.path)]) == 0
    results = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [result["index"] for result in results] == [1, 2, 3, 4, 5, 6]
    assert accuracy([result["label"] for result in results], truth) == 1


BAD_LABELS = {
    "an unknown label": ({"drawing": [[[0, 255], [0, 0]]], "label": "truck"}, 422, "label: Input should be 'car' or"),
    "no label": ({"drawing": [[[0, 255], [0, 0]]]}, 422, "label: Field required"),
    "malformed strokes": ({"drawing": [[[0, 1, 2], [0, 1]]], "label": "car"}, 422, "stroke 1 has 3 x but 2 y"),
    "an empty drawing": ({"drawing": [], "label": "car"}, 422, "empty drawing"),
    "too many strokes": ({"drawing": [[[0, 1], [0, 1]]] * (MAX_STROKES + 1), "label": "car"}, 413, "1,001 strokes"),
}


@pytest.mark.parametrize("body, status, message", BAD_LABELS.values(), ids=BAD_LABELS.keys())
def test_a_bad_label_gets_a_one_line_4xx_and_nothing_is_kept(served, body, status, message):
    client, store = served
    response = client.post("/api/drawings", json=body)
    assert response.status_code == status and list(response.json()) == ["error"], response.text
    assert message in response.json()["error"] and "\n" not in response.json()["error"]
    assert not store.path.exists() and client.get("/api/drawings").json()["total"] == 0


def test_labels_are_json_only_and_documented(served):
    client, _ = served
    response = client.post("/api/drawings", content="car", headers={"Content-Type": "text/plain"})
    assert response.status_code == 415 and "expected application/json" in response.json()["error"]
    paths = client.get("/openapi.json").json()["paths"]["/api/drawings"]
    assert set(paths) == {"get", "post"} and "201" in paths["post"]["responses"]
    assert "label" in paths["post"]["requestBody"]["content"]["application/json"]["schema"]["properties"]


def test_without_a_store_labelling_is_refused_and_the_page_is_told(model):
    with running(create_app(model)) as url:
        response = httpx.post(f"{url}/api/drawings", json={"drawing": [[[0, 255], [0, 0]]], "label": "car"})
        assert response.status_code == 404 and "--no-collect" in response.json()["error"]
        assert httpx.get(f"{url}/api/health").json()["collect"] is None


LABEL = {"drawing": [[[0, 255], [0, 0]]], "label": "car"}


def bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


def assert_refused_and_the_rest_open(url: str) -> None:
    """A label without the token gets a one-line 401 that says what to do; predicting, the counts, the health and the
    page need none."""
    for headers in ({}, bearer("wrong"), {"Authorization": "s3cret"}, {"Authorization": "Basic czNjcmV0"}):
        response = httpx.post(f"{url}/api/drawings", json=LABEL, headers=headers)
        assert response.status_code == 401 and response.headers["www-authenticate"] == "Bearer"
        assert list(response.json()) == ["error"] and "?token=" in response.json()["error"]
    assert httpx.post(f"{url}/api/predict", json={"drawing": LABEL["drawing"]}).status_code == 200
    assert all(httpx.get(f"{url}{path}").status_code == 200 for path in ("/api/drawings", "/api/health", "/"))


def test_a_token_guards_labelling_but_not_predicting(model, tmp_path):
    store = CollectedStore(tmp_path / "drawings.ndjson")
    with running(create_app(model, store, token="s3cret")) as url:
        assert_refused_and_the_rest_open(url)
        assert not store.path.exists()
        assert httpx.post(f"{url}/api/drawings", json=LABEL, headers=bearer("s3cret")).status_code == 201
    assert len(lines(store.path)) == 1


@pytest.mark.slow
@pytest.mark.parametrize("host", ["127.0.0.1", "0.0.0.0"])
def test_the_command_makes_a_token_prints_it_in_the_pages_url_and_labels_need_it(model_path, tmp_path, host):
    collected = tmp_path / "drawings.ndjson"
    with serve_process(model_path, "--host", host, "--collect", str(collected)) as (process, url):
        token_line = process.stdout.readline()
        assert token_line.startswith(f"labelled drawings go to {collected} (0 kept so far); labelling needs the "
                                     f"token: open {url}/?token=")
        token = token_line.rstrip().rsplit("?token=", 1)[1]
        local = url.replace("0.0.0.0", "127.0.0.1")
        assert_refused_and_the_rest_open(local)
        assert httpx.post(f"{local}/api/drawings", json=LABEL, headers=bearer(token)).status_code == 201
        assert httpx.get(f"{local}/api/health").json()["collect"]["token_needed"] is True
    [record] = lines(collected)
    assert record["drawing"] == LABEL["drawing"]


@pytest.mark.slow
def test_the_command_takes_the_token_it_is_given(model_path, tmp_path):
    collected = tmp_path / "drawings.ndjson"
    with serve_process(model_path, "--token", "abc", "--collect", str(collected)) as (process, url):
        assert printed_token(process) == "abc"
        assert httpx.post(f"{url}/api/drawings", json=LABEL, headers=bearer("abcd")).status_code == 401
        assert httpx.post(f"{url}/api/drawings", json=LABEL, headers=bearer("abc")).status_code == 201
    assert len(lines(collected)) == 1


@pytest.mark.slow
def test_with_no_token_the_command_lets_this_machine_label(model_path, tmp_path):
    collected = tmp_path / "drawings.ndjson"
    with serve_process(model_path, "--no-token", "--collect", str(collected)) as (process, url):
        assert process.stdout.readline() == (f"labelled drawings go to {collected} (0 kept so far); anyone on this "
                                             f"machine may label (--no-token)\n")
        assert httpx.post(f"{url}/api/drawings", json=LABEL).status_code == 201
        assert httpx.get(f"{url}/api/health").json()["collect"]["token_needed"] is False
    assert len(lines(collected)) == 1


def test_no_token_off_loopback_is_refused_before_listening(model_path, tmp_path):
    result = subprocess.run([sys.executable, "-m", "carsketch", "serve", "--model", str(model_path), "--port", "0",
                             "--host", "0.0.0.0", "--no-token", "--collect", str(tmp_path / "drawings.ndjson")],
                            cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 1 and result.stdout == ""  # it never said it was serving
    assert result.stderr == ("error: --no-token would let anyone who reaches 0.0.0.0 label drawings, and every label "
                             "is trained on: use it with a loopback --host (127.0.0.1) only\n")


@pytest.mark.slow
def test_2000_labels_from_16_concurrent_clients_are_2000_whole_lines(served):
    client, store = served
    drawings, truth = mixed_drawings(2000, seed=9500)

    def label(index):
        response = client.post("/api/drawings", json={"drawing": drawings[index], "label": LABEL_NAMES[truth[index]]})
        assert response.status_code == 201, response.text
        return response.json()["id"]

    with ThreadPoolExecutor(16) as pool:
        ids = list(pool.map(label, range(2000)))
    records = lines(store.path)
    assert len(records) == 2000 and sorted(r["key_id"] for r in records) == sorted(ids) and len(set(ids)) == 2000
    by_id = {record["key_id"]: record for record in records}
    assert all(by_id[key]["drawing"] == drawings[i] and by_id[key]["label"] == LABEL_NAMES[truth[i]]
               for i, key in enumerate(ids))
    assert client.get("/api/drawings").json()["total"] == 2000 == sum(1 for _ in read_collected(store.path))


@pytest.mark.slow
def test_a_server_killed_mid_load_keeps_every_acknowledged_label(model_path, tmp_path):
    collected = tmp_path / "drawings.ndjson"
    drawings, truth = mixed_drawings(400, seed=9600)
    acknowledged, lock = [], threading.Lock()
    with serve_process(model_path, "--collect", str(collected)) as (process, url):
        token = printed_token(process)

        def label(index):
            try:
                response = httpx.post(f"{url}/api/drawings", timeout=30, headers=bearer(token),
                                      json={"drawing": drawings[index], "label": LABEL_NAMES[truth[index]]})
            except httpx.HTTPError:
                return
            if response.status_code == 201:
                with lock:
                    acknowledged.append(response.json()["id"])
                    if len(acknowledged) == 100:
                        process.send_signal(signal.SIGKILL)  # mid-load: other requests are in flight

        with ThreadPoolExecutor(8) as pool:
            list(pool.map(label, range(len(drawings))))
        assert process.wait(30) == -signal.SIGKILL
    kept = {record["key_id"] for record in read_collected(collected)}
    assert len(acknowledged) >= 100 and set(acknowledged) <= kept
    # the next server appends after whatever the kill left, on a fresh line
    with serve_process(model_path, "--collect", str(collected)) as (process, url):
        assert httpx.post(f"{url}/api/drawings", json={"drawing": drawings[0], "label": "car"},
                          headers=bearer(printed_token(process))).status_code == 201
    assert len(lines(collected)) == len(kept) + 1


def test_a_torn_last_line_is_skipped_with_a_warning_and_cut_before_the_next_label(tmp_path, model_path, capfd):
    path = tmp_path / "drawings.ndjson"
    whole = [json.dumps({"key_id": f"k{i}", "label": "car", "drawing": make_drawings("car", 1, i)[0]}) + "\n"
             for i in range(2)]
    path.write_text("".join(whole) + whole[0][:40])  # the kill came in the middle of a third line
    assert [record["key_id"] for record in read_collected(path)] == ["k0", "k1"]
    assert capfd.readouterr().err == f"warning: {path} line 3: a torn last line (a write cut short), ignored\n"
    result = subprocess.run([sys.executable, "-m", "carsketch", "predict", "--json", "--model", str(model_path),
                             str(path)], cwd=REPO_ROOT, capture_output=True, text=True)
    assert result.returncode == 0 and len(result.stdout.splitlines()) == 2
    assert result.stderr == f"warning: {path} line 3: a torn last line (a write cut short), ignored\n"
    store = CollectedStore(path)
    store.append([{"key_id": "k2", "label": "not_car", "drawing": make_drawings("other", 1, 2)[0]}])
    assert [record["key_id"] for record in lines(path)] == ["k0", "k1", "k2"]
    assert store.summary()["total"] == 3


def test_an_unwritable_file_fails_the_label_with_a_5xx_and_the_server_goes_on(served):
    client, store = served
    body = {"drawing": make_drawings("car", 1, 9700)[0], "label": "car"}
    assert client.post("/api/drawings", json=body).status_code == 201
    saved = store.path.read_bytes()
    store.path.rename(store.path.with_name("aside"))
    store.path.mkdir()  # a folder where the file was: no write can succeed
    response = client.post("/api/drawings", json=body)
    assert response.status_code == 500 and list(response.json()) == ["error"]
    assert response.json()["error"] == f"cannot write {store.path} (Is a directory): the drawing was not saved"
    assert client.post("/api/predict", json={"drawing": body["drawing"]}).status_code == 200
    store.path.rmdir()
    store.path.with_name("aside").rename(store.path)
    assert client.post("/api/drawings", json=body).status_code == 201
    assert store.path.read_bytes().startswith(saved) and len(lines(store.path)) == 2


def full_disk_os(room: list[int]) -> types.SimpleNamespace:
    """The os module as the store sees it on a disk with room for room[0] bytes of its file: a write that does not fit
    writes what fits, and the next fails with ENOSPC, as on a real full disk. Change room[0] to free space."""
    def write(fd: int, data: bytes) -> int:
        free = room[0] - os.fstat(fd).st_size
        if free <= 0:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return os.write(fd, data[:free])
    return types.SimpleNamespace(**{**vars(os), "write": write})


def test_a_full_disk_fails_the_label_with_a_507_and_the_file_stays_valid(model, tmp_path, monkeypatch):
    store = CollectedStore(tmp_path / "drawings.ndjson")
    room = [4096]
    monkeypatch.setattr(collected_store, "os", full_disk_os(room))
    drawings, truth = mixed_drawings(400, seed=9800)
    with running(create_app(model, store)) as url, httpx.Client(base_url=url, timeout=60) as client:
        statuses = []
        for drawing, car in zip(drawings, truth):
            response = client.post("/api/drawings", json={"drawing": drawing, "label": LABEL_NAMES[car]})
            statuses.append(response.status_code)
            if response.status_code != 201:
                break
        assert statuses[-1] == 507 and statuses.count(201) == len(statuses) - 1 > 10
        assert response.json() == {"error": f"the disk holding {store.path} is full: the drawing was not saved"}
        kept = len(statuses) - 1
        assert store.path.stat().st_size < room[0]  # the label that did not fit left none of its bytes
        assert client.get("/api/health").status_code == 200
        assert client.post("/api/predict", json={"drawing": drawings[0]}).status_code == 200
        assert client.post("/api/drawings", json={"drawing": drawings[0], "label": "car"}).status_code == 507
        assert client.get("/api/drawings").json()["total"] == kept
        room[0] *= 2  # space freed: labelling goes on where it stopped
        assert client.post("/api/drawings", json={"drawing": drawings[kept], "label": "car"}).status_code == 201
    assert [record["drawing"] for record in lines(store.path)] == drawings[:kept + 1]


def test_a_collected_file_that_cannot_be_read_stops_the_server_at_start_in_one_line(model_path, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        carsketch_main(["serve", "--model", str(model_path), "--collect", str(tmp_path)])
    assert exit_info.value.code == 1
    assert capsys.readouterr().err == f"error: cannot read the labelled drawings in {tmp_path} (Is a directory)\n"


def test_a_store_counts_what_the_file_already_holds(tmp_path):
    path = tmp_path / "drawings.ndjson"
    CollectedStore(path).append([{"key_id": str(i), "label": LABEL_NAMES[i % 2], "drawing": [[[0, 1], [0, 1]]]}
                               for i in range(5)])
    assert CollectedStore(path).summary() == {"car": 2, "not_car": 3, "total": 5, "file": str(path)}
    assert os.stat(path).st_mode & 0o777 == 0o644


def test_the_collected_file_is_read_in_order_and_hand_edited_lines_are_skipped(tmp_path, capfd):
    path = tmp_path / "drawings.ndjson"
    path.write_text('{"key_id": "a", "label": "car", "drawing": []}\n{"key_id": "b", "label": "truck", '
                    '"drawing": []}\nnot json\n\n{"key_id": "c", "label": "not_car", "drawing": []}\n')
    assert [record["key_id"] for record in read_collected(path)] == ["a", "c"]
    assert capfd.readouterr().err.splitlines() == [
        f"warning: {path} line 2: not a labelled drawing (its label is not one of car, not_car), ignored",
        f"warning: {path} line 3: not a labelled drawing (malformed JSON (Expecting value)), ignored"]
    assert list(read_collected(tmp_path / "missing.ndjson")) == []
