"""Who may see what: users and roles, sign-in, sessions and the audit log.

Everything lives in one SQLite file beside the warehouse (the warehouse is opened read-only
while the dashboard serves it). Passwords are hashed with Argon2id (argon2-cffi). Session and
API tokens are random; only their SHA-256 is stored. The audit log is append-only: triggers
refuse UPDATE and DELETE, and each entry carries a hash over the one before, so a changed or
missing entry shows when the chain is checked.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import ipaddress
import json
import os
import re
import secrets
import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from joinedup.errors import ConfigurationError, InputError
from joinedup.records.proxy_age import ProxyAgeEnd, ProxyHold, ProxyReview
from joinedup.web.audit import (
    AUDIT_FIELDS,
    CHECKPOINT_EVERY,
    CONTEXT_FIELDS,
    GENESIS,
    MAX_DETAIL_LENGTH,
    MAX_FIELD_LENGTH,
    MAX_PATIENTS,
    AuditCheck,
    Mark,
    advance_head,
    capped,
    chained_values,
    entry_hash,
    load_key,
    mark_mac,
    read_head,
    values_hash,
)


class Role(StrEnum):
    ANALYST = "analyst"
    CLINICIAN = "clinician"
    FINANCE = "finance"
    BOARD = "board"
    ADMIN = "admin"
    #: Reviews break-glass access to records and the records audit (issue 16).
    PRIVACY_OFFICER = "privacy-officer"
    #: A feed or another system writing to the records API; no dashboard pages.
    SYSTEM = "system"
    #: A person seeing their own record and who has looked at it (issue 16): linked to one
    #: FHIR Patient id in the records store, and nothing else.
    CITIZEN = "citizen"
    #: Social care staff (a council's, say): a person's record only through their
    #: organisation's relationship with them (never by registration at a practice), and only
    #: the resource types care needs (records.policy.CARE_WORKER_TYPES).
    CARE_WORKER = "care-worker"
    #: Keeps the data flowing and joined up: the data quality pages, and the master person
    #: index's review queue (pairs of identifiable records to accept or reject, issue 17).
    DATA_ENGINEER = "data-engineer"


ROLE_LABELS: dict[Role, str] = {
    Role.ANALYST: "Analyst",
    Role.CLINICIAN: "Clinician",
    Role.FINANCE: "Finance",
    Role.BOARD: "Board member",
    Role.ADMIN: "Administrator",
    Role.PRIVACY_OFFICER: "Privacy officer",
    Role.SYSTEM: "System (feeds)",
    Role.CITIZEN: "Citizen",
    Role.CARE_WORKER: "Care worker",
    Role.DATA_ENGINEER: "Data engineer",
}

#: Staff: everyone who signs in to the dashboard's aggregate pages (not feeds, not citizens).
_PEOPLE = frozenset(Role) - {Role.SYSTEM, Role.CITIZEN}

#: What each part of the dashboard needs. Identifiable worklists are for clinicians only (and
#: then only for their own PCN or practice, checked per request); nobody else sees a person.
PERMISSIONS: dict[str, frozenset[Role]] = {
    "overview": _PEOPLE,
    "places": _PEOPLE,
    "about": _PEOPLE,
    "finance": frozenset({Role.FINANCE, Role.BOARD, Role.ANALYST, Role.ADMIN}),
    "data_quality": frozenset({Role.ANALYST, Role.ADMIN, Role.DATA_ENGINEER}),
    "worklists": frozenset({Role.CLINICIAN}),
    "audit": frozenset({Role.ADMIN}),
    # The master person index's review queue: identifiable pairs of records (issue 17).
    "person_index": frozenset({Role.ADMIN, Role.DATA_ENGINEER}),
    # The FHIR records API: clinicians only for patients they have a legitimate relationship
    # with, checked per record (records.policy, web/records_api/gate.py).
    # A citizen only their own record (records.policy's `self` rule); a care worker only by
    # their organisation's relationship, and only records.policy.CARE_WORKER_TYPES.
    "records": frozenset({Role.ADMIN, Role.SYSTEM, Role.CLINICIAN, Role.CITIZEN, Role.CARE_WORKER}),
    # Break-glass grants to records, for review (issue 16).
    "privacy": frozenset({Role.PRIVACY_OFFICER}),
    # The records API's audit trail as FHIR AuditEvents (GET /fhir/R4/AuditEvent).
    # A citizen searches it too, kept to the entries naming their own record.
    "records_audit": frozenset({Role.PRIVACY_OFFICER, Role.ADMIN, Role.CITIZEN}),
    # A citizen's own record and who has looked at it (/my-record).
    "my_record": frozenset({Role.CITIZEN}),
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
    #: A citizen's own FHIR Patient id in the records store (None for everyone else).
    patient_id: str | None = None
    #: The Patients a citizen has proxy access to (a parent's child, a carer's person), each
    #: by an explicit relationship recorded and audited by `AccessStore.set_proxy`.
    proxy_for: frozenset[str] = frozenset()
    #: The organisation they work for by ODS code, beyond a clinician's practice and PCN: an
    #: NHS trust, a council, or any other (a care worker's is required).
    organisation_code: str | None = None
    #: Each of `proxy_for` with the relationship recorded for it (PROXY_RELATIONSHIPS), as
    #: (Patient id, relationship) pairs: the audit names the relationship of every access.
    proxy_relationships: tuple[tuple[str, str], ...] = ()
    #: Those recorded as theirs whose age has ended a parent's or guardian's access, or whose
    #: review has suspended it (records.proxy_age), taken out of `proxy_for` by the records
    #: API for a request, each with why.
    proxies_ended: tuple[ProxyHold, ...] = ()
    #: (Patient id, its review as kept) for each of `proxy_for` the person's practice renewed
    #: after the review (`users renew-proxy`, or a grant recorded as its review) or recorded
    #: before the review rule; read with the relationships, in the same statement.
    proxy_reviews: tuple[tuple[str, ProxyReview], ...] = ()

    def proxy_relationship(self, patient_id: str) -> str | None:
        """How this citizen is related to `patient_id` as their proxy (None: they are not)."""
        return next((r for p, r in self.proxy_relationships if p == patient_id), None)

    def may(self, area: str) -> bool:
        return self.role in PERMISSIONS[area]

    @property
    def is_clinical(self) -> bool:
        return self.role is Role.CLINICIAN

    @property
    def has_worklists(self) -> bool:
        """Whether any worklist is theirs to open: worklists are for the clinicians of a PCN
        or a practice, so not for a trust's or any other organisation's clinician."""
        return self.may("worklists") and bool(self.pcn_code or self.practice_code)

    @property
    def scope(self) -> str:
        """The population whose records this user may see, in words."""
        if self.organisation_code and not (self.practice_code or self.pcn_code):
            return f"organisation {self.organisation_code}"
        if self.practice_code:
            return f"practice {self.practice_code} (PCN {self.pcn_code})"
        if self.pcn_code:
            return f"PCN {self.pcn_code}"
        if self.patient_id:
            return "their own record"
        if self.role is Role.SYSTEM:  # the records API does not restrict feeds
            return "every record in the FHIR API (a feed: no dashboard pages)"
        if self.role is Role.ADMIN:
            return "every record in the FHIR API; aggregates on the dashboard"
        if self.role is Role.PRIVACY_OFFICER:
            return "aggregates, and the audit trail of every record"
        return "aggregates only"

    def public(self) -> dict[str, Any]:
        return {
            "username": self.username,
            "display_name": self.display_name,
            "role": self.role.value,
            "role_label": ROLE_LABELS[self.role],
            "pcn_code": self.pcn_code,
            "practice_code": self.practice_code,
            "organisation_code": self.organisation_code,
            "scope": self.scope,
            "areas": sorted(a for a in PERMISSIONS if self.may(a)),
        }


@dataclass(frozen=True)
class AuditEvent:
    """One thing to write to the audit log (the time is added as it is written)."""

    username: str
    role: str
    action: str
    resource: str
    detail: str
    reason: str
    client: str
    #: The user's organisation (ODS code), the purpose of use (v3 ActReason code) and the FHIR
    #: Patient ids the request touched (CONTEXT_FIELDS): empty outside the records API.
    organisation: str = ""
    purpose: str = ""
    patients: tuple[str, ...] = ()

    def fields(self, at: str) -> dict[str, str]:
        """The entry's fields, each cut to its limit (Patient ids listed up to MAX_PATIENTS,
        the rest counted as `+N`)."""
        entry = {"at": at, **{k: getattr(self, k) for k in AUDIT_FIELDS if k != "at"}}
        entry |= {"organisation": self.organisation, "purpose": self.purpose}
        capped_entry = {
            k: capped(str(v), MAX_DETAIL_LENGTH if k == "detail" else MAX_FIELD_LENGTH)
            for k, v in entry.items()
        }
        ids = sorted(set(self.patients))
        listed = " ".join(ids[:MAX_PATIENTS])
        if len(ids) > MAX_PATIENTS:
            listed += f" +{len(ids) - MAX_PATIENTS}"
        return {**capped_entry, "patients": listed}


#: Where a PCN team is with a person on a worklist; everyone starts at "to contact".
WORKLIST_STATUSES: dict[str, str] = {
    "to-contact": "To contact",
    "contacted": "Contacted",
    "declined": "Declined",
    "done": "Done",
}
MAX_NOTE_LENGTH = 500


@dataclass(frozen=True)
class RecordsAuditQuery:
    """Which of the records API's audit entries to find (AccessStore.records_audit): each
    field None to not filter on it. `actions` are the actions to keep, `not_actions` those to
    leave out; `patients` is a list of sets, an entry naming one of each; `outcomes` are the
    first digits of the HTTP status; `since` and `before` are instants as the log writes them
    (`at >= since`, `at < before`); `through` the newest entry to look at (the last one the
    chain was checked to)."""

    seq: int | None = None
    through: int | None = None
    since: str | None = None
    before: str | None = None
    actions: frozenset[str] | None = None
    not_actions: frozenset[str] | None = None
    usernames: frozenset[str] | None = None
    roles: frozenset[str] | None = None
    purposes: frozenset[str] | None = None
    outcomes: frozenset[str] | None = None
    patients: tuple[frozenset[str], ...] | None = None
    oldest_first: bool = False

    def parameters(self) -> dict[str, Any]:
        def array(values: frozenset[str] | None) -> str | None:
            return None if values is None else json.dumps(sorted(values))

        return {
            "seq": self.seq,
            "through": self.through,
            "oldest": self.oldest_first,
            "since": self.since,
            "before": self.before,
            "actions": array(self.actions),
            "not_actions": array(self.not_actions),
            "usernames": array(self.usernames),
            "roles": array(self.roles),
            "purposes": array(self.purposes),
            "outcomes": array(self.outcomes),
            "patients": (
                None
                if self.patients is None
                else json.dumps([sorted(ids) for ids in self.patients])
            ),
        }


@dataclass(frozen=True)
class WorklistStatus:
    status: str
    note: str
    username: str
    at: str


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
    created_at TEXT NOT NULL,
    patient_id TEXT,
    organisation_code TEXT,
    last_sign_in_at TEXT
);
CREATE TABLE IF NOT EXISTS proxies (
    username TEXT NOT NULL REFERENCES users(username),
    patient_id TEXT NOT NULL,
    relationship TEXT NOT NULL,
    granted_at TEXT NOT NULL,
    revoked_at TEXT,
    until_date DATE,
    until_reason TEXT,
    renewed_at TEXT,
    renewed_by TEXT,
    review_date DATE,
    review_notice_from TEXT,
    PRIMARY KEY (username, patient_id)
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
    hash TEXT NOT NULL,
    organisation TEXT NOT NULL DEFAULT '',
    purpose TEXT NOT NULL DEFAULT '',
    patients TEXT NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS audit_checkpoint (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,
    seq INTEGER NOT NULL,
    entries_count INTEGER NOT NULL,
    hash TEXT NOT NULL,
    at TEXT NOT NULL,
    mac TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS worklist_status (
    pcn_code TEXT NOT NULL,
    worklist_id TEXT NOT NULL,
    person_id INTEGER NOT NULL,
    status TEXT NOT NULL,
    note TEXT NOT NULL,
    username TEXT NOT NULL,
    at TEXT NOT NULL,
    PRIMARY KEY (pcn_code, worklist_id, person_id)
);
CREATE TRIGGER IF NOT EXISTS audit_checkpoint_no_update BEFORE UPDATE ON audit_checkpoint
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER IF NOT EXISTS audit_checkpoint_no_delete BEFORE DELETE ON audit_checkpoint
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER IF NOT EXISTS audit_no_update BEFORE UPDATE ON audit
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER IF NOT EXISTS audit_no_delete BEFORE DELETE ON audit
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
"""


