"""Writers at the same time, on SQLite and on PostgreSQL: optimistic locking loses no update,
and concurrent creates all land."""

from __future__ import annotations

import threading

from joinedup.records import RecordStore, VersionConflictError

WORKERS = 4
INCREMENTS = 8


def test_if_match_read_modify_write_loses_no_update(records_url: str) -> None:
    with RecordStore(records_url) as setup:
        rid = setup.create({"resourceType": "Patient", "multipleBirthInteger": 0}).resource_id
    conflicts: list[int] = []
    failures: list[BaseException] = []

    def work() -> None:
        try:
            with RecordStore(records_url) as store:
                done = 0
                while done < INCREMENTS:
                    current = store.read("Patient", rid)
                    version = int(current["meta"]["versionId"])
                    current["multipleBirthInteger"] += 1
                    try:
                        store.update(current, if_match=version)
                        done += 1
                    except VersionConflictError:
                        conflicts.append(1)
        except BaseException as err:  # reported by the main thread
            failures.append(err)

    threads = [threading.Thread(target=work) for _ in range(WORKERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not failures, failures
    with RecordStore(records_url) as store:
        final = store.read("Patient", rid)
        assert final["multipleBirthInteger"] == WORKERS * INCREMENTS
        assert final["meta"]["versionId"] == str(WORKERS * INCREMENTS + 1)
        versions = [h.version_id for h in store.history("Patient", rid)]
        assert versions == list(range(WORKERS * INCREMENTS + 1, 0, -1))


def test_concurrent_creates_all_land(records_url: str) -> None:
    failures: list[BaseException] = []

    def work(worker: int) -> None:
        try:
            with RecordStore(records_url) as store:
                for n in range(15):
                    store.create(
                        {"resourceType": "Patient", "name": [{"family": f"W{worker}N{n}"}]}
                    )
        except BaseException as err:
            failures.append(err)

    threads = [threading.Thread(target=work, args=(w,)) for w in range(WORKERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not failures, failures
    with RecordStore(records_url) as store:
        assert store.search("Patient", {"_count": "0"}).total == WORKERS * 15
        assert store.search("Patient", {"family": "w3n1"}).total == 6  # W3N1 and W3N10-14
