"""One training at a time in a run directory: a second one (fresh, --resume or --nproc) is refused in one line
naming the owner's pid; the OS drops the lock with its process, kill -9 included, so it is never stale."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from mmv.errors import MmvError
from mmv.train.lock import LOCK_FILE, RunLock, holder
from tests.train.helpers import VLM_PTH, base_args, caption_row, run_cli, start, wait_for_step, write_parquet


def test_a_second_lock_is_refused_naming_the_owner(tmp_path):
    run_dir = tmp_path / "run"
    with RunLock(run_dir):
        assert holder(run_dir) == os.getpid()
        with pytest.raises(MmvError) as refused:
            RunLock(run_dir).acquire()
        assert str(refused.value) == (
            f"{run_dir} is in use by another training (process {os.getpid()}); wait for it to finish or train "
            "into another folder"
        )
    assert holder(run_dir) is None
    assert not run_dir.exists()  # created by the lock, nothing written: no trace left


def test_a_folder_that_was_there_is_kept_and_a_file_is_refused(tmp_path):
    with RunLock(tmp_path):
        pass
    assert tmp_path.is_dir() and not (tmp_path / LOCK_FILE).exists()
    (tmp_path / "file").write_text("mine")
    with pytest.raises(MmvError, match="is a file, not a run directory"):
        RunLock(tmp_path / "file").acquire()


def test_a_forked_child_does_not_hold_its_parents_lock(tmp_path):
    """Data loader workers are forked: a worker outliving its parent must not keep the run locked."""
    lock = RunLock(tmp_path / "run")
    lock.acquire()
    child = os.fork()
    if child == 0:
        time.sleep(3)
        os._exit(0)
    try:
        lock.release()
        with RunLock(tmp_path / "run"):
            assert holder(tmp_path / "run") == os.getpid()
    finally:
        os.kill(child, signal.SIGKILL)
        os.waitpid(child, 0)


HOLD = "import sys, time; from pathlib import Path; from mmv.train.lock import RunLock; RunLock(Path(sys.argv[1])).acquire(); print('held', flush=True); time.sleep(60)"  # noqa: E501


def test_kill_9_leaves_no_stale_lock(tmp_path):
    owner = subprocess.Popen([sys.executable, "-c", HOLD, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    assert owner.stdout.readline() == "held\n"
    assert holder(tmp_path) == owner.pid
    owner.kill()
    owner.wait()
    assert holder(tmp_path) is None
    with RunLock(tmp_path):
        assert holder(tmp_path) == os.getpid()


@pytest.mark.slow
def test_a_second_training_into_a_running_one_is_refused(tmp_path):
    data = write_parquet(tmp_path / "data.parquet", [caption_row(i) for i in range(8)])
    run_dir = tmp_path / "run"
    args = [*base_args(data, run_dir), "--init", str(VLM_PTH), "--batch-size", "2", "--epochs", "200"]
    args += ["--log-every", "1", "--save-every", "2"]
    first = start(args)
    try:
        wait_for_step(run_dir, 3, first)
        refusal = f"error: {run_dir} is in use by another training (process {first.pid}); wait for it to finish"
        for extra in ([], ["--resume"], ["--nproc", "2"]):
            second = run_cli([*args, *extra])
            lines = second.stderr.strip().splitlines()
            assert second.exit_code == 2 and len(lines) == 1 and lines[0].startswith(refusal), second.stderr
        assert first.poll() is None  # untouched by the refusals
    finally:
        first.kill()
        first.communicate()
    assert holder(run_dir) is None
    resumed = run_cli([*args, "--resume", "--max-steps", "1"])  # kill -9 left no stale lock: refused only for
    assert resumed.exit_code == 2 and "max steps setting 1 differs" in resumed.stderr  # the changed setting
    assert "(option: --max-steps)" in resumed.stderr
