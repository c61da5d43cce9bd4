"""The audit log's context fields (organisation, purpose of use, Patient ids) for the records
API's AuditEvents: hashed into the chain, so changing one shows; an older log without them
opens, gains them empty and still checks; Patient ids beyond the limit are counted, not
listed; the records query finds entries by patient and leaves out what is not asked for."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from joinedup.errors import InputError
from joinedup.records import read_resource
from joinedup.web.access import AccessStore, RecordsAuditQuery, Role
from joinedup.web.audit import MAX_PATIENTS
from joinedup.web.records_api.audit_events import patients_in
from joinedup.web.records_api.gate import patients_of


def _store(tmp_path: Path) -> AccessStore:
    return AccessStore(tmp_path / "access.sqlite")


def test_a_changed_patient_or_purpose_breaks_the_chain(tmp_path: Path) -> None:
    store = _store(tmp_path)
    gp = store.add_user("gp", "correct horse battery", Role.CLINICIAN, practice_code="A1")
    for pid in ("p1", "p2", "p3"):
        store.audit(
            gp, "fhir read", f"fhir/Patient/{pid}", detail="200", reason="registered",
            client="x", organisation="A1", purpose="TREAT", patients=[pid],
        )  # fmt: skip
    store.audit(gp, "view", "worklist/U1", detail="1 row", reason="mdt", client="x")
    assert store.verify_audit(full=True).intact
    store.close()
    changes = {
        "patients": "UPDATE audit SET patients = 'p9' WHERE seq = 2",
        "purpose": "UPDATE audit SET purpose = 'BTG' WHERE seq = 2",
        "organisation": "UPDATE audit SET organisation = '' WHERE seq = 2",
    }
    for name, change in changes.items():
        copy = tmp_path / name
        copy.mkdir()
        for made in tmp_path.glob("access.sqlite*"):
            (copy / made.name).write_bytes(made.read_bytes())
            (copy / made.name).chmod(0o600)
        with sqlite3.connect(copy / "access.sqlite") as con:
            con.execute("DROP TRIGGER audit_no_update")
            con.execute(change)
        check = AccessStore(copy / "access.sqlite").verify_audit(full=True)
        assert not check.intact and check.problem and "entry 2" in check.problem, name


def test_an_older_log_gains_the_columns_and_still_checks(tmp_path: Path) -> None:
    store = _store(tmp_path)
    gp = store.add_user("gp", "correct horse battery", Role.CLINICIAN, pcn_code="U1")
    for i in range(3):
        store.audit(gp, "view", "worklist/U1", detail=f"{i}", reason="mdt", client="x")
    store.close()
    with sqlite3.connect(tmp_path / "access.sqlite") as con:  # as the log was before
        con.execute("ALTER TABLE audit DROP COLUMN organisation")
        con.execute("ALTER TABLE audit DROP COLUMN purpose")
        con.execute("ALTER TABLE audit DROP COLUMN patients")
    again = _store(tmp_path)
    check = again.verify_audit(full=True)
    assert check.intact and check.verified_through == 3, check
    again.audit(gp, "fhir read", "fhir/Patient/p1", detail="200", reason="", client="x",
                purpose="TREAT", patients=["p1"])  # fmt: skip
    assert again.verify_audit().intact
    total, rows = again.records_audit(RecordsAuditQuery(patients=(frozenset({"p1"}),)))
    assert total == 1 and rows[0]["seq"] == 4 and rows[0]["purpose"] == "TREAT"


def test_many_patients_are_counted_and_found_by_any_of_them(tmp_path: Path) -> None:
    store = _store(tmp_path)
    admin = store.add_user("admin", "correct horse battery", Role.ADMIN)
    many = [f"p{i:05d}" for i in range(MAX_PATIENTS + 5)]
    store.audit(admin, "fhir search", "fhir/Patient?gender", detail="200", reason="",
                client="x", patients=many)  # fmt: skip
    store.audit(admin, "fhir read", "fhir/Patient/p1", detail="403; forbidden", reason="",
                client="x", patients=["p1"])  # fmt: skip
    store.audit(admin, "view", "worklist/U1", detail="", reason="", client="x",
                patients=["p1"])  # fmt: skip
    _, rows = store.records_audit(RecordsAuditQuery(seq=1))
    listed = rows[0]["patients"].split()
    assert len(listed) == MAX_PATIENTS + 1 and listed[-1] == "+5"
    # p1 is not p10000 (whole ids match); the worklist entry is not the records API's.
    assert store.records_audit(RecordsAuditQuery(patients=(frozenset({"p1"}),)))[0] == 1
    assert store.records_audit(RecordsAuditQuery(patients=(frozenset({"p00001"}),)))[0] == 1
    both = (frozenset({"p00001"}), frozenset({"p1"}))
    assert store.records_audit(RecordsAuditQuery(patients=both))[0] == 0
    found = store.records_audit(RecordsAuditQuery(outcomes=frozenset({"4"})))[1]
    assert [r["seq"] for r in found] == [2]
    assert store.records_audit(RecordsAuditQuery(through=1))[0] == 1
    oldest = store.records_audit(RecordsAuditQuery(oldest_first=True), limit=1, offset=1)
    assert oldest[0] == 2 and [r["seq"] for r in oldest[1]] == [2]
    assert store.records_audit(RecordsAuditQuery(), limit=5, offset=9) == (2, [])
    assert store.verify_audit(full=True).intact


def test_the_audited_patients_are_the_compartments_patients(uk_core_examples: Path) -> None:
    """The AuditEvent's patients (found along the `patient` parameter's paths only) are those
    the access checks use (gate.patients_of, which indexes the whole resource), on every UK
    Core example; a Bundle's are its entries' and the Patients its responses locate."""
    compared = 0
    for path in sorted(uk_core_examples.glob("*.xml")):
        try:
            resource = read_resource(path)
        except InputError:
            continue
        if resource["resourceType"] in ("Bundle", "Parameters"):
            continue
        assert patients_in(resource) == patients_of(resource), path.name
        compared += 1
    assert compared > 200
    bundle = {
        "resourceType": "Bundle",
        "entry": [
            {"resource": {"resourceType": "Observation", "subject": {"reference": "Patient/a"}}},
            {"response": {"location": "Patient/b/_history/1"}},
            {"resource": {"resourceType": "Patient"}},  # no id yet: nobody
        ],
    }
    assert patients_in(bundle) == {"a", "b"}
