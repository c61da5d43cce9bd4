"""A short path to the FHIR API's busiest interactions: a GET of `/fhir/R4/{type}` (search) or
`/fhir/R4/{type}/{id}` (read) goes straight to its handler in routes.py, past FastAPI's
routing (every dashboard and records route before it), dependency solving and inner
middleware: a quarter to a third of the server's CPU a request under load (docs/records.md).

The handlers are the same functions FastAPI calls for those URLs, so the sign-in, access
checks, audit entry and OperationOutcome errors are theirs; the app's outer middleware (the
security headers, the 500 for an unexpected error) still wraps them. A URL another route
takes first (AuditEvent, `$export`, `metadata`, `_history`) and anything with a body goes
through FastAPI as before.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from joinedup.web.records_api import routes

_BASE = routes.PREFIX + "/"
#: First segments whose one-segment GET another route answers before `search`.
_NOT_SEARCH = frozenset({"AuditEvent", "$export", "metadata"})
#: First segments whose two-segment GETs other routes answer before `read`.
_NOT_READ_TYPE = frozenset({"AuditEvent", "$export-status"})
#: Second segments whose two-segment GETs other routes answer before `read`.
_NOT_READ_ID = frozenset({"_history", "$export"})


def interaction(path: str) -> tuple[str, ...] | None:
    """The segments of a GET `path` that `search` (one: the type) or `read` (two: type and
    id) answers, as FastAPI's routes would choose; None for any other path."""
    if not path.startswith(_BASE):
        return None
    parts = tuple(path[len(_BASE) :].split("/"))
    if not all(parts):
        return None
    if len(parts) == 1:
        return None if parts[0] in _NOT_SEARCH else parts
    if len(parts) == 2:
        kind, rid = parts
        if kind in _NOT_READ_TYPE or rid in _NOT_READ_ID:
            return None
        return parts
    return None


class FastReads:
    """ASGI middleware (the app's innermost): sends a bodiless GET that `search` or `read`
    answers straight to that handler; everything else on to the app."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "GET":
            path: str = scope["path"]
            root: str = scope.get("root_path", "")
            if root and path.startswith(root):
                path = path[len(root) :]
            found = interaction(path)
            if found is not None and not routes.has_body(scope):
                request = Request(scope, receive)
                if len(found) == 1:
                    response = await routes.search(request, found[0])
                else:
                    response = await routes.read(request, found[0], found[1])
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)
