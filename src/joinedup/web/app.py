"""The dashboard and its JSON API: one FastAPI application over a read-only warehouse.

Pages are rendered on the server in the NHS.UK design system, from the same figures the API
returns (`Dashboard`), so the two cannot disagree. Every route checks the signed-in user's role;
worklists (the only identifiable data) open only for a clinician of that PCN or practice, and
each view or download is written to the audit log with who, what, when and why.

Each area has a router of its own (`signin`, `overview`, `worklists`, `finance`,
`data_quality`, `about`, `admin`, and `api_docs` for the API's documentation pages), sharing
`site`; this module assembles them.
"""

import secrets
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from importlib import resources
from pathlib import Path
from urllib.parse import quote

from fastapi import APIRouter, FastAPI, Request, Response
from fastapi.responses import JSONResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

from joinedup import __version__
from joinedup.errors import ConfigurationError, JoinedupError
from joinedup.warehouse import Engine, open_engine
from joinedup.web import (
    about,
    admin,
    api_docs,
    data_quality,
    finance,
    headlines,
    indicators,
    my_record,
    overview,
    profiles,
    signin,
    worklists,
)
from joinedup.web.access import AccessStore, Role
from joinedup.web.dashboard import Dashboard
from joinedup.web.headers import SecurityHeaders
from joinedup.web.settings import WebSettings
from joinedup.web.site import (
    NHSUK_VERSION,
    SESSION_COOKIE,
    NotSignedInError,
    Site,
    access,
    render,
    site,
)

# --- service ---------------------------------------------------------------------------------

service = APIRouter(tags=["service"])


class Health(BaseModel):
    status: str
    detail: list[str] = []


@service.get("/health", response_model=Health)
def health() -> Health:
    """Liveness: the process answers."""
    return Health(status="ok")


@service.get(
    "/ready", response_model=Health,
    responses={503: {"model": Health, "description": "Not ready yet"}},
)  # fmt: skip
def ready(request: Request, response: Response) -> Health:
    """Readiness: the warehouse is open and every page's figures are built."""
    state = site(request)
    if state.warm_error:
        response.status_code = 503
        return Health(status="error", detail=[state.warm_error])
    if not state.ready:
        response.status_code = 503
        return Health(status="starting", detail=["building the dashboard's figures"])
    return Health(status="ready")


# --- errors ----------------------------------------------------------------------------------


async def to_sign_in(request: Request, _: NotSignedInError) -> Response:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse(f"/login?next={quote(target)}", status_code=303)


async def http_error(request: Request, err: StarletteHTTPException) -> Response:
    """Errors as a page for a browser (403, 404, 409, 422), as JSON for everything else."""
    wants_page = not request.url.path.startswith("/api/") and "text/html" in request.headers.get(
        "accept", ""
    )
    if wants_page and err.status_code in (403, 404, 409, 422):
        user = access(request).session_user(request.cookies.get(SESSION_COOKIE))
        response = render(
            request, "error.html.j2", user, status=err.status_code, message=err.detail
        )
        response.status_code = err.status_code
        return response
    return JSONResponse({"detail": err.detail}, status_code=err.status_code, headers=err.headers)


# --- the application -------------------------------------------------------------------------


def _static_root(settings: WebSettings) -> Path:
    if settings.static_dir is not None:
        return settings.static_dir
    return Path(str(resources.files("joinedup.web") / "static"))


def _lifespan(
    state: Site, engine: Engine | None, warm: bool
) -> Callable[[FastAPI], AbstractAsyncContextManager[None]]:
    """Open the warehouse (read-only, unless given `engine`) and the access store; build every
    page's figures in the background; close both at the end."""
    settings = state.settings

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        own = engine is None
        eng = engine or open_engine("duckdb", warehouse=settings.warehouse, read_only=True)
        board = Dashboard(eng, boundaries=settings.boundaries)
        missing = board.ready()
        if missing:
            eng.close()
            raise ConfigurationError(
                f"warehouse {settings.warehouse} lacks {', '.join(missing)}: build it with "
                "`joinedup demo` (or `joinedup synth` and `joinedup phm run`)"
            )
        store = AccessStore(
            settings.access_path,
            session_hours=settings.session_hours,
            max_failures=settings.login_max_failures,
            window_minutes=settings.login_window_minutes,
            allow_demo_users=settings.mode == "demo",
            durable=settings.audit_sync_every_write,
            audit_key_path=settings.audit_key_path,
        )
        app.state.dashboard, app.state.access = board, store

        def warm_up() -> None:
            try:
                if warm:
                    board.warm()
                state.ready = True
            except JoinedupError as err:  # shown by /ready; pages raise it again themselves
                state.warm_error = str(err)
            # Every audit entry, from the first, once at start (an entry altered without its
            # hash recomputed shows only so); later checks cover only entries added since.
            store.verify_audit(full=True)

        thread = threading.Thread(target=warm_up, name="joinedup-warm", daemon=True)
        thread.start()
        try:
            yield
        finally:
            thread.join(timeout=60)
            store.close()
            if own:
                eng.close()

    return lifespan


def create_app(
    settings: WebSettings, *, engine: Engine | None = None, warm: bool = True
) -> FastAPI:
    """The application for `settings`; opens the warehouse read-only unless given `engine`."""
    static = _static_root(settings)
    needed = [f"nhsuk/nhsuk-frontend-{NHSUK_VERSION}.min.css", *api_docs.FILES]
    missing = [static / name for name in needed if not (static / name).is_file()]
    if missing:
        raise ConfigurationError(
            f"the dashboard's assets are missing ({missing[0]}): run `make assets` (npm ci, "
            "then copy them into the package) or set JOINEDUP_STATIC_DIR"
        )
    secret = (
        settings.secret_key.get_secret_value().encode()
        if settings.secret_key
        else secrets.token_bytes(32)
    )
    state = Site.of(settings, secret)
    app = FastAPI(
        title="joinedup",
        version=__version__,
        summary="Population health, places, PCN worklists and finance for an Integrated Care "
        "System.",
        description=(
            "Sign in with `POST /api/v1/token` and send the token as `Authorization: Bearer "
            "<token>`. Aggregates pass statistical disclosure control for every role. "
            "Worklists are identifiable: they open only for a clinician of that PCN, need a "
            "`reason`, and every view or download is audited."
        ),
        lifespan=_lifespan(state, engine, warm),
        docs_url=None,  # served from this host by `api_docs` (FastAPI's own use a CDN)
        redoc_url=None,
        openapi_url="/api/openapi.json",
    )
    app.state.site = state
    app.mount("/assets", StaticFiles(directory=static / "nhsuk" / "assets"), name="nhsuk-assets")
    app.mount("/static", StaticFiles(directory=static), name="static")
    app.exception_handler(NotSignedInError)(to_sign_in)
    app.exception_handler(StarletteHTTPException)(http_error)
    app.add_middleware(SecurityHeaders)
    app.include_router(service)
    areas = (
        signin, overview, indicators, profiles, headlines, worklists, finance, data_quality,
        about, admin, my_record,
    )  # fmt: skip
    for area in (*areas, api_docs):
        app.include_router(area.router)
    return app


__all__ = ["SESSION_COOKIE", "Role", "create_app"]
