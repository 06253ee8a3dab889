"""Rendering pages: one Jinja environment, the language, the signed-in user, CSRF."""

from __future__ import annotations

import hashlib
import hmac
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from fastapi import Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

from watergrid.errors import AppError
from watergrid.settings import get_settings
from watergrid.web.i18n import LANG_COOKIE, language, translate

templates = Jinja2Templates(directory=Path(__file__).parent / "templates")


def local_time(value: Any, fmt: str = "%Y-%m-%d %H:%M") -> str:
    """Stored UTC, shown in the bureau's zone."""
    if value is None:
        return ""
    return str(value.astimezone(ZoneInfo(get_settings().timezone)).strftime(fmt))


templates.env.filters["local"] = local_time


def csrf_token(request: Request) -> str:
    """Bound to the session cookie (or, before login, to a per-browser cookie), so a form
    posted from another site cannot carry a valid one."""
    basis = request.cookies.get("wg_session") or request.cookies.get("wg_anon", "")
    key = get_settings().secret_key.encode()
    return hmac.new(key, ("csrf:" + basis).encode(), hashlib.sha256).hexdigest()[:32]


def check_csrf(request: Request, token: str | None, *, browser_cookie: bool = False) -> None:
    """`browser_cookie`: the form must also come with the browser's own cookie. Without
    one the token's basis is empty and the same for everyone, and a cross-site POST
    carries no cookies (SameSite=Lax): the sign-in form asks for it, so that another
    site cannot sign a browser in to an account of its choosing (login CSRF)."""
    basis = request.cookies.get("wg_session") or request.cookies.get("wg_anon")
    if browser_cookie and not basis:
        raise _csrf_refused()
    if not token or not hmac.compare_digest(token, csrf_token(request)):
        raise _csrf_refused()


def _csrf_refused() -> AppError:
    return AppError(
        403, "csrf", "Form expired or posted from elsewhere", "表单已过期，请刷新页面后重试"
    )


def render(request: Request, template: str, status: int = 200, **context: Any) -> HTMLResponse:
    lang = language(request, get_settings().default_language)
    ctx = {
        "request": request,
        "lang": lang,
        "html_lang": "zh-CN" if lang == "zh_CN" else "en",
        "t": lambda key, **v: translate(lang, key, **v),
        # A record's name in the page language: English only where one is recorded.
        "pick": lambda zh, en="": en if lang == "en" and en else zh,
        "user": getattr(request.state, "principal", None),
        "csrf": csrf_token(request),
        "settings": get_settings(),
        **context,
    }
    response = templates.TemplateResponse(request, template, ctx, status_code=status)
    if request.query_params.get("lang") == lang:
        response.set_cookie(LANG_COOKIE, lang, max_age=365 * 86400, samesite="lax")
    return response


def error_page(request: Request, exc: AppError) -> HTMLResponse:
    return render(request, "error.html", status=exc.status, error=exc)
