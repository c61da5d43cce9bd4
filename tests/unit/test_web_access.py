"""Users, sign-in and the audit log of the dashboard, on an access database of their own."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from joinedup.errors import InputError
from joinedup.web.access import AccessStore, Role


@pytest.fixture
def store(tmp_path: Path) -> AccessStore:
    return AccessStore(tmp_path / "access.sqlite", max_failures=2, window_minutes=5)


def test_passwords_are_stored_as_argon2id_hashes_only(store: AccessStore) -> None:
    store.add_user("ana", "correct horse battery", Role.ANALYST)
    con = sqlite3.connect(store.path)
    (stored,) = con.execute("SELECT password_hash FROM users").fetchone()
    con.close()
    assert stored.startswith("$argon2id$") and "correct horse" not in stored
    assert store.sign_in("ana", "correct horse battery", "10.0.0.1").user is not None
    assert store.sign_in("ana", "wrong horse battery", "10.0.0.1").user is None


def test_users_are_checked_before_they_are_stored(store: AccessStore) -> None:
    with pytest.raises(InputError, match="at least 12"):
        store.add_user("ana", "short", Role.ANALYST)
    with pytest.raises(InputError, match="not a role"):
        store.add_user("ana", "long enough password", "superuser")
    with pytest.raises(InputError, match="only clinicians"):
        store.add_user("ana", "long enough password", Role.BOARD, pcn_code="U1")
    store.add_user("ana", "long enough password", Role.ANALYST)
    with pytest.raises(InputError, match="already exists"):
        store.add_user("ana", "another long password", Role.ANALYST)


def test_a_name_is_locked_after_repeated_failures_even_with_the_right_password(
    store: AccessStore,
) -> None:
    store.add_user("ana", "correct horse battery", Role.ANALYST)
    for _ in range(2):
        assert store.sign_in("ana", "guess number one", "10.0.0.1").user is None
    locked = store.sign_in("ana", "correct horse battery", "10.0.0.1")
    assert locked.user is None and 0 < locked.locked_seconds <= 5 * 60 + 1
    # Unknown names count too, so probing for names locks out like probing passwords.
    for _ in range(2):
        store.sign_in("nobody", "guess", "10.0.0.2")
    assert store.sign_in("nobody", "guess", "10.0.0.2").locked_seconds > 0


def test_a_signed_out_session_is_gone(store: AccessStore) -> None:
    store.add_user("ana", "correct horse battery", Role.ANALYST)
    signed = store.sign_in("ana", "correct horse battery", "10.0.0.1")
    assert signed.token and store.session_user(signed.token) == signed.user
    store.sign_out(signed.token)
    assert store.session_user(signed.token) is None


def test_a_changed_audit_entry_breaks_the_chain(store: AccessStore) -> None:
    user = store.add_user("gp", "correct horse battery", Role.CLINICIAN, pcn_code="U1")
    for reason in ("mdt", "follow-up", "case-finding"):
        store.audit(user, "view", "worklist/U1", detail="no filter", reason=reason, client="x")
    assert store.verify_audit() == (True, 3)
    # Someone with the file drops the triggers and rewrites why a record was opened.
    con = sqlite3.connect(store.path)
    con.executescript(
        "DROP TRIGGER audit_no_update; UPDATE audit SET reason = 'mdt' WHERE seq = 2;"
    )
    con.close()
    assert store.verify_audit() == (False, 1)
