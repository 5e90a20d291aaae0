"""The code itself: no import or name left unused (pyflakes) in the library, the stages, the benchmarks or the tests."""

import subprocess
import sys

from conftest import REPO_ROOT


def test_pyflakes_finds_nothing_unused_or_undefined():
    result = subprocess.run([sys.executable, "-m", "pyflakes", "carsketch", "stages", "bench", "tests"],
                            cwd=REPO_ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
