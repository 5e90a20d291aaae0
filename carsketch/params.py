"""params.yaml as one validated object, checked whole before any stage starts work.

Every bad key or value is named on a line of its own, so that one run shows everything to fix.
"""

import urllib.parse
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Callable

import yaml

from carsketch.errors import PipelineError
from carsketch.devices import DEVICES
from carsketch.labels import CAR, NOT_CAR, SIDES
from carsketch.quickdraw import CATEGORIES, unknown_category_message

PARAMS_FILE = Path("params.yaml")
FEATURIZE_ENGINES = ("onnxruntime", "torch")
FEATURE_DTYPES = ("float32", "float16")
LR_SCHEDULES = ("constant", "cosine")
# `categories.not_car: all`: every Quick, Draw! category not listed as car or unseen.
ALL = "all"
# MobileNetV2's convolutional blocks (torchvision's mobilenet_v2().features); at least the first stays frozen.
BACKBONE_BLOCKS = 19


@dataclass(frozen=True)
class Categories:
    """Quick, Draw! category names on each side of the classifier."""

    car: tuple[str, ...]
    not_car: tuple[str, ...]
    # not_car was `all`: download fetches only the rows balancing uses, and skips names base_url lacks
    not_car_all: bool = False

    def labels(self) -> dict[str, int]:
        """Each category's label: CAR or NOT_CAR."""
        return {**{name: CAR for name in self.car}, **{name: NOT_CAR for name in self.not_car}}

    def as_dict(self) -> dict[str, list[str]]:
        return {"car": list(self.car), "not_car": list(self.not_car)}


@dataclass(frozen=True)
class Params:
    """Everything params.yaml sets; see the comments there for what each key means."""

    base_url: str
    categories: Categories
    max_per_category: int | None
    test_size: float
    split_seed: int
    augment_copies: int
    augment_stretch: float
    weights: str
    image_size: int
    trainable_blocks: int
    featurize_engine: str
    feature_dtype: str
    seed: int
    epochs: int
    batch_size: int
    lr: float
    lr_schedule: str
    collected_weight: float
    collected_test_size: float
    adapt_blocks: int
    adapt_epochs: int
    adapt_lr: float
    adapt_replay: int
    val_size: float
    device: str
    workers: int
    unseen: Categories
    unseen_drawings: int | None


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _integer(low: int, high: int | None = None, none_ok: bool = False) -> Callable[[Any], str | None]:
    span = f"from {low} to {high}" if high is not None else f"of at least {low}"
    wanted = f"an integer {span}" + (" or null" if none_ok else "")

    def check(value):
        if value is None and none_ok:
            return None
        if not _is_int(value) or value < low or (high is not None and value > high):
            return f"must be {wanted}"
        return None
    return check


def _fraction(zero_ok: bool) -> Callable[[Any], str | None]:
    def check(value):
        if not _is_number(value) or not (0 <= value < 1 if zero_ok else 0 < value < 1):
            return f"must be a number {'from 0' if zero_ok else 'above 0'} and below 1"
        return None
    return check


def _number(low: float, low_ok: bool) -> Callable[[Any], str | None]:
    wanted = f"must be a number {'of at least' if low_ok else 'above'} {low}"
    return lambda value: None if _is_number(value) and (value >= low if low_ok else value > low) else wanted


def _choice(*choices: str) -> Callable[[Any], str | None]:
    return lambda value: None if value in choices else f"must be one of {', '.join(choices)}"


def _text(value: Any) -> str | None:
    return None if isinstance(value, str) and value else "must be a non-empty string"


def _weights(value: Any) -> str | None:
    if not isinstance(value, str) or not value:
        return "must be an http(s):// URL or the path of a torchvision mobilenet_v2 state-dict file"
    if urllib.parse.urlsplit(value).scheme in ("http", "https") or Path(value).is_file():
        return None
    return ("no such file; give an http(s):// URL or the path of a torchvision mobilenet_v2 state-dict file "
            "(offline, e.g. ../shared/weights/mobilenet_v2_imagenet.pth)")


