"""A copy of the project in a fresh git + DVC repo, and commands run in it: for the tests, and the benchmarks too."""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

REPO_ROOT = Path(__file__).resolve().parents[1]
PROJECT_FILES = ("dvc.yaml", "params.yaml", ".gitignore", ".dvcignore", "stages", "carsketch")
COMMAND_ENV = {"GIT_AUTHOR_NAME": "tests", "GIT_AUTHOR_EMAIL": "tests@example.com", "GIT_COMMITTER_NAME": "tests",
               "GIT_COMMITTER_EMAIL": "tests@example.com", "DVC_NO_ANALYTICS": "1",
               # the stages' `python` is this interpreter, whatever PATH says
               "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}


def command_line(*command: str) -> list[str]:
    """`dvc ...` as this interpreter's DVC; anything else as it is."""
    return [sys.executable, "-m", "dvc", *command[1:]] if command[0] == "dvc" else list(command)


def run(project: Path, *command: str) -> str:
    """Run a command in `project`; its stdout and stderr, or an AssertionError with them if it fails."""
    result = subprocess.run(command_line(*command), cwd=project, capture_output=True, text=True,
                            env={**os.environ, **COMMAND_ENV})
    if result.returncode:
        raise AssertionError(f"`{' '.join(command)}` failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return result.stdout + result.stderr


def make_project(directory: Path, **overrides) -> dict:
    """The project copied into `directory` as a fresh git + DVC repo, params.yaml with `overrides`, committed."""
    for name in PROJECT_FILES:
        source = REPO_ROOT / name
        if source.is_dir():
            shutil.copytree(source, directory / name, ignore=shutil.ignore_patterns("__pycache__"))
        elif source.exists():
            shutil.copy(source, directory / name)
    params = yaml.safe_load((REPO_ROOT / "params.yaml").read_text())
    params.update(overrides)
    (directory / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    run(directory, "git", "init", "-q")
    run(directory, "dvc", "init", "-q")
    commit(directory, "project")
    return params


def commit(project: Path, message: str) -> None:
    run(project, "git", "add", "-A")
    run(project, "git", "commit", "-qm", message)


def stages_ran(dvc_output: str) -> list[str]:
    """The stages DVC says it ran, in order: what tells an experiment that re-ran too much."""
    return re.findall(r"^Running stage '([^']+)'", dvc_output, re.MULTILINE)