#: `audit_checkpoint.entries` became `entries_count` (counts end `_count`): a file written
#: before is renamed in place when it opens, as it holds users and the audit log, which no
#: command could rebuild. (RENAME COLUMN changes no row, so no append-only trigger fires.)
_CHECKPOINT_COLUMNS = "SELECT name FROM pragma_table_info('audit_checkpoint')"
_RENAME_ENTRIES = "ALTER TABLE audit_checkpoint RENAME COLUMN entries TO entries_count"


#: The context columns (CONTEXT_FIELDS) came with the records API's AuditEvents: a log written
#: before gets them, empty, when it opens (ADD COLUMN changes no row, so no trigger fires; an
#: entry with them empty hashes as before).
_AUDIT_COLUMNS = "SELECT name FROM pragma_table_info('audit')"
_ADD_CONTEXT = {
    "organisation": "ALTER TABLE audit ADD COLUMN organisation TEXT NOT NULL DEFAULT ''",
    "purpose": "ALTER TABLE audit ADD COLUMN purpose TEXT NOT NULL DEFAULT ''",
    "patients": "ALTER TABLE audit ADD COLUMN patients TEXT NOT NULL DEFAULT ''",
}


#: A citizen's link to their FHIR Patient came with the citizen role: a users table written
#: before gets the column, empty, when it opens.
_USER_COLUMNS = "SELECT name FROM pragma_table_info('users')"
_ADD_PATIENT = "ALTER TABLE users ADD COLUMN patient_id TEXT"
#: So did a user's organisation beyond their practice and PCN (a trust, a council).
_ADD_ORGANISATION = "ALTER TABLE users ADD COLUMN organisation_code TEXT"
#: A proxy relationship's last day came with `users proxy --until`: a proxies table written
#: before gets the column, empty (no end), when it opens. Declared DATE (registered so), it
#: holds the ISO day as text, which SQLite keeps as text and compares as text.
_PROXY_COLUMNS = "SELECT name FROM pragma_table_info('proxies')"
_ADD_PROXY_UNTIL = "ALTER TABLE proxies ADD COLUMN until_date DATE"
#: Why it ends on that day (`--until`, or the person's 16th birthday for a parent's or a
#: guardian's access) came with the age rule (records.proxy_age): empty in a table before.
_ADD_PROXY_UNTIL_REASON = "ALTER TABLE proxies ADD COLUMN until_reason TEXT"
#: When the person's practice renewed a parent's or guardian's access after the review, and
#: who (`users renew-proxy`), came with the review rule (records.proxy_age): empty before.
_ADD_PROXY_RENEWED = {
    "renewed_at": "ALTER TABLE proxies ADD COLUMN renewed_at TEXT",
    "renewed_by": "ALTER TABLE proxies ADD COLUMN renewed_by TEXT",
}
#: The review day a renewal was for (the person's review birthday then), so that whether it
#: counts is judged by it and not by a notice period changed since (records.proxy_age).
_ADD_PROXY_REVIEW_DATE = "ALTER TABLE proxies ADD COLUMN review_date DATE"
#: When the review rule reached a grant recorded before it: such a grant is suspended no
#: sooner than the notice period after, so the proxy and the person are told first. A table
#: that gains the column holds grants recorded before it: each not revoked is given the time
#: it gains it, in the same transaction (so a process opening the file meanwhile finds both
#: or neither). A grant recorded after (INSERT OR REPLACE) has none.
_ADD_PROXY_NOTICE_FROM = "ALTER TABLE proxies ADD COLUMN review_notice_from TEXT"
_NOTICE_OLD_PROXIES = "UPDATE proxies SET review_notice_from = ? WHERE revoked_at IS NULL"
#: And when each last signed in, for the administrators' review of accounts.
_ADD_LAST_SIGN_IN = "ALTER TABLE users ADD COLUMN last_sign_in_at TEXT"
#: The one place the rule for a proxy relationship being in force is written: `active` when
#: not revoked and not past its last day (`until_date`, an ISO day compared as text with
#: SQLite's `date('now')`, today in UTC), else `revoked` or `expired`. Who a citizen acts for
#: (_PROXIES_OF), how many an account review counts (_REVIEW) and the status `users proxies`
#: lists (_LIST_PROXIES) all read it, with why it ends then (`until_reason`). A view made
#: once: a change to the rule is a new view name, as IF NOT EXISTS keeps an old definition;
#: a view from before `until_reason` or the renewal columns is made again with them
#: (_proxy_status_view), same rule.
_PROXY_STATUS = (
    "CREATE VIEW IF NOT EXISTS proxy_status AS "
    "SELECT username, patient_id, relationship, granted_at, until_date, revoked_at, "
    "until_reason, renewed_at, renewed_by, review_date, review_notice_from, "
    "CASE WHEN revoked_at IS NOT NULL THEN 'revoked' "
    "WHEN until_date IS NOT NULL AND until_date < date('now') THEN 'expired' "
    "ELSE 'active' END AS status FROM proxies"
)


def _rename_old_columns(con: sqlite3.Connection) -> None:
    """Bring a file written by an older version up to date: the columns renamed or added
    since (above), then the proxy_status view. The columns are changed in one transaction
    whose own reads decide which: another process opening the file at the same time (the
    dashboard and `records serve` started together after an upgrade) may have changed them
    since this one first looked, and adding a column again fails ("duplicate column name").
    A file already up to date is only read."""
    if _column_changes(con):
        con.execute("BEGIN IMMEDIATE")
        try:
            for statement, values in _column_changes(con):
                con.execute(statement, values)
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise
    _proxy_status_view(con)  # after the columns it reads are there


def _column_changes(con: sqlite3.Connection) -> list[tuple[str, tuple[str, ...]]]:
    """Every rename and added column the file lacks, as statements with their values. A
    table that gains `review_notice_from` holds grants recorded before it: each not revoked
    is given the time it gains it (_ADD_PROXY_NOTICE_FROM)."""
    changes: list[str] = []
    names = {row[0] for row in con.execute(_CHECKPOINT_COLUMNS)}
    if "entries" in names and "entries_count" not in names:
        changes.append(_RENAME_ENTRIES)
    audit_names = {row[0] for row in con.execute(_AUDIT_COLUMNS)}
    changes += [_ADD_CONTEXT[name] for name in CONTEXT_FIELDS if name not in audit_names]
    user_names = {row[0] for row in con.execute(_USER_COLUMNS)}
    changes += [sql for name, sql in _USER_ADDED.items() if name not in user_names]
    proxy_names = {row[0] for row in con.execute(_PROXY_COLUMNS)}
    changes += [sql for name, sql in _PROXY_ADDED.items() if name not in proxy_names]
    found: list[tuple[str, tuple[str, ...]]] = [(sql, ()) for sql in changes]
    if "review_notice_from" not in proxy_names:
        found += [(_ADD_PROXY_NOTICE_FROM, ()), (_NOTICE_OLD_PROXIES, (_iso(_now()),))]
    return found


