"""The FHIR RESTful interactions over the records store, as plain functions from a request's
parts to an `Answer` (status, body, headers): the routes send an answer as an HTTP response,
and a batch Bundle turns each into an entry's `response`. HTTP itself stays in `routes`."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any
from urllib.parse import parse_qsl, urlencode

from joinedup.fhir.ukcore import JOINEDUP_BASE
from joinedup.fhir.validate import R4_RESOURCE_TYPES
from joinedup.records import (
    CodeSystems,
    ConditionalUpdate,
    Create,
    Delete,
    HistoryEntry,
    Operation,
    Outcome,
    RecordsError,
    RecordStore,
    TransactionFailedError,
    Update,
    validate_resource,
)
from joinedup.records.parameters import Link, date_range, link, patient_references, toward
from joinedup.records.store import LinkedPatient
from joinedup.web.records_api.gate import patients_of
from joinedup.web.records_api.outcome import FhirError, from_records, operation_outcome

#: Search parameters about the response's form, not which resources match; not passed on.
FORMAT_PARAMETERS = frozenset({"_format", "_pretty"})
HISTORY_PARAMETERS = frozenset({"_count", "_offset"})
_DEFAULT_COUNT = 50
#: The most resources one page may hold (as the store's search).
_MAX_COUNT = 1000


@dataclass
class Answer:
    """What an interaction gives back: HTTP status, body (a resource, Bundle or
    OperationOutcome; None for no body), headers, and the id it concerned (for the audit)."""

    status: int
    body: dict[str, Any] | None
    headers: dict[str, str] = field(default_factory=dict)
    resource_id: str | None = None


def check_type(kind: str) -> str:
    if kind not in R4_RESOURCE_TYPES:
        raise FhirError.one(400, "not-supported", f"{kind}: not a FHIR R4 resource type")
    return kind


def parse_json(body: bytes, what: str = "request body") -> dict[str, Any]:
    """A JSON object from a request body, or 400 saying why not."""
    try:
        found = json.loads(body.decode("utf-8")) if body else None
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise FhirError.one(
            400, "structure", f"{what}: not JSON ({err.__class__.__name__})"
        ) from None
    if not isinstance(found, dict):
        raise FhirError.one(400, "structure", f"{what}: not a FHIR resource (a JSON object)")
    return found


def resource_of(body: bytes, kind: str) -> dict[str, Any]:
    """The resource in a request body, which must be of the type its URL names."""
    resource = parse_json(body)
    given = resource.get("resourceType")
    if given != kind:
        raise FhirError.one(
            400, "invalid", f"resourceType is {given!r} but the URL names {kind}", "resourceType"
        )
    return resource


_ETAG = re.compile(r'^(?:W/)?"?(\d+)"?$')


def version_of(header: str, name: str = "If-Match") -> int:
    """The version a `W/"3"` ETag (or `"3"`, `3`) names, or 400 naming the header."""
    found = _ETAG.match(header.strip())
    if not found:
        raise FhirError.one(400, "invalid", f'{name}: not a version ETag such as W/"3"', name)
    return int(found.group(1))


def http_date(instant: str) -> str:
    """An RFC 7231 date (Last-Modified) from a FHIR instant."""
    moment = datetime.fromisoformat(instant.replace("Z", "+00:00")).astimezone(UTC)
    return format_datetime(moment, usegmt=True)


def version_headers(
    base: str, resource: dict[str, Any], *, location: bool = False
) -> dict[str, str]:
    """ETag and Last-Modified of a stored resource, and with `location` its Location."""
    meta = resource.get("meta") or {}
    headers = {"ETag": f'W/"{meta.get("versionId")}"'}
    if meta.get("lastUpdated"):
        headers["Last-Modified"] = http_date(str(meta["lastUpdated"]))
    if location:
        headers["Location"] = (
            f"{base}/{resource['resourceType']}/{resource['id']}/_history/{meta.get('versionId')}"
        )
    return headers


def _written(base: str, outcome: Outcome) -> Answer:
    resource = outcome.resource or {}
    return Answer(
        201 if outcome.created else 200,
        resource,
        version_headers(base, resource, location=True),
        outcome.resource_id,
    )


# --- instance and type interactions ---------------------------------------------------------


def read(store: RecordStore, base: str, kind: str, rid: str) -> Answer:
    resource = store.read(kind, rid)
    return Answer(200, resource, version_headers(base, resource), rid)


def vread(store: RecordStore, base: str, kind: str, rid: str, version: str) -> Answer:
    if not version.isdigit():
        raise FhirError.one(404, "not-found", f"{kind}/{rid}/_history/{version}: no such version")
    resource = store.vread(kind, rid, int(version))
    return Answer(200, resource, version_headers(base, resource), rid)


def create(
    store: RecordStore, base: str, kind: str, body: bytes, if_none_exist: str | None
) -> Answer:
    resource = resource_of(body, kind)
    outcome = store.create(resource, if_none_exist=if_none_exist or None)
    return _written(base, outcome)


def update(
    store: RecordStore, base: str, kind: str, rid: str, body: bytes, if_match: str | None
) -> Answer:
    resource = resource_of(body, kind)
    if "id" not in resource:
        raise FhirError.one(400, "required", "an update needs the resource's id", f"{kind}.id")
    if resource["id"] != rid:
        raise FhirError.one(400, "invalid", "differs from the id in the URL", f"{kind}.id")
    expected = None if if_match is None else version_of(if_match)
    return _written(base, store.update(resource, if_match=expected))


def conditional_update(
    store: RecordStore, base: str, kind: str, criteria: str, body: bytes
) -> Answer:
    resource = resource_of(body, kind)
    return _written(base, store.conditional_update(resource, criteria))


def delete(store: RecordStore, kind: str, rid: str) -> Answer:
    outcome = store.delete(kind, rid)
    headers = {} if outcome is None else {"ETag": f'W/"{outcome.version_id}"'}
    return Answer(204, None, headers, rid)


def _to_validate(body: bytes) -> tuple[dict[str, Any], str | None]:
    """The resource given to `$validate` (alone, or in a Parameters as `resource`) and the
    Parameters' `mode`, if any."""
    given = parse_json(body)
    if given.get("resourceType") != "Parameters":
        return given, None
    parameters = [p for p in given.get("parameter") or [] if isinstance(p, dict)]
    found = [p.get("resource") for p in parameters if p.get("name") == "resource"]
    if len(found) != 1 or not isinstance(found[0], dict):
        raise FhirError.one(
            400, "required", "needs one parameter named resource", "Parameters.parameter"
        )
    modes = [p.get("valueCode") for p in parameters if p.get("name") == "mode"]
    return found[0], (str(modes[0]) if modes else None)


