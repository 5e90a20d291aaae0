"""HTTP GETs with retries, for the Quick, Draw! files and the backbone weights.

A failure before the body arrives (a refused or dropped connection, a 5xx answer) is retried inside the requests
session by urllib3's Retry, with exponential backoff. A body cut short midway is beyond what urllib3 sees: the
caller raises TransientError and `retrying` starts the whole request again, the one retry loop of our own.
"""

import time
from pathlib import Path
from typing import Callable, TypeVar

import requests
import urllib3
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from carsketch.errors import PipelineError
from carsketch.progress import progress

TIMEOUT_S = (10, 60)  # connect, read
RETRIES = 4
BACKOFF_S = 1.0
RETRY_STATUSES = (429, 500, 502, 503, 504)
CHUNK_BYTES = 1 << 16
Result = TypeVar("Result")


class TransientError(Exception):
    """A failure worth another try from the start: a body that ended early or stalled."""


def session(retries: int = RETRIES, backoff_s: float = BACKOFF_S) -> requests.Session:
    """A requests session whose GETs urllib3 retries `retries` times, waiting backoff_s, 2 * backoff_s, ... between."""
    retry = Retry(total=retries, backoff_factor=backoff_s, status_forcelist=RETRY_STATUSES, raise_on_status=False)
    http = requests.Session()
    for scheme in ("http://", "https://"):
        http.mount(scheme, HTTPAdapter(max_retries=retry))
    return http


def get(http: requests.Session, url: str, headers: dict | None = None) -> requests.Response | None:
    """A streamed GET of `url` that answered 200 or 206, or None for a 404; anything else is a PipelineError."""
    try:
        response = http.get(url, headers=headers, stream=True, timeout=TIMEOUT_S)
    except requests.RequestException as error:
        raise PipelineError(f"could not reach {url} ({error})") from error
    if response.status_code == 404:
        response.close()
        return None
    if response.status_code not in (200, 206):
        response.close()
        retried = " (retried)" if response.status_code in RETRY_STATUSES else ""
        raise PipelineError(f"{url}: HTTP {response.status_code} {response.reason}{retried}")
    return response


def retrying(attempt: Callable[[], Result], source: str, retries: int = RETRIES, backoff_s: float = BACKOFF_S,
             say: Callable[[str], object] = print) -> Result:
    """attempt() again after each TransientError, at most `retries` more times, with exponential backoff; `say` tells
    the user of each retry."""
    for number in range(retries + 1):
        try:
            return attempt()
        except TransientError as error:
            if number == retries:
                raise PipelineError(f"giving up on {source} after {retries + 1} attempts: {error}") from error
            delay = backoff_s * 2 ** number
            say(f"{error}; retrying in {delay:.1f}s")
            time.sleep(delay)
    raise AssertionError("unreachable")


def download(url: str, destination: Path, retries: int = RETRIES, backoff_s: float = BACKOFF_S) -> None:
    """The whole body of `url` into `destination`, with a progress bar; a missing file is a PipelineError."""
    http = session(retries, backoff_s)

    def attempt() -> None:
        response = get(http, url)
        if response is None:
            raise PipelineError(f"no such file: {url} (HTTP 404)")
        size = int(response.headers.get("Content-Length", 0)) or None
        with response, open(destination, "wb") as out, progress(total=size, desc=url.rsplit("/", 1)[-1], unit="B",
                                                                unit_scale=True) as bar:
            try:
                for chunk in response.iter_content(CHUNK_BYTES):
                    out.write(chunk)
                    bar.update(len(chunk))
            except (urllib3.exceptions.HTTPError, requests.RequestException) as error:
                raise TransientError(f"{url}: {error}") from error
    retrying(attempt, url, retries, backoff_s)
