"""Who has a warehouse open, and holding one while it is rebuilt.

DuckDB takes a POSIX lock on a warehouse file: shared for a reader (`joinedup serve`),
exclusive for a writer. A write that opens the file through DuckDB (`phm run`, `finance run`,
`ingest fhir`) is refused while anyone else has it open. A rebuild (`synth`) writes a new file
and renames it over the old one, which DuckDB never sees; so it takes the same exclusive lock
on the old file itself, is refused in the same way, and keeps others out until the new file is
in place. Without that a running server would go on serving the replaced, deleted file.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import struct
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

from joinedup.errors import JoinedupError

_INTERPRETERS = ("python", "pypy")


class WarehouseInUseError(JoinedupError):
    """Another process has the warehouse open, so it cannot be written now."""

    def __init__(self, path: Path, pid: int | None) -> None:
        self.path = path
        self.pid = pid
        who = describe_process(pid) if pid else "another process"
        if who.endswith("(joinedup serve)"):  # the dashboard holds its warehouse until stopped
            advice = "stop `joinedup serve` first (it reads the file as long as it runs)"
        else:
            advice = (
                "stop it (or let it finish) and try again; a warehouse can be written only "
                "while no other process has it open"
            )
        super().__init__(f"warehouse {path} is open in {who}: {advice}")


def describe_process(pid: int) -> str:
    """`process 4702 (joinedup serve)`: the process id and, where the system tells, what it
    runs (the program and its subcommand, never the rest of its command line)."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return f"process {pid}"
    words = [Path(a.decode(errors="replace")).name for a in argv if a]
    while words and words[0].startswith(_INTERPRETERS):
        words = words[1:]
    if not words or words[0].startswith("-"):
        return f"process {pid}"
    if words[0] == "joinedup":
        sub = next((w for w in words[1:] if not w.startswith("-")), "")
        return f"process {pid} (joinedup {sub})".replace(" )", ")")
    return f"process {pid} ({words[0]})"


def lock_holder(fd: int) -> int | None:
    """The id of a process holding a lock that conflicts with an exclusive lock on the whole
    of open file `fd`, where the system can tell (Linux); None otherwise."""
    if not sys.platform.startswith("linux"):
        return None
    layout = "hhqqi4x"  # struct flock: l_type, l_whence, l_start, l_len, l_pid
    query = struct.pack(layout, fcntl.F_WRLCK, os.SEEK_SET, 0, 0, 0)
    try:
        answer = fcntl.fcntl(fd, fcntl.F_GETLK, query)
    except OSError:
        return None
    kind, _, _, _, pid = struct.unpack(layout, answer)
    return pid if kind != fcntl.F_UNLCK and pid > 0 else None


# Files this process holds, by (device, inode), with how many holds are open: POSIX locks do
# not nest, and closing any descriptor of a file drops all of the process's locks on it, so a
# nested hold opens nothing.
_HELD: dict[tuple[int, int], int] = {}
_HELD_LOCK = threading.Lock()


@contextlib.contextmanager
def holding(path: Path) -> Iterator[None]:
    """Hold the existing warehouse at `path` exclusively for the block, as a DuckDB writer
    would: refused with `WarehouseInUseError`, naming the process, when another has it open;
    while held, no other process can open it. Nothing to hold when there is no file yet."""
    try:
        stat = path.stat()
    except FileNotFoundError:
        yield
        return
    if path.is_dir():  # a lake: its writers hold its own lock (`Lake.writing`)
        yield
        return
    key = (stat.st_dev, stat.st_ino)
    with _HELD_LOCK:
        nested = key in _HELD
        if nested:
            _HELD[key] += 1
    if nested:
        try:
            yield
        finally:
            with _HELD_LOCK:
                _HELD[key] -= 1
        return
    fd = os.open(path, os.O_RDWR)
    try:
        fstat = os.fstat(fd)
        key = (fstat.st_dev, fstat.st_ino)
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            raise WarehouseInUseError(path, lock_holder(fd)) from err
        with _HELD_LOCK:
            _HELD[key] = 1
        try:
            yield
        finally:
            with _HELD_LOCK:
                del _HELD[key]
    finally:
        os.close(fd)  # drops the lock


__all__ = ["WarehouseInUseError", "describe_process", "holding", "lock_holder"]
