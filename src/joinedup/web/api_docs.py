"""The API's documentation pages, Swagger UI at `/api/docs` and ReDoc at `/api/redoc`, from
copies on this host (`make assets` puts them in `static/swagger-ui` and `static/redoc`).

FastAPI's own pages load both from a CDN, which the dashboard's Content-Security-Policy
blocks (so `/api/docs` was blank); Swagger UI's page also starts it with an inline script,
which the policy blocks too, so here it is a template whose start-up is `static/api-docs.js`.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.openapi.docs import get_redoc_html
from fastapi.responses import HTMLResponse

from joinedup.web.site import site

OPENAPI_URL = "/api/openapi.json"
SWAGGER_UI_PAGE = "/api/docs"
REDOC_PAGE = "/api/redoc"
SWAGGER_UI = "/static/swagger-ui"
REDOC = "/static/redoc"
#: What the two pages need from `static`, checked when the application is made.
FILES = (
    "swagger-ui/swagger-ui-bundle.js",
    "swagger-ui/swagger-ui.css",
    "redoc/redoc.standalone.js",
    "api-docs.js",
)

router = APIRouter(include_in_schema=False)


@router.get(SWAGGER_UI_PAGE, response_class=HTMLResponse)
def swagger_ui(request: Request) -> HTMLResponse:
    """Swagger UI: every operation, tried out from the page with a bearer token."""
    app = request.app
    page = (
        site(request)
        .env.get_template("api_docs.html.j2")
        .render(
            title=f"{app.title} {app.version}: API",
            openapi_url=OPENAPI_URL,
            swagger_ui=SWAGGER_UI,
        )
    )
    return HTMLResponse(page)


@router.get(REDOC_PAGE, response_class=HTMLResponse)
def redoc(request: Request) -> HTMLResponse:
    """ReDoc: the same description as one long readable page, without web fonts."""
    app = request.app
    return get_redoc_html(
        openapi_url=OPENAPI_URL,
        title=f"{app.title} {app.version}: API reference",
        redoc_js_url=f"{REDOC}/redoc.standalone.js",
        redoc_favicon_url="/assets/images/favicon.ico",
        with_google_fonts=False,
    )


__all__ = ["FILES", "REDOC_PAGE", "SWAGGER_UI_PAGE", "router"]