_CHECKS: dict[str, Callable[[Any], str | None]] = {
    "base_url": _text,
    "max_per_category": _integer(1, none_ok=True),
    "test_size": _fraction(zero_ok=False),
    "split_seed": _integer(0),
    "augment_copies": _integer(0),
    "augment_stretch": _number(1, low_ok=True),
    "weights": _weights,
    "image_size": _integer(32, 512),
    "trainable_blocks": _integer(0, BACKBONE_BLOCKS - 1),
    "featurize_engine": _choice(*FEATURIZE_ENGINES),
    "feature_dtype": _choice(*FEATURE_DTYPES),
    "seed": _integer(0),
    "epochs": _integer(1),
    "batch_size": _integer(1),
    "lr": _number(0, low_ok=False),
    "lr_schedule": _choice(*LR_SCHEDULES),
    "collected_weight": _number(0, low_ok=True),
    "collected_test_size": _fraction(zero_ok=True),
    "adapt_blocks": _integer(0, BACKBONE_BLOCKS - 1),
    "adapt_epochs": _integer(1),
    "adapt_lr": _number(0, low_ok=False),
    "adapt_replay": _integer(0),
    "val_size": _fraction(zero_ok=True),
    "device": _choice(*DEVICES),
    "workers": _integer(1),
    "unseen_drawings": _integer(1, none_ok=True),
}


def _category_problems(raw: dict[str, Any]) -> list[str]:
    """Bad names in `categories` and `unseen` (which may be empty), and any name listed twice across them."""
    problems: list[str] = []
    seen: dict[str, str] = {}
    for key, empty_ok in (("categories", False), ("unseen", True)):
        if key not in raw:
            continue  # named as missing
        value = raw[key]
        if not isinstance(value, dict):
            problems.append(f"{key}: must be a mapping with the lists car and not_car")
            continue
        problems += [f"{key}.{side}: unknown key (expected car and not_car)" for side in value if side not in SIDES]
        for side in SIDES:
            names, where = value.get(side), f"{key}.{side}"
            all_ok = where == "categories.not_car"
            if names == ALL and all_ok:
                continue
            if not isinstance(names, list) or not (names or empty_ok):
                problems.append(f"{where}: must be a {'' if empty_ok else 'non-empty '}list of Quick, Draw! "
                                f"category names" + (f", or {ALL}" if all_ok else ""))
                continue
            for name in names:
                unknown = unknown_category_message(name)
                if unknown:
                    problems.append(f"{where}: {unknown}")
                elif name in seen:
                    problems.append(f"{where}: '{name}' is listed twice, here and in {seen[name]}"
                                    if seen[name] != where else f"{where}: '{name}' is listed twice")
                seen[name] = where
    return problems


def validate(raw: dict[str, Any], source: str = str(PARAMS_FILE)) -> Params:
    """The Params in `raw`, or a PipelineError naming every bad key and value, one a line."""
    names = [field.name for field in fields(Params)]
    problems = [f"{key}: unknown key (the keys are {', '.join(names)})" for key in raw if key not in names]
    problems += [f"{key}: missing" for key in names if key not in raw]
    problems += _category_problems(raw)
    for key, check in _CHECKS.items():
        if key in raw:
            problem = check(raw[key])
            if problem:
                problems.append(f"{key}: {problem}, not {raw[key]!r}")
    if problems:
        raise PipelineError(f"{source} has {len(problems)} bad setting(s):\n" + "\n".join(f"  {p}" for p in problems))
    unseen = Categories(car=tuple(raw["unseen"]["car"]), not_car=tuple(raw["unseen"]["not_car"]))
    car, not_car = tuple(raw["categories"]["car"]), raw["categories"]["not_car"]
    if not_car == ALL:
        taken = {*car, *unseen.car, *unseen.not_car}
        categories = Categories(car, tuple(name for name in CATEGORIES if name not in taken), not_car_all=True)
    else:
        categories = Categories(car, tuple(not_car))
    return Params(**{**raw, "categories": categories, "unseen": unseen})


def load_params(path: str | Path = PARAMS_FILE) -> Params:
    """params.yaml, parsed and validated."""
    try:
        raw = yaml.safe_load(Path(path).read_text()) or {}
    except FileNotFoundError:
        raise PipelineError(f"{path} not found: run the stages from the repository root") from None
    except yaml.YAMLError as error:
        raise PipelineError(f"{path} is not valid YAML: {str(error).splitlines()[0]}") from None
    if not isinstance(raw, dict):
        raise PipelineError(f"{path} must be a mapping of keys to values")
    return validate(raw, str(path))