def _checked(resource: dict[str, Any], code_systems: CodeSystems | None) -> Answer:
    try:
        validate_resource(resource, code_systems)
    except RecordsError as err:
        return Answer(200, from_records(err).outcome())
    return Answer(
        200, operation_outcome([("informational", None, "no problems found")], "information")
    )


def validate(kind: str, body: bytes, code_systems: CodeSystems | None = None) -> Answer:
    """`$validate`: the resource (or a Parameters holding it as `resource`) checked as the
    store would check it before writing, and against `code_systems` when given, without
    writing. 200 either way, as FHIR's Resource-validate says (a 4xx means the validation
    could not be done): an OperationOutcome of information when it passes, of an error naming
    each problem's element when not."""
    given, _ = _to_validate(body)
    resource = resource_of(json.dumps(given).encode(), kind)
    return _checked({**resource, "id": resource.get("id") or "validate"}, code_systems)


def validate_instance(
    kind: str, rid: str, body: bytes, mode: str | None, code_systems: CodeSystems | None = None
) -> Answer:
    """`{type}/{id}/$validate`: the resource checked as an update of `rid` would check it,
    without writing: as `validate`, and its id must be there and be `rid` (else an error
    issue naming `{type}.id`). The mode (the URL's `mode`, or the Parameters'), when given,
    must be `update`: the only mode joinedup validates at instance level."""
    given, given_mode = _to_validate(body)
    mode = mode if mode is not None else given_mode
    if mode is not None and mode != "update":
        raise FhirError.one(
            400, "not-supported", f"mode {mode!r}: only update is validated at instance level",
            "mode",
        )  # fmt: skip
    resource = resource_of(json.dumps(given).encode(), kind)
    if "id" not in resource:
        problem = "an update needs the resource's id"
    elif resource["id"] != rid:
        problem = "differs from the id in the URL"
    else:
        return _checked(resource, code_systems)
    return Answer(200, operation_outcome([("invalid", f"{kind}.id", problem)], "error"))


# --- search and history ---------------------------------------------------------------------


