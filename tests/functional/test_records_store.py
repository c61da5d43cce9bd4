"""The records store end to end on the UK Core examples (../shared/specs/uk-core, handed to the
loader by the test), on SQLite and on PostgreSQL: every example the store accepts is created,
read back equal, found by search and deleted; a transaction of examples that fails half-way
leaves nothing; a writer killed mid-transaction leaves the store as it was."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from joinedup.errors import InputError
from joinedup.fhir.validate import NHS_NUMBER_SYSTEM
from joinedup.records import (
    SEARCH_PARAMETERS,
    Create,
    InvalidResourceError,
    RecordStore,
    ResourceDeletedError,
    TransactionFailedError,
    read_resource,
)

Examples = list[tuple[str, dict[str, Any]]]


@pytest.fixture(scope="module")
def examples(uk_core_examples: Path) -> Examples:
    """Every UK Core example that is FHIR the models can read (one is not: it is set aside)."""
    found = []
    for path in sorted(uk_core_examples.glob("*.xml")):
        try:
            found.append((path.name, read_resource(path)))
        except InputError:
            continue
    assert len(found) > 200
    return found


def _content(resource: dict[str, Any]) -> str:
    """A resource as canonical JSON without what the server sets (id, version, instant)."""
    meta = {
        k: v for k, v in resource.get("meta", {}).items() if k not in ("versionId", "lastUpdated")
    }
    rest = {k: v for k, v in resource.items() if k not in ("id", "meta")}
    return json.dumps({**rest, **({"meta": meta} if meta else {})}, sort_keys=True)


def _search_for(resource: dict[str, Any]) -> dict[str, str] | None:
    """A search by one of the resource's own indexed values, for the types the store indexes."""
    kind = resource["resourceType"]
    if kind == "Patient":
        for identifier in resource.get("identifier", []):
            if identifier.get("system") == NHS_NUMBER_SYSTEM:
                return {"identifier": f"{NHS_NUMBER_SYSTEM}|{identifier['value']}"}
        return None
    if kind not in SEARCH_PARAMETERS:
        return None
    for element in ("subject", "patient"):
        reference = resource.get(element, {}).get("reference", "")
        if reference.startswith("Patient/"):
            return {"patient": reference}
    return None


def test_every_uk_core_example_is_created_read_found_and_deleted(
    records_url: str, examples: Examples
) -> None:
    refused: dict[str, list[str]] = {}
    searched = 0
    with RecordStore(records_url) as store:
        for name, example in examples:
            try:
                made = store.create(example)
            except InvalidResourceError as err:
                refused[name] = err.problems
                continue
            kind, rid = made.resource_type, made.resource_id
            stored = store.read(kind, rid)
            assert _content(stored) == _content(example), name
            assert store.search(kind, {"_id": rid}).total == 1
            query = _search_for(example)
            if query is not None:
                assert rid in [
                    r["id"] for r in store.search(kind, {**query, "_count": "1000"}).resources
                ], name
                searched += 1
            assert store.delete(kind, rid) is not None
            with pytest.raises(ResourceDeletedError):
                store.read(kind, rid)
            assert store.vread(kind, rid, 1) == stored
    # one example's NHS number fails Modulus 11 (UK Core's own BabyPatient); nothing else
    assert set(refused) == {"UKCore-Patient-BabyPatient-Example.xml"}, refused
    assert refused["UKCore-Patient-BabyPatient-Example.xml"] == [
        "Patient.identifier[0].value: NHS number fails the Modulus 11 check"
    ]
    assert searched >= 70  # 77 of the examples name an NHS number or a patient


def test_a_transaction_of_examples_failing_half_way_leaves_nothing(
    records_url: str, examples: Examples
) -> None:
    chosen = [e for n, e in examples if n.startswith("UKCore-") and "BabyPatient" not in n][:40]
    broken = json.loads(json.dumps(next(e for n, e in examples if "RichardSmith" in n)))
    broken["birthDate"] = "1970-02-30"
    operations = (
        [Create(e) for e in chosen[:20]] + [Create(broken)] + [Create(e) for e in chosen[20:]]
    )
    with RecordStore(records_url) as store:
        with pytest.raises(
            TransactionFailedError, match=r"entry 20: .*Patient\.birthDate: not a real date"
        ):
            store.transaction(operations)
        kinds = {e["resourceType"] for e in chosen}
        assert {k: store.search(k, {"_count": "0"}).total for k in kinds} == dict.fromkeys(kinds, 0)
        # the same entries without the broken one all go in
        store.transaction(Create(e) for e in chosen)
        assert sum(store.search(k, {"_count": "0"}).total for k in kinds) == len(chosen)


_WRITER = textwrap.dedent(
    """
    import sys, time
    from joinedup.records import Create, RecordStore
    def patient(n):
        return {"resourceType": "Patient", "gender": "male", "name": [{"family": f"P{n}"}]}
    store = RecordStore(sys.argv[1])
    print(store.create(patient(0)).resource_id, flush=True)
    def entries():
        for n in range(1, 31):
            yield Create(patient(n))
        print("mid-transaction", flush=True)
        time.sleep(120)
    store.transaction(entries())
    """
)


def test_a_writer_killed_mid_transaction_leaves_the_store_as_it_was(records_url: str) -> None:
    writer = subprocess.Popen(
        [sys.executable, "-c", _WRITER, records_url],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert writer.stdout is not None
    try:
        kept = writer.stdout.readline().strip()
        assert writer.stdout.readline().strip() == "mid-transaction"
        os.kill(writer.pid, signal.SIGKILL)
        writer.wait(timeout=30)
    finally:
        if writer.poll() is None:
            writer.kill()
    with RecordStore(records_url) as store:
        found = store.search("Patient", {"_count": "100"})
        assert [r["id"] for r in found.resources] == [kept]
        assert store.create({"resourceType": "Patient", "gender": "female"}).created
