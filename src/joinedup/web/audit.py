"""The audit log's keyed hash chain: a key kept outside the database, a signed head outside
it too, and signed checkpoints inside it, so that changing, removing or rewriting entries
shows, and checking the chain costs only the entries added since it was last checked.

Each entry's hash is HMAC-SHA256 under the audit key over the previous entry's hash and the
entry's own fields, so nobody without the key can write a chain that checks, even with every
hash recomputed. The key is in a file of its own (`<access db>.audit-key` unless
`JOINEDUP_AUDIT_KEY_FILE` names another place), created with mode 0600 at first use. The head
file (`<access db>.audit-head`) holds the sequence number, count and hash of the newest entry,
signed with the key and rewritten at every entry (in the older of two slots, in place, under a
lock on the file, moving only forward whichever process writes it), so entries removed from
the end show too.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import hmac
import json
import os
import secrets
import stat
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from joinedup.errors import ConfigurationError

AUDIT_FIELDS = ("at", "username", "role", "action", "resource", "detail", "reason", "client")
#: Who and what else an entry names, for its AuditEvent (issue 16): the user's organisation
#: (ODS code), the purpose of use (a v3 ActReason code: TREAT, BTG, ...) and the FHIR Patient
#: ids the request touched (space-separated; ids only, never an NHS number or a name). Hashed
#: after AUDIT_FIELDS when any is set, so an entry without them hashes as entries always have.
CONTEXT_FIELDS = ("organisation", "purpose", "patients")
#: The most Patient ids one entry lists; more are counted (`+N`), not listed.
MAX_PATIENTS = 1000
GENESIS = "0" * 64
#: The longest `detail` kept; longer ones are cut and end with TRUNCATED.
MAX_DETAIL_LENGTH = 1000
#: The longest of every other field (username, action, resource, reason, client).
MAX_FIELD_LENGTH = 200
TRUNCATED = "…[truncated]"
#: A signed checkpoint is written after this many newly verified entries (and on close).
CHECKPOINT_EVERY = 1000
KEY_BYTES = 32


def capped(text: str, limit: int) -> str:
    """`text`, or its start and TRUNCATED when longer than `limit` characters."""
    return text if len(text) <= limit else text[: limit - len(TRUNCATED)] + TRUNCATED


def load_key(path: Path) -> tuple[bytes, bool]:
    """The audit key in `path`, made (mode 0600) when there is none; and whether it was made
    now. Refuses a key file others may read or one that is not a key."""
    made = False
    if not path.exists():
        # Written whole to a file of our own, then linked into place: a crash leaves no key
        # or the whole key, never an empty file; a process that links second reads the first.
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w", encoding="ascii") as out:
                out.write(secrets.token_hex(KEY_BYTES) + "\n")
                out.flush()
                os.fsync(out.fileno())
            try:
                os.link(tmp, path)
                made = True
            except FileExistsError:
                pass
        except OSError as err:
            raise ConfigurationError(f"cannot create the audit key file {path}: {err}") from err
        finally:
            with contextlib.suppress(OSError):
                tmp.unlink()
    try:
        mode = path.stat().st_mode
        text = path.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigurationError(f"cannot read the audit key file {path}: {err}") from err
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigurationError(
            f"the audit key file {path} may be read by others (mode {stat.S_IMODE(mode):o}): "
            f"run `chmod 600 {path}`"
        )
    try:
        key = bytes.fromhex(text)
    except ValueError:
        key = b""
    if len(key) < KEY_BYTES:
        raise ConfigurationError(
            f"the audit key file {path} does not hold a key of {KEY_BYTES} bytes in hex"
        )
    return key, made


def entry_hash(key: bytes | None, prev: str, entry: dict[str, str]) -> str:
    """The hash of an entry after `prev`: keyed (HMAC-SHA256), or with `key` None the plain
    SHA-256 of entries written before the log had a key."""
    return values_hash(key, prev, chained_values(entry))


def chained_values(entry: dict[str, str]) -> list[str]:
    """The values an entry's hash covers: AUDIT_FIELDS, then CONTEXT_FIELDS when any is set
    (an entry without them hashes as every entry did before they existed)."""
    values = [entry[k] for k in AUDIT_FIELDS]
    context = [entry.get(k, "") for k in CONTEXT_FIELDS]
    return values + context if any(context) else values


def values_hash(key: bytes | None, prev: str, values: Sequence[str]) -> str:
    """`entry_hash` of an entry given as its values in the order of AUDIT_FIELDS."""
    body = json.dumps([prev, *values], ensure_ascii=False).encode()
    if key is None:
        return hashlib.sha256(body).hexdigest()
    return hmac.digest(key, body, "sha256").hex()


def mark_mac(key: bytes, kind: str, seq: int, entries: int, last_hash: str) -> str:
    """The signature of a checkpoint or head: `entries` entries, the last `seq` with `hash`."""
    body = json.dumps([kind, seq, entries, last_hash]).encode()
    return hmac.new(key, body, hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class Mark:
    """A signed statement that the log held `entries` entries, the last `seq` hashing to
    `hash`: the head (outside the database) or a checkpoint (inside it)."""

    seq: int
    entries: int
    hash: str

    def signed(self, key: bytes, kind: str, mac: str) -> bool:
        return hmac.compare_digest(mac, mark_mac(key, kind, self.seq, self.entries, self.hash))


#: Bytes in each of the head file's two slots (a signed head is about 200).
HEAD_SLOT = 256


def _slot(text: bytes, key: bytes, path: Path) -> Mark | str | None:
    """The head in one slot; None when the slot is blank; a reason when it does not check."""
    text = text.strip(b" \n\x00")
    if not text:
        return None
    try:
        data = json.loads(text)
        mark = Mark(int(data["seq"]), int(data["entries"]), str(data["hash"]))
        mac = str(data["mac"])
    except (ValueError, KeyError, TypeError):
        return f"the audit head file {path} is unreadable"
    if not mark.signed(key, "head", mac):
        return f"the audit head file {path} is not signed with the audit key"
    return mark


def _newest(data: bytes, key: bytes, path: Path) -> tuple[Mark | str | None, int]:
    """The newest head in the file's bytes `data` (or what is wrong with a slot), and the slot
    the next head goes in: a blank or unreadable one, else the older."""
    if len(data) > 2 * HEAD_SLOT:
        return f"the audit head file {path} is unreadable", 0
    found = [_slot(data[i * HEAD_SLOT : (i + 1) * HEAD_SLOT], key, path) for i in (0, 1)]
    problem = next((f for f in found if isinstance(f, str)), None)
    marks = [(f.seq, i) for i, f in enumerate(found) if isinstance(f, Mark)]
    newest: Mark | str | None = problem
    if problem is None and marks:
        newest = found[max(marks)[1]]
    free = next((i for i, f in enumerate(found) if not isinstance(f, Mark)), None)
    return newest, (free if free is not None else min(marks)[1])


def read_head(path: Path, key: bytes) -> Mark | str | None:
    """The signed head in `path`; None when there is none; a reason when it does not check."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return None
    except OSError:
        return f"the audit head file {path} is unreadable"
    try:
        # shared: no writer is half-way through a slot while it is read
        fcntl.flock(fd, fcntl.LOCK_SH)
        data = os.pread(fd, 2 * HEAD_SLOT + 1, 0)
    except OSError:
        return f"the audit head file {path} is unreadable"
    finally:
        os.close(fd)
    return _newest(data, key, path)[0]


