"""Loading params.yaml and checking the values a user can get wrong, before any work starts."""

import difflib
from pathlib import Path

import yaml

from stages.errors import PipelineError

PARAMS_FILE = "params.yaml"
_CATEGORY_LIST = Path(__file__).with_name("quickdraw_categories.txt")
QUICKDRAW_CATEGORIES = tuple(_CATEGORY_LIST.read_text().splitlines())


def load_params(path=PARAMS_FILE):
    """The parsed params.yaml as a dict."""
    try:
        return yaml.safe_load(Path(path).read_text()) or {}
    except FileNotFoundError:
        raise PipelineError(f"{path} not found: run the stages from the repository root") from None


def _check_category_name(name, side):
    if name in QUICKDRAW_CATEGORIES:
        return
    close = difflib.get_close_matches(str(name), QUICKDRAW_CATEGORIES, n=1, cutoff=0.5)
    hint = f"; did you mean '{close[0]}'?" if close else ""
    raise PipelineError(f"categories.{side}: '{name}' is not a Quick, Draw! category{hint} "
                        f"(the 345 names are in {_CATEGORY_LIST.name})")


def category_labels(params):
    """Map each category in params to its label: 1 for car, 0 for not car. Validates the names."""
    categories = params.get("categories") or {}
    labels = {}
    for side, label in (("car", 1), ("not_car", 0)):
        names = categories.get(side) or []
        if not names:
            raise PipelineError(f"categories.{side} in {PARAMS_FILE} is empty: list at least one category")
        for name in names:
            _check_category_name(name, side)
            if name in labels:
                where = "both car and not_car" if labels[name] != label else f"categories.{side} twice"
                raise PipelineError(f"category '{name}' is listed in {where}")
            labels[name] = label
    return labels
