"""Writing outputs: chunked .npy writes, reserved disk space and atomic renames."""

import errno
import os

import numpy as np
import pytest

from carsketch.files import NpyRows, save_rows


def test_save_rows_writes_chunk_by_chunk_what_np_save_would(tmp_path):
    source = np.arange(70 * 3, dtype=np.int16).reshape(70, 3)
    rows = np.array([5, 1, 69, 0, 33, 2, 7])
    save_rows(tmp_path / "out.npy", source.__getitem__, rows, chunk_rows=3)
    np.save(tmp_path / "reference.npy", source[rows])
    assert (tmp_path / "out.npy").read_bytes() == (tmp_path / "reference.npy").read_bytes()
    save_rows(tmp_path / "empty.npy", source.__getitem__, rows[:0])
    assert np.load(tmp_path / "empty.npy").shape == (0, 3)


def test_a_full_disk_fails_before_writing_and_leaves_nothing(tmp_path, monkeypatch):
    def full_disk(fd, offset, length):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "posix_fallocate", full_disk)
    with pytest.raises(OSError) as error:
        save_rows(tmp_path / "out.npy", np.zeros((10, 784), np.uint8).__getitem__, np.arange(10))
    assert error.value.errno == errno.ENOSPC
    assert list(tmp_path.iterdir()) == []


def test_npy_rows_reads_small_files_whole_and_large_ones_on_demand(tmp_path):
    rows = np.arange(40 * 6, dtype=np.float16).reshape(40, 6)
    np.save(tmp_path / "features.npy", rows)
    batch = np.array([31, 2, 3, 17])
    small = NpyRows(tmp_path / "features.npy").small_in_memory(limit=rows.nbytes)
    large = NpyRows(tmp_path / "features.npy").small_in_memory(limit=rows.nbytes - 1)
    assert isinstance(small, np.ndarray) and isinstance(large, NpyRows)
    for read in (small, large):
        np.testing.assert_array_equal(read[batch], rows[batch])
        assert read.shape == rows.shape and read.dtype == rows.dtype
