"""The download stage against a real HTTP server on loopback, and against local folders."""

import json

import numpy as np
import pytest

from carsketch.download import fetch_category
from carsketch.quickdraw import BITMAP_PIXELS as ROW_BYTES
from conftest import write_category_files, write_params
from stages import download, preprocess
from carsketch.errors import PipelineError

FAST = {"retries": 2, "backoff_s": 0.01}


@pytest.fixture
def served(quickdraw_server):
    quickdraw_server.arrays = write_category_files(quickdraw_server.folder, {"car": 50, "pickup truck": 30})
    return quickdraw_server


def test_range_request_fetches_only_the_rows_asked_for(served, tmp_path):
    report = fetch_category(served.url, "car", tmp_path / "car.npy", max_rows=7, **FAST)
    assert np.array_equal(np.load(tmp_path / "car.npy"), served.arrays["car"][:7])
    assert served.requests == [("/car.npy", f"bytes=0-{128 + 7 * ROW_BYTES - 1}")]
    assert report == {"rows": 7, "bytes_fetched": 128 + 7 * ROW_BYTES, "full_size_bytes": 128 + 50 * ROW_BYTES}


def test_server_ignoring_range_is_read_only_as_far_as_needed(served, tmp_path):
    served.faults["/car.npy"] = ["ignore_range"]
    report = fetch_category(served.url, "car", tmp_path / "car.npy", max_rows=5, **FAST)
    assert np.array_equal(np.load(tmp_path / "car.npy"), served.arrays["car"][:5])
    assert report["bytes_fetched"] == 128 + 5 * ROW_BYTES
    assert report["full_size_bytes"] == 128 + 50 * ROW_BYTES


def test_spaces_are_url_encoded_and_all_rows_fetched_without_max(served, tmp_path):
    report = fetch_category(served.url, "pickup truck", tmp_path / "pickup truck.npy", **FAST)
    assert served.requests == [("/pickup%20truck.npy", None)]
    assert report["rows"] == 30
    assert np.array_equal(np.load(tmp_path / "pickup truck.npy"), served.arrays["pickup truck"])


def test_missing_category_is_a_clear_error_and_not_retried(served, tmp_path):
    with pytest.raises(PipelineError, match=r"no such file: .*/van\.npy \(HTTP 404\)"):
        fetch_category(served.url, "van", tmp_path / "van.npy", **FAST)
    assert len(served.requests) == 1
    assert list(tmp_path.glob("*van*")) == []


def test_server_error_is_retried(served, tmp_path):
    served.faults["/car.npy"] = ["500"]
    fetch_category(served.url, "car", tmp_path / "car.npy", max_rows=10, **FAST)
    assert len(served.requests) == 2
    assert np.array_equal(np.load(tmp_path / "car.npy"), served.arrays["car"][:10])


