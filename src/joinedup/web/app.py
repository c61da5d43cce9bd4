"""The dashboard and its JSON API: one FastAPI application over a read-only warehouse.

Pages are rendered on the server in the NHS.UK design system, from the same figures the API
returns (`Dashboard`), so the two cannot disagree. Every route checks the signed-in user's role;
worklists (the only identifiable data) open only for a clinician of that PCN or practice, and
each view or download is written to the audit log with who, what, when and why.
"""

import csv
import hashlib
import hmac
import io
import ipaddress
import json
import secrets
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from importlib import resources
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote, urlencode

import jinja2
from fastapi import Depends, FastAPI, Form, HTTPException, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from joinedup import __version__
from joinedup.errors import ConfigurationError, InputError, JoinedupError
from joinedup.reports.pages import loader as report_loader
from joinedup.warehouse import Engine, open_engine
from joinedup.web.access import PURPOSES, ROLE_LABELS, AccessStore, Role, User, client_address
from joinedup.web.dashboard import TIERS, Dashboard, WorklistPage, plain
from joinedup.web.settings import WebSettings

SESSION_COOKIE = "joinedup_session"
PAGE_SIZE = 50
MAX_PAGE_SIZE = 500
NHSUK_VERSION = "10.6.1"


# --- API models ------------------------------------------------------------------------------


class Credentials(BaseModel):
    username: str = Field(min_length=1, max_length=100)
    password: str = Field(min_length=1, max_length=1000)


class TokenOut(BaseModel):
    access_token: str
    token_type: str = "bearer"
    expires_in: int = Field(description="Seconds until the token expires.")


class UserOut(BaseModel):
    username: str
    display_name: str
    role: str
    role_label: str
    pcn_code: str | None
    practice_code: str | None
    scope: str
    areas: list[str]


class PlaceOut(BaseModel):
    place_code: str
    place_name: str
    people: int | None = Field(
        description="Registered people, opt-outs excluded; null when suppressed."
    )
    people_text: str
    share: str
    pcns: int
    practices: int


class PcnOut(BaseModel):
    pcn_code: str
    pcn_name: str
    place_code: str
    place_name: str
    people: int | None
    people_text: str
    practices: int


class Cohort(BaseModel):
    id: str
    title: str
    purpose: str
    people: int


class WorklistRow(BaseModel):
    worklist_id: str
    cohort: str
    pcn_code: str
    practice_code: str | None
    nhs_number: str | None
    age: int | None
    sex: str | None
    risk_tier: str | None
    risk_score: float | None
    reasons: str | None


class WorklistOut(BaseModel):
    pcn_code: str
    total: int
    limit: int
    offset: int
    cohorts: list[Cohort]
    rows: list[WorklistRow]


class WorklistQuery(BaseModel):
    """Why a worklist is opened, and which of its rows: every worklist route takes these."""

    reason: str | None = Field(None, description="Why: " + ", ".join(PURPOSES) + " (required).")
    cohort: str | None = Field(None, description="Only this cohort (its id).")
    risk_tier: str | None = Field(None, description="Only this tier: " + ", ".join(TIERS) + ".")
    practice: str | None = Field(None, description="Only this practice (its ODS code).")


class AuditEntry(BaseModel):
    seq: int
    at: str
    username: str
    role: str
    action: str
    resource: str
    detail: str
    reason: str
    client: str


class AuditOut(BaseModel):
    total: int
    limit: int
    offset: int
    chain_intact: bool = Field(
        description="No entry changed, removed or rewritten (HMAC chain, signed head)."
    )
    chain_problem: str | None = Field(description="What is wrong, naming the entry.")
    verified_through: int = Field(description="The newest entry checked.")
    legacy_entries: int = Field(
        description="Entries from before the log had a key: plain SHA-256, which anyone with "
        "the file could recompute."
    )
    entries: list[AuditEntry]


class QuarantineRow(BaseModel):
    load_id: str | None
    source_file: str | None
    source_line: int | None
    resource_type: str | None
    resource_id: str | None
    reason: str | None


class QuarantineOut(BaseModel):
    total: int
    limit: int
    offset: int
    rows: list[QuarantineRow]


class Health(BaseModel):
    status: str
    detail: list[str] = []


