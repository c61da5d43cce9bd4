"""Scratch folders: one run's temporary files in a folder of their own, removed when the run
ends and, if the run was killed (`kill -9`, a power cut), by the next run that looks.

A run holds a POSIX lock on the `owner` file inside its folder for as long as it lives; the
kernel drops the lock when the process dies, however it dies. So a folder whose lock can be
taken belongs to a dead run and is removed; one whose lock is held is left alone.
"""

from __future__ import annotations

import contextlib
import fcntl
import glob
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

OWNER = "owner"
# A folder with no owner yet (its run is between making it and locking it, or died there)
# is left alone until it is this old.
UNOWNED_GRACE_SECONDS = 60.0

# Folders this process owns. POSIX locks never conflict within one process, and closing any
# descriptor of a file drops the process's locks on it, so a sweep must not even probe these.
_OWN: set[Path] = set()
_OWN_LOCK = threading.Lock()


def _pattern(purpose: str) -> str:
    return f".{glob.escape(purpose)}-*"


def _stale(folder: Path) -> int | None:
    """An open, exclusively locked descriptor of `folder`'s owner file when no live process
    owns the folder; None when one does (or may: too young to have an owner yet)."""
    owner = folder / OWNER
    try:
        fd = os.open(owner, os.O_RDWR)
    except FileNotFoundError:
        try:
            age = time.time() - folder.stat().st_mtime
        except FileNotFoundError:
            return None
        return os.open(folder, os.O_RDONLY) if age > UNOWNED_GRACE_SECONDS else None
    try:
        fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return None
    return fd


def sweep(parent: Path, purpose: str) -> list[Path]:
    """Remove `parent`'s scratch folders for `purpose` left by runs that are no longer alive;
    returns those removed."""
    removed: list[Path] = []
    if not parent.is_dir():
        return removed
    with _OWN_LOCK:
        own = set(_OWN)
    for folder in sorted(parent.glob(_pattern(purpose))):
        if folder.resolve() in own or folder.is_symlink() or not folder.is_dir():
            continue
        fd = _stale(folder)
        if fd is None:
            continue
        try:  # removed while its lock is held, so no other sweeper takes it at the same time
            shutil.rmtree(folder, ignore_errors=True)
        finally:
            os.close(fd)
        if not folder.exists():
            removed.append(folder)
    return removed


@contextlib.contextmanager
def scratch_folder(parent: Path, purpose: str) -> Iterator[Path]:
    """A new folder `parent/.<purpose>-XXXXXXXX` for this run's scratch files, removed with
    everything in it when the block ends (normally, by an error or by Ctrl-C). Stale folders
    of the same purpose, left in `parent` by runs that were killed, are removed first.

    Keep it on the same file system as the file the scratch work is for (its folder), so a
    finished file can be renamed into place atomically.
    """
    parent.mkdir(parents=True, exist_ok=True)
    sweep(parent, purpose)
    folder = Path(tempfile.mkdtemp(prefix=f".{purpose}-", dir=parent)).resolve()
    with _OWN_LOCK:
        _OWN.add(folder)
    fd = -1
    try:
        # Locked under another name, then renamed: a sweeper never sees an unlocked owner.
        claim = folder / f"{OWNER}.new"
        fd = os.open(claim, os.O_RDWR | os.O_CREAT, 0o600)
        fcntl.lockf(fd, fcntl.LOCK_EX)
        claim.rename(folder / OWNER)
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)
        if fd >= 0:
            os.close(fd)
        with _OWN_LOCK:
            _OWN.discard(folder)


__all__ = ["OWNER", "UNOWNED_GRACE_SECONDS", "scratch_folder", "sweep"]
