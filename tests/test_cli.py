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
