"""`Patient/$everything?linked=true` follows the master person index (issue 17), over HTTP on
SQLite and PostgreSQL.

One person has a Patient at a GP practice (A11111, local id G-17) and one at an acute trust
(RXX, PAS number PAS-903), with different NHS numbers (one mistyped), so only the index says
they are one person. The index's rows are written as `link index --records` writes them. A
clinician with a relationship to both sees both; one with a relationship to one sees that one
only, and nothing in the total shows the other; an objection to sharing on either Patient
withholds both; a link awaiting review is not followed; every linked Patient's access is its
own audit entry; and no identifier reaches the logs.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from fastapi.testclient import TestClient
from fhir_calls import BASE, created_id, fhir_request
from sqlalchemy import create_engine, insert, update
from test_records_access_consent import objection

from joinedup.errors import ConfigurationError
from joinedup.records import RecordsSettings, RecordStore
from joinedup.records.policy import PERSON_OBJECTION
from joinedup.records.store import database_url
from joinedup.records.store.person_index import mpi_person_index, mpi_runs
from joinedup.web.access import AccessStore, RecordsAuditQuery
from joinedup.web.records_api import create_records_app
from joinedup.web.records_api.interactions import PERSON_INDEX_LINK
from joinedup.web.settings import WebSettings

PASSWORD = "a long enough password"
NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
GP_IDS = "https://gp.example.org/patient-id"
PAS_IDS = "https://trust.example.org/pas-number"
NHS = "https://fhir.nhs.uk/Id/nhs-number"
SYSTEMS = {"gp": GP_IDS, "acute": PAS_IDS}
TRUST = "RXX"
COUNCIL = "ZZL01"
REASON = "Unconscious in the emergency department, no history available"
IDENTIFIERS = ("G-17", "PAS-903", "9434765919", "9434765870", "Linkcase")
USERS = ("feed", "gp-both", "gp-a", "gp-c", "trust", "admin", "parent")


class World:
    """The records API over one store, the two Patients' ids and how to call as a user."""

    def __init__(self, client: TestClient, store: RecordStore, url: str) -> None:
        self.client = client
        self.store = store
        self.url = url
        self.tokens: dict[str, str] = {}
        self.gp = self.acute = ""

    def __call__(self, method: str, path: str, *, user: str, **kwargs: Any) -> Any:
        return fhir_request(self.client, self.tokens[user], method, path, **kwargs)

    def made(self, resource: dict[str, Any]) -> str:
        return created_id(self("POST", f"/{resource['resourceType']}", json=resource, user="feed"))

    def everything(self, pid: str, user: str, linked: bool = True) -> Any:
        params = {"linked": "true"} if linked else {}
        return self("GET", f"/Patient/{pid}/$everything", user=user, params=params)

    def ids(self, pid: str, user: str, linked: bool = True) -> tuple[int, set[str]]:
        answer = self.everything(pid, user, linked)
        assert answer.status_code == 200, answer.text
        body = answer.json()
        return body["total"], {e["resource"]["id"] for e in body.get("entry", [])}

    def audit(self, user: str, since: int) -> list[dict[str, Any]]:
        """`user`'s records API entries after entry `since`, oldest first."""
        users: AccessStore = self.client.app.state.access  # type: ignore[attr-defined]
        query = RecordsAuditQuery(usernames=frozenset({user}), oldest_first=True)
        return [e for e in users.records_audit(query, limit=1000)[1] if e["seq"] > since]

    def newest(self) -> int:
        users: AccessStore = self.client.app.state.access  # type: ignore[attr-defined]
        return users.newest_entry()

    def set_review(self, needs_review: bool) -> None:
        """Mark the person's index records awaiting review (as a rejected pair that other
        links still join marks them), or not."""
        engine = create_engine(database_url(self.url))
        with engine.begin() as conn:
            conn.execute(update(mpi_person_index).values(needs_review=needs_review))
        engine.dispose()
        self.store.refresh_person_links()  # as a run writing the index does


def _patient(local: str, system: str, nhs: str, **more: Any) -> dict[str, Any]:
    return {
        "resourceType": "Patient",
        "identifier": [{"system": system, "value": local}, {"system": NHS, "value": nhs}],
        "name": [{"family": "Linkcase", "given": ["Jo"]}],
        "birthDate": "1980-02-03",
        **more,
    }