# --- the application -------------------------------------------------------------------------


class NotSignedInError(Exception):
    """Raised by page routes to send the browser to the sign-in page."""


def _static_root(settings: WebSettings) -> Path:
    if settings.static_dir is not None:
        return settings.static_dir
    return Path(str(resources.files("joinedup.web") / "static"))


def _templates() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.ChoiceLoader(
            [jinja2.PackageLoader("joinedup.web", "templates"), report_loader()]
        ),
        autoescape=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.globals.update(ROLE_LABELS=ROLE_LABELS, PURPOSES=PURPOSES, NHSUK_VERSION=NHSUK_VERSION)
    return env


def create_app(
    settings: WebSettings, *, engine: Engine | None = None, warm: bool = True
) -> FastAPI:
    """The application for `settings`; opens the warehouse read-only unless given `engine`."""
    static = _static_root(settings)
    nhsuk = static / "nhsuk" / f"nhsuk-frontend-{NHSUK_VERSION}.min.css"
    if not nhsuk.is_file():
        raise ConfigurationError(
            f"the NHS.UK frontend assets are missing ({nhsuk}): run `make assets` (npm ci, "
            "then copy them into the package) or set JOINEDUP_STATIC_DIR"
        )
    secret = (
        settings.secret_key.get_secret_value().encode()
        if settings.secret_key
        else secrets.token_bytes(32)
    )
    env = _templates()
    state: dict[str, Any] = {"ready": False, "warm_error": None}

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
                state["ready"] = True
            except JoinedupError as err:  # shown by /ready; pages raise it again themselves
                state["warm_error"] = str(err)
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
        lifespan=lifespan,
        docs_url="/api/docs",
        redoc_url=None,
        openapi_url="/api/openapi.json",
    )
    app.mount("/assets", StaticFiles(directory=static / "nhsuk" / "assets"), name="nhsuk-assets")
    app.mount("/static", StaticFiles(directory=static), name="static")

    # --- helpers ---------------------------------------------------------------------------

    def dashboard(request: Request) -> Dashboard:
        board: Dashboard = request.app.state.dashboard
        return board

    def access(request: Request) -> AccessStore:
        store: AccessStore = request.app.state.access
        return store

    trusted = [ipaddress.ip_network(str(n)) for n in settings.trusted_proxies]

    def client(request: Request) -> str:
        # The server passes the connecting address untouched (Uvicorn's own proxy handling
        # is off); X-Forwarded-For counts only from a configured trusted proxy.
        peer = request.client.host if request.client else None
        return client_address(peer, request.headers.getlist("x-forwarded-for"), trusted)

    def token_of(request: Request) -> str | None:
        header = request.headers.get("authorization", "")
        if header.lower().startswith("bearer "):
            return header[7:].strip()
        return request.cookies.get(SESSION_COOKIE)

    def csrf_token(request: Request) -> str:
        token = request.cookies.get(SESSION_COOKIE, "")
        return hmac.new(secret, token.encode(), hashlib.sha256).hexdigest()

    def api_user(request: Request) -> User:
        token = token_of(request)
        store = access(request)
        user = store.session_user(token)
        if user is None:
            # Audited (never the token itself), so an admin sees probing with stolen or
            # made-up tokens.
            store.audit(
                None, "unauthenticated", f"{request.method} {request.url.path}",
                detail="no token" if not token else "token unknown, expired or signed out",
                reason="", client=client(request),
            )  # fmt: skip
            raise HTTPException(401, "sign in first", headers={"WWW-Authenticate": "Bearer"})
        return user

    def page_user(request: Request) -> User:
        user = access(request).session_user(request.cookies.get(SESSION_COOKIE))
        if user is None:
            raise NotSignedInError()
        return user

    def allowed(user: User, area: str) -> None:
        if not user.may(area):
            raise HTTPException(
                403,
                f"Your role ({ROLE_LABELS[user.role].lower()}) may not see "
                + area.replace("_", " "),
            )

    serialised: dict[tuple[str, ...], bytes] = {}

    async def cached_json(key: tuple[str, ...], build: Callable[[], Any]) -> Response:
        """Figures that cannot change while served, as JSON bytes made once (in a worker
        thread, so a cold build never holds up the event loop)."""
        body = serialised.get(key)
        if body is None:

            def make() -> bytes:
                data = plain(figures(build))
                return json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode()

            body = await run_in_threadpool(make)
            serialised[key] = body
        return Response(body, media_type="application/json")

    def figures(build: Callable[[], Any]) -> Any:
        try:
            return build()
        except InputError as err:
            raise HTTPException(404, str(err)) from err
        except ConfigurationError as err:
            raise HTTPException(409, str(err)) from err

    def render(request: Request, name: str, user: User | None, **context: Any) -> HTMLResponse:
        board = dashboard(request)
        page = env.get_template(name).render(
            user=user,
            ics=board.ics(),
            synthetic=board.synthetic(),
            path=request.url.path,
            csrf=csrf_token(request) if user else "",
            **context,
        )
        return HTMLResponse(page)

    def worklist_scope(request: Request, user: User, pcn: str, board: Dashboard) -> str | None:
        """The practice a clinician is limited to (None: the whole PCN); 403 if not theirs,
        and the refusal is audited too, so an admin sees attempts on identifiable data."""
        message = None
        if not user.is_clinical:
            message = "Worklists are for clinicians of that PCN only"
        else:
            own = user.pcn_code
            if user.practice_code and not own:
                own = (board.practices().get(user.practice_code) or {}).get("pcn_code")
            if own != pcn:
                message = f"You may open the worklists of {user.scope} only"
        if message is not None:
            access(request).audit(
                user, "denied", f"worklist/{pcn}"[:100], detail=message,
                reason=str(request.query_params.get("reason", ""))[:100],
                client=client(request),
            )  # fmt: skip
            raise HTTPException(403, message)
        return user.practice_code

    def checked_reason(reason: str | None) -> str:
        if reason not in PURPOSES:
            raise HTTPException(
                422, "Say why you are opening this worklist: reason must be one of "
                + ", ".join(PURPOSES)
            )  # fmt: skip
        return reason

    def audit_worklist(
        request: Request, user: User, action: str, page: WorklistPage | None, pcn: str,
        filters: dict[str, str | None], reason: str, rows: int,
    ) -> None:  # fmt: skip
        detail = ", ".join(f"{k}={v}" for k, v in filters.items() if v) or "no filter"
        detail += f"; {rows} rows" + (f" from offset {page.offset}" if page else "")
        access(request).audit(
            user, action, f"worklist/{pcn}", detail=detail, reason=reason, client=client(request)
        )

    # --- errors ----------------------------------------------------------------------------

    @app.exception_handler(NotSignedInError)
    async def to_sign_in(request: Request, _: NotSignedInError) -> Response:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse(f"/login?next={quote(target)}", status_code=303)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, err: StarletteHTTPException) -> Response:
        wants_page = not request.url.path.startswith(
            "/api/"
        ) and "text/html" in request.headers.get("accept", "")
        if wants_page and err.status_code in (403, 404, 409, 422):
            user = access(request).session_user(request.cookies.get(SESSION_COOKIE))
            response = render(
                request, "error.html.j2", user, status=err.status_code, message=err.detail
            )
            response.status_code = err.status_code
            return response
        return JSONResponse(
            {"detail": err.detail}, status_code=err.status_code, headers=err.headers
        )

    app.add_middleware(SecurityHeaders)

    # --- health ----------------------------------------------------------------------------

    @app.get("/health", response_model=Health, tags=["service"])
    def health() -> Health:
        """Liveness: the process answers."""
        return Health(status="ok")

    @app.get(
        "/ready", response_model=Health, tags=["service"],
        responses={503: {"model": Health, "description": "Not ready yet"}},
    )  # fmt: skip
    def ready(request: Request, response: Response) -> Health:
        """Readiness: the warehouse is open and every page's figures are built."""
        if state["warm_error"]:
            response.status_code = 503
            return Health(status="error", detail=[str(state["warm_error"])])
        if not state["ready"]:
            response.status_code = 503
            return Health(status="starting", detail=["building the dashboard's figures"])
        return Health(status="ready")

    # --- sign-in ---------------------------------------------------------------------------

    def safe_next(target: str | None) -> str:
        # Only a path on this site: not "//host" or "/\\host", which browsers take as another.
        if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
            return "/"
        return target

    @app.get("/login", response_class=HTMLResponse, include_in_schema=False)
    def login_page(request: Request, next: str | None = None) -> HTMLResponse:
        return render(request, "login.html.j2", None, next=safe_next(next), error=None)

    @app.post("/login", include_in_schema=False)
    def login(
        request: Request,
        username: Annotated[str, Form()] = "",
        password: Annotated[str, Form()] = "",
        next: Annotated[str, Form()] = "/",
    ) -> Response:
        result = access(request).sign_in(username.strip(), password, client(request))
        if result.user is None or result.token is None:
            if result.locked_seconds:
                message = (
                    "Too many failed sign-ins. Try again in "
                    f"{max(1, round(result.locked_seconds / 60))} minutes."
                )
                status = 429
            else:
                message, status = "The username or password is not right.", 401
            response = render(
                request, "login.html.j2", None, next=safe_next(next), error=message,
                username=username,
            )  # fmt: skip
            response.status_code = status
            if result.locked_seconds:
                response.headers["Retry-After"] = str(result.locked_seconds)
            return response
        redirect = RedirectResponse(safe_next(next), status_code=303)
        redirect.set_cookie(
            SESSION_COOKIE, result.token, httponly=True, samesite="lax",
            secure=settings.secure_cookies, max_age=int(settings.session_hours * 3600),
        )  # fmt: skip
        return redirect

    @app.post("/logout", include_in_schema=False)
    def logout(request: Request, csrf: Annotated[str, Form()] = "") -> Response:
        token = request.cookies.get(SESSION_COOKIE)
        if token and hmac.compare_digest(csrf, csrf_token(request)):
            access(request).sign_out(token)
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(SESSION_COOKIE)
        return response

    @app.post(
        "/api/v1/token", response_model=TokenOut, tags=["access"],
        responses={401: {"description": "Wrong username or password"},
                   429: {"description": "Too many failed sign-ins"}},
    )  # fmt: skip
    def api_token(request: Request, credentials: Credentials) -> Response | TokenOut:
        """Sign in: a bearer token for the API."""
        result = access(request).sign_in(
            credentials.username, credentials.password, client(request), kind="token"
        )
        if result.locked_seconds and result.user is None:
            return JSONResponse(
                {"detail": "too many failed sign-ins; try again later"}, status_code=429,
                headers={"Retry-After": str(result.locked_seconds)},
            )  # fmt: skip
        if result.user is None or result.token is None:
            return JSONResponse({"detail": "wrong username or password"}, status_code=401)
        return TokenOut(access_token=result.token, expires_in=int(settings.session_hours * 3600))

    @app.delete("/api/v1/token", status_code=204, tags=["access"])
    def api_sign_out(request: Request, user: Annotated[User, Depends(api_user)]) -> Response:
        """Sign out: the token stops working."""
        token = token_of(request)
        if token:
            access(request).sign_out(token)
        return Response(status_code=204)

    @app.get("/api/v1/me", response_model=UserOut, tags=["access"])
    def me(user: Annotated[User, Depends(api_user)]) -> dict[str, Any]:
        """Who you are signed in as and what you may see."""
        return user.public()

    # --- system overview -------------------------------------------------------------------

    @app.get("/api/v1/overview", response_model=dict[str, Any], tags=["population health"])
    async def api_overview(request: Request, user: Annotated[User, Depends(api_user)]) -> Response:
        """The system overview: population by place, pyramid, segments, risk tiers,
        inequality gaps with 95% confidence intervals, and deaths."""
        allowed(user, "overview")
        return await cached_json(("overview",), dashboard(request).overview)

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def overview_page(request: Request, user: Annotated[User, Depends(page_user)]) -> Response:
        allowed(user, "overview")
        return render(request, "overview.html.j2", user, r=figures(dashboard(request).overview))

    # --- places ----------------------------------------------------------------------------

    @app.get("/api/v1/places", response_model=list[PlaceOut], tags=["places"])
    async def api_places(request: Request, user: Annotated[User, Depends(api_user)]) -> Response:
        """Every place with its registered people (disclosure-controlled) and PCNs."""
        allowed(user, "places")
        return await cached_json(("places",), dashboard(request).places)

    @app.get(
        "/api/v1/places/{place_code}", response_model=dict[str, Any], tags=["places"],
        responses={404: {"description": "No such place"}},
    )  # fmt: skip
    async def api_place(
        request: Request, place_code: str, user: Annotated[User, Depends(api_user)]
    ) -> Response:
        """One place's profile: the overview at place level, its PCNs, against the system."""
        allowed(user, "places")
        board = dashboard(request)
        return await cached_json(("place", place_code), lambda: board.place(place_code))

    @app.get("/api/v1/pcns", response_model=list[PcnOut], tags=["places"])
    async def api_pcns(
        request: Request,
        user: Annotated[User, Depends(api_user)],
        place: Annotated[str | None, Query(description="Only this place's PCNs.")] = None,
    ) -> Response:
        """PCNs with their registered people (disclosure-controlled)."""
        allowed(user, "places")
        board = dashboard(request)
        if place is not None and place not in board.place_names():
            return JSONResponse([])  # no such place: no PCNs (and nothing kept for it)
        return await cached_json(("pcns", place or ""), lambda: board.pcns(place))

    @app.get("/places", response_class=HTMLResponse, include_in_schema=False)
    def places_page(request: Request, user: Annotated[User, Depends(page_user)]) -> Response:
        allowed(user, "places")
        board = dashboard(request)
        return render(request, "places.html.j2", user, places=board.places(), map=board.map(None))

    @app.get("/places/{place_code}", response_class=HTMLResponse, include_in_schema=False)
    def place_page(
        request: Request, place_code: str, user: Annotated[User, Depends(page_user)]
    ) -> Response:
        allowed(user, "places")
        board = dashboard(request)
        r = figures(lambda: board.place(place_code))
        return render(request, "place.html.j2", user, r=r, system=board.overview())

    # --- worklists -------------------------------------------------------------------------

    def worklist_filters(
        cohort: str | None, risk_tier: str | None, practice: str | None
    ) -> dict[str, str | None]:
        if risk_tier and risk_tier not in TIERS:
            raise HTTPException(422, f"risk_tier must be one of {', '.join(TIERS)}")
        return {
            "cohort": cohort or None,
            "risk_tier": risk_tier or None,
            "practice": practice or None,
        }

    @app.get(
        "/api/v1/worklists/{pcn_code}", response_model=WorklistOut, tags=["worklists"],
        responses={403: {"description": "Not a clinician of this PCN"}},
    )  # fmt: skip
    def api_worklist(
        request: Request,
        pcn_code: str,
        user: Annotated[User, Depends(api_user)],
        q: Annotated[WorklistQuery, Query()],
        limit: Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE)] = PAGE_SIZE,
        offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
    ) -> WorklistPage:
        """A PCN's case-finding worklists: identifiable, for its clinicians only; audited."""
        board = dashboard(request)
        limited = worklist_scope(request, user, pcn_code, board)
        why = checked_reason(q.reason)
        filters = worklist_filters(q.cohort, q.risk_tier, limited or q.practice)
        page = board.worklist(
            pcn_code, practice=filters["practice"], cohort=filters["cohort"],
            risk_tier=filters["risk_tier"], limit=limit, offset=offset,
        )  # fmt: skip
        audit_worklist(request, user, "view", page, pcn_code, filters, why, len(page.rows))
        return page

    def csv_response(request: Request, user: User, pcn_code: str, q: WorklistQuery) -> Response:
        board = dashboard(request)
        limited = worklist_scope(request, user, pcn_code, board)
        why = checked_reason(q.reason)
        filters = worklist_filters(q.cohort, q.risk_tier, limited or q.practice)
        table = board.worklist_csv_rows(
            pcn_code, practice=filters["practice"], cohort=filters["cohort"],
            risk_tier=filters["risk_tier"],
        )  # fmt: skip
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow(table.column_names)
        for row in table.to_pylist():
            writer.writerow(["" if v is None else v for v in row.values()])
        audit_worklist(request, user, "download", None, pcn_code, filters, why, table.num_rows)
        return Response(
            out.getvalue(), media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="worklist-{pcn_code}.csv"'},
        )  # fmt: skip

    @app.get(
        "/api/v1/worklists/{pcn_code}/csv", tags=["worklists"],
        response_class=PlainTextResponse,
        responses={200: {"content": {"text/csv": {}}}, 403: {"description": "Not yours"}},
    )  # fmt: skip
    def api_worklist_csv(
        request: Request,
        pcn_code: str,
        user: Annotated[User, Depends(api_user)],
        q: Annotated[WorklistQuery, Query()],
    ) -> Response:
        """The whole filtered worklist as CSV; audited as a download."""
        return csv_response(request, user, pcn_code, q)

    @app.get("/worklists", include_in_schema=False)
    def worklists_home(request: Request, user: Annotated[User, Depends(page_user)]) -> Response:
        allowed(user, "worklists")
        board = dashboard(request)
        pcn = user.pcn_code or (board.practices().get(user.practice_code or "") or {}).get(
            "pcn_code"
        )
        return RedirectResponse(f"/worklists/{pcn}", status_code=303)

    @app.get("/worklists/{pcn_code}", response_class=HTMLResponse, include_in_schema=False)
    def worklist_page(
        request: Request,
        pcn_code: str,
        user: Annotated[User, Depends(page_user)],
        q: Annotated[WorklistQuery, Query()],
        page: Annotated[int, Query(ge=1, le=200_000)] = 1,
    ) -> Response:
        board = dashboard(request)
        limited = worklist_scope(request, user, pcn_code, board)
        pcn = next((p for p in board.pcns() if p["pcn_code"] == pcn_code), None)
        if q.reason is None:
            return render(request, "worklist_reason.html.j2", user, pcn=pcn, pcn_code=pcn_code)
        why = checked_reason(q.reason)
        filters = worklist_filters(q.cohort, q.risk_tier, limited or q.practice)
        result = board.worklist(
            pcn_code, practice=filters["practice"], cohort=filters["cohort"],
            risk_tier=filters["risk_tier"], limit=PAGE_SIZE, offset=(page - 1) * PAGE_SIZE,
        )  # fmt: skip
        audit_worklist(request, user, "view", result, pcn_code, filters, why, len(result.rows))
        query = {"reason": why, **{k: v for k, v in filters.items() if v}}
        if limited:
            query.pop("practice", None)
        practices = sorted(
            (p for p in board.practices().values() if p["pcn_code"] == pcn_code),
            key=lambda p: str(p["practice_code"]),
        )
        return render(
            request, "worklist.html.j2", user, pcn=pcn, pcn_code=pcn_code, result=result,
            filters=filters, reason=why, page=page, page_size=PAGE_SIZE, tiers=TIERS,
            practices=[] if limited else practices, query=urlencode(query),
            pages=max(1, -(-result.total // PAGE_SIZE)),
        )  # fmt: skip

    @app.get("/worklists/{pcn_code}/download", include_in_schema=False)
    def worklist_download(
        request: Request,
        pcn_code: str,
        user: Annotated[User, Depends(page_user)],
        q: Annotated[WorklistQuery, Query()],
    ) -> Response:
        return csv_response(request, user, pcn_code, q)

    # --- finance ---------------------------------------------------------------------------

    @app.get("/api/v1/finance", response_model=dict[str, Any], tags=["finance"])
    async def api_finance(request: Request, user: Annotated[User, Depends(api_user)]) -> Response:
        """Need indices, targets against baselines, distance from target, the pace-of-change
        path, MHIS and guarantees, the control total and forecast, and the risk share."""
        allowed(user, "finance")
        return await cached_json(("finance",), dashboard(request).finance)

    @app.get("/finance", response_class=HTMLResponse, include_in_schema=False)
    def finance_page(request: Request, user: Annotated[User, Depends(page_user)]) -> Response:
        allowed(user, "finance")
        return render(request, "finance.html.j2", user, r=figures(dashboard(request).finance))

    # --- data quality ----------------------------------------------------------------------

    @app.get("/api/v1/data-quality", response_model=dict[str, Any], tags=["data quality"])
    async def api_data_quality(
        request: Request, user: Annotated[User, Depends(api_user)]
    ) -> Response:
        """The latest loads, quarantine reasons, unmapped codes and field completeness."""
        allowed(user, "data_quality")
        return await cached_json(("data_quality",), dashboard(request).data_quality)

    @app.get("/api/v1/data-quality/quarantine", response_model=QuarantineOut, tags=["data quality"])
    def api_quarantine(
        request: Request,
        user: Annotated[User, Depends(api_user)],
        limit: Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE)] = PAGE_SIZE,
        offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
    ) -> dict[str, Any]:
        """Rejected records with file, line and reason (never their content)."""
        allowed(user, "data_quality")
        total, rows = dashboard(request).quarantine(limit, offset)
        return {"total": total, "limit": limit, "offset": offset, "rows": rows}

    @app.get("/data-quality", response_class=HTMLResponse, include_in_schema=False)
    def data_quality_page(
        request: Request,
        user: Annotated[User, Depends(page_user)],
        page: Annotated[int, Query(ge=1, le=200_000)] = 1,
    ) -> Response:
        allowed(user, "data_quality")
        board = dashboard(request)
        total, rows = board.quarantine(PAGE_SIZE, (page - 1) * PAGE_SIZE)
        return render(
            request, "data_quality.html.j2", user, dq=board.data_quality(), quarantine=rows,
            quarantine_total=total, page=page, pages=max(1, -(-total // PAGE_SIZE)),
        )  # fmt: skip

    # --- about -----------------------------------------------------------------------------

    @app.get("/api/v1/about", response_model=dict[str, Any], tags=["about"])
    async def api_about(request: Request, user: Annotated[User, Depends(api_user)]) -> Response:
        """Where the data came from: synthetic or real, when built, seed, version, rules."""
        allowed(user, "about")
        return await cached_json(("about",), dashboard(request).about)

    @app.get("/about", response_class=HTMLResponse, include_in_schema=False)
    def about_page(request: Request, user: Annotated[User, Depends(page_user)]) -> Response:
        allowed(user, "about")
        return render(request, "about.html.j2", user, about=dashboard(request).about())

    # --- audit -----------------------------------------------------------------------------

    def audit_page_data(request: Request, limit: int, offset: int) -> dict[str, Any]:
        store = access(request)
        check = store.verify_audit()
        total, entries = store.audit_entries(limit, offset)
        return {
            "total": total, "limit": limit, "offset": offset, "chain_intact": check.intact,
            "chain_problem": check.problem, "verified_through": check.verified_through,
            "legacy_entries": check.legacy_entries, "entries": entries,
        }  # fmt: skip

    @app.get("/api/v1/audit", response_model=AuditOut, tags=["access"])
    def api_audit(
        request: Request,
        user: Annotated[User, Depends(api_user)],
        limit: Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE)] = PAGE_SIZE,
        offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
    ) -> dict[str, Any]:
        """The audit log of identifiable views and downloads, newest first (admins only)."""
        allowed(user, "audit")
        return audit_page_data(request, limit, offset)

    @app.get("/admin/audit", response_class=HTMLResponse, include_in_schema=False)
    def audit_page(
        request: Request,
        user: Annotated[User, Depends(page_user)],
        page: Annotated[int, Query(ge=1, le=200_000)] = 1,
    ) -> Response:
        allowed(user, "audit")
        data = audit_page_data(request, PAGE_SIZE, (page - 1) * PAGE_SIZE)
        return render(
            request, "audit.html.j2", user, audit=data, page=page,
            pages=max(1, -(-data["total"] // PAGE_SIZE)), users=access(request).users(),
        )  # fmt: skip

    return app


#: Scripts only from this site's /static (no inline script, no eval). Inline styles stay
#: allowed: the charts are SVG from matplotlib, which styles its elements inline.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
    "script-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; "
    "form-action 'self'"
)

_HEADERS = [
    (b"content-security-policy", CONTENT_SECURITY_POLICY.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
    (b"x-frame-options", b"DENY"),
]


class SecurityHeaders:
    """Adds the security headers as each response starts (a plain ASGI middleware: no extra
    task or streaming per request, which `@app.middleware("http")` costs)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        static = str(scope.get("path", "")).startswith(("/static", "/assets"))

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {k.lower() for k, _ in headers}
                extra = _HEADERS if static else [*_HEADERS, (b"cache-control", b"no-store")]
                headers += [(k, v) for k, v in extra if k not in present]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, with_headers)


__all__ = ["SESSION_COOKIE", "Role", "create_app"]
