"""The benchmarks skip cleanly, saying why, where ../shared or a GPU is missing (run as commands: the tests import
nothing of bench/). The benchmarks themselves need ../shared and take minutes: run them by hand."""

import subprocess
import sys

import pytest
import torch

from conftest import REPO_ROOT


def test_without_the_shared_data_the_benchmark_says_what_it_lacks_and_skips(tmp_path):
    result = subprocess.run([sys.executable, "-m", "bench.run", "--quick", "--shared", str(tmp_path / "missing")],
                            cwd=REPO_ROOT, capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout.startswith(f"skipped: no {tmp_path / 'missing'}"), result.stderr


@pytest.mark.skipif(torch.cuda.is_available(), reason="with a GPU it would run the GPU benchmark")
def test_the_gpu_benchmark_skips_without_a_gpu(tmp_path):
    result = subprocess.run([sys.executable, "-m", "bench.gpu", str(tmp_path)], cwd=REPO_ROOT, capture_output=True,
                            text=True)
    assert (result.returncode, result.stdout) == (0, "skipped: torch sees no CUDA GPU here\n"), result.stderr