def _page_links(
    base: str, path: str, pairs: list[tuple[str, str]], total: int, offset: int, count: int
) -> list[dict[str, str]]:
    kept = [(n, v) for n, v in pairs if n not in ("_offset", "_count")]

    def url(start: int) -> str:
        query = urlencode([*kept, ("_count", str(count)), ("_offset", str(start))])
        return f"{base}/{path}?{query}"

    links = [{"relation": "self", "url": url(offset)}]
    if count and offset + count < total:
        links.append({"relation": "next", "url": url(offset + count)})
    if count and offset > 0:
        links.append({"relation": "previous", "url": url(max(0, offset - count))})
    return links


#: What an included resource of a type is kept to: the searches whose patients it must
#: belong to (None: not kept), or FhirError (403) when the type is closed to the user.
ScopeOf = Callable[[str], Sequence[tuple[str, list[tuple[str, str]]]] | None]
#: The most included resources one page holds (beyond it, an outcome entry says so).
MAX_INCLUDES = 1000
#: How many levels `:iterate` links are followed beyond the page's matches: the first level
#: is the includes of the matches, each further one the includes of the level before. A chain
#: longer than this (an Organization's partOf, a care team of a carer's care team...) stops
#: here, with an outcome entry saying so, rather than running through the store.
MAX_INCLUDE_DEPTH = 4
LINK_PARAMETERS = frozenset({"_include", "_revinclude"})
ITERATE_PARAMETERS = frozenset({"_include:iterate", "_revinclude:iterate"})


@dataclass(frozen=True)
class _Linked:
    """One `_include` or `_revinclude` of a search, with or without `:iterate`."""

    reverse: bool
    iterate: bool
    link: Link


def unrestricted(_: str) -> None:
    """The scope of an unrestricted user: nothing kept back."""
    return None


def _links(kind: str, pairs: list[tuple[str, str]]) -> list[_Linked]:
    """The search's `_include`s and `_revinclude`s (`:iterate` or not), in the order given."""
    found: list[_Linked] = []
    for name, value in pairs:
        base, _, modifier = name.partition(":")
        if base not in LINK_PARAMETERS:
            continue
        if modifier and modifier != "iterate":
            raise FhirError.one(
                400, "not-supported", f"{name}: the only modifier of {base} is :iterate "
                "(R4; STU3's :recurse is :iterate)", name,
            )  # fmt: skip
        reverse, iterate = base == "_revinclude", modifier == "iterate"
        for part in value.split(","):
            checked = link(kind, part, reverse=reverse, iterate=iterate)
            found.append(_Linked(reverse, iterate, checked))
    return found


class _Including:
    """The resources a search page's links bring in, level by level: each once, none that is
    a match, every one through the same scope (`scope_of`) as the matches."""

    def __init__(
        self, store: RecordStore, kind: str, matches: list[dict[str, Any]], scope_of: ScopeOf
    ) -> None:
        self.store, self.scope_of = store, scope_of
        self.seen = {(kind, str(r["id"])) for r in matches}
        self.found: list[dict[str, Any]] = []

    @property
    def full(self) -> bool:
        return len(self.found) > MAX_INCLUDES

    def _add(self, resources: list[dict[str, Any]], level: list[dict[str, Any]]) -> None:
        for r in resources:
            key = (str(r["resourceType"]), str(r["id"]))
            if key not in self.seen:
                self.seen.add(key)
                self.found.append(r)
                level.append(r)

    def follow(
        self, linked: _Linked, sources: list[dict[str, Any]], level: list[dict[str, Any]]
    ) -> None:
        """Add to `level` what `linked` brings in from `sources` (any types)."""
        by_type: dict[str, list[str]] = {}
        for r in sources:
            by_type.setdefault(str(r["resourceType"]), []).append(str(r["id"]))
        if linked.reverse:
            for target_type, ids in sorted(by_type.items()):
                pointing = toward(linked.link, target_type)
                if pointing is None or self.full:
                    continue
                scope = self.scope_of(pointing.source)  # a closed type: 403, as ever
                limit = MAX_INCLUDES + 1 - len(self.found)
                self._add(self.store.linking_to(pointing, ids, patients_of=scope, limit=limit),
                          level)  # fmt: skip
            return
        ids = by_type.get(linked.link.source, [])
        targets: dict[str, list[str]] = {}
        for target_type, target_id in self.store.link_targets(linked.link, ids) if ids else []:
            if (target_type, target_id) not in self.seen:
                targets.setdefault(target_type, []).append(target_id)
        for target_type, target_ids in targets.items():
            try:
                scope = self.scope_of(target_type)
            except FhirError:
                continue  # a type the user may not see at all: not shown, not counted
            self._add(self.store.resources_by_id(target_type, target_ids, patients_of=scope),
                      level)  # fmt: skip


