"""Fetching Quick, Draw! `<base_url>/<category>.npy` bitmap files, or their first rows.

With a row limit, only the .npy header and the first N rows are fetched, with an HTTP
Range request (the real files are 100-300 MB each). Every file is validated and written atomically.
A folder of them is kept in step with a list of categories by fetching only what is missing or was
fetched with other settings.
"""

import concurrent.futures
import functools
import os
import urllib.parse
import urllib.request
from pathlib import Path
from typing import BinaryIO, NamedTuple

import numpy as np
import requests
import urllib3

from carsketch.errors import PipelineError
from carsketch.files import atomic_path, read_npy_header
from carsketch.http_retry import BACKOFF_S, CHUNK_BYTES, RETRIES, TransientError, get, retrying, session
from carsketch.progress import progress
from carsketch.quickdraw import BITMAP_PIXELS, category_file

# Google's files have a 128-byte .npy header; a longer one costs a second request, never wrong data.
HEADER_GUESS_BYTES = 128
# `not_car: all` reads each file's header first: this many bytes (Google's header is 128) and requests at a time.
PROBE_BYTES = 1024
PROBE_THREADS = 8


class NpyHeader(NamedTuple):
    rows: int
    data_offset: int


def parse_npy_header(stream: BinaryIO, source: str) -> NpyHeader:
    """Read and check a Quick, Draw! .npy header from `stream` (which counts bytes): uint8, C order, (N, 784)."""
    try:
        shape, fortran_order, dtype = read_npy_header(stream)
    except ValueError as error:
        if "EOF" in str(error):
            raise TransientError(f"{source}: body ended inside the .npy header") from error
        raise PipelineError(f"{source} is not a valid .npy file ({error})") from error
    if dtype != np.uint8 or fortran_order or len(shape) != 2 or shape[1] != BITMAP_PIXELS:
        raise PipelineError(f"{source} is not a Quick, Draw! bitmap file: expected uint8 rows of {BITMAP_PIXELS} "
                            f"pixels in C order, got dtype {dtype}, shape {shape}, fortran_order {fortran_order}")
    return NpyHeader(rows=shape[0], data_offset=stream.tell())


class _CountingReader:
    """A file-like view of a byte stream that counts what it reads (for the download report)."""

    def __init__(self, raw):
        self.raw = raw
        self.bytes_read = 0

    def read(self, size):
        data = self.raw.read(size)
        self.bytes_read += len(data)
        return data

    def tell(self):
        return self.bytes_read


def _write_rows(stream, destination, rows, source, bar):
    """Copy `rows` bitmap rows from `stream` into a new .npy file at `destination`."""
    header = {"descr": "|u1", "fortran_order": False, "shape": (rows, BITMAP_PIXELS)}
    with open(destination, "wb") as out:
        np.lib.format.write_array_header_1_0(out, header)
        remaining = rows * BITMAP_PIXELS
        while remaining:
            chunk = stream.read(min(CHUNK_BYTES, remaining))
            if not chunk:
                raise TransientError(f"{source}: body ended {remaining} bytes early")
            out.write(chunk)
            remaining -= len(chunk)
            bar.update(len(chunk))


def _rows_wanted(header, max_rows):
    return header.rows if max_rows is None else min(header.rows, max_rows)


def _full_size(response):
    content_range = response.headers.get("Content-Range", "")
    if "/" in content_range and not content_range.endswith("*"):
        return int(content_range.rsplit("/", 1)[1])
    return int(response.headers.get("Content-Length", 0)) or None


def _fetch_http(http, url, destination, max_rows, bar, stats):
    """One attempt at fetching `url` over HTTP(S), with a Range request when max_rows is set."""
    range_end = HEADER_GUESS_BYTES + max_rows * BITMAP_PIXELS if max_rows is not None else None
    while True:
        headers = {"Range": f"bytes=0-{range_end - 1}"} if range_end is not None else {}
        response = get(http, url, headers)
        if response is None:
            raise PipelineError(f"no such file: {url} (HTTP 404); check the category name and base_url")
        with response:
            stats["full_size_bytes"] = _full_size(response)
            response.raw.decode_content = True
            stream = _CountingReader(response.raw)
            try:
                header = parse_npy_header(stream, url)
                rows = _rows_wanted(header, max_rows)
                bytes_needed = header.data_offset + rows * BITMAP_PIXELS
                if response.status_code == 206 and bytes_needed > range_end:
                    range_end = bytes_needed  # the header was longer than guessed: ask again for the exact range
                    stats["bytes_fetched"] += stream.bytes_read
                    continue
                bar.reset(total=rows * BITMAP_PIXELS)
                _write_rows(stream, destination, rows, url, bar)
            except (urllib3.exceptions.HTTPError, requests.RequestException, OSError) as error:
                raise TransientError(f"{url}: {error}") from error
            finally:
                stats["bytes_fetched"] += stream.bytes_read
            return rows


