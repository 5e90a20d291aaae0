"""A stage killed mid-run or out of disk space leaves no output that a re-run or a later stage would trust."""

import errno
import os
import signal
import subprocess
import sys
import time

import pytest

from carsketch.errors import INTERRUPTED_STATUS
from carsketch.paths import FEATURIZED_SPLITS
from conftest import REPO_ROOT, write_category_files, write_params
from stages import preprocess

pytestmark = pytest.mark.slow

FEATURES = FEATURIZED_SPLITS


@pytest.fixture
def preprocessed(tmp_path, monkeypatch, backbone_file):
    """A project whose featurize stage has a few seconds of work to do."""
    monkeypatch.chdir(tmp_path)
    write_category_files(tmp_path / "data/raw", {"car": 300, "bus": 300, "apple": 300, "tree": 300})
    write_params(tmp_path, categories={"car": ["car", "bus"], "not_car": ["apple", "tree"]}, image_size=128)
    preprocess.main()
    return tmp_path


def stage(project, name, **kwargs):
    """Start a stage in its own process, with SIGINT's default action whatever this one inherited: a test suite run
    in the background of a non-interactive shell inherits SIGINT ignored, and a stage would then run to the end."""
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    return subprocess.Popen([sys.executable, "-m", f"stages.{name}"], cwd=project, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL), **kwargs)


def wait_for_partial(folder, name=None, timeout_s=120):
    """Wait until a stage has started writing an output in `folder` (its temporary file exists), `name` if given.

    Name the stage's first and largest output where a test needs the signal to land while it is written: a later,
    smaller one may be written and done before the signal arrives on a loaded machine.
    """
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if folder.is_dir() and any(path.suffix == ".tmp" and (name is None or path.name.startswith(f".{name}."))
                                   for path in folder.iterdir()):
            return
        time.sleep(0.001)
    raise AssertionError(f"no output {name or ''} was started in {folder}")


@pytest.mark.parametrize("signal_number", [signal.SIGINT, signal.SIGKILL])
def test_featurize_killed_midway_leaves_nothing_to_trust(preprocessed, signal_number):
    features = preprocessed / "data/features"
    process = stage(preprocessed, "featurize")
    wait_for_partial(features, f"{FEATURES[0]}.npy")  # the train split, the first written and the largest
    process.send_signal(signal_number)
    _, stderr = process.communicate(timeout=60)
    assert not list(features.glob("*.npy"))  # no file under an output's name, complete or not
    if signal_number == signal.SIGINT:
        assert process.returncode == INTERRUPTED_STATUS
        assert stderr.splitlines()[-1] == "error: interrupted; nothing was kept half-written"
        assert not list(features.iterdir())  # the partial file was removed too
    else:
        assert process.returncode == -signal.SIGKILL

    train = stage(preprocessed, "train")
    _, stderr = train.communicate(timeout=120)
    assert train.returncode == 1 and "data/features/train.npy is missing" in stderr

    rerun = stage(preprocessed, "featurize")
    assert rerun.wait(timeout=600) == 0
    assert sorted(path.name for path in features.glob("*.npy")) == [f"{split}.npy" for split in sorted(FEATURES)]


def test_a_full_disk_is_one_line(preprocessed):
    """The features folder on a real 64 KiB tmpfs (needs root to mount it)."""
    mount = preprocessed / "small_disk"
    mount.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount)], capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here (needs root)")
    try:
        (preprocessed / "data/features").symlink_to(mount)
        process = stage(preprocessed, "featurize")
        _, stderr = process.communicate(timeout=300)
        assert process.returncode == 1
        assert stderr.splitlines()[-1] == ("error: no space left on the disk in data/features; nothing was kept "
                                           "half-written: free some space and run again")
        assert list(mount.iterdir()) == []
    finally:
        subprocess.run(["umount", str(mount)], check=True)


def test_run_main_reports_a_full_disk_in_one_line(capsys):
    from carsketch.errors import run_main

    def full():
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), "data/processed/.x.npy.abc.tmp")

    with pytest.raises(SystemExit) as exit_info:
        run_main(full)
    assert exit_info.value.code == 1
    assert capsys.readouterr().err == ("error: no space left on the disk in data/processed; nothing was kept "
                                       "half-written: free some space and run again\n")
