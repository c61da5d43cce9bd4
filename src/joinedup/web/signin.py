"""Signing in and out: the sign-in page and session cookie, API tokens, and who you are."""

from __future__ import annotations

import hmac
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, Request, Response
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse
from pydantic import BaseModel, Field

from joinedup.web.access import User
from joinedup.web.site import (
    SESSION_COOKIE,
    access,
    api_user,
    client,
    csrf_token,
    render,
    site,
    token_of,
)

router = APIRouter()


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


def safe_next(target: str | None) -> str:
    # Only a path on this site: not "//host" or "/\\host", which browsers take as another.
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target


@router.get("/login", response_class=HTMLResponse, include_in_schema=False)
def login_page(request: Request, next: str | None = None) -> HTMLResponse:
    return render(request, "login.html.j2", None, next=safe_next(next), error=None)


@router.post("/login", include_in_schema=False)
def login(
    request: Request,
    username: Annotated[str, Form()] = "",
    password: Annotated[str, Form()] = "",
    next: Annotated[str, Form()] = "/",
) -> Response:
    settings = site(request).settings
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
    target = safe_next(next)
    if target == "/" and result.user.may("my_record"):  # a citizen's home is their record
        target = "/my-record"
    redirect = RedirectResponse(target, status_code=303)
    redirect.set_cookie(
        SESSION_COOKIE, result.token, httponly=True, samesite="lax",
        secure=settings.secure_cookies, max_age=int(settings.session_hours * 3600),
    )  # fmt: skip
    return redirect


@router.post("/logout", include_in_schema=False)
def logout(request: Request, csrf: Annotated[str, Form()] = "") -> Response:
    token = request.cookies.get(SESSION_COOKIE)
    if token and hmac.compare_digest(csrf, csrf_token(request)):
        access(request).sign_out(token)
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE)
    return response


@router.post(
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
    hours = site(request).settings.session_hours
    return TokenOut(access_token=result.token, expires_in=int(hours * 3600))


@router.delete("/api/v1/token", status_code=204, tags=["access"])
def api_sign_out(request: Request, user: Annotated[User, Depends(api_user)]) -> Response:
    """Sign out: the token stops working."""
    token = token_of(request)
    if token:
        access(request).sign_out(token)
    return Response(status_code=204)


@router.get("/api/v1/me", response_model=UserOut, tags=["access"])
def me(user: Annotated[User, Depends(api_user)]) -> dict[str, Any]:
    """Who you are signed in as and what you may see."""
    return user.public()
