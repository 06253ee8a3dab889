"""Sign-in and the page shell. Domain pages live in each domain's pages.py."""

from __future__ import annotations

import secrets
from typing import Annotated

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import RedirectResponse, Response

from watergrid.auth import service as auth_service
from watergrid.auth.deps import SESSION_COOKIE, public, session_cookie_value
from watergrid.auth.principal import Principal
from watergrid.deps import SessionDep
from watergrid.settings import get_settings
from watergrid.web.render import check_csrf, render

router = APIRouter(include_in_schema=False)
Anyone = Annotated[Principal | None, Depends(public)]


def _safe_next(target: str) -> str:
    # Only same-site paths: an open redirect would let a phishing link borrow our login.
    return target if target.startswith("/") and not target.startswith("//") else "/"


@router.get("/")
def home(user: Anyone) -> Response:
    return RedirectResponse("/map" if user else "/login", status_code=303)


@router.get("/login")
def login_form(request: Request, _: Anyone, next: str = "/") -> Response:
    response = render(request, "login.html", next=_safe_next(next))
    if "wg_anon" not in request.cookies:
        # The CSRF token of the login form is bound to this cookie; set it, then re-render
        # so the token the browser receives matches the cookie it will send back.
        anon = secrets.token_urlsafe(16)
        request.cookies["wg_anon"] = anon
        response = render(request, "login.html", next=_safe_next(next))
        response.set_cookie("wg_anon", anon, httponly=True, samesite="lax")
    return response


@router.post("/login")
def login(
    request: Request,
    db: SessionDep,
    _: Anyone,
    username: Annotated[str, Form(max_length=64)],
    password: Annotated[str, Form(max_length=200)],
    csrf: Annotated[str, Form()] = "",
    next: Annotated[str, Form()] = "/",
) -> Response:
    check_csrf(request, csrf, browser_cookie=True)
    user = auth_service.authenticate(db, username=username, password=password)
    if user is None:
        return render(request, "login.html", status=401, failed=True, username=username, next=next)
    response = RedirectResponse(_safe_next(next), status_code=303)
    s = get_settings()
    response.set_cookie(
        SESSION_COOKIE,
        session_cookie_value(user),
        max_age=s.session_hours * 3600,
        httponly=True,
        secure=s.cookie_secure,
        samesite="lax",
    )
    return response


@router.post("/logout")
def logout(request: Request, _: Anyone, csrf: Annotated[str, Form()] = "") -> Response:
    check_csrf(request, csrf)
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE)
    return response
