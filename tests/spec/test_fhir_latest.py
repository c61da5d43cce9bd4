"""Spec: which stored version of a FHIR resource is the current one, on every engine.

`meta.lastUpdated` orders as an instant (a timestamp with time zone, in UTC), not as text;
`meta.versionId` as a whole number, not as text; then the later load and record."""

from __future__ import annotations

import pyarrow as pa

from joinedup.fhir.ingest import STORE, latest_versions
from joinedup.warehouse import Engine


def _store(rows: list[tuple[str, str, str | None, int, int]]) -> pa.Table:
    """(id, version_id, last_updated, load_seq, load_order) of Patients."""
    return pa.table(
        {
            "resource_type": ["Patient"] * len(rows),
            "id": [r[0] for r in rows],
            "version_id": [r[1] for r in rows],
            "last_updated": [r[2] for r in rows],
            "resource": [f'{{"v": "{r[0]}-{r[1]}"}}' for r in rows],
            "load_seq": pa.array([r[3] for r in rows], pa.int64()),
            "load_order": pa.array([r[4] for r in rows], pa.int64()),
        }
    )


def test_latest_is_by_instant_then_version_number_then_load(engine: Engine) -> None:
    engine.load(
        STORE,
        _store(
            [
                # 10:00 at +01:00 is 09:00Z: before 09:30Z, though later as text
                ("a", "1", "2020-01-01T10:00:00+01:00", 1, 1),
                ("a", "2", "2020-01-01T09:30:00Z", 1, 2),
                # version 10 is after version 9, though earlier as text
                ("b", "9", "2021-05-05T12:00:00Z", 1, 3),
                ("b", "10", "2021-05-05T12:00:00Z", 1, 4),
                # no lastUpdated sorts last; a later load wins a tie (content hashes, no number)
                ("c", "#x", None, 2, 1),
                ("c", "#y", "2019-01-01T00:00:00Z", 1, 5),
                ("d", "#p", "2022-01-01T00:00:00Z", 1, 6),
                ("d", "#q", "2022-01-01T00:00:00Z", 2, 1),
            ]
        ),
    )
    rows = engine.execute(latest_versions()).to_pylist()
    assert sorted((r["id"], r["resource"]) for r in rows) == [
        ("a", '{"v": "a-2"}'),
        ("b", '{"v": "b-10"}'),
        ("c", '{"v": "c-#y"}'),
        ("d", '{"v": "d-#q"}'),
    ]
