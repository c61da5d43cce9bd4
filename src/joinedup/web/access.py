"""Who may see what: users and roles, sign-in, sessions and the audit log.

Everything lives in one SQLite file beside the warehouse (the warehouse is opened read-only
while the dashboard serves it). Passwords are hashed with Argon2id (argon2-cffi). Session and
API tokens are random; only their SHA-256 is stored. The audit log is append-only: triggers
refuse UPDATE and DELETE, and each entry carries a hash over the one before, so a changed or
missing entry shows when the chain is checked.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import secrets
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from joinedup.errors import ConfigurationError, InputError


class Role(StrEnum):
    ANALYST = "analyst"
    CLINICIAN = "clinician"
    FINANCE = "finance"
    BOARD = "board"
    ADMIN = "admin"


ROLE_LABELS: dict[Role, str] = {
    Role.ANALYST: "Analyst",
    Role.CLINICIAN: "Clinician",
    Role.FINANCE: "Finance",
    Role.BOARD: "Board member",
    Role.ADMIN: "Administrator",
}

#: What each part of the dashboard needs. Identifiable worklists are for clinicians only (and
#: then only for their own PCN or practice, checked per request); nobody else sees a person.
PERMISSIONS: dict[str, frozenset[Role]] = {
    "overview": frozenset(Role),
    "places": frozenset(Role),
    "about": frozenset(Role),
    "finance": frozenset({Role.FINANCE, Role.BOARD, Role.ANALYST, Role.ADMIN}),
    "data_quality": frozenset({Role.ANALYST, Role.ADMIN}),
    "worklists": frozenset({Role.CLINICIAN}),
    "audit": frozenset({Role.ADMIN}),
}

#: Why a clinician opens a worklist: recorded with every view and download.
PURPOSES: dict[str, str] = {
    "case-finding": "Case finding: inviting people for review",
    "mdt": "Multidisciplinary team meeting",
    "care-planning": "Care planning for people on my list",
    "follow-up": "Following up a referral or admission",
}

MIN_PASSWORD_LENGTH = 12
_HASHER = PasswordHasher()
_DUMMY_HASH = _HASHER.hash("not a real password, used to even out timing")


@dataclass(frozen=True)
class User:
    username: str
    display_name: str
    role: Role
    pcn_code: str | None = None
    practice_code: str | None = None
    demo: bool = False

    def may(self, area: str) -> bool:
        return self.role in PERMISSIONS[area]

    @property
    def is_clinical(self) -> bool:
        return self.role is Role.CLINICIAN

    @property
    def scope(self) -> str:
        """The population whose records this user may see, in words."""
        if self.practice_code:
            return f"practice {self.practice_code} (PCN {self.pcn_code})"
        if self.pcn_code:
            return f"PCN {self.pcn_code}"
        return "aggregates only"

    def public(self) -> dict[str, Any]:
        return {
            "username": self.username,
            "display_name": self.display_name,
            "role": self.role.value,
            "role_label": ROLE_LABELS[self.role],
            "pcn_code": self.pcn_code,
            "practice_code": self.practice_code,
            "scope": self.scope,
            "areas": sorted(a for a in PERMISSIONS if self.may(a)),
        }


@dataclass(frozen=True)
class SignIn:
    """The outcome of a sign-in attempt: a user and token, or why not."""

    user: User | None
    token: str | None = None
    locked_seconds: int = 0


_SCHEMA = """
CREATE TABLE IF NOT EXISTS users (
    username TEXT PRIMARY KEY,
    display_name TEXT NOT NULL,
    role TEXT NOT NULL,
    pcn_code TEXT,
    practice_code TEXT,
    password_hash TEXT NOT NULL,
    demo INTEGER NOT NULL DEFAULT 0,
    active INTEGER NOT NULL DEFAULT 1,
    created_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS sessions (
    token_hash TEXT PRIMARY KEY,
    username TEXT NOT NULL REFERENCES users(username),
    kind TEXT NOT NULL,
    created_at TEXT NOT NULL,
    expires_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS login_failures (
    username TEXT NOT NULL,
    client TEXT NOT NULL,
    at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS login_failures_at ON login_failures(at);
CREATE TABLE IF NOT EXISTS audit (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    at TEXT NOT NULL,
    username TEXT NOT NULL,
    role TEXT NOT NULL,
    action TEXT NOT NULL,
    resource TEXT NOT NULL,
    detail TEXT NOT NULL,
    reason TEXT NOT NULL,
    client TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL
);
CREATE TRIGGER IF NOT EXISTS audit_no_update BEFORE UPDATE ON audit
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER IF NOT EXISTS audit_no_delete BEFORE DELETE ON audit
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
"""

_AUDIT_FIELDS = ("at", "username", "role", "action", "resource", "detail", "reason", "client")
_GENESIS = "0" * 64


ProxyNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


def client_address(
    peer: str | None, forwarded_for: Sequence[str], trusted: Sequence[ProxyNetwork]
) -> str:
    """The address a request came from, for sign-in limits and the audit log.

    `X-Forwarded-For` is believed only when the direct peer is a trusted proxy; then the
    right-most address in it that is not itself a trusted proxy is the client (addresses to
    its left were written by the client and prove nothing). With no trusted proxies (the
    default) the header is ignored."""
    if not peer:
        return "unknown"

    def is_trusted(address: str) -> bool:
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in network for network in trusted)

    if not trusted or not is_trusted(peer):
        return peer
    hops = [h.strip() for value in forwarded_for for h in value.split(",")]
    client = peer
    for hop in reversed(hops):
        try:
            ipaddress.ip_address(hop)
        except ValueError:
            break  # not an address: nothing to its left can be believed either
        client = hop
        if not is_trusted(hop):
            break
    return client


def _now() -> datetime:
    return datetime.now(UTC)


def _iso(moment: datetime) -> str:
    return moment.isoformat(timespec="microseconds")


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _entry_hash(prev: str, entry: dict[str, str]) -> str:
    body = json.dumps([prev, *(entry[k] for k in _AUDIT_FIELDS)], ensure_ascii=False)
    return hashlib.sha256(body.encode()).hexdigest()


class AccessStore:
    """Users, sessions, failed sign-ins and the audit log in one SQLite file."""

    def __init__(
        self,
        path: Path,
        *,
        session_hours: float = 8.0,
        max_failures: int = 5,
        window_minutes: float = 15.0,
        allow_demo_users: bool = True,
        durable: bool = False,
    ) -> None:
        self.path = path
        self.session_length = timedelta(hours=session_hours)
        self.max_failures = max_failures
        self.window = timedelta(minutes=window_minutes)
        self.allow_demo_users = allow_demo_users
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._con = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
            self._con.execute("PRAGMA journal_mode=WAL")
            # In WAL mode NORMAL syncs at checkpoints, not at every commit: a committed entry
            # survives the server crashing; only a power cut can lose the last moments' entries.
            # `durable=True` syncs every commit (about 20 ms each on this machine's disk).
            self._con.execute(f"PRAGMA synchronous={'FULL' if durable else 'NORMAL'}")
            self._con.executescript(_SCHEMA)
        except sqlite3.Error as err:
            raise ConfigurationError(f"cannot open the access database {path}: {err}") from err
        self._lock = threading.Lock()
        self._count_lock = threading.Lock()
        #: Passwords checked with Argon2 since this store opened (locked-out attempts are not).
        self.password_checks = 0

    def close(self) -> None:
        self._con.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._con.execute("BEGIN IMMEDIATE")
            try:
                yield self._con
            except BaseException:
                self._con.execute("ROLLBACK")
                raise
            self._con.execute("COMMIT")

    # --- users -----------------------------------------------------------------------------

    def add_user(
        self,
        username: str,
        password: str,
        role: Role | str,
        *,
        display_name: str | None = None,
        pcn_code: str | None = None,
        practice_code: str | None = None,
        demo: bool = False,
        replace: bool = False,
    ) -> User:
        """Create (or with `replace`, reset) a user; clinicians need a PCN or practice."""
        try:
            role = Role(role)
        except ValueError:
            choices = ", ".join(r.value for r in Role)
            raise InputError("role", f"{role!r} is not a role; choose from {choices}") from None
        if not username or not username.replace("-", "").replace(".", "").isalnum():
            raise InputError("username", "use letters, digits, dots and hyphens only")
        if len(password) < MIN_PASSWORD_LENGTH:
            raise InputError("password", f"must be at least {MIN_PASSWORD_LENGTH} characters")
        if role is Role.CLINICIAN and not (pcn_code or practice_code):
            raise InputError("pcn", "a clinician belongs to a PCN or practice: give one")
        if role is not Role.CLINICIAN and (pcn_code or practice_code):
            raise InputError("pcn", "only clinicians are tied to a PCN or practice")
        user = User(username, display_name or username, role, pcn_code, practice_code, demo=demo)
        verb = "INSERT OR REPLACE" if replace else "INSERT"
        with self._tx() as con:
            if (
                not replace
                and con.execute("SELECT 1 FROM users WHERE username = ?", (username,)).fetchone()
            ):
                raise InputError("username", f"{username!r} already exists")
            con.execute(
                f"{verb} INTO users (username, display_name, role, pcn_code, practice_code, "
                "password_hash, demo, active, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, 1, ?)",
                (
                    username, user.display_name, role.value, pcn_code, practice_code,
                    _HASHER.hash(password), int(demo), _iso(_now()),
                ),
            )  # fmt: skip
            con.execute("DELETE FROM sessions WHERE username = ?", (username,))
        return user

    def users(self) -> list[User]:
        rows = self._con.execute(
            "SELECT username, display_name, role, pcn_code, practice_code, demo FROM users "
            "WHERE active = 1 ORDER BY role, username"
        ).fetchall()
        return [User(r[0], r[1], Role(r[2]), r[3], r[4], bool(r[5])) for r in rows]

    def _user(self, username: str) -> tuple[User, str] | None:
        row = self._con.execute(
            "SELECT username, display_name, role, pcn_code, practice_code, demo, password_hash "
            "FROM users WHERE username = ? AND active = 1",
            (username,),
        ).fetchone()
        if row is None:
            return None
        return User(row[0], row[1], Role(row[2]), row[3], row[4], bool(row[5])), row[6]

    # --- sign-in ---------------------------------------------------------------------------

    def _locked_for(self, con: sqlite3.Connection, username: str, client: str) -> int:
        """Seconds until `username` (or anyone from `client`) may try again; 0 when free.
        Attempts still being checked count as failures until they succeed."""
        since = _iso(_now() - self.window)
        worst = 0
        for column, value, limit in (
            ("username", username, self.max_failures),
            ("client", client, self.max_failures * 4),
        ):
            rows = con.execute(
                f"SELECT at FROM login_failures WHERE {column} = ? AND at > ? ORDER BY at",
                (value, since),
            ).fetchall()
            if len(rows) >= limit:
                oldest = datetime.fromisoformat(rows[len(rows) - limit][0])
                worst = max(worst, int((oldest + self.window - _now()).total_seconds()) + 1)
        return worst

    def locked_for(self, username: str, client: str) -> int:
        """Seconds until `username` (or anyone from `client`) may try again; 0 when free."""
        return self._locked_for(self._con, username.lower(), client)

    def _reserve_attempt(self, username: str, client: str) -> int:
        """Count an attempt for `username` and `client` before its password is checked, in one
        write transaction, so concurrent attempts cannot all pass the limit together; returns
        the seconds locked (and counts nothing) when the limit is already reached."""
        with self._tx() as con:
            locked = self._locked_for(con, username, client)
            if not locked:
                con.execute(
                    "INSERT INTO login_failures (username, client, at) VALUES (?, ?, ?)",
                    (username, client, _iso(_now())),
                )
                con.execute(
                    "DELETE FROM login_failures WHERE at < ?", (_iso(_now() - self.window),)
                )
        return locked

    def sign_in(self, username: str, password: str, client: str, kind: str = "cookie") -> SignIn:
        """Check a password. Each attempt is counted against the name and the client before
        the password is checked, and only a success clears the name's count, so no more than
        the limit of passwords are ever checked in a window however many arrive at once. A
        locked-out name or client is refused unchecked; unknown names count too."""
        name = username.lower()
        locked = self._reserve_attempt(name, client)
        if locked:
            return SignIn(None, locked_seconds=locked)
        found = self._user(username)
        with self._count_lock:
            self.password_checks += 1
        try:
            ok = _HASHER.verify(found[1] if found else _DUMMY_HASH, password)
        except (VerificationError, InvalidHashError):
            ok = False
        if found is None or not ok or (found[0].demo and not self.allow_demo_users):
            return SignIn(None)  # the reserved attempt stays, as a failure
        user, stored = found
        token = secrets.token_urlsafe(32)
        with self._tx() as con:
            if _HASHER.check_needs_rehash(stored):
                con.execute(
                    "UPDATE users SET password_hash = ? WHERE username = ?",
                    (_HASHER.hash(password), user.username),
                )
            con.execute("DELETE FROM login_failures WHERE username = ?", (name,))
            con.execute("DELETE FROM sessions WHERE expires_at < ?", (_iso(_now()),))
            con.execute(
                "INSERT INTO sessions VALUES (?, ?, ?, ?, ?)",
                (
                    _token_hash(token), user.username, kind, _iso(_now()),
                    _iso(_now() + self.session_length),
                ),
            )  # fmt: skip
        return SignIn(user, token)

    def session_user(self, token: str | None) -> User | None:
        if not token:
            return None
        row = self._con.execute(
            "SELECT username FROM sessions WHERE token_hash = ? AND expires_at > ?",
            (_token_hash(token), _iso(_now())),
        ).fetchone()
        if row is None:
            return None
        found = self._user(row[0])
        if found is None or (found[0].demo and not self.allow_demo_users):
            return None
        return found[0]

    def sign_out(self, token: str) -> None:
        with self._tx() as con:
            con.execute("DELETE FROM sessions WHERE token_hash = ?", (_token_hash(token),))

    # --- audit -----------------------------------------------------------------------------

    def audit(
        self, user: User, action: str, resource: str, *, detail: str, reason: str, client: str
    ) -> int:
        """Append one entry: `user` did `action` to `resource` (with `detail`) for `reason`."""
        entry = {
            "at": _iso(_now()),
            "username": user.username,
            "role": user.role.value,
            "action": action,
            "resource": resource,
            "detail": detail,
            "reason": reason,
            "client": client,
        }
        with self._tx() as con:
            last = con.execute("SELECT hash FROM audit ORDER BY seq DESC LIMIT 1").fetchone()
            prev = last[0] if last else _GENESIS
            cursor = con.execute(
                "INSERT INTO audit (at, username, role, action, resource, detail, reason, "
                "client, prev_hash, hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (*(entry[k] for k in _AUDIT_FIELDS), prev, _entry_hash(prev, entry)),
            )
            return int(cursor.lastrowid or 0)

    def audit_entries(self, limit: int = 50, offset: int = 0) -> tuple[int, list[dict[str, Any]]]:
        """The newest entries first, and how many there are in all."""
        total = int(self._con.execute("SELECT count(*) FROM audit").fetchone()[0])
        rows = self._con.execute(
            "SELECT seq, " + ", ".join(_AUDIT_FIELDS) + " FROM audit ORDER BY seq DESC "
            "LIMIT ? OFFSET ?",
            (limit, offset),
        ).fetchall()
        return total, [dict(zip(("seq", *_AUDIT_FIELDS), r, strict=True)) for r in rows]

    def verify_audit(self) -> tuple[bool, int]:
        """Whether every entry's hash follows from the one before; and how many were checked."""
        prev, count = _GENESIS, 0
        cursor = self._con.execute(
            "SELECT " + ", ".join(_AUDIT_FIELDS) + ", prev_hash, hash FROM audit ORDER BY seq"
        )
        for row in cursor:
            entry = dict(zip(_AUDIT_FIELDS, row[:-2], strict=True))
            if row[-2] != prev or row[-1] != _entry_hash(prev, entry):
                return False, count
            prev, count = row[-1], count + 1
        return True, count


#: The demo accounts `joinedup demo` creates (and `joinedup users demo`). Their passwords are
#: public, in the README: they sign in only in demo mode, never in production mode.
DEMO_ROLES: tuple[tuple[str, Role, str], ...] = (
    ("analyst", Role.ANALYST, "Ada Analyst"),
    ("clinician", Role.CLINICIAN, "Dr Cai Clinician"),
    ("clinician2", Role.CLINICIAN, "Dr Dee Clinician"),
    ("finance", Role.FINANCE, "Fin Finance"),
    ("board", Role.BOARD, "Bo Board"),
    ("admin", Role.ADMIN, "Ash Admin"),
)


def demo_password(username: str) -> str:
    return f"{username}-demo-2026"


def create_demo_users(store: AccessStore, pcn_codes: list[str]) -> list[User]:
    """One demo user per role; the two clinicians belong to different PCNs (the first two in
    `pcn_codes`, in different places where the caller orders them so)."""
    if len(pcn_codes) < 2:
        raise ConfigurationError("the demo needs a footprint with at least two PCNs")
    pcns = iter(pcn_codes[:2])
    return [
        store.add_user(
            name,
            demo_password(name),
            role,
            display_name=display,
            pcn_code=next(pcns) if role is Role.CLINICIAN else None,
            demo=True,
            replace=True,
        )
        for name, role, display in DEMO_ROLES
    ]
