"""Users, sign-in and the audit log of the dashboard, on an access database of their own."""

from __future__ import annotations

import sqlite3
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import date, timedelta
from ipaddress import ip_network
from pathlib import Path

import pytest

from joinedup.errors import InputError
from joinedup.records.proxy_age import ProxyAgeEnd, ProxyReview, proxy_age_end
from joinedup.web.access import AccessStore, Role, SignIn, User, client_address


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


def test_a_users_organisation_is_an_ods_code_kept_with_them(store: AccessStore) -> None:
    password = "long enough password"
    for bad in ("rxx", "R-X", "RX", "A" * 11, ""):
        with pytest.raises(InputError, match=r"^organisation: .* is not an ODS code: 3 to 10"):
            store.add_user("nurse", password, Role.CLINICIAN, organisation_code=bad)
    with pytest.raises(InputError, match=r"^organisation: only clinicians"):
        store.add_user("ana", password, Role.ANALYST, organisation_code="RXX")
    made = store.add_user("nurse", password, Role.CLINICIAN, organisation_code="RXX")
    assert made.scope == "organisation RXX" and made.public()["organisation_code"] == "RXX"
    signed_in = store.sign_in("nurse", password, "10.0.0.1").user
    assert signed_in is not None and signed_in.organisation_code == "RXX"
    assert [u.organisation_code for u in store.users()] == ["RXX"]


def test_an_access_database_from_before_organisations_gains_the_column(tmp_path: Path) -> None:
    path = tmp_path / "access.sqlite"
    con = sqlite3.connect(path)
    con.execute(
        "CREATE TABLE users (username TEXT PRIMARY KEY, display_name TEXT NOT NULL, role TEXT "
        "NOT NULL, pcn_code TEXT, practice_code TEXT, password_hash TEXT NOT NULL, demo INTEGER "
        "NOT NULL DEFAULT 0, active INTEGER NOT NULL DEFAULT 1, created_at TEXT NOT NULL, "
        "patient_id TEXT)"
    )
    con.execute(
        "INSERT INTO users VALUES ('gp', 'GP', 'clinician', 'U1', 'A11111', 'x', 0, 1, '', NULL)"
    )
    con.commit()
    con.close()
    store = AccessStore(path)
    try:
        (old,) = store.users()
        assert (old.practice_code, old.organisation_code) == ("A11111", None)
        # Nor did it record sign-ins: the review says so (None) rather than guessing.
        (review,) = store.account_review()
        assert (review.user.username, review.last_sign_in_at) == ("gp", None)
    finally:
        store.close()


def test_the_account_review_says_when_each_last_signed_in_and_counts_proxies(
    store: AccessStore,
) -> None:
    password = "long enough password"
    store.add_user("ana", password, Role.ANALYST)
    store.add_user("mum", password, Role.CITIZEN, patient_id="child-parent")
    store.set_proxy("mum", "child-1", "parent")
    store.set_proxy("mum", "child-2", "parent")
    store.set_proxy("mum", "child-2", "parent", revoke=True)
    store.set_proxy("mum", "child-3", "parent", until=date.today() + timedelta(days=1))
    lapse = sqlite3.connect(store.path)  # as if its last day had passed
    lapse.execute("UPDATE proxies SET until_date = '2000-01-01' WHERE patient_id = 'child-3'")
    lapse.commit()
    lapse.close()
    with pytest.raises(InputError, match=r"^--until: a revocation ends the access now"):
        store.set_proxy("mum", "child-1", "parent", revoke=True, until=date.today())
    before = {a.user.username: a for a in store.account_review()}
    assert before["ana"].last_sign_in_at is None and before["ana"].live_sessions_count == 0
    assert before["mum"].proxies_count == 1  # neither the revoked nor the lapsed one
    assert store.sign_in("ana", "wrong password here", "10.0.0.1").user is None
    assert store.account_review()[0].last_sign_in_at is None  # a failure is not a sign-in
    signed = store.sign_in("ana", password, "10.0.0.1")
    assert signed.token is not None
    after = {a.user.username: a for a in store.account_review()}
    assert after["ana"].last_sign_in_at is not None
    assert after["ana"].last_sign_in_at >= after["ana"].created_at
    assert after["ana"].live_sessions_count == 1
    store.sign_out(signed.token)
    assert {a.user.username: a for a in store.account_review()}["ana"].live_sessions_count == 0


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
    check = store.verify_audit()
    assert (check.intact, check.verified_through, check.checked) == (True, 3, 3)
    # Someone with the file drops the triggers and rewrites why a record was opened.
    con = sqlite3.connect(store.path)
    con.executescript(
        "DROP TRIGGER audit_no_update; UPDATE audit SET reason = 'mdt' WHERE seq = 2;"
    )
    con.close()
    check = store.verify_audit(full=True)
    assert not check.intact and check.verified_through == 1
    assert check.problem and "entry 2" in check.problem