def _included(
    store: RecordStore,
    kind: str,
    matches: list[dict[str, Any]],
    links: list[_Linked],
    scope_of: ScopeOf,
) -> tuple[list[dict[str, Any]], list[str]]:
    """The resources a page's links bring in, each once and none that is a match, every one
    through the same scope as the matches; and what cut them short (MAX_INCLUDES, or
    `:iterate` links still finding more after MAX_INCLUDE_DEPTH levels), for outcome entries.

    As FHIR R4's search ("Including other resources in result"): the links without `:iterate`
    are followed from the matches; those with it from the matches and then from every resource
    they bring in, level by level, until nothing new comes. A type closed to the user is never
    included (`_include`) or refused (`_revinclude`), at whatever level."""
    including = _Including(store, kind, matches, scope_of)
    cut: list[str] = []
    level: list[dict[str, Any]] = []
    for linked in links:
        if not matches or including.full:
            break
        including.follow(linked, matches, level)
    iterating = [linked for linked in links if linked.iterate]
    depth = 1
    while iterating and level and not including.full:
        sources, level = level, []
        if depth == MAX_INCLUDE_DEPTH:  # one more level, only to say whether it brings more
            before = len(including.found)
            for linked in iterating:
                including.follow(linked, sources, level)
            if len(including.found) > before:
                cut.append(
                    f"_include:iterate and _revinclude:iterate are followed {MAX_INCLUDE_DEPTH} "
                    "levels from the matches; resources further along were not included"
                )
            del including.found[before:]
            break
        for linked in iterating:
            if including.full:
                break
            including.follow(linked, sources, level)
        depth += 1
    if including.full:
        cut.append(
            f"included resources cut at {MAX_INCLUDES}: ask for a smaller _count to see them all"
        )
    return including.found[:MAX_INCLUDES], cut


def search(
    store: RecordStore,
    base: str,
    kind: str,
    pairs: list[tuple[str, str]],
    patients_of: Sequence[tuple[str, list[tuple[str, str]]]] | None = None,
    scope_of: ScopeOf = unrestricted,
) -> Answer:
    """A searchset Bundle of one page, with `self`, `next` and `previous` links; with
    `patients_of`, of the resources of patients those searches find alone (the total too).
    `_include` and `_revinclude` add the resources the page's matches point to, or that
    point to them, marked `include` and kept by `scope_of` (the total counts matches only)."""
    asked = [(n, v) for n, v in pairs if n not in FORMAT_PARAMETERS]
    links = _links(kind, asked)
    page = store.search(
        kind,
        [(n, v) for n, v in asked if n.partition(":")[0] not in LINK_PARAMETERS],
        patients_of=patients_of,
    )
    included, cut = _included(store, kind, page.resources, links, scope_of)
    entries = [
        {"fullUrl": f"{base}/{kind}/{r['id']}", "resource": r, "search": {"mode": "match"}}
        for r in page.resources
    ] + [
        {
            "fullUrl": f"{base}/{r['resourceType']}/{r['id']}",
            "resource": r,
            "search": {"mode": "include"},
        }
        for r in included
    ]
    if cut:
        entries.append(
            {
                "resource": operation_outcome([("too-costly", None, w) for w in cut], "warning"),
                "search": {"mode": "outcome"},
            }
        )
    bundle: dict[str, Any] = {
        "resourceType": "Bundle",
        "id": str(uuid.uuid4()),
        "type": "searchset",
        "total": page.total,
        "link": _page_links(base, kind, asked, page.total, page.offset, page.count),
        "entry": entries,
    }
    return Answer(200, bundle)


EVERYTHING_PARAMETERS = frozenset({"_since", "_type", "_count", "_offset", "linked"})
#: The extension on a `$everything` entry's `search` saying it came through the master person
#: index: the Patient it belongs to, and how the index linked that Patient's record.
PERSON_INDEX_LINK = f"{JOINEDUP_BASE}/StructureDefinition/person-index-link"