def advance_head(path: Path, key: bytes, mark: Mark) -> int:
    """Make the signed head in `path` vouch for `mark`, unless it already vouches for a later
    entry; give the entry it vouches for now.

    Every process appending to the log calls this (`records serve --workers N`), under a lock
    on the file itself, so the head only moves forward. The file holds two slots, and a new
    head is written in place over the older one (or a blank or unreadable one): a crash leaves
    the other whole, and a write costs microseconds, not the millisecond or more that a new
    file renamed into place took. A head written before the slots (a single JSON object) is
    read as slot 0."""
    body = {
        "seq": mark.seq,
        "entries": mark.entries,
        "hash": mark.hash,
        "mac": mark_mac(key, "head", mark.seq, mark.entries, mark.hash),
    }
    text = json.dumps(body).encode()
    if len(text) >= HEAD_SLOT:
        raise ValueError(f"an audit head of {len(text)} bytes does not fit its slot")
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # released when the file is closed
        newest, slot = _newest(os.pread(fd, 2 * HEAD_SLOT + 1, 0), key, path)
        if isinstance(newest, Mark) and newest.seq >= mark.seq:
            return newest.seq
        os.pwrite(fd, text.ljust(HEAD_SLOT - 1) + b"\n", slot * HEAD_SLOT)
        return mark.seq
    finally:
        os.close(fd)


@dataclass(frozen=True)
class AuditCheck:
    """What checking the chain found.

    `intact`: no entry was changed, removed or rewritten as far as it was checked;
    `verified_through`: the newest entry known good; `checked`: entries hashed by this check;
    `legacy_entries`: entries from before the log had a key (plain SHA-256, which anyone with
    the file could have recomputed); `problem`: what is wrong, naming the entry."""

    intact: bool
    verified_through: int
    checked: int
    legacy_entries: int = 0
    problem: str | None = None


__all__ = [
    "AUDIT_FIELDS",
    "CHECKPOINT_EVERY",
    "CONTEXT_FIELDS",
    "GENESIS",
    "HEAD_SLOT",
    "MAX_DETAIL_LENGTH",
    "MAX_FIELD_LENGTH",
    "MAX_PATIENTS",
    "TRUNCATED",
    "AuditCheck",
    "Mark",
    "advance_head",
    "capped",
    "chained_values",
    "entry_hash",
    "load_key",
    "mark_mac",
    "read_head",
    "values_hash",
]
