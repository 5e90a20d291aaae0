"""download stage for one category: `python -m stages.download CATEGORY` fetches `<base_url>/<CATEGORY>.npy`.

dvc.yaml runs it once per category (a `foreach` over each side's list), so adding, removing or moving
one category fetches at most that file, and one failed category leaves the others' outputs in place.
"""

import sys

from carsketch.download import fetch_category
from carsketch.errors import PipelineError, run_main
from carsketch.files import save_json
from carsketch.params import load_params
from carsketch.paths import download_report, raw_file


def main(category: str) -> None:
    params = load_params()
    if category not in params.categories.labels():
        raise PipelineError(f"'{category}' is not in categories.car or categories.not_car of params.yaml")
    save_json(download_report(category),
              fetch_category(params.base_url, category, raw_file(category), params.max_per_category))


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python -m stages.download CATEGORY")
    run_main(lambda: main(sys.argv[1]))