def follows_index(pairs: list[tuple[str, str]]) -> bool:
    """Whether `$everything` was asked to follow the person index (`linked=true`); any value
    but true or false is refused (400)."""
    values = [v for n, v in pairs if n == "linked"]
    for value in values:
        if value not in ("true", "false"):
            raise FhirError.one(400, "invalid", "linked: true or false", "linked")
    return bool(values) and values[-1] == "true"


def _index_link(patient: LinkedPatient, asked: str) -> dict[str, Any]:
    parts: list[dict[str, Any]] = [
        {"url": "patient", "valueReference": {"reference": f"Patient/{patient.patient_id}"}},
        {"url": "linkedTo", "valueReference": {"reference": f"Patient/{asked}"}},
    ]
    if patient.linked_by:
        parts.append({"url": "linkedBy", "valueCode": patient.linked_by})
    if patient.match_weight is not None:
        parts.append({"url": "matchWeight", "valueDecimal": round(patient.match_weight, 4)})
    return {"url": PERSON_INDEX_LINK, "extension": parts}


def _everything_entry(
    base: str, resource: dict[str, Any], asked: str, linked: dict[str, LinkedPatient]
) -> dict[str, Any]:
    search: dict[str, Any] = {"mode": "match"}
    owners = patients_of(resource) & set(linked)
    if owners and asked not in patients_of(resource):
        search = {"extension": [_index_link(linked[p], asked) for p in sorted(owners)], **search}
    return {
        "fullUrl": f"{base}/{resource['resourceType']}/{resource['id']}",
        "resource": resource,
        "search": search,
    }


def everything(
    store: RecordStore,
    base: str,
    rid: str,
    pairs: list[tuple[str, str]],
    scope_of: ScopeOf = unrestricted,
    linked: Sequence[LinkedPatient] = (),
) -> Answer:
    """`Patient/{rid}/$everything`: a searchset Bundle of the Patient and every resource that
    points to them (the reference index), one page of `_count` from `_offset`, updated at or
    after `_since`, of the `_type`s given; each type kept by `scope_of` (a type closed to the
    user is left out). `linked` adds the same person's other Patients (the person index,
    already decided one by one), each of their entries marked PERSON_INDEX_LINK."""
    count, offset = _DEFAULT_COUNT, 0
    since: datetime | None = None
    types: set[str] | None = None
    asked = [(n, v) for n, v in pairs if n not in FORMAT_PARAMETERS]
    for name, value in asked:
        if name not in EVERYTHING_PARAMETERS:
            raise FhirError.one(
                400, "not-supported", "not a parameter of $everything this server supports "
                "(_since, _type, _count, _offset, linked)", name,
            )  # fmt: skip
        if name == "linked":
            follows_index([(name, value)])
            continue
        if name in ("_count", "_offset"):
            highest = _MAX_COUNT if name == "_count" else 10**9
            if not value.isdigit() or int(value) > highest:
                raise FhirError.one(400, "invalid", f"not a whole number from 0 to {highest}", name)
            count, offset = (int(value), offset) if name == "_count" else (count, int(value))
        elif name == "_since":
            try:  # a `+` of an offset left unescaped in the URL arrives as a space
                since = date_range(value.replace(" ", "+"))[0]
            except ValueError as err:
                raise FhirError.one(400, "invalid", f"{err} (an instant)", name) from None
        else:
            given = [t.strip() for t in value.split(",") if t.strip()]
            unknown = [t for t in given if t not in R4_RESOURCE_TYPES]
            if unknown or not given:
                raise FhirError.one(
                    400, "invalid", f"not FHIR R4 resource types: {', '.join(unknown) or value!r}",
                    name,
                )  # fmt: skip
            types = (types or set()) | set(given)
    store.read("Patient", rid)  # 404 or 410 (a restricted user was refused before this)
    kept: dict[str, Sequence[tuple[str, list[tuple[str, str]]]] | None] = {}
    for kind in ("Patient", *sorted(patient_references())):
        if types is not None and kind not in types:
            continue
        try:
            kept[kind] = scope_of(kind)
        except FhirError:
            continue  # a type the user may not see at all (the audit trail): left out
    others = {p.patient_id: p for p in linked}
    page = store.everything(rid, kept, since=since, count=count, offset=offset, also=list(others))
    path = f"Patient/{rid}/$everything"
    bundle: dict[str, Any] = {
        "resourceType": "Bundle",
        "id": str(uuid.uuid4()),
        "type": "searchset",
        "total": page.total,
        "link": _page_links(base, path, asked, page.total, page.offset, page.count),
        "entry": [_everything_entry(base, r, rid, others) for r in page.resources],
    }
    return Answer(200, bundle, resource_id=rid)


