"""download stage: fetch `<base_url>/<category>.npy` (its first `max_per_category` rows) for every category."""

import requests

from carsketch.download import fetch_category
from carsketch.errors import run_main
from carsketch.files import save_json
from carsketch.params import load_params
from carsketch.paths import DOWNLOAD_REPORT, RAW_DIR
from carsketch.progress import progress


def main() -> None:
    params = load_params()
    report = {}
    with requests.Session() as session:
        for category in progress(params.categories.labels(), desc="download", unit="category"):
            report[category] = fetch_category(params.base_url, category, RAW_DIR / f"{category}.npy",
                                              params.max_per_category, session)
    save_json(DOWNLOAD_REPORT, {
        "bytes_fetched": sum(entry["bytes_fetched"] for entry in report.values()),
        "full_size_bytes": sum(entry["full_size_bytes"] or 0 for entry in report.values()),
        "categories": report,
    })


if __name__ == "__main__":
    run_main(main)
