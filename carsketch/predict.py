"""Classify drawings as car / not car with the trained model: `python -m carsketch predict INPUT...`

Inputs are images (PNG, JPEG, ...), .npy bitmaps and Quick, Draw! .ndjson files; carsketch.drawings turns
each drawing into the dataset's 28x28 bitmap, and all of them go through the model in one batch. The model
file is loaded on its own (no params.yaml). An unusable input gets one line on stderr and makes the exit
status 1, but everything else is still classified.
"""

import argparse
import json
import sys

import numpy as np

from carsketch.drawings import drawing_name, read_drawings
from carsketch.labels import LABEL_NAMES
from carsketch.model import load_trained_model
from carsketch.paths import MODEL_FILE


def label_for(probability: float, threshold: float) -> str:
    """The label of a drawing with P(car) = probability: a car from the threshold up."""
    return LABEL_NAMES[int(probability >= threshold)]


def classify(paths, model_path=MODEL_FILE, threshold=None):
    """Classify every drawing in `paths`; returns (results, errors).

    results: one dict per drawing, {"input": file, "index": row or line (None for an image), "car_probability",
    "label": "car" or "not_car"}; a drawing is a car from `threshold` up (default: the model's own).
    errors: a message for each unusable input, naming its file and row or line.
    A missing or unreadable model file raises PipelineError: nothing can be classified without it.
    """
    model = load_trained_model(model_path)
    threshold = model.threshold if threshold is None else threshold
    found, errors = [], []
    for path in paths:
        drawings, problems = read_drawings(path)
        found += [(str(path), index, bitmap) for index, bitmap in drawings]
        errors += problems
    probabilities = model.predict_proba(np.array([bitmap for _, _, bitmap in found], dtype=np.uint8))
    results = [{"input": path, "index": index, "car_probability": round(float(probability), 6),
                "label": label_for(probability, threshold)}
               for (path, index, _), probability in zip(found, probabilities)]
    return results, errors


def format_table(results):
    """The results as an aligned table with a header, for people."""
    names = [drawing_name(result["input"], result["index"]) for result in results]
    width = max(map(len, names + ["input"]))
    lines = [f"{'input':<{width}}  P(car)  label"]
    lines += [f"{name:<{width}}  {result['car_probability']:6.3f}  {result['label']}"
              for name, result in zip(names, results)]
    return "\n".join(lines)


def probability(text):
    """argparse type for --threshold."""
    value = float(text)
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, not {text}")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The `predict` subcommand's arguments."""
    parser.add_argument("inputs", nargs="+", metavar="INPUT", help="an image, .npy or .ndjson file")
    parser.add_argument("--model", default=MODEL_FILE, metavar="PATH",
                        help=f"the trained model (default: {MODEL_FILE})")
    parser.add_argument("--threshold", type=probability, metavar="P",
                        help="P(car) from which a drawing is a car (default: the model's own threshold)")
    parser.add_argument("--json", action="store_true",
                        help='one JSON object a line: {"input", "index", "car_probability", "label"}')


def run(args: argparse.Namespace) -> int:
    """Classify args.inputs and print the results; 1 if any input was unusable."""
    results, errors = classify(args.inputs, args.model, args.threshold)
    for error in errors:
        print(f"error: {error}", file=sys.stderr)
    if args.json:
        for result in results:
            print(json.dumps(result))
    elif results:
        print(format_table(results))
    return 1 if errors else 0
