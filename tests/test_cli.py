"""The one command line: `python -m carsketch SUBCOMMAND ...`."""

import subprocess
import sys

from conftest import REPO_ROOT


def test_help_lists_the_subcommands():
    result = subprocess.run([sys.executable, "-m", "carsketch", "--help"], cwd=REPO_ROOT, capture_output=True,
                            text=True)
    assert result.returncode == 0
    for subcommand in ("predict", "mirror"):
        assert f"    {subcommand} " in result.stdout


def test_an_unknown_subcommand_is_a_usage_error():
    result = subprocess.run([sys.executable, "-m", "carsketch", "train"], cwd=REPO_ROOT, capture_output=True, text=True)
    assert result.returncode == 2 and "invalid choice: 'train'" in result.stderr


def test_a_subcommand_whose_extra_is_missing_says_what_to_install():
    without_uvicorn = "import sys; sys.modules['uvicorn'] = None; from carsketch.cli import main; main(['serve'])"
    result = subprocess.run([sys.executable, "-c", without_uvicorn], cwd=REPO_ROOT, capture_output=True, text=True)
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr == "error: `carsketch serve` needs uvicorn, which is not installed: pip install 'carsketch[serve]'\n"
