"""The FHIR R4 REST API over the records store (`/fhir/R4`): mounted in the dashboard by
`joinedup serve --records`, or served alone by `joinedup records serve`. See docs/records.md."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path

from fastapi import FastAPI
from sqlglot import exp
from starlette.middleware import Middleware

from joinedup import __version__
from joinedup.records import CodeSystems, Policy, RecordsSettings, RecordStore
from joinedup.records.exports import Exports
from joinedup.warehouse import open_engine
from joinedup.web import signin
from joinedup.web.access import AccessStore
from joinedup.web.headers import SecurityHeaders
from joinedup.web.records_api.audit_events import router as audit_router
from joinedup.web.records_api.bulk_export import router as bulk_export_router
from joinedup.web.records_api.fast_path import FastReads
from joinedup.web.records_api.privacy import router as privacy_router
from joinedup.web.records_api.routes import PREFIX, router
from joinedup.web.settings import WebSettings
from joinedup.web.site import Site


def open_exports(store: RecordStore, records: str | None = None) -> Exports:
    """Bulk Data exports of `store` (at `records`, else where JOINEDUP_RECORDS says) in the
    folder and for the retention the records settings give."""
    settings = RecordsSettings()
    return Exports(
        store,
        settings.exports_folder(records),
        timedelta(hours=settings.records_export_hours),
    )


def read_pcn_practices(warehouse: Path) -> dict[str, frozenset[str]] | None:
    """Each PCN's practices, from the warehouse's `practice` table (practice_code, pcn_code):
    the practices whose registered patients a PCN-level clinician cares for. None when there
    is no warehouse at `warehouse` or it has no practice table (`records serve` without one)."""
    if not warehouse.exists():
        return None
    query = exp.select("pcn_code", "practice_code").from_("practice")
    with open_engine("duckdb", warehouse=warehouse, read_only=True) as engine:
        if "practice" not in engine.table_names():
            return None
        rows = engine.execute(query).to_pylist()
    found: dict[str, set[str]] = {}
    for row in rows:
        if row["pcn_code"] and row["practice_code"]:
            found.setdefault(str(row["pcn_code"]), set()).add(str(row["practice_code"]))
    return {pcn: frozenset(practices) for pcn, practices in found.items()}


def mount_records(
    app: FastAPI,
    store: RecordStore,
    code_systems: CodeSystems | None = None,
    exports: Exports | None = None,
    pcn_practices: Mapping[str, frozenset[str]] | None = None,
    index_systems: Mapping[str, str] | None = None,
) -> None:
    """Serve the FHIR API over `store` from `app` (whose lifespan opens the access store);
    the caller closes `store` when the server stops. `$validate` checks codings against
    `code_systems` when given (`records.read_code_systems`, e.g. the UK Core CodeSystems);
    `$export` writes its files where `exports` says (else `open_exports(store)`);
    `pcn_practices` (read_pcn_practices) gives a PCN-level clinician their PCN's practices
    for the `registered` rule (without it they have none); `index_systems` each person index
    source's identifier system for `$everything?linked=true` (default: the
    `JOINEDUP_RECORDS_INDEX_SOURCES` setting)."""
    if pcn_practices is not None:
        practices = dict(pcn_practices)
        app.state.pcn_practices = lambda pcn: practices.get(pcn, frozenset())
    app.state.records = store
    app.state.records_exports = exports or open_exports(store)
    app.state.records_code_systems = code_systems
    settings = RecordsSettings()
    app.state.records_index_systems = dict(
        settings.records_index_sources if index_systems is None else index_systems
    )
    if app.state.records_index_systems:
        # each Patient's person under these sources, kept in the store from now on (written
        # with every Patient write and index run): built here, not by the first read
        store.keep_people(app.state.records_index_systems)
    # one policy for the server, reading the sensitive code list now: a bad one fails at start
    # objections follow the person through the index's sources as the server has them now
    # a parent's or guardian's proxy access ends at the configured birthday (default 16), and
    # is suspended for the practice's review at an earlier one (default 11)
    app.state.records_policy = Policy(
        store,
        index_systems=lambda: app.state.records_index_systems,
        proxy_end_age=settings.records_proxy_end_age,
        proxy_review_age=settings.records_proxy_review_age,
        proxy_notice_days=settings.records_proxy_notice_days,
    )
    app.include_router(privacy_router)
    app.include_router(audit_router)  # before `router`: its AuditEvent routes win
    app.include_router(bulk_export_router)  # before `router`: $export is not a type
    app.include_router(router)
    # Reads and searches go straight to their handlers (fast_path.py), inside every
    # middleware the app already has (its security headers, its 500 for an error).
    app.user_middleware.append(Middleware(FastReads))


def create_records_app(
    settings: WebSettings,
    store: RecordStore,
    code_systems: CodeSystems | None = None,
    exports: Exports | None = None,
    *,
    close_store: bool = False,
) -> FastAPI:
    """The FHIR API alone, with the dashboard's users, tokens and audit log (its access
    store, beside the warehouse setting) and `POST /api/v1/token` to sign in; each PCN's
    practices are read from the warehouse when there is one (read_pcn_practices). With
    `close_store` the app closes `store` when it stops (a worker process of its own)."""
    secret = (
        settings.secret_key.get_secret_value().encode()
        if settings.secret_key
        else secrets.token_bytes(32)
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        users = AccessStore(
            settings.access_path,
            session_hours=settings.session_hours,
            max_failures=settings.login_max_failures,
            window_minutes=settings.login_window_minutes,
            allow_demo_users=settings.mode == "demo",
            durable=settings.audit_sync_every_write,
            audit_key_path=settings.audit_key_path,
        )
        app.state.access = users
        try:
            yield
        finally:
            users.close()
            if close_store:
                store.close()

    app = FastAPI(
        title="joinedup records (FHIR R4)",
        version=__version__,
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    app.state.site = Site.of(settings, secret)
    # The dashboard's headers: nosniff, no framing and, for records above all, no-store.
    app.add_middleware(SecurityHeaders)
    app.add_api_route(
        "/api/v1/token", signin.api_token, methods=["POST"], response_model=signin.TokenOut,
        tags=["access"],
    )  # fmt: skip
    app.add_api_route(
        "/api/v1/token", signin.api_sign_out, methods=["DELETE"], status_code=204,
        response_model=None, tags=["access"],
    )  # fmt: skip
    mount_records(app, store, code_systems, exports, read_pcn_practices(settings.warehouse))
    return app


__all__ = [
    "PREFIX",
    "create_records_app",
    "mount_records",
    "open_exports",
    "read_pcn_practices",
    "router",
]