def _paging(pairs: list[tuple[str, str]]) -> tuple[int, int]:
    count, offset = _DEFAULT_COUNT, 0
    for name, value in pairs:
        if name in FORMAT_PARAMETERS:
            continue
        if name not in HISTORY_PARAMETERS:
            raise FhirError.one(
                400,
                "not-supported",
                "not a history parameter the server supports (_count, _offset)",
                name,
            )
        if not value.isdigit():
            raise FhirError.one(400, "invalid", "not a whole number", name)
        if name == "_count":
            count = min(int(value), _MAX_COUNT)
        else:
            offset = int(value)
    return count, offset


def _history_entry(base: str, kind: str, rid: str, version: HistoryEntry) -> dict[str, Any]:
    method = "DELETE" if version.deleted else "POST" if version.version_id == 1 else "PUT"
    url = kind if method == "POST" else f"{kind}/{rid}"
    entry: dict[str, Any] = {"fullUrl": f"{base}/{kind}/{rid}"}
    if version.resource is not None:
        entry["resource"] = version.resource
    entry["request"] = {"method": method, "url": url}
    moment = version.last_updated.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    entry["response"] = {
        "status": "204" if version.deleted else "201" if version.version_id == 1 else "200",
        "etag": f'W/"{version.version_id}"',
        "lastModified": moment,
    }
    return entry


def _history_bundle(
    base: str, path: str, pairs: list[tuple[str, str]], total: int, offset: int, count: int,
    entries: list[dict[str, Any]],
) -> dict[str, Any]:  # fmt: skip
    return {
        "resourceType": "Bundle",
        "id": str(uuid.uuid4()),
        "type": "history",
        "total": total,
        "link": _page_links(base, path, pairs, total, offset, count),
        "entry": entries,
    }


def instance_history(
    store: RecordStore, base: str, kind: str, rid: str, pairs: list[tuple[str, str]]
) -> Answer:
    count, offset = _paging(pairs)
    versions = store.history(kind, rid)
    page = versions[offset : offset + count]
    entries = [_history_entry(base, kind, rid, v) for v in page]
    bundle = _history_bundle(
        base, f"{kind}/{rid}/_history", pairs, len(versions), offset, count, entries
    )
    return Answer(200, bundle, resource_id=rid)


def type_history(store: RecordStore, base: str, kind: str, pairs: list[tuple[str, str]]) -> Answer:
    count, offset = _paging(pairs)
    total, page = store.type_history(kind, count=count, offset=offset)
    entries = [_history_entry(base, kind, rid, v) for rid, v in page]
    return Answer(
        200, _history_bundle(base, f"{kind}/_history", pairs, total, offset, count, entries)
    )


# --- transaction and batch Bundles ----------------------------------------------------------


@dataclass
class _Entry:
    """One entry of a transaction or batch Bundle, read."""

    index: int
    method: str
    kind: str
    rid: str | None
    criteria: str | None
    resource: dict[str, Any] | None
    full_url: str | None
    if_match: str | None
    if_none_exist: str | None


_METHODS = ("GET", "POST", "PUT", "DELETE")


def _entry(index: int, raw: Any) -> _Entry:
    where = f"Bundle.entry[{index}]"
    if not isinstance(raw, dict):
        raise FhirError.one(400, "structure", "not a JSON object", where)
    request = raw.get("request")
    if not isinstance(request, dict):
        raise FhirError.one(400, "required", "an entry needs a request", f"{where}.request")
    method = request.get("method")
    if method not in _METHODS:
        raise FhirError.one(
            400, "not-supported", f"not one of {', '.join(_METHODS)}", f"{where}.request.method"
        )
    url = request.get("url")
    if not isinstance(url, str) or not url:
        raise FhirError.one(400, "required", "an entry needs a URL", f"{where}.request.url")
    path, _, query = url.partition("?")
    parts = [p for p in path.split("/") if p]
    if not parts or parts[0] not in R4_RESOURCE_TYPES or len(parts) > 2:
        raise FhirError.one(
            400, "not-supported", "not Type, Type/id or Type?search", f"{where}.request.url"
        )
    kind, rid = parts[0], (parts[1] if len(parts) == 2 else None)
    resource = raw.get("resource")
    if method in ("POST", "PUT"):
        if not isinstance(resource, dict):
            raise FhirError.one(
                400, "required", f"a {method} entry needs a resource", f"{where}.resource"
            )
        if resource.get("resourceType") != kind:
            raise FhirError.one(
                400, "invalid", f"resourceType differs from the request URL's {kind}",
                f"{where}.resource.resourceType",
            )  # fmt: skip
    full_url = raw.get("fullUrl")
    return _Entry(
        index, method, kind, rid, query or None, resource if isinstance(resource, dict) else None,
        full_url if isinstance(full_url, str) else None,
        request.get("ifMatch"), request.get("ifNoneExist"),
    )  # fmt: skip