def _fetch_local(path, destination, max_rows, bar, stats):
    """Copy the first rows of a local .npy file (a mirror on disk or a file:// URL)."""
    try:
        with open(path, "rb") as source:
            stream = _CountingReader(source)
            header = parse_npy_header(stream, path)
            rows = _rows_wanted(header, max_rows)
            bar.reset(total=rows * BITMAP_PIXELS)
            _write_rows(stream, destination, rows, path, bar)
    except FileNotFoundError:
        raise PipelineError(f"no such file: {path}; check the category name and base_url") from None
    except TransientError as error:  # a short local file will not grow by retrying
        raise PipelineError(str(error)) from error
    stats.update(bytes_fetched=stream.bytes_read, full_size_bytes=os.path.getsize(path))
    return rows


def category_location(base_url: str, category: str) -> tuple[str, str | Path]:
    """Where `<category>.npy` lives: ("http", url) for HTTP(S), ("file", path) for a folder or file:// URL."""
    filename = category_file(category)
    scheme = urllib.parse.urlsplit(base_url).scheme
    if scheme in ("http", "https"):
        return "http", f"{base_url.rstrip('/')}/{urllib.parse.quote(filename)}"
    if scheme == "file":
        folder = urllib.request.url2pathname(urllib.parse.urlsplit(base_url).path)
        return "file", Path(folder) / filename
    if scheme and len(scheme) > 1:
        raise PipelineError(f"base_url '{base_url}': use an http(s):// or file:// URL, or a folder path")
    return "file", Path(base_url) / filename


def fetch_category(base_url: str, category: str, destination: Path, max_rows: int | None = None,
                   http: requests.Session | None = None, retries: int = RETRIES, backoff_s: float = BACKOFF_S) -> dict:
    """Fetch one category's drawings into `destination` (.npy, uint8, (N, 784)); returns a report dict.

    Failures are retried with exponential backoff (carsketch.http_retry); the file appears only when complete.
    """
    kind, location = category_location(base_url, category)
    stats = {"bytes_fetched": 0, "full_size_bytes": None}
    with progress(desc=category, unit="B", unit_scale=True, nested=True) as bar, atomic_path(destination) as partial:
        if kind == "file":
            rows = _fetch_local(location, partial, max_rows, bar, stats)
        else:
            http = http or session(retries, backoff_s)
            rows = retrying(lambda: _fetch_http(http, location, partial, max_rows, bar, stats), location, retries,
                            backoff_s, bar.write)
        np.load(partial, mmap_mode="r")  # the file we wrote must read back as a valid .npy
    return {"rows": rows, **stats}


def sync_categories(base_url: str, rows_to_fetch: dict[str, int | None], folder: Path,
                    previous: dict[str, dict]) -> tuple[dict[str, dict], list[str]]:
    """Make `folder` hold `<category>.npy` for exactly the categories of `rows_to_fetch` (each with its row limit,
    None for the whole file), fetching only what it lacks.

    A file is kept when `previous` (the reports of earlier runs) says it came from the same place with the same
    row limit; anything else is fetched, and files of categories not listed are removed. A category that fails
    does not stop the others. Returns each category's report ({source, max_rows, rows, bytes_fetched,
    full_size_bytes}) and one message per failure.
    """
    reports, failures, http = {}, [], session()
    for category, max_rows in rows_to_fetch.items():
        destination = folder / category_file(category)
        wanted = {"source": str(category_location(base_url, category)[1]), "max_rows": max_rows}
        report = previous.get(category, {})
        if destination.is_file() and {key: report.get(key) for key in wanted} == wanted:
            reports[category] = report
            continue
        try:
            reports[category] = {**wanted, **fetch_category(base_url, category, destination, max_rows, http)}
        except PipelineError as error:
            failures.append(f"{category}: {error}")
    for stale in set(folder.glob(category_file("*"))) - {folder / category_file(category) for category in rows_to_fetch}:
        stale.unlink()
    return reports, failures


def probe_rows(base_url: str, category: str, retries: int = RETRIES, backoff_s: float = BACKOFF_S) -> int | None:
    """Rows in `<base_url>/<category>.npy` from its header alone (one small Range request); None where there is
    no such file."""
    kind, location = category_location(base_url, category)
    if kind == "file":
        try:
            with open(location, "rb") as source:
                return parse_npy_header(_CountingReader(source), location).rows
        except FileNotFoundError:
            return None
        except TransientError as error:  # a short local file will not grow by retrying
            raise PipelineError(str(error)) from error

    def read_header():
        response = get(session(retries, backoff_s), location, {"Range": f"bytes=0-{PROBE_BYTES - 1}"})
        if response is None:
            return None
        with response:
            try:
                return parse_npy_header(_CountingReader(response.raw), location).rows
            except (urllib3.exceptions.HTTPError, requests.RequestException, OSError) as error:
                raise TransientError(f"{location}: {error}") from error
    return retrying(read_header, location, retries, backoff_s)


def probe_all(base_url: str, categories: list[str]) -> dict[str, int | None]:
    """Rows in each category's file at `base_url`, from the headers alone, several requests at a time (None: no file)."""
    with concurrent.futures.ThreadPoolExecutor(PROBE_THREADS) as pool:
        return dict(zip(categories, pool.map(functools.partial(probe_rows, base_url), categories)))