def _condition(pid: str, code: str) -> dict[str, Any]:
    return {
        "resourceType": "Condition",
        "code": {"coding": [{"system": "http://snomed.info/sct", "code": code}]},
        "subject": {"reference": f"Patient/{pid}"},
        "recordedDate": "2026-05-01",
    }


def _build(world: World) -> None:
    world.gp = world.made(
        _patient("G-17", GP_IDS, "9434765919",
                 generalPractitioner=[{"reference": "Organization/A11111"}])
    )  # fmt: skip
    world.acute = world.made(_patient("PAS-903", PAS_IDS, "9434765870"))
    world.made(_condition(world.gp, "195967001"))  # asthma, at the practice
    world.made(_condition(world.acute, "22298006"))  # myocardial infarction, at the trust
    world.made({
        "resourceType": "Encounter", "status": "in-progress", "class": {"code": "IMP"},
        "subject": {"reference": f"Patient/{world.acute}"},
        "serviceProvider": {"reference": f"Organization/{TRUST}"},
        "period": {"start": "2026-06-01T08:00:00Z"},
    })  # fmt: skip
    # gp-both is on the acute Patient's care team by name: a relationship with both Patients
    world.made({
        "resourceType": "CareTeam", "status": "active",
        "subject": {"reference": f"Patient/{world.acute}"},
        "participant": [{"member": {"reference": "Practitioner/gp-both"}}],
    })  # fmt: skip
    engine = create_engine(database_url(world.url))
    with engine.begin() as conn:  # as `joinedup link index --records` writes the index
        conn.execute(insert(mpi_person_index), [
            {"source": "gp", "record_id": "G-17", "person_id": "P000000001",
             "linked_by": "splink", "match_weight": 11.2, "needs_review": False},
            {"source": "acute", "record_id": "PAS-903", "person_id": "P000000001",
             "linked_by": "splink", "match_weight": 11.2, "needs_review": False},
            {"source": "acute", "record_id": "PAS-111", "person_id": "P000000002",
             "linked_by": None, "match_weight": None, "needs_review": False},
        ])  # fmt: skip
        conn.execute(insert(mpi_runs), {"run_at": NOW, "record": "{}"})
    engine.dispose()
    world.store.refresh_person_links()  # as a run writing the index does


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def world(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[World]:
    """One world per database, shared by the tests (each undoes what it changes)."""
    folder = tmp_path_factory.mktemp(f"linked-{request.param}")
    if request.param == "sqlite":
        url = str(folder / "records.sqlite")
    else:
        url = request.getfixturevalue("postgresql_server").create_database(
            f"linked_{folder.name.replace('-', '_')}"
        )
    settings = WebSettings(warehouse=folder / "warehouse.duckdb")
    users = AccessStore(settings.access_path, audit_key_path=settings.audit_key_path)
    users.add_user("feed", PASSWORD, "system")
    users.add_user("admin", PASSWORD, "admin")
    users.add_user("gp-both", PASSWORD, "clinician", pcn_code="U11111", practice_code="A11111")
    users.add_user("gp-a", PASSWORD, "clinician", pcn_code="U11111", practice_code="A11111")
    users.add_user("gp-c", PASSWORD, "clinician", pcn_code="U11111", practice_code="A11111")
    users.add_user("trust", PASSWORD, "clinician", organisation_code=TRUST)
    users.add_user("parent", PASSWORD, "citizen", patient_id="parent-own")
    users.close()
    with RecordStore(url, clock=lambda: NOW) as store:
        app = create_records_app(settings, store)
        app.state.records_index_systems = SYSTEMS
        with TestClient(app) as client:
            found = World(client, store, url)
            for name in USERS:
                answer = client.post("/api/v1/token", json={"username": name, "password": PASSWORD})
                found.tokens[name] = answer.json()["access_token"]
            _build(found)
            yield found


def test_a_clinician_with_both_relationships_sees_both_marked(world: World) -> None:
    total, ids = world.ids(world.gp, "gp-both")
    alone, own = world.ids(world.gp, "gp-both", linked=False)
    assert world.acute in ids and own < ids and world.acute not in own
    assert total == alone + 4  # the acute Patient, its Condition, Encounter and CareTeam
    body = world.everything(world.gp, "gp-both").json()
    assert body["entry"][0]["resource"]["id"] == world.gp  # the asked Patient first
    marked = {}
    for entry in body["entry"]:
        links = [x for x in entry["search"].get("extension", []) if x["url"] == PERSON_INDEX_LINK]
        if links:
            parts = {p["url"]: p for p in links[0]["extension"]}
            marked[entry["resource"]["id"]] = parts
            assert parts["patient"]["valueReference"]["reference"] == f"Patient/{world.acute}"
            assert parts["linkedTo"]["valueReference"]["reference"] == f"Patient/{world.gp}"
            assert parts["linkedBy"]["valueCode"] == "splink"
            assert parts["matchWeight"]["valueDecimal"] == 11.2
    assert set(marked) == ids - own  # exactly the entries that came by the index
    # and from the other side
    total_back, back = world.ids(world.acute, "gp-both")
    assert world.gp in back and total_back == total


def test_a_relationship_with_one_shows_that_one_only(world: World) -> None:
    """gp-a (registration at the practice only) and trust (the encounter only) each see their
    own Patient's records, the same total as without the index."""
    assert world.ids(world.gp, "gp-a") == world.ids(world.gp, "gp-a", linked=False)
    assert world.acute not in world.ids(world.gp, "gp-a")[1]
    assert world.ids(world.acute, "trust") == world.ids(world.acute, "trust", linked=False)
    assert world.gp not in world.ids(world.acute, "trust")[1]
    # the other Patient stays refused read directly too
    assert world("GET", f"/Patient/{world.acute}", user="gp-a").status_code == 403


def test_an_objection_on_either_patient_withholds_both(world: World) -> None:
    for objecting in (world.gp, world.acute):
        consent = world.made(objection(objecting, COUNCIL))
        try:
            before = world.newest()
            assert world.everything(world.gp, "gp-both").status_code == 403
            assert world.everything(world.acute, "gp-both").status_code == 403
            reasons = [e["reason"] for e in world.audit("gp-both", before)]
            assert reasons and all(r.startswith("withheld: objection to sharing") for r in reasons)
        finally:
            withdrawn = {**objection(objecting, COUNCIL, "inactive"), "id": consent}
            assert (
                world("PUT", f"/Consent/{consent}", json=withdrawn, user="feed").status_code == 200
            )
    assert world.acute in world.ids(world.gp, "gp-both")[1]  # withdrawn: both again


def test_a_link_awaiting_review_is_not_followed(world: World) -> None:
    world.set_review(True)
    try:
        assert world.ids(world.gp, "gp-both") == world.ids(world.gp, "gp-both", linked=False)
        assert world.acute not in world.ids(world.gp, "gp-both")[1]
    finally:
        world.set_review(False)
    assert world.acute in world.ids(world.gp, "gp-both")[1]


def test_every_access_is_audited_on_its_own(world: World) -> None:
    before = world.newest()
    _, ids = world.ids(world.gp, "gp-both")
    _, own = world.ids(world.gp, "gp-both", linked=False)
    world.ids(world.gp, "gp-a")
    both = world.audit("gp-both", before)[:2]
    assert [(e["action"], e["resource"]) for e in both] == [
        ("fhir everything", f"fhir/Patient/{world.acute}"),
        ("fhir everything", f"fhir/Patient/{world.gp}/$everything"),
    ]
    linked = both[0]
    assert linked["reason"] == "legitimate relationship: care-team"
    assert linked["patients"] == world.acute and linked["purpose"] == "TREAT"
    how = f"linked to Patient/{world.gp} by the person index (splink)"
    assert linked["detail"] == f"200; {how}; {len(ids - own)} on this page"
    refused = world.audit("gp-a", before)[0]
    assert refused["resource"] == f"fhir/Patient/{world.acute}"
    assert refused["reason"] == "no relationship" and refused["detail"].startswith("403; ")
    # by a break-glass grant for the acute Patient: shown, audited as break-glass
    ask = {"resourceType": "Parameters", "parameter": [
        {"name": "patient", "valueReference": {"reference": f"Patient/{world.acute}"}},
        {"name": "reason", "valueString": REASON}]}  # fmt: skip
    assert world("POST", "/$break-glass", json=ask, user="gp-a").status_code == 201
    before = world.newest()
    assert world.acute in world.ids(world.gp, "gp-a")[1]
    glass = world.audit("gp-a", before)[0]
    assert glass["reason"] == "BREAK-GLASS; legitimate relationship: break-glass"
    assert glass["purpose"] == "BTG" and glass["detail"].endswith("; break-glass")


def test_a_proxy_for_both_patients_is_audited_with_the_relationship_on_each(
    world: World,
) -> None:
    """The linked Patient's entry names the proxy's relationship and its purpose of use, as
    the request's own entry does, not the person's own (PATRQT). The person is an adult, so
    the proxy is their attorney (a parent's access ended at their 16th birthday)."""
    users: AccessStore = world.client.app.state.access  # type: ignore[attr-defined]
    for pid in (world.gp, world.acute):
        users.set_proxy("parent", pid, "attorney")
    before = world.newest()
    assert world.acute in world.ids(world.gp, "parent")[1]
    linked, asked = world.audit("parent", before)[:2]
    assert asked["resource"] == f"fhir/Patient/{world.gp}/$everything"
    assert linked["resource"] == f"fhir/Patient/{world.acute}"
    assert asked["reason"].startswith("legitimate relationship: proxy as attorney,")
    assert linked["reason"] == "legitimate relationship: proxy as attorney"
    assert asked["purpose"] == linked["purpose"] == "PWATRNY"


def test_no_identifier_reaches_the_logs(world: World, caplog: pytest.LogCaptureFixture) -> None:
    before = world.newest()
    with caplog.at_level(logging.DEBUG):
        world.ids(world.gp, "gp-both")
        world.ids(world.gp, "admin")
        world.everything(world.gp, "gp-both", linked=True)
    entries = json.dumps(world.audit("gp-both", before) + world.audit("admin", before))
    for identifier in IDENTIFIERS:
        assert identifier not in caplog.text
        assert identifier not in entries


def test_a_bad_linked_value_is_refused_naming_it(world: World) -> None:
    answer = world("GET", f"/Patient/{world.gp}/$everything", user="gp-both",
                   params={"linked": "yes"})  # fmt: skip
    assert answer.status_code == 400
    assert answer.json()["issue"][0]["expression"] == ["linked"]


def test_the_lookup_rule(world: World) -> None:
    """The store's lookup: each source's system, a Patient placed in two people followed
    nowhere, and sources compared as named without a system."""
    store = world.store
    assert [p.patient_id for p in store.linked_patients(world.gp, SYSTEMS)] == [world.acute]
    assert store.linked_patients(world.gp, {}) == []  # gp/acute are not identifier systems
    assert store.linked_patients(world.gp, {"gp": GP_IDS}) == []  # acute's system unknown
    second = world.made(_patient("PAS-111", PAS_IDS, "9000000009"))
    try:
        # a Patient whose identifiers name records of two people is followed nowhere
        world("PUT", f"/Patient/{second}", user="feed", json={
            **_patient("PAS-111", PAS_IDS, "9000000009"), "id": second,
            "identifier": [{"system": PAS_IDS, "value": "PAS-111"},
                           {"system": GP_IDS, "value": "G-17"}]})  # fmt: skip
        assert store.linked_patients(second, SYSTEMS) == []
        assert world.acute in {p.patient_id for p in store.linked_patients(world.gp, SYSTEMS)}
        assert second not in {p.patient_id for p in store.linked_patients(world.gp, SYSTEMS)}
    finally:
        assert world("DELETE", f"/Patient/{second}", user="feed").status_code in (200, 204)


def test_everything_without_linked_is_unchanged_for_admin(world: World) -> None:
    """Opt-in: the API's `$everything` is one Patient's compartment unless asked."""
    total, ids = world.ids(world.gp, "admin", linked=False)
    assert world.acute not in ids
    linked_total, linked = world.ids(world.gp, "admin")
    assert world.acute in linked and linked_total > total


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ("nope", "records settings: JOINEDUP_RECORDS_INDEX_SOURCES: not valid JSON"),
        ('["gp"]', "records settings: JOINEDUP_RECORDS_INDEX_SOURCES: Input should be a valid"),
    ],
)
def test_a_bad_index_sources_setting_is_refused_naming_it(
    given: str, message: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("JOINEDUP_RECORDS_INDEX_SOURCES", given)
    with pytest.raises(ConfigurationError) as refused:
        RecordsSettings()
    assert str(refused.value).startswith(message)
    monkeypatch.setenv("JOINEDUP_RECORDS_INDEX_SOURCES", json.dumps(SYSTEMS))
    assert RecordsSettings().records_index_sources == SYSTEMS


def test_the_pages_follow_the_index_to_the_end(world: World) -> None:
    """`next` links keep `linked=true`: two at a time, the pages hold what one page holds."""
    total, everything = world.ids(world.gp, "gp-both")
    seen: list[str] = []
    answer = world("GET", f"/Patient/{world.gp}/$everything", user="gp-both",
                   params={"linked": "true", "_count": "2"}).json()  # fmt: skip
    while True:
        assert answer["total"] == total
        seen += [e["resource"]["id"] for e in answer.get("entry", [])]
        following = [link["url"] for link in answer["link"] if link["relation"] == "next"]
        if not following:
            break
        assert "linked=true" in following[0]
        path = following[0].split(BASE, 1)[1]
        answer = world("GET", path, user="gp-both").json()
    assert len(seen) == total and set(seen) == everything


# --- an objection follows the person into every read and search -------------------------


class Objecting:
    """An objection to sharing on one Patient, recorded by `organisation`, for a `with`."""

    def __init__(self, world: World, pid: str, organisation: str) -> None:
        self.world, self.pid, self.organisation = world, pid, organisation
        self.consent = ""

    def __enter__(self) -> None:
        self.consent = self.world.made(objection(self.pid, self.organisation))

    def __exit__(self, *_: object) -> None:
        withdrawn = {**objection(self.pid, self.organisation, "inactive"), "id": self.consent}
        answer = self.world("PUT", f"/Consent/{self.consent}", json=withdrawn, user="feed")
        assert answer.status_code == 200, answer.text


def _sees(world: World, user: str, pid: str) -> dict[str, Any]:
    """What `user` gets of Patient `pid` without following the index: the read's status,
    its Condition's, $everything's, and how many of its Conditions and Patients a search
    finds (a refused search: -1)."""
    condition = world("GET", "/Condition", user="admin", params={"patient": pid}).json()
    cid = condition["entry"][0]["resource"]["id"]

    def total(path: str, **params: str) -> int:
        answer = world("GET", path, user=user, params=params)
        return int(answer.json()["total"]) if answer.status_code == 200 else -1

    return {
        "read": world("GET", f"/Patient/{pid}", user=user).status_code,
        "condition": world("GET", f"/Condition/{cid}", user=user).status_code,
        "everything": world.everything(pid, user, linked=False).status_code,
        "conditions found": total("/Condition", patient=pid),
        "patients found": total("/Patient", _id=pid),
    }


SEEN = {"read": 200, "condition": 200, "everything": 200, "conditions found": 1,
        "patients found": 1}  # fmt: skip
WITHHELD = {"read": 403, "condition": 403, "everything": 403, "conditions found": 0,
            "patients found": 0}  # fmt: skip


def test_an_objection_at_another_organisation_withholds_a_plain_read_and_search(
    world: World,
) -> None:
    """The person objected at the trust (on its Patient, recorded by the trust): gp-a, who
    sees the practice's Patient by registration, is refused it, its resources and
    `$everything` (each audited as withheld by the person's objection), and finds nothing of
    it by search; the trust, which recorded the objection, still sees its own Patient."""
    assert _sees(world, "gp-a", world.gp) == SEEN
    with Objecting(world, world.acute, TRUST):
        before = world.newest()
        assert _sees(world, "gp-a", world.gp) == WITHHELD
        refused = [e for e in world.audit("gp-a", before) if e["detail"].startswith("403")]
        assert refused and {e["reason"] for e in refused} == {f"withheld: {PERSON_OBJECTION}"}
        assert _sees(world, "trust", world.acute) == SEEN
    assert _sees(world, "gp-a", world.gp) == SEEN  # withdrawn: seen again


def test_the_recording_organisation_still_sees_the_persons_other_patients(
    world: World,
) -> None:
    """The practice recorded the objection on its own Patient: the trust is refused its
    Patient of the same person, while gp-both (the practice, and on the trust Patient's care
    team) still sees both, the practice's objection being its own."""
    assert _sees(world, "trust", world.acute) == SEEN
    with Objecting(world, world.gp, "A11111"):
        assert _sees(world, "trust", world.acute) == WITHHELD
        assert _sees(world, "gp-both", world.acute) == SEEN
        assert _sees(world, "gp-both", world.gp) == SEEN
        assert _sees(world, "gp-a", world.gp) == SEEN


def test_break_glass_shows_a_patient_withheld_by_the_persons_objection(world: World) -> None:
    with Objecting(world, world.acute, TRUST):
        assert _sees(world, "gp-c", world.gp) == WITHHELD
        ask = {"resourceType": "Parameters", "parameter": [
            {"name": "patient", "valueReference": {"reference": f"Patient/{world.gp}"}},
            {"name": "reason", "valueString": REASON}]}  # fmt: skip
        assert world("POST", "/$break-glass", json=ask, user="gp-c").status_code == 201
        before = world.newest()
        assert _sees(world, "gp-c", world.gp) == SEEN
        read = next(e for e in world.audit("gp-c", before) if e["action"] == "fhir read")
        assert read["reason"] == (
            f"BREAK-GLASS; legitimate relationship: break-glass; {PERSON_OBJECTION} "
            "overridden by break-glass"
        )


def test_a_link_awaiting_review_does_not_carry_the_objection(world: World) -> None:
    with Objecting(world, world.acute, TRUST):
        world.set_review(True)
        try:
            assert _sees(world, "gp-a", world.gp) == SEEN
        finally:
            world.set_review(False)
        assert _sees(world, "gp-a", world.gp) == WITHHELD


def test_a_patient_the_index_places_in_two_people_carries_no_objection(world: World) -> None:
    """The statement rule agrees with `linked_patients`: a Patient whose identifiers name
    records of two people neither carries its objection to them nor takes theirs."""
    second = world.made({
        **_patient("PAS-111", PAS_IDS, "9000000009"),
        "identifier": [{"system": PAS_IDS, "value": "PAS-111"},
                       {"system": GP_IDS, "value": "G-17"}]})  # fmt: skip
    try:
        with Objecting(world, second, COUNCIL):
            assert _sees(world, "gp-a", world.gp) == SEEN
            assert world.store.objected_patients(frozenset(), SYSTEMS) == {second}
        with Objecting(world, world.acute, COUNCIL):
            assert world.store.objected_patients(frozenset(), SYSTEMS) == {world.acute, world.gp}
    finally:
        assert world("DELETE", f"/Patient/{second}", user="feed").status_code in (200, 204)


def test_a_search_naming_one_patient_withholds_what_a_wider_search_does(world: World) -> None:
    """A search kept to one Patient (`patient`, `subject`, a Patient's `_id`) checks that
    person's objections alone; it withholds exactly what a search naming nobody does: gp-a
    finds the practice's asthma by any of them until the person objects at the trust, then
    by none; the trust, which recorded the objection, still finds its own Patient's."""

    def found(user: str, path: str, **params: str) -> int:
        answer = world("GET", path, user=user, params=params)
        assert answer.status_code == 200, answer.text
        return int(answer.json()["total"])

    def searches(user: str, pid: str, code: str) -> list[int]:
        return [
            found(user, "/Condition", patient=pid),
            found(user, "/Condition", patient=f"Patient/{pid}"),
            found(user, "/Condition", subject=f"Patient/{pid}"),
            found(user, "/Condition", code=code),
            found(user, "/Patient", _id=pid),
        ]

    assert searches("gp-a", world.gp, "195967001") == [1, 1, 1, 1, 1]
    with Objecting(world, world.acute, TRUST):
        assert searches("gp-a", world.gp, "195967001") == [0, 0, 0, 0, 0]
        assert searches("trust", world.acute, "22298006") == [1, 1, 1, 1, 1]
    assert searches("gp-a", world.gp, "195967001") == [1, 1, 1, 1, 1]