#: The users columns added since the table was first made, each with its statement.
_USER_ADDED = {
    "patient_id": _ADD_PATIENT,
    "organisation_code": _ADD_ORGANISATION,
    "last_sign_in_at": _ADD_LAST_SIGN_IN,
}


#: The proxies columns added since the table was first made, each with its statement.
_PROXY_ADDED = {
    "until_date": _ADD_PROXY_UNTIL,
    "until_reason": _ADD_PROXY_UNTIL_REASON,
    **_ADD_PROXY_RENEWED,
    "review_date": _ADD_PROXY_REVIEW_DATE,
}


_VIEW_COLUMNS = "SELECT name FROM pragma_table_info('proxy_status')"
_DROP_PROXY_STATUS = "DROP VIEW IF EXISTS proxy_status"


#: The columns of proxy_status a view made before them lacks: it is made again.
_VIEW_NEEDS = frozenset(
    {"until_reason", "renewed_at", "renewed_by", "review_date", "review_notice_from"}
)


def _proxy_status_view(con: sqlite3.Connection) -> None:
    """The proxy_status view, made again (in one transaction, so no reader finds it missing)
    when it was made before `until_reason`, the renewal or the review columns."""
    names = {row[0] for row in con.execute(_VIEW_COLUMNS)}
    if names and not names >= _VIEW_NEEDS:
        con.execute("BEGIN IMMEDIATE")
        try:
            if not {row[0] for row in con.execute(_VIEW_COLUMNS)} >= _VIEW_NEEDS:
                con.execute(_DROP_PROXY_STATUS)
            con.execute(_PROXY_STATUS)
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise
        return
    con.execute(_PROXY_STATUS)


