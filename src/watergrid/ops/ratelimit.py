"""Rate limit on the public intake: a token bucket per client address.

Only the anonymous ways in are limited — the public report form, an unauthenticated
`POST /api/v1/orders`, the public photo upload, the Open311 `POST requests`, tracking, and
the permit applicant's forms (LIMITED_PATHS) — because they are the ones anybody on the
internet can script. Staff (a valid bearer token or session cookie) are never limited here:
they are few, known, and need to act quickly on a storm night.

A pure ASGI middleware, not BaseHTTPMiddleware: it sits in front of the intake, whose
throughput matters (docs/performance.md), and costs a dict lookup per request. The buckets
live in the process; with N app workers a client gets up to N times the rate, which is fine
for a limit meant to stop floods from one address, not to meter fair use. Behind a proxy the
client address is what uvicorn's --proxy-headers makes of X-Forwarded-For."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable

from itsdangerous import BadData
from starlette.concurrency import run_in_threadpool
from starlette.requests import cookie_parser
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from watergrid.auth.deps import SESSION_COOKIE, _serializer
from watergrid.settings import get_settings

MESSAGE_EN = "Too many submissions from your address; please wait a moment and try again"
MESSAGE_ZH = "提交过于频繁，请稍后再试"
# Idle buckets are dropped once this many addresses are tracked, so memory stays bounded.
MAX_TRACKED = 10_000


# The anonymous ways in, exactly or by prefix. Besides submissions, the look-ups that take
# a guessable secret (an order number with the phone's last four digits, a permit number with
# its access code) are limited too, so that they cannot be tried by the thousand.
LIMITED_PATHS = frozenset(
    {
        "/report",
        "/api/v1/orders",
        "/api/v1/attachments",
        "/track",
        "/track/rate",
        "/api/v1/track",
        "/api/v1/track/rate",
        "/api/v1/permits/applications",
        "/api/v1/permits/applicant",
        "/api/v1/permits/applicant/corrections",
        "/permits/my",
        "/permits/my/corrections",
    }
)
LIMITED_PREFIXES = ("/open311/v2/requests.", "/permits/apply/")


def is_public_intake(method: str, path: str) -> bool:
    return method == "POST" and (path in LIMITED_PATHS or path.startswith(LIMITED_PREFIXES))


class TokenBuckets:
    """`burst` requests at once per key, refilled at `per_minute` per minute."""

    def __init__(
        self, *, per_minute: float, burst: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.rate = per_minute / 60.0
        self.burst = float(burst)
        self.clock = clock
        self.buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, at)

    def take(self, key: str) -> float:
        """0 when the request may go ahead; else the seconds until it would."""
        now = self.clock()
        tokens, at = self.buckets.get(key, (self.burst, now))
        tokens = min(self.burst, tokens + (now - at) * self.rate)
        if tokens >= 1.0:
            self.buckets[key] = (tokens - 1.0, now)
            if len(self.buckets) > MAX_TRACKED:
                self._prune(now)
            return 0.0
        self.buckets[key] = (tokens, now)
        return (1.0 - tokens) / self.rate

    def _prune(self, now: float) -> None:
        full = [
            k for k, (t, at) in self.buckets.items() if t + (now - at) * self.rate >= self.burst
        ]
        for k in full:
            del self.buckets[k]


def _credential(scope: Scope) -> tuple[str, str] | None:
    """("bearer", token) or ("cookie", session) when the request claims to be staff."""
    for name, value in scope.get("headers", ()):
        if name == b"authorization" and value[:7].lower() == b"bearer ":
            return "bearer", value[7:].decode("latin-1").strip()
        if name == b"cookie":
            session = cookie_parser(value.decode("latin-1")).get(SESSION_COOKIE)
            if session:
                return "cookie", session
    return None


def _valid_token(token: str) -> bool:
    from watergrid.auth import service
    from watergrid.db import session_scope

    try:
        with session_scope(write=False) as db:
            return service.user_for_token(db, token=token) is not None
    except Exception:
        # This runs before the app's error handling (a busy pool, a database restart): the
        # request is then treated as anonymous and the app answers it in its own terms.
        return False


async def _signed_in(scope: Scope) -> bool:
    """Whether the request really comes from staff. A claim alone is not enough, or any
    script could skip the limit by sending a made-up token: a session cookie must carry our
    signature (no database needed), a bearer token must exist (one lookup, in a worker
    thread; staff rarely use these routes)."""
    claim = _credential(scope)
    if claim is None:
        return False
    kind, value = claim
    if kind == "cookie":
        try:
            _serializer().loads(value, max_age=get_settings().session_hours * 3600)
        except BadData:
            return False
        return True
    return bool(await run_in_threadpool(_valid_token, value))


class IntakeRateLimit:
    def __init__(self, app: ASGIApp, *, per_minute: float, burst: int) -> None:
        self.app = app
        self.buckets = TokenBuckets(per_minute=per_minute, burst=burst)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or not is_public_intake(scope["method"], scope["path"])
            or await _signed_in(scope)
        ):
            await self.app(scope, receive, send)
            return
        client = scope.get("client")
        wait = self.buckets.take(client[0] if client else "")
        if wait <= 0:
            await self.app(scope, receive, send)
            return
        await _too_many(scope, send, retry_after=max(1, math.ceil(wait)))


async def _nothing_to_receive() -> Message:
    return {"type": "http.disconnect"}


async def _too_many(scope: Scope, send: Send, *, retry_after: int) -> None:
    path: str = scope["path"]
    accept = b""
    for name, value in scope.get("headers", ()):
        if name == b"accept":
            accept = value
    if path.startswith("/open311/"):
        # The GeoReport error list, in the format the client asked for; Chinese unless the
        # client asked for English (as the Open311 adapter answers).
        english = b"locale=en" in scope.get("query_string", b"")
        message = MESSAGE_EN if english else MESSAGE_ZH
        if path.endswith(".xml"):
            body = (
                '<?xml version="1.0" encoding="utf-8"?><errors><error><code>429</code>'
                f"<description>{message}</description></error></errors>"
            ).encode()
            ctype = b"application/xml; charset=utf-8"
        else:
            body = json.dumps([{"code": 429, "description": message}], ensure_ascii=False).encode()
            ctype = b"application/json"
    elif not path.startswith("/api/") and b"text/html" in accept:
        # The site's own error page (header, language, a way back): a resident whose report
        # was held back should see where they are, and going back keeps what they typed.
        from starlette.requests import Request

        from watergrid.errors import AppError
        from watergrid.web.render import error_page

        refused = AppError(
            429,
            "rate_limited",
            f"{MESSAGE_EN} (in about {retry_after} s)",
            f"{MESSAGE_ZH}（约 {retry_after} 秒后）",
        )
        response = error_page(Request(scope), refused)
        response.headers["Retry-After"] = str(retry_after)
        await response(scope, _nothing_to_receive, send)
        return
    else:
        err = {
            "error": {
                "code": "rate_limited",
                "message": MESSAGE_EN,
                "message_zh": MESSAGE_ZH,
                "fields": [],
            }
        }
        body = json.dumps(err, ensure_ascii=False).encode()
        ctype = b"application/json"
    await send(
        {
            "type": "http.response.start",
            "status": 429,
            "headers": [
                (b"content-type", ctype),
                (b"content-length", str(len(body)).encode()),
                (b"retry-after", str(retry_after).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def install(app: object) -> None:
    """Add the limit to `app` when the settings switch it on (intake_rate_per_minute > 0)."""
    s = get_settings()
    if s.intake_rate_per_minute > 0:
        app.add_middleware(  # type: ignore[attr-defined]
            IntakeRateLimit, per_minute=s.intake_rate_per_minute, burst=s.intake_rate_burst
        )