def _entries(bundle: dict[str, Any], kind: str) -> list[_Entry]:
    raw = bundle.get("entry") or []
    if not isinstance(raw, list):
        raise FhirError.one(400, "structure", "not a list", "Bundle.entry")
    entries = [_entry(i, e) for i, e in enumerate(raw)]
    if kind == "transaction":
        for e in entries:
            if e.method == "GET":
                raise FhirError.one(
                    400, "not-supported", "GET is not supported in a transaction (use a batch)",
                    f"Bundle.entry[{e.index}].request.method",
                )  # fmt: skip
            if e.method == "DELETE" and e.rid is None:
                raise FhirError.one(
                    400, "not-supported", "conditional delete is not supported",
                    f"Bundle.entry[{e.index}].request.url",
                )  # fmt: skip
    return entries


def _rewritten(node: Any, ids: dict[str, str], where: str) -> Any:
    """`node` with every `reference` to a `urn:uuid:` fullUrl replaced by the server's
    `Type/id`; a `urn:uuid:` the Bundle does not define is 400."""
    if isinstance(node, list):
        return [_rewritten(item, ids, where) for item in node]
    if not isinstance(node, dict):
        return node
    found = {}
    for key, value in node.items():
        if key == "reference" and isinstance(value, str) and value.startswith("urn:"):
            if value not in ids:
                raise FhirError.one(
                    400, "not-found", "refers to a urn that no entry of the Bundle creates",
                    f"{where}.resource",
                )  # fmt: skip
            found[key] = ids[value]
        else:
            found[key] = _rewritten(value, ids, where)
    return found


def _operation(entry: _Entry, resource: dict[str, Any] | None) -> Operation:
    """The store's write for one entry (its resource already rewritten)."""
    where = f"Bundle.entry[{entry.index}]"
    if entry.method == "DELETE":
        assert entry.rid is not None  # checked when the entries were read
        return Delete(entry.kind, entry.rid)
    assert resource is not None
    if entry.method == "POST":
        if entry.if_none_exist:
            return Create(resource, entry.if_none_exist)
        return Update(resource)  # its id was given by the server beforehand
    if entry.rid is None:
        if not entry.criteria:
            raise FhirError.one(
                400, "required", "PUT needs Type/id or Type?search", f"{where}.request.url"
            )
        return ConditionalUpdate(resource, entry.criteria)
    if resource.get("id") != entry.rid:
        raise FhirError.one(
            400, "invalid", "differs from the id in request.url", f"{where}.resource.id"
        )
    if_match = (
        None if entry.if_match is None else version_of(entry.if_match, f"{where}.request.ifMatch")
    )
    return Update(resource, if_match)


def _entry_response(base: str, outcome: Outcome | None) -> dict[str, Any]:
    if outcome is None:
        return {"response": {"status": "204 No Content"}}
    if outcome.resource is None:
        return {"response": {"status": "204 No Content", "etag": f'W/"{outcome.version_id}"'}}
    headers = version_headers(base, outcome.resource, location=True)
    meta = outcome.resource.get("meta") or {}
    return {
        "fullUrl": f"{base}/{outcome.resource_type}/{outcome.resource_id}",
        "resource": outcome.resource,
        "response": {
            "status": "201 Created" if outcome.created else "200 OK",
            "location": headers["Location"].removeprefix(f"{base}/"),
            "etag": headers["ETag"],
            "lastModified": meta.get("lastUpdated"),
        },
    }


#: The order a transaction's entries are processed in (FHIR R4 3.1.0.11.2): deletes, then
#: creates (conditional ones first, so references to them resolve), then updates.
def _order(entry: _Entry) -> tuple[int, int]:
    rank = {"DELETE": 0, "POST": 1 if entry.if_none_exist else 2, "PUT": 3}[entry.method]
    return rank, entry.index