# Every statement is constant text with its values bound as parameters (never formatted in).
_SYNC_FULL = "PRAGMA synchronous=FULL"
#: The longest a write waits for the access database's write lock before it fails.
BUSY_WAIT_S = 30.0
_SYNC_NORMAL = "PRAGMA synchronous=NORMAL"
_INSERT_USER = (
    "INSERT INTO users (username, display_name, role, pcn_code, practice_code, password_hash, "
    "demo, active, created_at, patient_id, organisation_code) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, 1, ?, ?, ?)"
)
_REPLACE_USER = (
    "INSERT OR REPLACE INTO users (username, display_name, role, pcn_code, practice_code, "
    "password_hash, demo, active, created_at, patient_id, organisation_code) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, 1, ?, ?, ?)"
)
# A user's columns (as _user_of reads them): every active user, and one with their hash.
_USERS = (
    "SELECT username, display_name, role, pcn_code, practice_code, demo, patient_id, "
    "organisation_code FROM users WHERE active = 1 ORDER BY role, username"
)
_USER = (
    "SELECT username, display_name, role, pcn_code, practice_code, demo, patient_id, "
    "organisation_code, password_hash FROM users WHERE username = ? AND active = 1"
)
#: The active user a session token (its hash) signs in, while the session lasts; as _USER.
_SESSION_USER = (
    "SELECT u.username, u.display_name, u.role, u.pcn_code, u.practice_code, u.demo, "
    "u.patient_id, u.organisation_code, u.password_hash FROM sessions AS s "
    "JOIN users AS u ON u.username = s.username "
    "WHERE s.token_hash = ? AND s.expires_at > ? AND u.active = 1"
)
_SIGNED_IN = "UPDATE users SET last_sign_in_at = ? WHERE username = ?"
#: Every active account for the administrators' review: when made and last signed in, how
#: many people it is a proxy for and how many sessions or tokens it holds now (counts only:
#: no Patient id leaves the access store this way).
_REVIEW = (
    "SELECT u.username, u.display_name, u.role, u.pcn_code, u.practice_code, u.demo, "
    "u.patient_id, u.organisation_code, u.created_at, u.last_sign_in_at, "
    "(SELECT count(*) FROM proxy_status p WHERE p.username = u.username "
    "AND p.status = 'active'), "
    "(SELECT count(*) FROM sessions s WHERE s.username = u.username AND s.expires_at > ?) "
    "FROM users u WHERE u.active = 1 ORDER BY u.role, u.username"
)
_FAILURES_OF_NAME = "SELECT at FROM login_failures WHERE username = ? AND at > ? ORDER BY at"
_FAILURES_FROM_CLIENT = "SELECT at FROM login_failures WHERE client = ? AND at > ? ORDER BY at"
# The audit fields in AUDIT_FIELDS' order (at, username, role, action, resource, detail,
# reason, client): the newest entries up to a number, and the entries after one, to check.
_AUDIT_PAGE = (
    "SELECT seq, at, username, role, action, resource, detail, reason, client FROM audit "
    "WHERE seq <= ? ORDER BY seq DESC LIMIT ?"
)
#: The whole log, or the entries in a period, up to a fixed entry (`through`, so entries added
#: while an export runs, its own among them, are not in it): how many, and the first and last.
_AUDIT_SPAN = (
    "SELECT count(*), min(seq), max(seq) FROM audit WHERE seq <= :through "
    "AND (:since IS NULL OR at >= :since) AND (:before IS NULL OR at < :before)"
)
#: The same entries, newest first, one batch below `below` at a time (keyset paging).
_AUDIT_EXPORT = (
    "SELECT seq, at, username, role, action, resource, detail, reason, client FROM audit "
    "WHERE seq <= :through AND seq < :below "
    "AND (:since IS NULL OR at >= :since) AND (:before IS NULL OR at < :before) "
    "ORDER BY seq DESC LIMIT :batch"
)
_AUDIT_AFTER = (
    "SELECT seq, at, username, role, action, resource, detail, reason, client, organisation, "
    "purpose, patients, prev_hash, hash FROM audit WHERE seq > ? ORDER BY seq LIMIT 20000"
)
_AUDIT_INSERT = (
    "INSERT INTO audit (at, username, role, action, resource, detail, reason, client, "
    "organisation, purpose, patients, prev_hash, hash) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
# The records API's entries (action `fhir ...`) as AuditEvents, and how many match: every
# filter is optional (NULL when not asked for); sets of values come as JSON arrays, the
# patients as an array of arrays (each inner array one parameter: an entry names any of its
# ids, for every parameter). One row always (the count), with the page's entries joined on.
_RECORDS_AUDIT = """
WITH matched AS (
    SELECT seq FROM audit
    WHERE action LIKE 'fhir %'
    AND (:seq IS NULL OR seq = :seq) AND (:through IS NULL OR seq <= :through)
    AND (:since IS NULL OR at >= :since) AND (:before IS NULL OR at < :before)
    AND (:actions IS NULL OR action IN (SELECT value FROM json_each(:actions)))
    AND (:not_actions IS NULL OR action NOT IN (SELECT value FROM json_each(:not_actions)))
    AND (:usernames IS NULL OR username IN (SELECT value FROM json_each(:usernames)))
    AND (:roles IS NULL OR role IN (SELECT value FROM json_each(:roles)))
    AND (:purposes IS NULL OR purpose IN (SELECT value FROM json_each(:purposes)))
    AND (:outcomes IS NULL OR substr(detail, 1, 1) IN (SELECT value FROM json_each(:outcomes)))
    AND (:patients IS NULL OR NOT EXISTS (
        SELECT 1 FROM json_each(:patients) AS wanted WHERE NOT EXISTS (
            SELECT 1 FROM json_each(wanted.value) AS one
            WHERE instr(' ' || audit.patients || ' ', ' ' || one.value || ' ') > 0)))
), page AS (
    SELECT seq FROM matched
    ORDER BY CASE WHEN :oldest THEN seq ELSE -seq END LIMIT :lim OFFSET :off
)
SELECT (SELECT count(*) FROM matched), audit.seq, audit.at, audit.username, audit.role,
    audit.action, audit.resource, audit.detail, audit.reason, audit.client,
    audit.organisation, audit.purpose, audit.patients, audit.prev_hash, audit.hash
FROM (SELECT 1) AS one
LEFT JOIN page ON 1
LEFT JOIN audit ON audit.seq = page.seq
ORDER BY CASE WHEN :oldest THEN audit.seq ELSE -audit.seq END
"""
RECORDS_AUDIT_COLUMNS = (
    "seq", *AUDIT_FIELDS, *CONTEXT_FIELDS, "prev_hash", "hash",
)  # fmt: skip


_UPSERT_STATUS = (
    "INSERT OR REPLACE INTO worklist_status (pcn_code, worklist_id, person_id, status, note, "
    "username, at) VALUES (?, ?, ?, ?, ?, ?, ?)"
)
_STATUSES_OF_PCN = (
    "SELECT worklist_id, person_id, status, note, username, at FROM worklist_status "
    "WHERE pcn_code = ?"
)


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


#: An ODS organisation code as a user's organisation must be spelt: a GP practice (A81001), a
#: PCN (U12345), an NHS trust (RXX) or one of its sites, a council, a voluntary organisation.
ODS_CODE = re.compile(r"[A-Z0-9]{3,10}")
#: The roles that belong to an organisation beyond a practice or PCN.
ORGANISATION_ROLES = frozenset({Role.CLINICIAN, Role.CARE_WORKER})

#: A FHIR resource id (FHIR R4 `id`), as a citizen's patient link must be.
_PATIENT_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")


def _user_of(row: Sequence[Any], proxies: Sequence[Sequence[Any]] = ()) -> User:
    """A user from a row of _USERS (or _USER), with the Patients they are a proxy for (rows
    of _PROXIES_OF: Patient id, relationship, and what is kept of its review)."""
    pairs = tuple((str(p[0]), str(p[1])) for p in proxies)
    reviews = tuple((str(p[0]), ProxyReview(p[2], p[3], p[4])) for p in proxies if any(p[2:5]))
    return User(
        row[0], row[1], Role(row[2]), row[3], row[4], bool(row[5]), row[6],
        frozenset(p for p, _ in pairs), row[7], pairs, proxy_reviews=reviews,
    )  # fmt: skip


#: Who a citizen may be a proxy for, by their relationship to that person.
PROXY_RELATIONSHIPS: dict[str, str] = {
    "parent": "Parent (of a child under 16: reviewed by 13, ends at their 16th birthday)",
    "guardian": "Legal guardian (of a child under 16: reviewed by 13, ends at 16)",
    "carer": "Carer, with the person's consent",
    "attorney": "Lasting power of attorney (health and welfare)",
}
#: The relationships in force today (by the rule in _PROXY_STATUS).
_PROXIES_OF = (
    "SELECT patient_id, relationship, renewed_at, review_date, review_notice_from "
    "FROM proxy_status WHERE username = ? AND status = 'active' ORDER BY patient_id"
)
#: A new grant (no review notice: it is recorded under the rule), renewed when it is its own
#: review (recorded on or after the review birthday by one who may renew it).
_GRANT_PROXY = (
    "INSERT OR REPLACE INTO proxies "
    "(username, patient_id, relationship, granted_at, revoked_at, until_date, until_reason, "
    "renewed_at, renewed_by, review_date, review_notice_from) "
    "VALUES (?, ?, ?, ?, NULL, ?, ?, ?, ?, ?, NULL)"
)
#: A ProxyRecord's columns, as proxy_status has them.
_PROXY_RECORD = (
    "SELECT p.username, p.patient_id, p.relationship, p.granted_at, p.until_date, "
    "p.revoked_at, p.status, p.until_reason, p.renewed_at, p.renewed_by, p.review_date, "
    "p.review_notice_from"
)
_LIST_PROXIES = (
    _PROXY_RECORD + " FROM proxy_status p WHERE (? IS NULL OR p.username = ?) "
    "ORDER BY p.username, p.patient_id"
)
#: Those in force today acting for one person (for the notice on that person's own page),
#: with each proxy's display name (the person's page names them; no other user is read).
_PROXIES_FOR = (
    _PROXY_RECORD + ", u.display_name FROM proxy_status p "
    "LEFT JOIN users u ON u.username = p.username "
    "WHERE p.patient_id = ? AND p.status = 'active' ORDER BY p.username"
)
#: Only the grant that was checked: one revoked or recorded again meanwhile is left alone.
_RENEW_PROXY = (
    "UPDATE proxies SET renewed_at = ?, renewed_by = ?, review_date = ? "
    "WHERE username = ? AND patient_id = ? AND granted_at = ? AND revoked_at IS NULL"
)
_REVOKE_PROXY = (
    "UPDATE proxies SET revoked_at = ? WHERE username = ? AND patient_id = ? AND revoked_at IS NULL"
)


_OUTSIDE_PRACTICE = "someone outside the person's registered practice"


def _reviewer_refusal(reviewer: User, patient_id: str, registered: frozenset[str]) -> str | None:
    """Why `reviewer` may not review a child's proxy access (None: they may): only an admin,
    or a clinician whose practice (or organisation) is one of `registered`, the child's
    registered GP practices (a PCN's clinician with no practice is not the practice)."""
    practice = {reviewer.practice_code, reviewer.organisation_code} - {None}
    if reviewer.role is Role.ADMIN or (reviewer.role is Role.CLINICIAN and practice & registered):
        return None
    return (
        f"{reviewer.username} is not an admin or a clinician of Patient/{patient_id}'s "
        "registered GP practice: the practice that holds the person's record reviews a "
        "parent's access (NHS England's proxy access standard, DAPB3051 7.2)"
    )


@dataclass(frozen=True)
class AccountReview:
    """An account as an administrator reviews it: who, since when, when they last signed in
    (None: never, or not since the access store began recording it), how many people they
    act for as a proxy, and how many sessions and tokens are live now."""

    user: User
    created_at: str
    last_sign_in_at: str | None
    proxies_count: int
    live_sessions_count: int


@dataclass(frozen=True)
class ProxyRecord:
    """One recorded proxy relationship, as `users proxies` lists it: who acts for which
    Patient, how related, since when, their last day (None: no end), when revoked, its
    `status` today (`active`, `revoked` or `expired`, by the rule that decides whether it is
    in force: _PROXY_STATUS), and why it ends on its last day (`until_reason`: `--until`, or
    the day before the person's 16th birthday; None: recorded before reasons were), when
    and by whom the person's practice renewed it after the review (None: not since granted)
    and for which review day (`review_date`; None: renewed before these were kept), when the
    review rule reached a grant recorded before it (`review_notice_from`), and, read for the
    person's own page, the proxy's display name."""

    username: str
    patient_id: str
    relationship: str
    granted_at: str
    until_date: str | None
    revoked_at: str | None
    status: str
    until_reason: str | None = None
    renewed_at: str | None = None
    renewed_by: str | None = None
    review_date: str | None = None
    review_notice_from: str | None = None
    display_name: str | None = None

    @property
    def review(self) -> ProxyReview:
        """What is kept of its review, as the age rule reads it (records.proxy_age)."""
        return ProxyReview(self.renewed_at, self.review_date, self.review_notice_from)


def _today() -> date:
    return _now().date()


def _now() -> datetime:
    return datetime.now(UTC)


def _iso(moment: datetime) -> str:
    return moment.isoformat(timespec="microseconds")


#: The longest a token issued at the command line lasts (a year): feeds renew theirs.
MAX_TOKEN_HOURS = 24 * 366.0


@dataclass(frozen=True)
class AuditSpan:
    """Entries of the log in a period: how many, and the first and last by number (0 when
    there are none)."""

    entries_count: int
    first: int
    last: int


def _span_parameters(
    through: int, since: datetime | None, before: datetime | None
) -> dict[str, Any]:
    # Entries are stamped `_iso` in UTC, one fixed width, so they compare as text.
    return {
        "through": through,
        "since": _iso(since.astimezone(UTC)) if since else None,
        "before": _iso(before.astimezone(UTC)) if before else None,
    }


@dataclass
class _Waiting:
    """One audit_all call's entries waiting for a group commit; `seq` (its last entry's
    number) or `error` is set when they are written or have failed, then `done`."""

    events: tuple[AuditEvent, ...]
    seq: int = 0
    error: BaseException | None = None
    done: bool = False


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


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
        audit_key_path: Path | None = None,
    ) -> None:
        self.path = path
        self.audit_key_path = audit_key_path or path.with_name(path.name + ".audit-key")
        self.audit_head_path = path.with_name(path.name + ".audit-head")
        self.session_length = timedelta(hours=session_hours)
        self.max_failures = max_failures
        self.window = timedelta(minutes=window_minutes)
        self.allow_demo_users = allow_demo_users
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._con = sqlite3.connect(
                path, check_same_thread=False, isolation_level=None, timeout=BUSY_WAIT_S
            )
            self._con.execute("PRAGMA journal_mode=WAL")
            # In WAL mode NORMAL syncs at checkpoints, not at every commit: a committed entry
            # survives the server crashing; only a power cut can lose the last moments' entries.
            # `durable=True` syncs every commit (about 20 ms each on this machine's disk).
            self._con.execute(_SYNC_FULL if durable else _SYNC_NORMAL)
            self._con.executescript(_SCHEMA)
            _rename_old_columns(self._con)
        except sqlite3.Error as err:
            raise ConfigurationError(f"cannot open the access database {path}: {err}") from err
        self._lock = threading.RLock()  # re-entered to write the audit head after commit
        self._readers = threading.local()  # each thread's connection for reads (_reader)
        # held around each write transaction, by every process writing the file (_tx)
        lock_path = path.with_name(path.name + ".write-lock")
        try:
            self._write_lock = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as err:
            self._con.close()
            raise ConfigurationError(
                f"cannot open the access database's lock {lock_path}: {err}"
            ) from err
        self._readers_lock = threading.Lock()
        self._reader_connections: list[sqlite3.Connection] = []
        self._verify_lock = threading.Lock()
        self._count_lock = threading.Lock()
        # The signed head is written after each commit, outside `_lock` (see _publish_head):
        # `_head_lock` orders the writes, `_head_newest` is the newest committed entry's head,
        # `_head_written` the number of the entry the head on disk vouches for.
        self._head_lock = threading.Lock()
        self._head_newest: Mark | None = None
        self._head_written = 0
        # Audit calls waiting for a group commit (audit_all), and whether one is being written.
        self._group = threading.Condition(threading.Lock())
        self._waiting: list[_Waiting] = []
        self._writing = False
        self._verified: Mark | None = None  # the newest entry this process has checked
        self._broken: AuditCheck | None = None  # once found broken, it stays so
        self._audit_key, made = load_key(self.audit_key_path)
        if made:
            self._mark_legacy_entries()
        #: Passwords checked with Argon2 since this store opened (locked-out attempts are not).
        self.password_checks = 0

    def close(self) -> None:
        """Check the entries added since the last check and sign a checkpoint; then close."""
        with contextlib.suppress(sqlite3.Error):
            self.verify_audit(checkpoint=True)
        with self._readers_lock:
            for con in self._reader_connections:
                con.close()
            self._reader_connections.clear()
        self._con.close()
        os.close(self._write_lock)

    def _reader(self) -> sqlite3.Connection:
        """This thread's connection for reads made outside the store's lock (sign-in above
        all, on every API request). Not the writers' connection: a read on it would run inside
        whatever transaction another thread has open there, and an error in it (SQLite's
        'busy', which other processes writing the file can cause) rolls that transaction back
        under the writer (seen with `records serve --workers 2` under load)."""
        con: sqlite3.Connection | None = getattr(self._readers, "con", None)
        if con is None:
            con = sqlite3.connect(
                self.path, check_same_thread=False, isolation_level=None, timeout=BUSY_WAIT_S
            )
            self._readers.con = con
            with self._readers_lock:
                self._reader_connections.append(con)
        return con

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            # Processes sharing the file (`records serve --workers N`) queue on a lock the
            # kernel hands on at once, not on SQLite's busy wait, which polls in sleeps of up
            # to 100 ms and so put tenths of a second on requests waiting to audit.
            fcntl.flock(self._write_lock, fcntl.LOCK_EX)
            try:
                self._con.execute("BEGIN IMMEDIATE")
                try:
                    yield self._con
                except BaseException:
                    self._con.execute("ROLLBACK")
                    raise
                self._con.execute("COMMIT")
            finally:
                fcntl.flock(self._write_lock, fcntl.LOCK_UN)

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
        patient_id: str | None = None,
        organisation_code: str | None = None,
    ) -> User:
        """Create (or with `replace`, reset) a user; clinicians need a PCN, practice or
        organisation (`organisation_code`, an ODS code: a trust, a council, ...), a care
        worker an organisation (and no practice or PCN: they see no one by registration), a
        citizen the FHIR Patient id of their own record (`patient_id`), nobody else any."""
        try:
            role = Role(role)
        except ValueError:
            choices = ", ".join(r.value for r in Role)
            raise InputError("role", f"{role!r} is not a role; choose from {choices}") from None
        if not username or not username.replace("-", "").replace(".", "").isalnum():
            raise InputError("username", "use letters, digits, dots and hyphens only")
        if len(password) < MIN_PASSWORD_LENGTH:
            raise InputError("password", f"must be at least {MIN_PASSWORD_LENGTH} characters")
        if organisation_code is not None and not ODS_CODE.fullmatch(organisation_code):
            raise InputError(
                "organisation", f"{organisation_code!r} is not an ODS code: 3 to 10 capital "
                "letters and digits (a practice A81001, a PCN U12345, a trust RXX, a council)",
            )  # fmt: skip
        if role is Role.CLINICIAN and not (pcn_code or practice_code or organisation_code):
            raise InputError(
                "pcn",
                "a clinician belongs to a PCN or practice (or another organisation): give one",
            )
        if role is Role.CARE_WORKER and not organisation_code:
            raise InputError(
                "organisation", "a care worker belongs to an organisation: give its ODS code"
            )
        if role is not Role.CLINICIAN and (pcn_code or practice_code):
            raise InputError("pcn", "only clinicians are tied to a PCN or practice")
        if role not in ORGANISATION_ROLES and organisation_code:
            raise InputError(
                "organisation", "only clinicians and care workers belong to an organisation"
            )
        if role is Role.CITIZEN and not patient_id:
            raise InputError("patient", "a citizen is linked to their own record: give its id")
        if role is not Role.CITIZEN and patient_id:
            raise InputError("patient", "only citizens are linked to a patient's record")
        if patient_id is not None and not _PATIENT_ID.fullmatch(patient_id):
            raise InputError("patient", "a FHIR id: letters, digits, '-' and '.', 1-64 long")
        user = User(
            username, display_name or username, role, pcn_code, practice_code, demo=demo,
            patient_id=patient_id, organisation_code=organisation_code,
        )  # fmt: skip
        with self._tx() as con:
            if (
                not replace
                and con.execute("SELECT 1 FROM users WHERE username = ?", (username,)).fetchone()
            ):
                raise InputError("username", f"{username!r} already exists")
            con.execute(
                _REPLACE_USER if replace else _INSERT_USER,
                (
                    username, user.display_name, role.value, pcn_code, practice_code,
                    _HASHER.hash(password), int(demo), _iso(_now()), patient_id,
                    organisation_code,
                ),
            )  # fmt: skip
            con.execute("DELETE FROM sessions WHERE username = ?", (username,))
        return user

    def users(self) -> list[User]:
        rows = self._reader().execute(_USERS).fetchall()
        return [_user_of(r) for r in rows]

    def account_review(self) -> list[AccountReview]:
        """Every active account with what an access review asks of it (see AccountReview)."""
        rows = self._reader().execute(_REVIEW, (_iso(_now()),)).fetchall()
        return [AccountReview(_user_of(r[:8]), r[8], r[9], int(r[10]), int(r[11])) for r in rows]

    def _user(self, username: str) -> tuple[User, str] | None:
        row = self._reader().execute(_USER, (username,)).fetchone()
        if row is None:
            return None
        return self._user_of_row(row), row[8]

    def _user_of_row(self, row: Sequence[Any]) -> User:
        """The user of a row of _USER, with the Patients they are a proxy for: only a citizen
        may be one (set_proxy), so only a citizen's are looked up."""
        if row[2] != Role.CITIZEN.value:
            return _user_of(row)
        return _user_of(row, self._reader().execute(_PROXIES_OF, (row[0],)).fetchall())

    def set_proxy(
        self,
        username: str,
        patient_id: str,
        relationship: str,
        *,
        revoke: bool = False,
        until: date | None = None,
        age_check: Callable[[], ProxyAgeEnd | None] | None = None,
        by: str | None = None,
        registered: frozenset[str] | Callable[[], frozenset[str]] = frozenset(),
        client: str = "command line",
    ) -> User:
        """Give citizen `username` proxy access to Patient `patient_id` as their
        `relationship` (PROXY_RELATIONSHIPS), through `until` (its last day, UTC; None: until
        revoked), or with `revoke` take it away; audited either way with the patient's id and
        the relationship. A parent's or guardian's grant takes `age_check`, called once the rest
        is found good, for when it ends by the person's age (Policy.proxy_age_end, from their
        Patient's birthDate): one already ended is refused, naming --patient, and audited
        `proxy refused`; otherwise it lasts through the earlier of `until` and the day before
        that birthday, and says which.

        Recorded on or after the person's review birthday, the grant is its own review: `by`
        must name who reviewed it, an admin or a clinician of one of `registered` (the
        person's registered GP practices, or what gives them once `age_check` has read the
        Patient), as for `renew_proxy`; it is then kept as renewed by
        them for that review, and audited as theirs. Without `by`, or by anyone else, it is
        refused naming --by (audited `proxy refused` when `by` is a user). `by` is taken, and
        the grant counts as the review, from the notice period before that birthday on; before
        then, or for a relationship not reviewed by age, it is refused naming --by. Returns
        the user as they now are."""
        found = self._user(username)
        if found is None or found[0].role is not Role.CITIZEN:
            raise InputError("NAME", f"{username!r} is not an active citizen (see `users list`)")
        if not _PATIENT_ID.fullmatch(patient_id):
            raise InputError("--patient", "a FHIR id: letters, digits, '-' and '.', 1-64 long")
        if relationship not in PROXY_RELATIONSHIPS:
            choices = ", ".join(PROXY_RELATIONSHIPS)
            raise InputError("--relationship", f"{relationship!r}: choose from {choices}")
        if patient_id == found[0].patient_id:
            raise InputError("--patient", "that is their own record")
        if until is not None and revoke:
            raise InputError("--until", "a revocation ends the access now: --until is for a grant")
        if until is not None and until < _today():
            raise InputError("--until", f"{until.isoformat()} has passed (UTC today: {_today()})")
        if by is not None and revoke:
            raise InputError("--by", "a revocation needs no review: --by is for a grant")
        reviewer = self._user(by) if by is not None else None
        if by is not None and reviewer is None:
            raise InputError("--by", f"{by!r} is not an active user (see `users list`)")
        age_end = age_check() if age_check is not None and not revoke else None
        if age_end is not None and (
            age_end.patient_id != patient_id or age_end.relationship != relationship
        ):
            raise InputError("--patient", "the age check was made for another relationship")
        if not revoke and age_end is not None and age_end.ended(_today()):
            self.audit(
                found[0], "proxy refused", f"users/proxy/{username}",
                detail=f"as {relationship}", reason=f"withheld: {age_end.label}",
                client=client, patients=[patient_id],
            )  # fmt: skip
            raise InputError("--patient", age_end.grant_refusal())
        review = None if revoke else self._grant_review(
            found[0], patient_id, relationship, age_end, reviewer, registered, client
        )  # fmt: skip
        last_day = until.isoformat() if until is not None and not revoke else None
        why = "--until" if last_day else None
        aged = age_end.last_day if age_end is not None and not revoke else None
        if age_end is not None and aged is not None and (until is None or aged < until):
            last_day, why = aged.isoformat(), f"the day before {age_end.rule}"
        with self._tx() as con:
            if revoke:
                con.execute(_REVOKE_PROXY, (_iso(_now()), username, patient_id))
            else:
                granted = _iso(_now())
                renewed = (granted, by, review.isoformat()) if review else (None, None, None)
                con.execute(
                    _GRANT_PROXY,
                    (username, patient_id, relationship, granted, last_day, why, *renewed),
                )
        # The day an age ends the access on is the record's birth date told another way:
        # the audit names the rule, not the day.
        ends = f" until {last_day}" if why == "--until" else f" until {why}" if why else ""
        reviewed = (
            f"; reviewed at {age_end.review_rule} by {by}"
            if review and age_end is not None else ""
        )  # fmt: skip
        self.audit(
            reviewer[0] if review and reviewer else found[0],
            "proxy revoked" if revoke else "proxy granted", f"users/proxy/{username}",
            detail=f"as {relationship}" + ends + reviewed,
            reason="proxy access review" if review else "proxy access", client=client,
            patients=[patient_id],
        )  # fmt: skip
        now = self._user(username)
        return now[0] if now is not None else found[0]

    def _grant_review(
        self,
        proxy: User,
        patient_id: str,
        relationship: str,
        age_end: ProxyAgeEnd | None,
        reviewer: tuple[User, str] | None,
        registered: frozenset[str] | Callable[[], frozenset[str]],
        client: str,
    ) -> date | None:
        """The review day a grant being recorded counts for (None: none), or why not
        (InputError naming --by; audited `proxy refused` when a user was named)."""
        today = _today()
        due = age_end is not None and age_end.reviews is not None and not age_end.ended(today)
        if reviewer is None:
            if due and age_end and age_end.reviews and today >= age_end.reviews:
                self.audit(
                    proxy, "proxy refused", f"users/proxy/{proxy.username}",
                    detail=f"as {relationship}",
                    reason=f"withheld: grant at or after {age_end.review_rule} with no reviewer",
                    client=client, patients=[patient_id],
                )  # fmt: skip
                raise InputError(
                    "--by",
                    f"Patient/{patient_id} is past {age_end.review_rule} (review on "
                    f"{age_end.reviews.isoformat()}): recording a {relationship}'s access now "
                    "is its review, so name who reviewed it with --by (an admin, or a "
                    "clinician of the person's registered GP practice; DAPB3051 7.2)",
                )
            return None
        if not due or age_end is None or age_end.reviews is None:
            raise InputError(
                "--by", f"a {relationship}'s access to Patient/{patient_id} has no review due "
                "by age before it ends: record it without --by",
            )  # fmt: skip
        if age_end.renewal_from is not None and today < age_end.renewal_from:
            raise InputError(
                "--by",
                f"not due for review yet: Patient/{patient_id}'s review is on "
                f"{age_end.reviews.isoformat()} ({age_end.review_rule}); a review counts from "
                f"{age_end.renewal_from.isoformat()}: record it without --by",
            )
        practices = registered() if callable(registered) else registered
        refusal = _reviewer_refusal(reviewer[0], patient_id, practices)
        if refusal is not None:
            self.audit(
                reviewer[0], "proxy refused", f"users/proxy/{proxy.username}",
                detail=f"as {relationship}", reason=f"withheld: {_OUTSIDE_PRACTICE}",
                client=client, patients=[patient_id],
            )  # fmt: skip
            raise InputError("--by", refusal)
        return age_end.reviews

    def proxies(self, username: str | None = None) -> list[ProxyRecord]:
        """Every proxy relationship recorded (of `username` alone, when given), in force or
        not: revoked and expired ones stay, as the record of who could see what."""
        rows = self._reader().execute(_LIST_PROXIES, (username, username)).fetchall()
        return [ProxyRecord(*r) for r in rows]

    def proxies_for(self, patient_id: str) -> list[ProxyRecord]:
        """The proxy relationships in force today acting for Patient `patient_id` (for the
        notice on their own page), each with the proxy's display name."""
        rows = self._reader().execute(_PROXIES_FOR, (patient_id,)).fetchall()
        return [ProxyRecord(*r) for r in rows]

    def renew_proxy(
        self,
        username: str,
        patient_id: str,
        by: str,
        *,
        registered: frozenset[str],
        age_check: Callable[[], ProxyAgeEnd | None],
        client: str = "command line",
        at: datetime | None = None,
    ) -> ProxyRecord:
        """Renew citizen `username`'s parent's or guardian's access to Patient `patient_id`
        after the practice's review (records.proxy_age), as user `by`: an admin, or a
        clinician whose practice (or organisation) is one of `registered` (the person's
        registered GP practices, Patient.generalPractitioner). `age_check` gives the access's
        end and review from the Patient's birthDate. Recorded with who and when, and audited
        `proxy renewed` as `by`; a refusal that concerns the person is audited `proxy renewal
        refused` with the reason (no value from the record) and raised as InputError naming
        the option at fault. `at` is when (default now; the records store's clock in tests)."""
        moment = at or _now()
        reviewer = self._user(by)
        if reviewer is None:
            raise InputError("--by", f"{by!r} is not an active user (see `users list`)")
        proxy = self._user(username)
        if proxy is None or proxy[0].role is not Role.CITIZEN:
            raise InputError("NAME", f"{username!r} is not an active citizen (see `users list`)")
        if not _PATIENT_ID.fullmatch(patient_id):
            raise InputError("--patient", "a FHIR id: letters, digits, '-' and '.', 1-64 long")
        found = [p for p in self.proxies(username) if p.patient_id == patient_id]
        if not found:
            raise InputError(
                "--patient", f"{username} has no proxy access to Patient/{patient_id} recorded"
            )
        record = found[0]

        def refuse(option: str, why: str, message: str) -> InputError:
            self.audit(
                reviewer[0], "proxy renewal refused", f"users/proxy/{username}",
                detail=f"as {record.relationship}", reason=f"withheld: {why}", client=client,
                patients=[patient_id],
            )  # fmt: skip
            return InputError(option, message)

        if record.status != "active":
            raise refuse(
                "--patient", f"proxy access {record.status}",
                f"{username}'s access to Patient/{patient_id} is {record.status}: record it "
                "again with `users proxy` after the review",
            )  # fmt: skip
        outside = _reviewer_refusal(reviewer[0], patient_id, registered)
        if outside is not None:
            raise refuse("--by", f"renewal by {_OUTSIDE_PRACTICE}", outside)
        age_end = age_check()
        if age_end is None:
            raise InputError(
                "--patient",
                f"a {record.relationship}'s access is not reviewed by age: nothing to renew",
            )
        today = moment.astimezone(UTC).date()
        if age_end.ended(today):
            raise refuse("--patient", age_end.label, age_end.grant_refusal())
        if age_end.reviews is None or age_end.renewal_from is None:
            raise InputError(
                "--patient", "no review comes before the end of this access (the review age "
                "is not below the end age): nothing to renew",
            )  # fmt: skip
        if today < age_end.renewal_from:
            raise InputError(
                "--patient",
                f"not due for review yet: Patient/{patient_id}'s review is on "
                f"{age_end.reviews.isoformat()} ({age_end.review_rule}); a renewal counts from "
                f"{age_end.renewal_from.isoformat()}",
            )
        renewed = _iso(moment.astimezone(UTC))
        review_day = age_end.reviews.isoformat()
        with self._tx() as con:
            done = con.execute(
                _RENEW_PROXY, (renewed, by, review_day, username, patient_id, record.granted_at)
            ).rowcount
        if done != 1:  # revoked or recorded again since it was read: nothing renewed
            raise InputError(
                "--patient",
                f"{username}'s access to Patient/{patient_id} was revoked or recorded again "
                "meanwhile: nothing renewed; see `users proxies` and run again if still due",
            )
        self.audit(
            reviewer[0], "proxy renewed", f"users/proxy/{username}",
            detail=f"as {record.relationship}; renewed after review at {age_end.review_rule}",
            reason="proxy access review", client=client, patients=[patient_id],
        )  # fmt: skip
        return next(p for p in self.proxies(username) if p.patient_id == patient_id)

    # --- sign-in ---------------------------------------------------------------------------

    def _locked_for(self, con: sqlite3.Connection, username: str, client: str) -> int:
        """Seconds until `username` (or anyone from `client`) may try again; 0 when free.
        Attempts still being checked count as failures until they succeed."""
        since = _iso(_now() - self.window)
        worst = 0
        for query, value, limit in (
            (_FAILURES_OF_NAME, username, self.max_failures),
            (_FAILURES_FROM_CLIENT, client, self.max_failures * 4),
        ):
            rows = con.execute(query, (value, since)).fetchall()
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
        found = self._user(username)
        # Who tried: a known user, never what an unknown one typed (it may be a password).
        who = found[0] if found else None
        if locked:
            self.audit(
                who, "sign-in refused", f"sign-in/{kind}", client=client, reason="",
                detail=f"too many failed sign-ins; locked for {locked} s",
                username=None if found else "(unknown name)",
            )  # fmt: skip
            return SignIn(None, locked_seconds=locked)
        with self._count_lock:
            self.password_checks += 1
        ok: bool
        try:
            ok = _HASHER.verify(found[1] if found else _DUMMY_HASH, password)
        except (VerificationError, InvalidHashError):
            ok = False
        if found is None or not ok or (found[0].demo and not self.allow_demo_users):
            why = (
                "unknown username" if found is None
                else "wrong password" if not ok
                else "demo account refused outside demo mode"
            )  # fmt: skip
            self.audit(
                who, "sign-in failed", f"sign-in/{kind}", detail=why, reason="", client=client,
                username=None if found else "(unknown name)",
            )  # fmt: skip
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
            con.execute(_SIGNED_IN, (_iso(_now()), user.username))
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
        # One statement for the session and its user (this runs for every API request).
        row = self._reader().execute(_SESSION_USER, (_token_hash(token), _iso(_now()))).fetchone()
        if row is None:
            return None
        user = self._user_of_row(row)
        if user.demo and not self.allow_demo_users:
            return None
        return user

    def sign_out(self, token: str) -> None:
        with self._tx() as con:
            con.execute("DELETE FROM sessions WHERE token_hash = ?", (_token_hash(token),))

    def issue_token(
        self, username: str, hours: float, *, client: str = "command line"
    ) -> tuple[User, str, datetime]:
        """A bearer token for `username`, valid for `hours`, issued without their password to
        whoever holds this database (as `users add` is): for a feed or an API client that
        cannot sign in interactively. Only the token's hash is kept; the issue is audited.
        Returns the user, the token and when it expires."""
        if not 0 < hours <= MAX_TOKEN_HOURS:
            raise InputError("--hours", f"must be more than 0 and at most {MAX_TOKEN_HOURS:g}")
        found = self._user(username)
        if found is None:
            raise InputError("NAME", f"{username!r} is not an active user (see `users list`)")
        user = found[0]
        if user.demo and not self.allow_demo_users:
            raise InputError("NAME", f"{username!r} is a demo account: tokens only in demo mode")
        token = secrets.token_urlsafe(32)
        issued = _now()
        expires = issued + timedelta(hours=hours)
        with self._tx() as con:
            con.execute(
                "INSERT INTO sessions VALUES (?, ?, ?, ?, ?)",
                (_token_hash(token), user.username, "issued", _iso(issued), _iso(expires)),
            )
        self.audit(
            user, "token issued", "users/token", detail=f"valid for {hours:g} h",
            reason="", client=client,
        )  # fmt: skip
        return user, token, expires

    # --- worklist status ---------------------------------------------------------------------

    def set_worklist_status(
        self, user: User, pcn_code: str, worklist_id: str, person_id: int, status: str,
        note: str, *, client: str,
    ) -> WorklistStatus:  # fmt: skip
        """Record where a PCN team is with one person on one worklist, and audit it (by
        pseudonymous person_id: never the NHS number, name or note)."""
        if status not in WORKLIST_STATUSES:
            raise InputError("status", f"must be one of {', '.join(WORKLIST_STATUSES)}")
        if len(note) > MAX_NOTE_LENGTH:
            raise InputError("note", f"at most {MAX_NOTE_LENGTH} characters")
        at = _iso(_now())
        with self._tx() as con:
            con.execute(
                _UPSERT_STATUS,
                (pcn_code, worklist_id, person_id, status, note, user.username, at),
            )
        self.audit(
            user, "worklist status", f"worklist/{pcn_code}/{worklist_id}/{person_id}",
            detail=f"status {status}" + (" with a note" if note else ""), reason="direct care",
            client=client,
        )  # fmt: skip
        return WorklistStatus(status, note, user.username, at)

    def worklist_statuses(self, pcn_code: str) -> dict[tuple[str, int], WorklistStatus]:
        """Every status recorded for a PCN's worklists, by (worklist_id, person_id)."""
        with self._lock:
            rows = self._con.execute(_STATUSES_OF_PCN, (pcn_code,)).fetchall()
        return {(str(r[0]), int(r[1])): WorklistStatus(*r[2:]) for r in rows}

    # --- audit -----------------------------------------------------------------------------

    def audit(
        self,
        user: User | None,
        action: str,
        resource: str,
        *,
        detail: str,
        reason: str,
        client: str,
        username: str | None = None,
        organisation: str = "",
        purpose: str = "",
        patients: Sequence[str] = (),
    ) -> int:
        """Append one entry: `user` did `action` to `resource` (with `detail`) for `reason`.
        Without a user (a failed sign-in, a request without a valid token) `username` says
        who, if anyone. `detail` is cut to MAX_DETAIL_LENGTH characters, the rest to
        MAX_FIELD_LENGTH, each ending TRUNCATED when cut; returns the entry's number. The
        records API adds the user's `organisation`, the `purpose` of use and the FHIR
        `patients` (ids) the request touched, for its AuditEvents."""
        event = AuditEvent(
            username=user.username if user else (username or "-"),
            role=user.role.value if user else "-",
            action=action, resource=resource, detail=detail, reason=reason, client=client,
            organisation=organisation, purpose=purpose, patients=tuple(patients),
        )  # fmt: skip
        return self.audit_all([event])

    def audit_all(self, events: Sequence[AuditEvent]) -> int:
        """Append `events` in one transaction (so a batch costs one commit, not one each);
        returns the number of the last entry.

        Concurrent calls are written together (group commit): a call that finds no write
        under way writes every call waiting then, in one transaction followed by one head,
        while calls arriving meanwhile wait for the next. Each call still returns only once
        its own entries are committed and a head covering them is on disk, as when each
        wrote its own; if the write fails, every call it held raises its error."""
        if not events:
            return 0
        mine = _Waiting(tuple(events))
        with self._group:
            self._waiting.append(mine)
            while self._writing and not mine.done:
                self._group.wait()
            leading = not mine.done
            if leading:
                self._writing = True
                batch, self._waiting = self._waiting, []
        if leading:
            try:
                self._write_group(batch)
            except BaseException as err:
                for waiting in batch:
                    waiting.error = err
                raise
            finally:
                with self._group:
                    for waiting in batch:
                        waiting.done = True
                    self._writing = False
                    self._group.notify_all()
        if mine.error is not None:
            raise mine.error
        return mine.seq

    def _write_group(self, batch: Sequence[_Waiting]) -> None:
        """Append the entries of `batch`, in order, in one transaction, then the head; note
        the number of each call's last entry."""
        at = _iso(_now())
        with self._lock:
            with self._tx() as con:
                last = con.execute(
                    "SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1"
                ).fetchone()
                prev = last[1] if last else GENESIS
                rows = []
                ends = []
                for waiting in batch:
                    for event in waiting.events:
                        entry = event.fields(at)
                        digest = entry_hash(self._audit_key, prev, entry)
                        values = (entry[k] for k in (*AUDIT_FIELDS, *CONTEXT_FIELDS))
                        rows.append((*values, prev, digest))
                        prev = digest
                    ends.append(len(rows))
                con.executemany(_AUDIT_INSERT, rows)
                # Numbers run on from 1 without gaps (AUTOINCREMENT; nothing is deleted), so
                # the newest entry's number is also how many there are.
                seq = int(con.execute("SELECT max(seq) FROM audit").fetchone()[0])
            # After the commit: a crash in between leaves the head behind the log (a shorter
            # log vouched for), never ahead of it (which would look like entries removed).
            self._head_newest = Mark(seq, seq, prev)
            if not self._head_written:
                # The first head this process writes is written under the lock, so that no
                # check ever finds entries beyond the legacy mark and no head file at all.
                self._publish_head(seq)
        self._publish_head(seq)
        first = seq - len(rows)
        for waiting, end in zip(batch, ends, strict=True):
            waiting.seq = first + end

    def _publish_head(self, seq: int) -> None:
        """Return once the signed head on disk vouches for entry `seq` (or a later one).

        A head is written in place into the older of the head file's two slots (audit.py,
        advance_head); a head vouches for every entry before its own, so concurrent writers
        share one write (group commit): whoever holds `_head_lock` writes the newest
        committed entry's head, and a writer whose entry it covers returns without writing.
        Every audit call still returns only after a head covering its entry is on disk, as
        when each wrote its own."""
        with self._head_lock:
            if self._head_written >= seq:
                return
            head = self._head_newest  # set after each commit, in commit order: never behind seq
            if head is None or head.seq < seq:
                raise RuntimeError(f"audit entry {seq} committed without its head")
            # Other processes append to the same log (`records serve --workers N`): the head
            # only moves forward, and one of theirs may already cover this entry.
            self._head_written = advance_head(self.audit_head_path, self._audit_key, head)

    def audit_entries(self, limit: int = 50, offset: int = 0) -> tuple[int, list[dict[str, Any]]]:
        """The newest entries first, and how many there are in all (the newest entry's number:
        they are numbered from 1 without gaps, so neither needs a scan of the whole log)."""
        con = self._reader()
        total = int(con.execute("SELECT coalesce(max(seq), 0) FROM audit").fetchone()[0])
        rows = con.execute(_AUDIT_PAGE, (total - offset, limit)).fetchall()
        return total, [dict(zip(("seq", *AUDIT_FIELDS), r, strict=True)) for r in rows]

    def newest_entry(self) -> int:
        """The newest entry's number (how many entries there are: numbered without gaps)."""
        with self._lock:
            return int(self._con.execute("SELECT coalesce(max(seq), 0) FROM audit").fetchone()[0])

    def audit_span(
        self, through: int, since: datetime | None = None, before: datetime | None = None
    ) -> AuditSpan:
        """How many entries up to entry `through` were written from `since` (inclusive) to
        `before` (exclusive), either open, and the first and last of them by number."""
        params = _span_parameters(through, since, before)
        with self._read_only() as con:
            count, first, last = con.execute(_AUDIT_SPAN, params).fetchone()
        return AuditSpan(int(count), int(first or 0), int(last or 0))

    def iter_audit(
        self,
        through: int,
        since: datetime | None = None,
        before: datetime | None = None,
        *,
        batch: int = 5_000,
    ) -> Iterator[dict[str, Any]]:
        """The entries `audit_span` counts, newest first, as `audit_entries` gives them, read
        `batch` at a time on a read-only connection of their own: a whole-log export holds
        neither the log in memory nor the store's lock (writers carry on beside it, WAL)."""
        params = {**_span_parameters(through, since, before), "batch": batch}
        below = through + 1
        with self._read_only() as con:
            while True:
                rows = con.execute(_AUDIT_EXPORT, {**params, "below": below}).fetchall()
                for row in rows:
                    yield dict(zip(("seq", *AUDIT_FIELDS), row, strict=True))
                if len(rows) < batch:
                    return
                below = int(rows[-1][0])

    @contextmanager
    def _read_only(self) -> Iterator[sqlite3.Connection]:
        # Any thread may run the next step of a streamed download, hence check_same_thread.
        uri = self.path.resolve().as_uri() + "?mode=ro"
        with contextlib.closing(sqlite3.connect(uri, uri=True, check_same_thread=False)) as con:
            yield con

    def records_audit(
        self, query: RecordsAuditQuery, limit: int = 50, offset: int = 0
    ) -> tuple[int, list[dict[str, Any]]]:
        """The records API's entries (`fhir ...`) that `query` asks for, how many in all and a
        page of them (newest first unless `query.oldest_first`), each with every column of
        RECORDS_AUDIT_COLUMNS (its number, fields, context and both hashes). Scans the log:
        the filters are on the entries' own (hashed) fields, with no index beside them that
        could be changed to hide an entry."""
        params = {**query.parameters(), "lim": limit, "off": offset}
        # On a connection of its own, read-only: a long scan runs beside the writers (WAL)
        # rather than holding the store's lock, which every audited request waits for.
        uri = self.path.resolve().as_uri() + "?mode=ro"
        with contextlib.closing(sqlite3.connect(uri, uri=True)) as con:
            rows = con.execute(_RECORDS_AUDIT, params).fetchall()
        total = int(rows[0][0])
        rows = [r[1:] for r in rows if r[1] is not None]
        return total, [dict(zip(RECORDS_AUDIT_COLUMNS, r, strict=True)) for r in rows]

    def _mark_legacy_entries(self) -> None:
        """On a log that had entries before it had a key (a key file made just now, and no
        head or checkpoint yet): sign where the unkeyed entries end, so they are checked with
        their plain SHA-256 and reported as legacy, and every later entry with the key."""
        with self._tx() as con:
            last = con.execute("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1").fetchone()
            marked = con.execute("SELECT count(*) FROM audit_checkpoint").fetchone()[0]
            if last is None or marked or self.audit_head_path.exists():
                return
            mark = Mark(int(last[0]), int(last[0]), str(last[1]))
            self._insert_mark(con, "legacy", mark)
        advance_head(self.audit_head_path, self._audit_key, mark)

    def _insert_mark(self, con: sqlite3.Connection, kind: str, mark: Mark) -> None:
        con.execute(
            "INSERT INTO audit_checkpoint (kind, seq, entries_count, hash, at, mac) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (
                kind, mark.seq, mark.entries, mark.hash, _iso(_now()),
                mark_mac(self._audit_key, kind, mark.seq, mark.entries, mark.hash),
            ),
        )  # fmt: skip

    def _marks(self, kind: str) -> list[tuple[Mark, str]]:
        """Checkpoints of `kind`, newest first, each with its signature."""
        with self._lock:
            rows = self._con.execute(
                "SELECT seq, entries_count, hash, mac FROM audit_checkpoint WHERE kind = ? "
                "ORDER BY id DESC",
                (kind,),
            ).fetchall()
        return [(Mark(int(r[0]), int(r[1]), str(r[2])), str(r[3])) for r in rows]

    def _holds(self, mark: Mark) -> bool:
        """Whether the log still has `mark`'s entry with its hash (one look-up by number)."""
        with self._lock:
            row = self._con.execute("SELECT hash FROM audit WHERE seq = ?", (mark.seq,)).fetchone()
        return row is not None and row[0] == mark.hash

    def verify_audit(self, *, full: bool = False, checkpoint: bool = False) -> AuditCheck:
        """Check the chain: by default only the entries after the newest one already checked
        (by this process, or a signed checkpoint), so a check costs what was added since;
        `full` checks every entry from the first. Entries before a checkpoint were checked when
        it was signed: a rewrite with recomputed hashes changes the checkpoint's entry and a
        removal its count, both seen at once; an entry altered without its hash being
        recomputed is seen by a full check (run at every start of the dashboard). Once broken
        the answer stays broken for the life of the process."""
        with self._verify_lock:
            if self._broken is not None:
                return self._broken
            found = self._verify(full=full, checkpoint=checkpoint)
            if not found.intact:
                self._broken = found
            return found

    def _verify(self, *, full: bool, checkpoint: bool) -> AuditCheck:
        legacy = self._legacy_end()
        if isinstance(legacy, str):
            return AuditCheck(False, 0, 0, problem=legacy)
        start = self._verify_from(full=full)
        if isinstance(start, str):
            return AuditCheck(False, 0, 0, problem=start)
        if start.seq and not self._holds(start):
            return AuditCheck(
                False, 0, 0, legacy.entries,
                f"entries up to {start.seq} were changed or removed after they were checked",
            )  # fmt: skip
        # The head is read before the walk: it is written only after its entries commit, so
        # the walk reaches it, however many entries this or another process adds meanwhile.
        head = read_head(self.audit_head_path, self._audit_key)
        end, checked, problem = self._walk(start, legacy)
        if problem is None:
            problem = self._head_problem(end.seq, legacy, head)
        if problem is not None:
            return AuditCheck(False, end.seq, checked, legacy.entries, problem)
        self._verified = end
        newest = self._marks("checkpoint")
        since = end.seq - (newest[0][0].seq if newest else 0)
        if end.seq and since and (checkpoint or since >= CHECKPOINT_EVERY):
            with self._tx() as con:
                self._insert_mark(con, "checkpoint", end)
        return AuditCheck(True, end.seq, checked, min(legacy.entries, end.entries))

    def _legacy_end(self) -> Mark | str:
        """Where the unkeyed legacy entries end (entry 0 when there are none), or what is
        wrong with the signed mark of it."""
        marks = self._marks("legacy")
        if not marks:
            return Mark(0, 0, GENESIS)
        legacy, mac = marks[-1]
        if not legacy.signed(self._audit_key, "legacy", mac) or not self._holds(legacy):
            return "the mark of where the unkeyed legacy entries end was changed"
        return legacy

    def _verify_from(self, *, full: bool) -> Mark | str:
        """The newest entry known good: the last this process checked, else the newest signed
        checkpoint, else none (and none for a `full` check); or what is wrong with the
        checkpoint."""
        if full:
            return Mark(0, 0, GENESIS)
        if self._verified is not None:
            return self._verified
        marks = self._marks("checkpoint")
        if not marks:
            return Mark(0, 0, GENESIS)
        mark, mac = marks[0]
        if not mark.signed(self._audit_key, "checkpoint", mac):
            return f"the checkpoint at entry {mark.seq} is not signed with the key"
        return mark

    def _walk(self, start: Mark, legacy: Mark) -> tuple[Mark, int, str | None]:
        """Hash every entry after `start`, in batches: the newest entry that checks, how many
        entries were hashed, and the first problem (None when every entry checks)."""
        prev, last, entries, checked = start.hash, start.seq, start.entries, 0
        while True:
            with self._lock:
                rows = self._con.execute(_AUDIT_AFTER, (last,)).fetchall()
            if not rows:
                return Mark(last, entries, prev), checked, None
            for row in rows:
                seq = int(row[0])
                key = None if seq <= legacy.seq else self._audit_key
                entry = dict(zip((*AUDIT_FIELDS, *CONTEXT_FIELDS), row[1:-2], strict=True))
                problem = None
                if row[-2] != prev or seq != last + 1:
                    problem = (
                        f"entry {seq} does not follow entry {last}: entries between were "
                        "removed, or one was changed"
                    )
                elif row[-1] != values_hash(key, prev, chained_values(entry)):
                    problem = (
                        f"entry {seq} does not match its hash: it was changed, or written "
                        "without the audit key"
                    )
                if problem is not None:
                    return Mark(last, entries, prev), checked, problem
                prev, last, entries, checked = row[-1], seq, entries + 1, checked + 1

    def _head_problem(self, last: int, legacy: Mark, head: Mark | str | None) -> str | None:
        """What is wrong with the signed `head` (read before the log was walked), given that
        the log checks through `last`."""
        if head is None:
            # none before the walk: the first entries' writer may have written it since
            head = read_head(self.audit_head_path, self._audit_key)
            if head is None:
                if last > legacy.seq:
                    return f"the audit head file {self.audit_head_path} is missing"
                return None
            if isinstance(head, Mark) and head.seq > last:
                return None  # written after the walk: checked by the next check
        if isinstance(head, str):
            return head
        if head.seq > last or not self._holds(head):
            return (
                f"the log ends at entry {last} but its signed head is entry {head.seq} of "
                f"{head.entries}: entries were removed from the end, or changed"
            )
        return None


