"""A worklist row's status in the access store, and the worklist's server-side sort."""

from __future__ import annotations

from pathlib import Path

import pytest

from joinedup.errors import InputError
from joinedup.web.access import AccessStore, Role
from joinedup.web.worklists import sorted_rows


@pytest.fixture()
def store(tmp_path: Path) -> AccessStore:
    return AccessStore(tmp_path / "access.sqlite")


def test_a_status_is_kept_per_pcn_and_audited_without_the_note(store: AccessStore) -> None:
    user = store.add_user("cai", "a long password 1", Role.CLINICIAN, pcn_code="U1")
    store.set_worklist_status(user, "U1", "frailty", 42, "contacted", "voicemail twice", client="t")
    store.set_worklist_status(user, "U1", "frailty", 42, "done", "seen at surgery", client="t")
    kept = store.worklist_statuses("U1")
    assert list(kept) == [("frailty", 42)]
    assert (kept["frailty", 42].status, kept["frailty", 42].note) == ("done", "seen at surgery")
    assert store.worklist_statuses("U2") == {}
    _, entries = store.audit_entries(limit=2)
    assert [(e["action"], e["resource"], e["detail"]) for e in entries] == [
        ("worklist status", "worklist/U1/frailty/42", "status done with a note"),
        ("worklist status", "worklist/U1/frailty/42", "status contacted with a note"),
    ]
    assert not any("voicemail" in str(e) or "surgery" in str(e) for e in entries)


def test_an_unknown_status_or_long_note_is_refused(store: AccessStore) -> None:
    user = store.add_user("cai", "a long password 1", Role.CLINICIAN, pcn_code="U1")
    with pytest.raises(InputError, match="status"):
        store.set_worklist_status(user, "U1", "frailty", 1, "lost", "", client="t")
    with pytest.raises(InputError, match="note"):
        store.set_worklist_status(user, "U1", "frailty", 1, "done", "x" * 501, client="t")
    assert store.worklist_statuses("U1") == {}


def test_sorting_puts_missing_values_last_in_either_order() -> None:
    rows = [
        {"nhs_number": "3", "age": 70, "family_name": "Bell", "status": "done"},
        {"nhs_number": "1", "age": None, "family_name": "abbott", "status": "to-contact"},
        {"nhs_number": "2", "age": 55, "family_name": "Carr", "status": "contacted"},
    ]
    assert [r["nhs_number"] for r in sorted_rows(rows, "age", False)] == ["2", "3", "1"]
    assert [r["nhs_number"] for r in sorted_rows(rows, "age", True)] == ["3", "2", "1"]
    assert [r["nhs_number"] for r in sorted_rows(rows, "name", False)] == ["1", "3", "2"]
    assert [r["nhs_number"] for r in sorted_rows(rows, "status", False)] == ["1", "2", "3"]