def test_audit_entries_read_back_field_by_field(store: AccessStore) -> None:
    """The audit page's columns (constant SQL) come back under the names they were written."""
    user = store.add_user("gp", "correct horse battery", Role.CLINICIAN, pcn_code="U1")
    store.audit(user, "view", "worklist/U1", detail="cohort=frail", reason="mdt", client="x")
    store.audit(None, "unauthenticated", "GET /api/v1/me", detail="no token", reason="",
                client="y", username="(unknown name)")  # fmt: skip
    total, entries = store.audit_entries(limit=1, offset=1)
    assert total == 2
    assert {k: v for k, v in entries[0].items() if k != "at"} == {
        "seq": 1, "username": "gp", "role": "clinician", "action": "view",
        "resource": "worklist/U1", "detail": "cohort=frail", "reason": "mdt", "client": "x",
    }  # fmt: skip


def test_concurrent_wrong_passwords_check_no_more_than_the_limit(tmp_path: Path) -> None:
    # Counted before the check, in one transaction: 100 at once cannot all slip past a limit
    # of 5 (they did when the lock was read before the check and the failure written after).
    store = AccessStore(tmp_path / "access.sqlite", max_failures=5)
    store.add_user("ana", "correct horse battery", Role.ANALYST)
    start = threading.Barrier(100)

    def attempt(i: int) -> SignIn:
        start.wait()
        return store.sign_in("ana", f"wrong guess {i:04d}", "10.0.0.1")

    with ThreadPoolExecutor(max_workers=100) as pool:
        results = list(pool.map(attempt, range(100)))
    assert store.password_checks == 5
    assert sum(r.locked_seconds > 0 for r in results) == 95
    assert all(r.user is None for r in results)
    right = store.sign_in("ana", "correct horse battery", "10.0.0.1")
    assert right.user is None and right.locked_seconds > 0 and store.password_checks == 5


def test_a_success_clears_the_count_of_that_name(tmp_path: Path) -> None:
    store = AccessStore(tmp_path / "access.sqlite", max_failures=3)
    store.add_user("ana", "correct horse battery", Role.ANALYST)
    for _ in range(2):
        assert store.sign_in("ana", "wrong guess here", "10.0.0.1").user is None
    assert store.sign_in("ana", "correct horse battery", "10.0.0.1").user is not None
    for _ in range(2):
        assert store.sign_in("ana", "wrong guess here", "10.0.0.1").locked_seconds == 0
    assert store.sign_in("ana", "correct horse battery", "10.0.0.1").user is not None


PROXY = [ip_network("10.1.0.0/16"), ip_network("192.0.2.7")]


def test_forwarded_for_is_believed_only_from_a_trusted_proxy() -> None:
    # No proxy trusted (the default): the header is ignored, however it is spelt.
    assert client_address("127.0.0.1", ["203.0.113.9"], []) == "127.0.0.1"
    # A client that is not a trusted proxy cannot name another address.
    assert client_address("198.51.100.4", ["203.0.113.9"], PROXY) == "198.51.100.4"
    # Through trusted proxies: the right-most address that is not one of them.
    assert client_address("10.1.2.3", ["203.0.113.9"], PROXY) == "203.0.113.9"
    assert client_address("10.1.2.3", ["6.6.6.6, 203.0.113.9, 192.0.2.7"], PROXY) == ("203.0.113.9")
    assert client_address("10.1.2.3", ["6.6.6.6", "203.0.113.9"], PROXY) == "203.0.113.9"
    # Garbage the proxy passed on is not an address: the last one believed stands.
    assert client_address("10.1.2.3", ["203.0.113.9, not-an-ip"], PROXY) == "10.1.2.3"
    assert client_address("10.1.2.3", [], PROXY) == "10.1.2.3"
    assert client_address(None, ["203.0.113.9"], PROXY) == "unknown"


