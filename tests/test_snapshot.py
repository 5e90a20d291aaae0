"""The snapshot stage: the whole lines of the live labels file, copied under the writers' lock, and the labels DVC
keeps restored into a missing live file."""

import fcntl
import json
import os
import threading

from carsketch.collected_file import snapshot
from carsketch.inference.collected_store import CollectedStore
from conftest import make_drawings
from stages import snapshot as snapshot_stage


def records(count: int, first: int = 0) -> list[dict]:
    return [{"key_id": f"k{number}", "label": ("car", "not_car")[number % 2],
             "drawing": make_drawings("car", 1, number)[0]} for number in range(first, first + count)]


def test_the_snapshot_holds_the_whole_lines_and_never_a_torn_one(tmp_path):
    live, copy = tmp_path / "live.ndjson", tmp_path / "snapshot" / "drawings.ndjson"
    CollectedStore(live).append(records(3))
    whole = live.read_bytes()
    with open(live, "ab") as file:
        file.write(whole[:40])  # a writer that died mid-line
    snapshot(live, copy)
    assert copy.read_bytes() == whole
    assert [json.loads(line)["key_id"] for line in copy.read_text().splitlines()] == ["k0", "k1", "k2"]


def test_the_snapshot_waits_for_a_batch_being_written(tmp_path):
    live, copy = tmp_path / "live.ndjson", tmp_path / "drawings.ndjson"
    CollectedStore(live).append(records(2))
    batch = "".join(json.dumps(record) + "\n" for record in records(2, first=2)).encode()
    fd = os.open(live, os.O_WRONLY | os.O_APPEND)
    fcntl.flock(fd, fcntl.LOCK_EX)  # as CollectedStore.append holds it
    os.write(fd, batch[:len(batch) // 2])
    copier = threading.Thread(target=snapshot, args=(live, copy))
    copier.start()
    copier.join(1)
    assert copier.is_alive() and not copy.exists()  # it waits for the writer's lock
    os.write(fd, batch[len(batch) // 2:])
    os.close(fd)
    copier.join(10)
    assert [json.loads(line)["key_id"] for line in copy.read_text().splitlines()] == ["k0", "k1", "k2", "k3"]


def test_a_missing_live_file_is_restored_from_the_snapshot_and_new_labels_add_to_it(tmp_path, capfd):
    live, copy = tmp_path / "collected" / "live.ndjson", tmp_path / "drawings.ndjson"
    CollectedStore(live).append(records(3))
    snapshot(live, copy)
    kept = copy.read_bytes()
    live.unlink()
    snapshot(live, copy)
    assert live.read_bytes() == kept == copy.read_bytes()
    assert "restored it from the snapshot" in capfd.readouterr().err
    CollectedStore(live).append(records(1, first=3))
    snapshot(live, copy)
    assert [json.loads(line)["key_id"] for line in copy.read_text().splitlines()] == ["k0", "k1", "k2", "k3"]


def test_the_stage_with_no_labels_writes_an_empty_snapshot_and_counts_quietly(tmp_path, monkeypatch, capfd):
    monkeypatch.chdir(tmp_path)
    snapshot_stage.main()
    assert (tmp_path / "data/collected_snapshot/drawings.ndjson").read_bytes() == b""
    assert json.loads((tmp_path / "data/collected_snapshot/counts.json").read_text()) == {
        "car": 0, "not_car": 0, "total": 0}
    assert not (tmp_path / "data/collected").exists()  # nothing to restore, nothing made
    output = capfd.readouterr()
    assert output.err == "" and output.out.startswith("snapshot: 0 collected drawings")
    CollectedStore(tmp_path / "data/collected/drawings.ndjson").append(records(3))
    snapshot_stage.main()
    assert json.loads((tmp_path / "data/collected_snapshot/counts.json").read_text()) == {
        "car": 2, "not_car": 1, "total": 3}
