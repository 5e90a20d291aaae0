"""Classify drawings as car / not car with the trained model: `python -m carsketch predict INPUT...`

Inputs are images (PNG, JPEG, ...), .npy bitmaps, Quick, Draw! .ndjson files and `-` (ndjson on standard input);
carsketch.inference.images and carsketch.inference.inputs turn each drawing into the dataset's 28x28 bitmap. Drawings
are read lazily and classified a batch at a time by the ONNX model train writes, in ONNX Runtime (no torch to import),
and each batch's results are printed as soon as they are known: memory stays flat however many drawings come in. The
model file is loaded on its own (no params.yaml). An unusable input gets one line on stderr and makes the exit status 1,
but everything else is still classified.
"""

import argparse
import json
import sys
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from carsketch.batches import INFERENCE_BATCH
from carsketch.errors import PipelineError
from carsketch.files import NpyRows
from carsketch.inference.arguments import add_model_arguments
from carsketch.inference.images import image_to_bitmap
from carsketch.inference.inputs import Skipped, drawing_name, ndjson_drawings, read_npy_bitmaps
from carsketch.inference.onnx_model import OnnxModel
from carsketch.labels import LABEL_NAMES
from carsketch.paths import ONNX_MODEL_FILE
from carsketch.quickdraw import BITMAP_SIDE

STDIN = "-"
NDJSON_SUFFIXES = (".ndjson", ".jsonl")
# Line numbers an ndjson input's table column leaves room for (its length is unknown until it is read).
NDJSON_LINES_GUESS = 999_999

Drawing = tuple[str, int | None, np.ndarray]  # input, row or line (None for an image), bitmap


def label_for(probability: float, threshold: float) -> str:
    """The label of a drawing with P(car) = probability: a car from the threshold up."""
    return LABEL_NAMES[int(probability >= threshold)]


def _npy_drawings(path: str) -> Iterator[Drawing | str]:
    """An .npy file's drawings, a batch at a time with plain reads (NpyRows, as the stages read theirs: memory
    stays flat for a file of any size); a blank row is a problem."""
    checked = read_npy_bitmaps(path)  # uint8 bitmaps of a shape the model takes, or a PipelineError
    bitmaps = NpyRows(path) if checked.flags.c_contiguous else checked  # a Fortran-ordered file: as numpy reads it
    for start in range(0, len(bitmaps), INFERENCE_BATCH):
        block = np.asarray(bitmaps[start:start + INFERENCE_BATCH]).reshape(-1, BITMAP_SIDE, BITMAP_SIDE)
        for row, bitmap in enumerate(block, start):
            yield (path, row, bitmap) if bitmap.any() else f"{drawing_name(path, row)}: empty drawing (blank bitmap)"


def _ndjson_lines(path: str, lines: Iterable[str]) -> Iterator[Drawing | str]:
    for number, result in ndjson_drawings(lines):
        if isinstance(result, str):
            message = f"{drawing_name(path, number)}: {result}"
            yield Skipped(message) if isinstance(result, Skipped) else message
        else:
            yield path, number, result


def _ndjson_file(path: str) -> Iterator[Drawing | str]:
    try:
        with open(path, encoding="utf-8", errors="replace") as lines:
            yield from _ndjson_lines(path, lines)
    except OSError as error:
        raise PipelineError(f"cannot read it ({error.strerror})") from None


def input_drawings(path: str) -> Iterator[Drawing | str]:
    """Each drawing of one input as it is read, or a message naming the input (and row or line) that is unusable."""
    if path == STDIN:
        yield from _ndjson_lines(path, sys.stdin)
        return
    suffix = Path(path).suffix.lower()
    try:
        if not Path(path).is_file():
            raise PipelineError("no such file")
        if suffix == ".npy":
            yield from _npy_drawings(path)
        elif suffix in NDJSON_SUFFIXES:
            yield from _ndjson_file(path)
        else:
            yield path, None, image_to_bitmap(path)
    except PipelineError as error:
        yield f"{path}: {error}"


