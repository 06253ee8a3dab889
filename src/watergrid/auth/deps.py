"""Who is calling, and the permission gate every route must declare.

Every route depends on exactly one of `allow(...)` or `public`; tests/test_route_permissions.py
walks the app's routes and fails on any route without one."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from fastapi import Depends, Request
from itsdangerous import BadSignature, URLSafeTimedSerializer
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from watergrid.auth import service
from watergrid.auth.models import User
from watergrid.auth.principal import Principal
from watergrid.deps import SessionDep
from watergrid.errors import forbidden, unauthenticated
from watergrid.settings import get_settings

SESSION_COOKIE = "wg_session"
GATE_ATTR = "__watergrid_gate__"


def _serializer() -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(get_settings().secret_key, salt="wg-session")


def session_cookie_value(user: User) -> str:
    return _serializer().dumps({"uid": user.id, "ver": user.session_version})


def _user_from_cookie(db: Session, raw: str) -> User | None:
    try:
        data = _serializer().loads(raw, max_age=get_settings().session_hours * 3600)
    except BadSignature:
        return None
    user = db.get(User, int(data.get("uid", 0)))
    if user is None or not user.active or user.session_version != data.get("ver"):
        return None
    return user


def _principal_for(request: Request, db: Session) -> Principal | None:
    user: User | None = None
    header = request.headers.get("authorization", "")
    if header.lower().startswith("bearer "):
        user = service.user_for_token(db, token=header[7:].strip())
    elif SESSION_COOKIE in request.cookies:
        user = _user_from_cookie(db, request.cookies[SESSION_COOKIE])
    return service.load_principal(db, user=user) if user is not None else None


async def optional_principal(request: Request, db: SessionDep) -> Principal | None:
    """The caller, or None. Async so that an anonymous call (no token, no session cookie),
    the public intake's usual case, costs no worker thread; looking a caller up reads the
    database and goes to one."""
    cached = getattr(request.state, "principal", ...)
    if cached is not ...:
        return cached
    anonymous = (
        not request.headers.get("authorization", "").lower().startswith("bearer ")
        and SESSION_COOKIE not in request.cookies
    )
    principal = None if anonymous else await run_in_threadpool(_principal_for, request, db)
    request.state.principal = principal
    return principal


def allow(*permissions: str) -> Callable[..., Awaitable[Principal]]:
    """Gate: the caller must be signed in and hold at least one of `permissions`."""

    async def gate(
        principal: Annotated[Principal | None, Depends(optional_principal)],
    ) -> Principal:
        if principal is None:
            raise unauthenticated()
        if not any(principal.can(p) for p in permissions):
            raise forbidden()
        return principal

    setattr(gate, GATE_ATTR, permissions)
    return gate


async def public(
    principal: Annotated[Principal | None, Depends(optional_principal)],
) -> Principal | None:
    """Gate for routes anyone may call (public form, tracking, health checks)."""
    return principal


setattr(public, GATE_ATTR, ("public",))


def staff(permission: str) -> Any:
    """Annotated type for a route parameter: the signed-in Principal holding `permission`."""
    return Annotated[Principal, Depends(allow(permission))]