def _conditional_criteria(entry: _Entry) -> str | None:
    """The search of a conditional create or update entry; None for any other entry."""
    if entry.method == "POST":
        return entry.if_none_exist or None
    if entry.method == "PUT" and entry.rid is None:
        return entry.criteria
    return None


def transaction(store: RecordStore, base: str, bundle: dict[str, Any]) -> Answer:
    """Every entry in one database transaction, or none: `urn:uuid:` fullUrls of creates
    become the server's ids everywhere they are referenced."""
    entries = _entries(bundle, "transaction")
    ids: dict[str, str] = {}
    for e in entries:
        if e.method == "POST" and not e.if_none_exist and e.resource is not None:
            e.resource = {**e.resource, "id": str(uuid.uuid4())}
            if e.full_url:
                ids[e.full_url] = f"{e.kind}/{e.resource['id']}"
    ordered = sorted(entries, key=_order)
    outcomes: dict[int, Outcome | None] = {}

    def operations() -> Iterator[Operation]:
        for e in ordered:
            where = f"Bundle.entry[{e.index}]"
            resource = None if e.resource is None else _rewritten(e.resource, ids, where)
            yield _operation(e, resource)

    def heard(position: int, outcome: Outcome | None) -> None:
        e = ordered[position]
        outcomes[e.index] = outcome
        if e.full_url and outcome is not None and e.method == "POST":
            ids[e.full_url] = f"{outcome.resource_type}/{outcome.resource_id}"

    # the conditional entries' criteria and the types written, for the store to take the
    # locks they want before anything is written
    conditional = [(e.kind, c) for e in ordered if (c := _conditional_criteria(e))]
    kinds = {e.kind for e in ordered}
    try:
        store.transaction(operations(), on_outcome=heard, criteria=conditional, kinds=kinds)
    except TransactionFailedError as err:  # named by the Bundle's entry, not the order run
        named = TransactionFailedError(ordered[err.index].index, err.cause)
        raise from_records(named, if_match=ordered[err.index].if_match is not None) from None
    response = [_entry_response(base, outcomes.get(e.index)) for e in entries]
    return Answer(200, _response_bundle("transaction-response", response))


def _response_bundle(kind: str, entries: list[dict[str, Any]]) -> dict[str, Any]:
    return {"resourceType": "Bundle", "id": str(uuid.uuid4()), "type": kind, "entry": entries}


def batch(store: RecordStore, base: str, bundle: dict[str, Any]) -> Answer:
    """Each entry on its own: one entry's failure is its own response (with an
    OperationOutcome), and the others are written."""
    raw = bundle.get("entry") or []
    if not isinstance(raw, list):
        raise FhirError.one(400, "structure", "not a list", "Bundle.entry")
    response: list[dict[str, Any]] = []
    for index, item in enumerate(raw):
        try:
            response.append(_batch_entry(store, base, _entry(index, item)))
        except FhirError as err:
            response.append(_failed(err.status, err.outcome()))
        except RecordsError as err:
            request = item.get("request") if isinstance(item, dict) else None
            named = isinstance(request, dict) and request.get("ifMatch") is not None
            refused = from_records(err, if_match=named)
            response.append(_failed(refused.status, refused.outcome()))
    return Answer(200, _response_bundle("batch-response", response))


def _failed(status: int, outcome: dict[str, Any]) -> dict[str, Any]:
    return {"response": {"status": str(status), "outcome": outcome}}


def _batch_entry(store: RecordStore, base: str, e: _Entry) -> dict[str, Any]:
    if e.method == "GET":
        if e.rid is not None:
            answer = read(store, base, e.kind, e.rid)
        else:
            answer = search(
                store, base, e.kind, parse_qsl(e.criteria or "", keep_blank_values=True)
            )
        return {"resource": answer.body, "response": {"status": "200 OK"}}
    if e.method == "DELETE" and e.rid is None:
        raise FhirError.one(
            400, "not-supported", "conditional delete is not supported",
            f"Bundle.entry[{e.index}].request.url",
        )  # fmt: skip
    operation = _operation(e, e.resource)
    if isinstance(operation, Update) and e.method == "POST":
        return _entry_response(base, store.create(operation.resource))
    return _entry_response(base, store.transaction([operation])[0])
