"""snapshot stage: a copy of the drawings labelled on the serve page, taken under the server's lock, for adapt and
evaluate to read instead of the file the server appends to.

dvc.yaml marks it always_changed: it runs on every `dvc repro`, and DVC re-runs what follows only when the copy's
content changed. Its output persists, so where the live file is missing (a fresh clone after `dvc pull`) the labels
DVC keeps are restored into it (carsketch.collected_file.snapshot).
"""

from carsketch.errors import run_main
from carsketch.files import save_json
from carsketch.collected_file import label_counts, snapshot
from carsketch.paths import COLLECTED_COUNTS, COLLECTED_FILE, COLLECTED_SNAPSHOT


def main() -> None:
    snapshot(COLLECTED_FILE, COLLECTED_SNAPSHOT)
    counts = label_counts(COLLECTED_SNAPSHOT)
    save_json(COLLECTED_COUNTS, {**counts, "total": sum(counts.values())})
    print(f"snapshot: {sum(counts.values())} collected drawings ({counts['car']} car, {counts['not_car']} not car) "
          f"from {COLLECTED_FILE}")


if __name__ == "__main__":
    run_main(main)
