"""Progress bars that animate on a terminal and print plain, occasional lines in CI logs."""

import sys
from typing import Iterable

from tqdm import tqdm

# Seconds between lines when stderr is not a terminal.
LOG_INTERVAL_S = 10


class _LineWriter:
    """Turns tqdm's carriage-return redraws into whole lines, for log files."""

    def __init__(self, stream):
        self.stream = stream

    def write(self, text):
        text = text.strip("\r\n ")
        if text:
            self.stream.write(text + "\n")

    def flush(self):
        self.stream.flush()


def progress(iterable: Iterable | None = None, nested: bool = False, **kwargs) -> tqdm:
    """tqdm on a terminal; otherwise a short line every LOG_INTERVAL_S seconds, and no nested bars."""
    if sys.stderr.isatty():
        return tqdm(iterable, leave=not nested, **kwargs)
    return tqdm(iterable, disable=nested, file=_LineWriter(sys.stderr), mininterval=LOG_INTERVAL_S, ncols=80, ascii=True, **kwargs)