def test_an_access_database_from_before_renewals_gets_them_and_keeps_its_proxies(
    tmp_path: Path,
) -> None:
    """A proxies table and proxy_status view written before the review rule (no
    until_reason, renewed_at or renewed_by) gain the columns, empty, when the file opens, and
    the view is made again with them: the relationship stays in force, not renewed."""
    path = tmp_path / "access.sqlite"
    AccessStore(path).close()
    with sqlite3.connect(path) as con:  # as an access database of before looked
        con.executescript(
            "DROP VIEW proxy_status; DROP TABLE proxies;"
            "CREATE TABLE proxies (username TEXT NOT NULL, patient_id TEXT NOT NULL,"
            " relationship TEXT NOT NULL, granted_at TEXT NOT NULL, revoked_at TEXT,"
            " until_date DATE, PRIMARY KEY (username, patient_id));"
            "CREATE VIEW proxy_status AS SELECT username, patient_id, relationship, granted_at,"
            " until_date, revoked_at, CASE WHEN revoked_at IS NOT NULL THEN 'revoked'"
            " ELSE 'active' END AS status FROM proxies;"
        )
    store = AccessStore(path)
    try:
        store.add_user("mum", "a long enough password", "citizen", patient_id="own")
        with sqlite3.connect(path) as con:
            con.execute(
                "INSERT INTO proxies (username, patient_id, relationship, granted_at) "
                "VALUES ('mum', 'child', 'parent', '2020-01-01T00:00:00+00:00')"
            )
        [record] = store.proxies("mum")
        assert (record.status, record.renewed_at, record.renewed_by) == ("active", None, None)
        user = store._user("mum")
        assert user is not None and user[0].proxy_for == frozenset({"child"})
        assert user[0].proxy_reviews == ()
        with sqlite3.connect(path) as con:
            con.execute("UPDATE proxies SET renewed_at = '2026-06-01T10:00:00+00:00'")
        user = store._user("mum")
        assert user is not None
        renewed = ProxyReview("2026-06-01T10:00:00+00:00")
        assert user[0].proxy_reviews == (("child", renewed),)
    finally:
        store.close()


def test_grants_in_an_access_database_from_before_the_review_rule_get_its_notice(
    tmp_path: Path,
) -> None:
    """Grants already in a proxies table from before the review rule's notice column are
    given the time the file gains it (so the review suspends them only after the notice
    period from then, records.proxy_age); a revoked one is not, nor a grant recorded after."""
    path = tmp_path / "access.sqlite"
    store = AccessStore(path)
    store.add_user("mum", "a long enough password", "citizen", patient_id="own")
    store.close()
    with sqlite3.connect(path) as con:  # the table as it was before the column
        con.executescript(
            "DROP VIEW proxy_status; ALTER TABLE proxies DROP COLUMN review_notice_from;"
            "INSERT INTO proxies (username, patient_id, relationship, granted_at) VALUES"
            " ('mum', 'old', 'parent', '2019-01-01T00:00:00+00:00');"
            "INSERT INTO proxies (username, patient_id, relationship, granted_at, revoked_at)"
            " VALUES ('mum', 'gone', 'parent', '2019-01-01T00:00:00+00:00',"
            " '2020-01-01T00:00:00+00:00');"
        )
    before = date.today().isoformat()
    store = AccessStore(path)
    try:
        store.set_proxy("mum", "new", "parent")
        found = {p.patient_id: p.review_notice_from for p in store.proxies("mum")}
        assert found["old"] is not None and found["old"][:10] >= before
        assert (found["gone"], found["new"]) == (None, None)
        user = store._user("mum")
        assert user is not None
        assert user[0].proxy_reviews == (("old", ProxyReview(notice_from=found["old"])),)
        # opened again, nothing changes: the column is there
        AccessStore(path).close()
        assert {p.patient_id: p.review_notice_from for p in store.proxies("mum")} == found
    finally:
        store.close()