def stream_classify(paths: Iterable[str], model_path: Path | str = ONNX_MODEL_FILE, threshold: float | None = None,
                    batch_size: int = INFERENCE_BATCH, device: str = "auto") -> Iterator[dict | str]:
    """Classify every drawing in `paths`, yielding each batch's results as soon as it is done.

    Yields a dict per drawing, {"input", "index" (row or line; None for an image), "car_probability", "label"},
    in input order, and a message (str) for each unusable input, naming its file and row or line. A drawing
    is a car from `threshold` up (default: the model's own). A missing or unreadable model file raises
    PipelineError at once: nothing can be classified without it.
    """
    model = OnnxModel(model_path, device)
    threshold = model.threshold if threshold is None else threshold

    def results(batch):
        probabilities = model.predict_proba(np.array([bitmap for _, _, bitmap in batch], dtype=np.uint8))
        return [{"input": path, "index": index, "car_probability": round(float(probability), 6),
                 "label": label_for(probability, threshold)}
                for (path, index, _), probability in zip(batch, probabilities)]

    def generate():
        batch = []
        for path in paths:
            for item in input_drawings(str(path)):
                if isinstance(item, str):
                    yield item
                    continue
                batch.append(item)
                if len(batch) == batch_size:
                    yield from results(batch)
                    batch = []
        if batch:
            yield from results(batch)
    return generate()


def classify(paths: Iterable[str], model_path: Path | str = ONNX_MODEL_FILE,
             threshold: float | None = None) -> tuple[list[dict], list[str]]:
    """stream_classify's results and messages as two lists: (results, errors)."""
    results, errors = [], []
    for item in stream_classify(paths, model_path, threshold):
        (errors if isinstance(item, str) else results).append(item)
    return results, errors


def name_width(paths: Iterable[str]) -> int:
    """The table's input column width, known before any drawing is read: the longest name each input can give."""
    widths = [len("input")]
    for path in map(str, paths):
        if Path(path).suffix.lower() == ".npy":
            try:
                widths.append(len(drawing_name(path, max(len(read_npy_bitmaps(path)) - 1, 0))))
            except PipelineError:
                pass  # reported when the drawings are read
        elif path == STDIN or Path(path).suffix.lower() in NDJSON_SUFFIXES:
            widths.append(len(drawing_name(path, NDJSON_LINES_GUESS)))
        else:
            widths.append(len(path))
    return max(widths)


def format_row(result: dict, width: int) -> str:
    """One result as a table line for people."""
    name = drawing_name(result["input"], result["index"])
    return f"{name:<{width}}  {result['car_probability']:6.3f}  {result['label']}"


def probability(text: str) -> float:
    """argparse type for --threshold."""
    value = float(text)
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, not {text}")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The `predict` subcommand's arguments."""
    parser.add_argument("inputs", nargs="+", metavar="INPUT",
                        help="an image, .npy or .ndjson file, or - for ndjson on standard input")
    add_model_arguments(parser)
    parser.add_argument("--threshold", type=probability, metavar="P",
                        help="P(car) from which a drawing is a car (default: the model's own threshold)")
    parser.add_argument("--json", action="store_true",
                        help='one JSON object a line: {"input", "index", "car_probability", "label"}')


def run(args: argparse.Namespace) -> int:
    """Classify args.inputs, printing each batch's results as they come; 1 if any input was unusable (a torn last
    line of an ndjson file is only a warning)."""
    width = None if args.json else name_width(args.inputs)
    failed = header_printed = False
    for item in stream_classify(args.inputs, args.model, args.threshold, device=args.device):
        if isinstance(item, Skipped):
            print(f"warning: {item}", file=sys.stderr, flush=True)
        elif isinstance(item, str):
            failed = True
            print(f"error: {item}", file=sys.stderr, flush=True)
        elif args.json:
            print(json.dumps(item), flush=True)
        else:
            if not header_printed:
                print(f"{'input':<{width}}  P(car)  label")
                header_printed = True
            print(format_row(item, width), flush=True)
    return 1 if failed else 0