#: The demo accounts `joinedup demo` creates (and `joinedup users demo`). Their passwords are
#: public, in the README: they sign in only in demo mode, never in production mode.
DEMO_ROLES: tuple[tuple[str, Role, str], ...] = (
    ("analyst", Role.ANALYST, "Ada Analyst"),
    ("clinician", Role.CLINICIAN, "Dr Cai Clinician"),
    ("clinician2", Role.CLINICIAN, "Dr Dee Clinician"),
    ("finance", Role.FINANCE, "Fin Finance"),
    ("board", Role.BOARD, "Bo Board"),
    ("admin", Role.ADMIN, "Ash Admin"),
    ("privacy-officer", Role.PRIVACY_OFFICER, "Pip Privacy"),
    ("system", Role.SYSTEM, "Sys Feed"),
    ("care-worker", Role.CARE_WORKER, "Cam Careworker"),
    ("data-engineer", Role.DATA_ENGINEER, "Dev Engineer"),
)


def demo_password(username: str) -> str:
    return f"{username}-demo-2026"


def create_demo_users(
    store: AccessStore, pcn_codes: list[str], council_code: str | None = None
) -> list[User]:
    """One demo user per role; the two clinicians belong to different PCNs (the first two in
    `pcn_codes`, in different places where the caller orders them so), the care worker to the
    council `council_code` (no care worker without one)."""
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
            organisation_code=council_code if role is Role.CARE_WORKER else None,
            demo=True,
            replace=True,
        )
        for name, role, display in DEMO_ROLES
        if role is not Role.CARE_WORKER or council_code
    ]


#: The demo citizens (`joinedup users demo` with a records store that has patients): each is
#: linked to one Patient of the store, chosen by create_demo_citizens.
DEMO_CITIZENS: tuple[tuple[str, str], ...] = (
    ("citizen", "Cy Citizen"),
    ("citizen2", "Cass Citizen"),
)


def create_demo_citizens(store: AccessStore, patient_ids: Sequence[str]) -> list[User]:
    """The demo citizens, linked to the first patients of `patient_ids` in turn (as many
    citizens as there are patients, up to two)."""
    return [
        store.add_user(
            name,
            demo_password(name),
            Role.CITIZEN,
            display_name=display,
            demo=True,
            replace=True,
            patient_id=patient,
        )
        for (name, display), patient in zip(DEMO_CITIZENS, patient_ids, strict=False)
    ]
