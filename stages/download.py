"""download stage: `<base_url>/<category>.npy` for every category of params.yaml (unseen ones too), into data/raw/.

Its outputs persist between runs (dvc.yaml), and a file is fetched only when it is missing or was fetched from
another place or with another row limit: adding a category fetches that file alone, moving or removing one
fetches nothing, and when some categories fail the others' files stay, so the next run fetches only those.
With `not_car: all`, only the rows balancing will use are fetched (carsketch.dataset.download_plan).
One stage rather than one per category: DVC's own bookkeeping grows with the stages in dvc.lock, and with
~50 categories it was most of an experiment's time.
"""

import sys

from carsketch.dataset import download_plan
from carsketch.download import probe_all, sync_categories
from carsketch.errors import PipelineError, run_main
from carsketch.files import load_json, save_json
from carsketch.params import load_params
from carsketch.paths import DOWNLOAD_REPORT, RAW_DIR


def main() -> None:
    params = load_params()
    categories = params.categories
    # With `not_car: all`, the files' headers first: how many rows each holds, and which names base_url lacks
    file_rows = probe_all(params.base_url, [*categories.car, *categories.not_car]) if categories.not_car_all else None
    plan, skipped = download_plan(categories, params.unseen, params.max_per_category, params.unseen_drawings,
                                  file_rows)
    if skipped:
        print(f"warning: {len(skipped)} of {len(categories.not_car)} not-car categories are not at "
              f"{params.base_url}, skipped (listed in the download report): {', '.join(skipped)}", file=sys.stderr)
    previous = load_json(DOWNLOAD_REPORT, default={}).get("categories", {})
    reports, failures = sync_categories(params.base_url, plan, RAW_DIR, previous)
    save_json(DOWNLOAD_REPORT, {"categories": reports, "skipped": skipped})
    if failures:
        raise PipelineError(f"{len(failures)} of {len(plan)} categories failed; the others "
                            f"are kept, and a re-run fetches only these:\n  " + "\n  ".join(failures))


if __name__ == "__main__":
    run_main(main)
