"""What every route of the dashboard shares: who is asking, may they, and how to answer.

`Site` holds what `create_app` settles once (settings, the form-token secret, the templates,
the trusted proxies, readiness, the JSON kept for figures that cannot change); the functions
here read it, the dashboard and the access store from the request, so each area's router
(`overview`, `worklists`, `finance`, ...) is plain module-level code.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import jinja2
from fastapi import HTTPException, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse

from joinedup.errors import ConfigurationError, InputError
from joinedup.reports.pages import loader as report_loader
from joinedup.web.access import (
    PURPOSES,
    ROLE_LABELS,
    AccessStore,
    ProxyNetwork,
    User,
    client_address,
)
from joinedup.web.dashboard import Dashboard, plain
from joinedup.web.settings import WebSettings

SESSION_COOKIE = "joinedup_session"
PAGE_SIZE = 50
MAX_PAGE_SIZE = 500
NHSUK_VERSION = "10.6.1"


class NotSignedInError(Exception):
    """Raised by page routes to send the browser to the sign-in page."""


def templates() -> jinja2.Environment:
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


@dataclass
class Site:
    """One application's settled state; `ready` and `warm_error` are set by the warm-up."""

    settings: WebSettings
    secret: bytes
    env: jinja2.Environment
    trusted: list[ProxyNetwork]
    ready: bool = False
    warm_error: str | None = None
    #: Figures that cannot change while served, as JSON bytes, by key.
    serialised: dict[tuple[str, ...], bytes] = field(default_factory=dict)

    @classmethod
    def of(cls, settings: WebSettings, secret: bytes) -> Site:
        trusted = [ipaddress.ip_network(str(n)) for n in settings.trusted_proxies]
        return cls(settings, secret, templates(), trusted)


def site(request: Request) -> Site:
    found: Site = request.app.state.site
    return found


def dashboard(request: Request) -> Dashboard:
    board: Dashboard = request.app.state.dashboard
    return board


def access(request: Request) -> AccessStore:
    store: AccessStore = request.app.state.access
    return store


def client(request: Request) -> str:
    # The server passes the connecting address untouched (Uvicorn's own proxy handling is
    # off); X-Forwarded-For counts only from a configured trusted proxy.
    peer = request.client.host if request.client else None
    return client_address(peer, request.headers.getlist("x-forwarded-for"), site(request).trusted)


def token_of(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    if header.lower().startswith("bearer "):
        return header[7:].strip()
    return request.cookies.get(SESSION_COOKIE)


def csrf_token(request: Request) -> str:
    token = request.cookies.get(SESSION_COOKIE, "")
    return hmac.new(site(request).secret, token.encode(), hashlib.sha256).hexdigest()


def api_user(request: Request) -> User:
    """The user of an API call (bearer token or session cookie); 401, audited, if none."""
    token = token_of(request)
    store = access(request)
    user = store.session_user(token)
    if user is None:
        # Audited (never the token itself), so an admin sees probing with stolen or made-up
        # tokens.
        store.audit(
            None, "unauthenticated", f"{request.method} {request.url.path}",
            detail="no token" if not token else "token unknown, expired or signed out",
            reason="", client=client(request),
        )  # fmt: skip
        raise HTTPException(401, "sign in first", headers={"WWW-Authenticate": "Bearer"})
    return user


def page_user(request: Request) -> User:
    """The user of a page (session cookie); the sign-in page if none."""
    user = access(request).session_user(request.cookies.get(SESSION_COOKIE))
    if user is None:
        raise NotSignedInError()
    return user


def allowed(user: User, area: str) -> None:
    if not user.may(area):
        raise HTTPException(
            403,
            f"Your role ({ROLE_LABELS[user.role].lower()}) may not see " + area.replace("_", " "),
        )


def figures(build: Callable[[], Any]) -> Any:
    """`build()`, with a bad name in the request as 404 and a warehouse lacking what it
    needs as 409."""
    try:
        return build()
    except InputError as err:
        raise HTTPException(404, str(err)) from err
    except ConfigurationError as err:
        raise HTTPException(409, str(err)) from err


async def cached_json(request: Request, key: tuple[str, ...], build: Callable[[], Any]) -> Response:
    """Figures that cannot change while served, as JSON bytes made once (in a worker thread,
    so a cold build never holds up the event loop)."""
    serialised = site(request).serialised
    body = serialised.get(key)
    if body is None:

        def make() -> bytes:
            data = plain(figures(build))
            return json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode()

        body = await run_in_threadpool(make)
        serialised[key] = body
    return Response(body, media_type="application/json")


def render(request: Request, name: str, user: User | None, **context: Any) -> HTMLResponse:
    board = dashboard(request)
    page = (
        site(request)
        .env.get_template(name)
        .render(
            user=user,
            ics=board.ics(),
            synthetic=board.synthetic(),
            path=request.url.path,
            csrf=csrf_token(request) if user else "",
            collapse_tables=True,  # charts first, their tables folded below (reports open)
            **context,
        )
    )
    return HTMLResponse(page)


def pages(total: int) -> int:
    """How many pages of PAGE_SIZE rows `total` rows fill (at least one)."""
    return max(1, -(-total // PAGE_SIZE))
