"""params.yaml as one validated object (pydantic), checked whole before any stage starts work.

Every bad key or value is named on a line of its own, in the words of what the key wants, so that one run shows
everything to fix; a misspelt key or category name gets the closest real one.
"""

import difflib
import types
import urllib.parse
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError
from pydantic.fields import FieldInfo

from carsketch.devices import DEVICES
from carsketch.errors import PipelineError
from carsketch.labels import CAR, NOT_CAR, SIDES
from carsketch.quickdraw import CATEGORIES, unknown_category_message

PARAMS_FILE = Path("params.yaml")
FEATURIZE_ENGINES = ("onnxruntime", "torch")
FEATURE_DTYPES = ("float32", "float16")
PRECISIONS = ("float32", "int8")
LR_SCHEDULES = ("constant", "cosine")
# `categories.not_car: all`: every Quick, Draw! category not listed as car or unseen.
ALL = "all"
# MobileNetV2's convolutional blocks (torchvision's mobilenet_v2().features); at least the first stays frozen.
BACKBONE_BLOCKS = 19
WEIGHTS_HELP = ("give an http(s):// URL or the path of a torchvision mobilenet_v2 state-dict file "
                "(offline, e.g. ../shared/weights/mobilenet_v2_imagenet.pth)")


class Categories(BaseModel):
    """Quick, Draw! category names on each side of the classifier."""

    model_config = ConfigDict(frozen=True)
    car: tuple[str, ...]
    not_car: tuple[str, ...]
    # not_car was `all`: download fetches only the rows balancing uses, and skips names base_url lacks
    not_car_all: bool = False

    def labels(self) -> dict[str, int]:
        """Each category's label: CAR or NOT_CAR."""
        return {**{name: CAR for name in self.car}, **{name: NOT_CAR for name in self.not_car}}

    def as_dict(self) -> dict[str, list[str]]:
        return {"car": list(self.car), "not_car": list(self.not_car)}


def _weights_source(value: str) -> str:
    if urllib.parse.urlsplit(value).scheme in ("http", "https") or Path(value).is_file():
        return value
    raise ValueError(f"no such file; {WEIGHTS_HELP}")


Blocks = Annotated[int, Field(ge=0, le=BACKBONE_BLOCKS - 1)]


class Params(BaseModel):
    """Everything params.yaml sets; see the comments there for what each key means."""

    model_config = ConfigDict(frozen=True, strict=True, extra="forbid")
    base_url: str = Field(min_length=1)
    categories: Categories
    unseen: Categories
    unseen_drawings: int | None = Field(ge=1)
    max_per_category: int | None = Field(ge=1)
    test_size: float = Field(gt=0, lt=1)
    val_size: float = Field(ge=0, lt=1)
    split_seed: int = Field(ge=0)
    augment_copies: int = Field(ge=0)
    augment_stretch: float = Field(ge=1)
    weights: Annotated[str, Field(min_length=1), AfterValidator(_weights_source)]
    image_size: int = Field(ge=32, le=512)
    trainable_blocks: Blocks
    featurize_engine: Literal[FEATURIZE_ENGINES]
    feature_dtype: Literal[FEATURE_DTYPES]
    precision: Literal[PRECISIONS]
    seed: int = Field(ge=0)
    epochs: int = Field(ge=1)
    batch_size: int = Field(ge=1)
    lr: float = Field(gt=0)
    lr_schedule: Literal[LR_SCHEDULES]
    collected_weight: float = Field(ge=0)
    collected_test_size: float = Field(ge=0, lt=1)
    adapt_blocks: Blocks
    adapt_epochs: int = Field(ge=1)
    adapt_lr: float = Field(gt=0)
    adapt_replay: int = Field(ge=0)
    device: Literal[DEVICES]
    workers: int = Field(ge=1)


