"""The security headers every response of the dashboard and the records API carries: the
content security policy, nosniff, same-origin referrer, no framing and, outside static
assets, no-store. Its own module so that both apps take it without importing each other."""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from joinedup.web import api_docs

#: Scripts only from this site's /static (no inline script, no eval). Inline styles stay
#: allowed: the charts are SVG from matplotlib, which styles its elements inline.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
    "script-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; "
    "form-action 'self'"
)

#: ReDoc builds its search index in a web worker that its standalone bundle carries inline and
#: starts from a blob: URL (made by its own script from 'self'; nothing is fetched). Only its
#: page may start one, and no other kind of worker; elsewhere workers stay refused.
REDOC_POLICY = f"{CONTENT_SECURITY_POLICY}; worker-src blob:"


def _headers(policy: str) -> list[tuple[bytes, bytes]]:
    return [
        (b"content-security-policy", policy.encode()),
        (b"x-content-type-options", b"nosniff"),
        (b"referrer-policy", b"same-origin"),
        (b"x-frame-options", b"DENY"),
    ]


_HEADERS = _headers(CONTENT_SECURITY_POLICY)
_REDOC_HEADERS = _headers(REDOC_POLICY)


class SecurityHeaders:
    """Adds the security headers as each response starts (a plain ASGI middleware: no extra
    task or streaming per request, which `@app.middleware("http")` costs)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = str(scope.get("path", ""))
        static = path.startswith(("/static", "/assets"))
        security = _REDOC_HEADERS if path == api_docs.REDOC_PAGE else _HEADERS

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {k.lower() for k, _ in headers}
                extra = security if static else [*security, (b"cache-control", b"no-store")]
                headers += [(k, v) for k, v in extra if k not in present]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, with_headers)
