"""Scratch folders are removed when their run ends, and by the next run when it was killed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from joinedup.warehouse.scratch import OWNER, UNOWNED_GRACE_SECONDS, scratch_folder, sweep

# A run that takes a scratch folder, writes into it, says where it is, then waits to be killed.
_HOLDER = """
import sys, time
from pathlib import Path
from joinedup.warehouse.scratch import scratch_folder
with scratch_folder(Path(sys.argv[1]), "test-parts") as folder:
    (folder / "part-0.parquet").write_bytes(b"x" * 1000)
    print(folder, flush=True)
    time.sleep(120)
"""


def _holder(parent: Path) -> tuple[subprocess.Popen[str], Path]:
    proc = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, str(parent)], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    line = proc.stdout.readline().strip()
    assert line, "the holding process did not start"
    return proc, Path(line)


def _kill(proc: subprocess.Popen[str]) -> None:
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)


def test_the_folder_is_removed_when_the_run_ends(tmp_path: Path) -> None:
    with scratch_folder(tmp_path, "test-parts") as folder:
        (folder / "a.parquet").write_bytes(b"data")
        assert folder.parent == tmp_path.resolve()
        assert folder.name.startswith(".test-parts-")
    assert list(tmp_path.iterdir()) == []


def test_the_folder_is_removed_when_the_run_fails(tmp_path: Path) -> None:
    with pytest.raises(KeyboardInterrupt), scratch_folder(tmp_path, "test-parts") as folder:
        (folder / "a.parquet").write_bytes(b"data")
        raise KeyboardInterrupt
    assert list(tmp_path.iterdir()) == []


def test_a_killed_runs_folder_is_removed_by_the_next_run(tmp_path: Path) -> None:
    proc, left = _holder(tmp_path)
    _kill(proc)
    assert left.is_dir(), "kill -9 runs no clean-up: the folder is still there"
    with scratch_folder(tmp_path, "test-parts") as mine:
        assert not left.exists()
        assert [p.name for p in tmp_path.iterdir()] == [mine.name]
    assert list(tmp_path.iterdir()) == []


def test_a_live_runs_folder_is_left_alone(tmp_path: Path) -> None:
    proc, live = _holder(tmp_path)
    try:
        assert sweep(tmp_path, "test-parts") == []
        with scratch_folder(tmp_path, "test-parts"):
            assert (live / "part-0.parquet").is_file()
        assert (live / "part-0.parquet").is_file()
    finally:
        _kill(proc)
    assert sweep(tmp_path, "test-parts") == [live]


def test_other_purposes_are_left_alone(tmp_path: Path) -> None:
    proc, left = _holder(tmp_path)
    _kill(proc)
    assert sweep(tmp_path, "other-parts") == []
    assert left.is_dir()


def test_a_folder_with_no_owner_is_removed_only_once_old(tmp_path: Path) -> None:
    young = tmp_path / ".test-parts-young"
    old = tmp_path / ".test-parts-old"
    for folder in (young, old):
        folder.mkdir()
        (folder / "part-0.parquet").write_bytes(b"x")
    stamp = time.time() - UNOWNED_GRACE_SECONDS - 5
    os.utime(old, (stamp, stamp))
    assert sweep(tmp_path, "test-parts") == [old]
    assert young.is_dir()
    assert not (young / OWNER).exists()