@pytest.mark.parametrize("meanwhile", ["revoked", "recorded again"])
def test_a_renewal_checked_against_a_grant_changed_meanwhile_renews_nothing(
    store: AccessStore, meanwhile: str
) -> None:
    """The relationship is read and checked, then revoked (or recorded again, a new grant
    that needs a new review) before the renewal is written: nothing is renewed, the new grant
    stays unrenewed, and no `proxy renewed` entry claims otherwise."""
    store.add_user("mum", "a long enough password", "citizen", patient_id="own")
    store.add_user("admin1", "a long enough password", "admin")
    store.set_proxy("mum", "child", "parent")
    born = _years_before(date.today() + timedelta(days=5), 11)  # 11 in 5 days
    end = proxy_age_end("child", {"birthDate": born.isoformat()}, "parent", review_age=11)

    def checked_then_changed() -> ProxyAgeEnd | None:
        if meanwhile == "revoked":
            store.set_proxy("mum", "child", "parent", revoke=True)
        else:
            time.sleep(0.002)  # a later granted_at
            store.set_proxy("mum", "child", "parent")
        return end

    with pytest.raises(InputError, match="revoked or recorded again meanwhile") as refused:
        store.renew_proxy(
            "mum", "child", "admin1", registered=frozenset(), age_check=checked_then_changed
        )
    assert refused.value.where == "--patient"
    [record] = store.proxies("mum")
    assert (record.renewed_at, record.renewed_by) == (None, None)
    actions = [e["action"] for e in store.audit_entries(limit=50)[1]]
    assert "proxy renewed" not in actions
    # checked and written with nothing between, it is renewed
    if meanwhile == "recorded again":
        renewed = store.renew_proxy(
            "mum", "child", "admin1", registered=frozenset(), age_check=lambda: end
        )
        assert renewed.renewed_by == "admin1"


def _years_before(day: date, years: int) -> date:
    """The birth date whose `years`-th birthday is `day` (29 February taken as 28th)."""
    try:
        return day.replace(year=day.year - years)
    except ValueError:
        return day.replace(year=day.year - years, day=28)


#: Older access databases, each as it was before some columns came, and the table whose
#: columns another process changes between this one's first look and its change.
_OLDER = {
    "proxies": (
        "DROP VIEW proxy_status; ALTER TABLE proxies DROP COLUMN review_notice_from;"
        "ALTER TABLE proxies DROP COLUMN review_date;"
    ),
    "users": (
        "ALTER TABLE users DROP COLUMN last_sign_in_at;"
        "ALTER TABLE users DROP COLUMN organisation_code;"
    ),
    "audit": "ALTER TABLE audit DROP COLUMN purpose;",
    "audit_checkpoint": "ALTER TABLE audit_checkpoint RENAME COLUMN entries_count TO entries;",
}


@pytest.mark.parametrize("table", list(_OLDER))
def test_two_processes_opening_an_older_access_database_at_once(tmp_path: Path, table: str) -> None:
    """Two servers opening one access database written by an older version at once (the
    dashboard and `records serve`, started together after an upgrade): the one that read
    the columns before the other changed them still opens it, rather than failing on the
    column the other added ("duplicate column name") or renamed, and an old grant keeps its
    notice."""
    from joinedup.web import access

    path = tmp_path / "access.sqlite"
    store = AccessStore(path)
    store.add_user("mum", "a long enough password", "citizen", patient_id="own")
    store.close()
    with sqlite3.connect(path) as con:  # the tables as they were before
        con.executescript(_OLDER[table])
        con.execute(
            "INSERT INTO proxies (username, patient_id, relationship, granted_at) VALUES"
            " ('mum', 'old', 'parent', '2019-01-01T00:00:00+00:00')"
        )

    class Racing(sqlite3.Connection):
        """A connection whose first read of the table's columns is followed at once by
        another process's opening (which changes them)."""

        raced = False

        def execute(self, sql: str, *args: object) -> sqlite3.Cursor:  # type: ignore[override]
            cursor = super().execute(sql, *args)
            if f"pragma_table_info('{table}')" in sql and not Racing.raced:
                Racing.raced = True
                rows = cursor.fetchall()
                AccessStore(path).close()  # the other server, opening it meanwhile
                return iter(rows)  # type: ignore[return-value]
            return cursor

    con = sqlite3.connect(path, isolation_level=None, factory=Racing)
    try:
        access._rename_old_columns(con)
    finally:
        con.close()
    assert Racing.raced
    store = AccessStore(path)
    try:
        [record] = store.proxies("mum")
        assert record.status == "active"
        assert (record.review_notice_from is not None) == (table == "proxies")
        signed = store.sign_in("mum", "a long enough password", "127.0.0.1")
        assert signed.user is not None and signed.token is not None  # users and audit written
    finally:
        store.close()


def test_what_each_role_sees_is_said_as_the_records_api_allows_it() -> None:
    """`users list` and the audit page say whom a user's access covers: the records API does
    not restrict a feed or an administrator, so neither is 'aggregates only'."""
    assert "every record" in User("feed", "Feed", Role.SYSTEM).scope
    assert "every record" in User("root", "Root", Role.ADMIN).scope
    assert "audit trail" in User("po", "PO", Role.PRIVACY_OFFICER).scope
    assert User("ann", "Ann", Role.ANALYST).scope == "aggregates only"