def test_connection_cut_mid_body_is_retried_without_partial_file(served, tmp_path):
    served.faults["/car.npy"] = ["cut"]
    fetch_category(served.url, "car", tmp_path / "car.npy", **FAST)
    assert len(served.requests) == 2
    assert np.array_equal(np.load(tmp_path / "car.npy"), served.arrays["car"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["car.npy", "mirror"]


def test_giving_up_leaves_no_file(served, tmp_path):
    served.faults["/car.npy"] = ["cut", "500", "cut", "cut"]  # the 500 is retried at once, within the second try
    with pytest.raises(PipelineError, match="giving up on .*car.npy after 3 attempts"):
        fetch_category(served.url, "car", tmp_path / "car.npy", **FAST)
    assert len(served.requests) == 4
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mirror"]


def test_a_server_that_keeps_failing_is_one_clear_error(served, tmp_path):
    served.faults["/car.npy"] = ["500"] * 3
    with pytest.raises(PipelineError, match=r"car.npy: HTTP 500 .*\(retried\)"):
        fetch_category(served.url, "car", tmp_path / "car.npy", **FAST)
    assert len(served.requests) == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mirror"]


def test_corrupt_header_is_an_error(served, tmp_path):
    (served.folder / "van.npy").write_bytes(b"<html>not a numpy file</html>" * 10)
    with pytest.raises(PipelineError, match="van.npy is not a valid .npy file"):
        fetch_category(served.url, "van", tmp_path / "van.npy", **FAST)
    assert not (tmp_path / "van.npy").exists()


def test_wrong_shape_is_an_error(served, tmp_path):
    np.save(served.folder / "van.npy", np.zeros((4, 100), np.uint8))
    with pytest.raises(PipelineError, match=r"not a Quick, Draw! bitmap file.*shape \(4, 100\)"):
        fetch_category(served.url, "van", tmp_path / "van.npy", **FAST)


def test_longer_header_than_guessed_costs_a_second_request(served, tmp_path):
    array = served.arrays["car"]
    header = f"{{'descr': '|u1', 'fortran_order': False, 'shape': {array.shape}, }}".ljust(245) + "\n"
    (served.folder / "van.npy").write_bytes(  # a valid .npy whose header takes 256 bytes, not 128
        b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header.encode() + array.tobytes())
    fetch_category(served.url, "van", tmp_path / "van.npy", max_rows=3, **FAST)
    assert np.array_equal(np.load(tmp_path / "van.npy"), array[:3])
    assert len(served.requests) == 2


@pytest.mark.parametrize("as_url", [False, True])
def test_local_folder_and_file_url_sources(served, tmp_path, as_url):
    base = served.folder.as_uri() if as_url else str(served.folder)
    report = fetch_category(base, "pickup truck", tmp_path / "out.npy", max_rows=4, **FAST)
    assert np.array_equal(np.load(tmp_path / "out.npy"), served.arrays["pickup truck"][:4])
    assert report["full_size_bytes"] == (served.folder / "pickup truck.npy").stat().st_size
    assert served.requests == []


def test_truncated_local_file_is_an_error(served, tmp_path):
    data = (served.folder / "car.npy").read_bytes()
    (served.folder / "van.npy").write_bytes(data[:128 + 3 * ROW_BYTES + 10])
    with pytest.raises(PipelineError, match="body ended"):
        fetch_category(str(served.folder), "van", tmp_path / "van.npy")
    assert not (tmp_path / "van.npy").exists()


def test_main_downloads_every_category_and_reports_its_bytes(served, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_params(tmp_path, base_url=served.url, categories={"car": ["car"], "not_car": ["pickup truck"]},
                 max_per_category=20)
    download.main()
    assert np.load("data/raw/pickup truck.npy").shape == (20, 784) and np.load("data/raw/car.npy").shape == (20, 784)
    report = json.loads((tmp_path / "metrics/download.json").read_text())["categories"]["pickup truck"]
    assert report == {"source": f"{served.url}/pickup%20truck.npy", "max_rows": 20, "rows": 20,
                      "bytes_fetched": 128 + 20 * ROW_BYTES, "full_size_bytes": 128 + 30 * ROW_BYTES}
    served.requests.clear()
    download.main()  # nothing changed: nothing fetched
    assert served.requests == []
    (tmp_path / "data/raw/car.npy").unlink()  # a file gone: fetched again, alone
    download.main()
    assert [path for path, _ in served.requests] == ["/car.npy"]


def test_unseen_categories_are_fetched_with_their_own_row_limit(served, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_category_files(served.folder, {"van": 10})
    write_params(tmp_path, base_url=served.url, categories={"car": ["car"], "not_car": ["pickup truck"]},
                 max_per_category=20, unseen={"car": ["van"], "not_car": []}, unseen_drawings=6)
    download.main()
    assert np.load("data/raw/van.npy").shape == (6, 784) and np.load("data/raw/car.npy").shape == (20, 784)


def test_bad_category_fails_before_any_download(served, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_params(tmp_path, base_url=served.url, categories={"car": ["car", "firetruk"], "not_car": ["apple"]},
                 max_per_category=5)
    with pytest.raises(PipelineError, match="'firetruk' is not a Quick, Draw! category; did you mean 'firetruck'"):
        download.main()
    assert served.requests == []


def test_not_car_all_fetches_only_the_rows_balancing_uses_and_skips_missing_names(served, tmp_path, monkeypatch,
                                                                                 capsys):
    monkeypatch.chdir(tmp_path)
    write_category_files(served.folder, {"apple": 40, "cloud": 5, "tree": 40})
    write_params(tmp_path, base_url=served.url, categories={"car": ["car"], "not_car": "all"}, max_per_category=20,
                 unseen={"car": [], "not_car": ["tree"]}, unseen_drawings=3, test_size=0.25, val_size=0)
    download.main()
    # 20 car drawings shared evenly over the not-car files the mirror has: cloud gives its 5, the others 8 and 7
    rows = {path.stem: len(np.load(path)) for path in (tmp_path / "data/raw").glob("*.npy")}
    assert rows == {"car": 20, "pickup truck": 8, "apple": 7, "cloud": 5, "tree": 3}
    fetched = [(path, header) for path, header in served.requests if path == "/apple.npy"]
    assert fetched == [("/apple.npy", "bytes=0-1023"), ("/apple.npy", f"bytes=0-{128 + 7 * ROW_BYTES - 1}")]
    skipped = json.loads((tmp_path / "metrics/download.json").read_text())["skipped"]
    assert len(skipped) == 345 - 5 and "bicycle" in skipped and "tree" not in skipped
    assert "warning: 340 of 343 not-car categories are not at" in capsys.readouterr().err
    preprocess.main()
    assert json.loads((tmp_path / "metrics/data.json").read_text())["test"] == {"total": 10, "car": 5, "not_car": 5}