def _resolved_categories(raw: dict[str, Any]) -> dict[str, Any]:
    """`raw` with the category lists as Categories take them, `not_car: all` as every category listed nowhere else;
    for lists that _category_problems passed."""
    unseen, categories = raw["unseen"], raw["categories"]
    listed = {*categories["car"], *unseen["car"], *unseen["not_car"]}
    not_car = categories["not_car"]
    return {**raw, "unseen": {side: tuple(unseen[side]) for side in SIDES},
            "categories": {"car": tuple(categories["car"]), "not_car_all": not_car == ALL,
                           "not_car": tuple(name for name in CATEGORIES if name not in listed)
                           if not_car == ALL else tuple(not_car)}}


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


def _wanted(field: FieldInfo) -> str:
    """What a field takes, in words, from its type and bounds: 'an integer from 0 to 18', 'one of cpu, cuda'."""
    annotation, nullable = field.annotation, False
    if get_origin(annotation) in (Union, types.UnionType):
        nullable, annotation = True, next(arg for arg in get_args(annotation) if arg is not type(None))
    if get_origin(annotation) is Literal:
        return f"one of {', '.join(get_args(annotation))}"
    if annotation is str:
        return "a non-empty string"
    bounds = {name: getattr(rule, name) for rule in field.metadata for name in ("ge", "gt", "le", "lt")
              if hasattr(rule, name)}
    low = f"from {bounds['ge']}" if "ge" in bounds else f"above {bounds['gt']}" if "gt" in bounds else ""
    if "le" in bounds:
        span = f"{low} to {bounds['le']}"
    elif "lt" in bounds:
        span = f"{low} and below {bounds['lt']}"
    else:
        span = low.replace("from", "of at least")
    return f"{'an integer' if annotation is int else 'a number'} {span}" + (" or null" if nullable else "")


def _did_you_mean(key: str) -> str:
    close = difflib.get_close_matches(key, Params.model_fields, n=1)
    return f"; did you mean '{close[0]}'?" if close else f" (the keys are {', '.join(Params.model_fields)})"


def _clashes(raw: dict[str, Any]) -> list[str]:
    """Values each valid alone that do not go together."""
    if raw.get("precision") == "int8" and raw.get("featurize_engine") == "torch":
        return ["precision: int8 runs the frozen part in ONNX Runtime; set featurize_engine: onnxruntime"]
    return []


def _problems(raw: dict[str, Any], error: ValidationError | None, category_problems: list[str]) -> list[str]:
    """One line a bad key or value: unknown keys, missing ones, the category lists, then the values in file order, then
    values that clash."""
    unknown, missing, bad_values = [], [], {}
    for problem in error.errors() if error else []:
        key = str(problem["loc"][0])
        if problem["type"] == "extra_forbidden":
            unknown.append(f"{key}: unknown key{_did_you_mean(key)}")
        elif problem["type"] == "missing":
            missing.append(f"{key}: missing")
        elif key not in ("categories", "unseen", *bad_values):  # the category lists: category_problems
            reason = (str(problem["ctx"]["error"]) if problem["type"] == "value_error"
                      else f"must be {_wanted(Params.model_fields[key])}, not {raw[key]!r}")
            bad_values[key] = f"{key}: {reason}"
    in_order = [bad_values[key] for key in Params.model_fields if key in bad_values]
    return unknown + missing + category_problems + in_order + _clashes(raw)


def validate(raw: dict[str, Any], source: str = str(PARAMS_FILE)) -> Params:
    """The Params in `raw`, or a PipelineError naming every bad key and value, one a line."""
    # the category lists first: names that are no category would pass pydantic's type check
    category_problems = _category_problems(raw)
    lists_usable = not category_problems and "categories" in raw and "unseen" in raw
    error = None
    try:
        params = Params.model_validate(_resolved_categories(raw) if lists_usable else raw)
    except ValidationError as invalid:
        error = invalid
    problems = _problems(raw, error, category_problems)
    if error is None and not problems:
        return params
    raise PipelineError(f"{source} has {len(problems)} bad setting(s):\n" + "\n".join(f"  {p}" for p in problems))


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
