"""Sending one message over one channel, and telling a failure worth retrying from one that
is not.

Which library sends what, and why:

- e-mail goes through apprise (SMTP, TLS/STARTTLS, login and provider presets are its
  job); the stable message id travels as the X-Watergrid-Message-Id mail header.
- WeCom and DingTalk group robots, the generic webhook and the SMS gateway are small httpx
  calls written here. apprise's plugins for them answer only True/False, so a 400 (never
  retry) and a 503 (retry) look alike; its robot plugins also count any HTTP 200 as
  success, while both robots report refusals (bad key, rate limit, keyword check) as an
  errcode inside a 200 body, so a refused message would be logged as sent; and they cannot
  carry our message-id header.

A sender returns normally on success and raises TransientError or PermanentError otherwise;
anything else it raises is treated as transient by the worker.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

import httpx

from watergrid.notify.settings import NotifySettings, get_notify_settings

log = logging.getLogger("watergrid.notify.channels")

MESSAGE_ID_HEADER = "X-Watergrid-Message-Id"
ErrorClass = Literal["transient", "permanent"]

# Robot errcodes (in an HTTP 200 body) that clear up by themselves; all others mean the
# robot refuses this message or this address and will keep refusing it.
WECOM_TRANSIENT_ERRCODES = frozenset({-1, 45009, 45033})  # busy, rate limit, concurrency
DINGTALK_TRANSIENT_ERRCODES = frozenset({-1, 130101})  # busy, more than 20 a minute


@dataclass(frozen=True)
class Envelope:
    """What a sender needs, copied out of the outbox row so no session is held open (and no
    lazy load can happen) while a slow receiver is waited for."""

    message_id: str
    channel: str
    address: str
    subject: str
    body: str
    link: str | None
    topic: str
    subject_type: str
    subject_id: str
    attempt: int


class DeliveryError(Exception):
    error_class: ErrorClass = "transient"

    def __init__(self, detail: str, *, retry_after_s: float | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        # A receiver's Retry-After, honoured as the least delay before the next attempt.
        self.retry_after_s = retry_after_s


class TransientError(DeliveryError):
    """Worth trying again later: the receiver is down, slow, busy or rate-limiting."""

    error_class: ErrorClass = "transient"


class PermanentError(DeliveryError):
    """Trying again would fail the same way: bad address, refused content, missing
    configuration. Recorded and not retried."""

    error_class: ErrorClass = "permanent"


Sender = Callable[[Envelope], None]


def classify_status(status: int) -> ErrorClass | None:
    """None for success. 408 and 429 are the client errors that say "later, not never"."""
    if 200 <= status < 300:
        return None
    if status >= 500 or status in (408, 429):
        return "transient"
    # 4xx, and 3xx too: we do not follow redirects, and a moved endpoint needs a new address.
    return "permanent"


def _retry_after(response: httpx.Response) -> float | None:
    raw = response.headers.get("retry-after", "").strip()
    return float(raw) if raw.isdigit() else None


def _snippet(data: bytes | str, limit: int = 300) -> str:
    text = data.decode("utf-8", "replace") if isinstance(data, bytes) else data
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def render_text(env: Envelope, *, prefix: str = "", base_url: str = "") -> str:
    """The plain text of a robot or SMS message: prefix + subject, body, absolute link."""
    parts = [f"{prefix}{env.subject}".strip()]
    if env.body.strip():
        parts.append(env.body.strip())
    if env.link:
        parts.append(absolute_link(env.link, base_url))
    return "\n".join(p for p in parts if p)


def absolute_link(link: str, base_url: str) -> str:
    return base_url.rstrip("/") + link if link.startswith("/") and base_url else link


class ChannelSender:
    """The default sender: routes an Envelope to its channel. One instance per worker; it
    keeps one HTTP connection pool, so call close() when done."""

    def __init__(
        self,
        settings: NotifySettings | None = None,
        *,
        base_url: str | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.settings = settings or get_notify_settings()
        if base_url is None:
            from watergrid.settings import get_settings

            base_url = get_settings().public_base_url
        self.base_url = base_url
        self.http = httpx.Client(
            timeout=httpx.Timeout(self.settings.http_timeout_s),
            follow_redirects=False,
            transport=transport,
            headers={"User-Agent": "watergrid-notify/1"},
        )
        self._routes: dict[str, Sender] = {
            "inapp": self._inapp,
            "wecom": self._wecom,
            "dingtalk": self._dingtalk,
            "email": self._email,
            "webhook": self._webhook,
            "sms": self._sms,
        }

    def __call__(self, env: Envelope) -> None:
        route = self._routes.get(env.channel)
        if route is None:
            raise PermanentError(f"unknown channel {env.channel!r}")
        route(env)

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> ChannelSender:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- HTTP plumbing ---------------------------------------------------------------

    def _post(
        self,
        env: Envelope,
        url: str,
        payload: dict[str, Any],
        headers: dict[str, str] | None = None,
        sign_with: str = "",
    ) -> httpx.Response:
        """POST JSON with the message id header (and, given a secret, an HMAC of exactly
        the bytes sent); raise the classified error for anything but a 2xx."""
        if not url:
            raise PermanentError(f"no address for channel {env.channel}")
        raw = json.dumps(payload, ensure_ascii=False).encode()
        all_headers = {
            "Content-Type": "application/json; charset=utf-8",
            MESSAGE_ID_HEADER: env.message_id,
            **(headers or {}),
        }
        if sign_with:
            digest = hmac.new(sign_with.encode(), raw, hashlib.sha256).hexdigest()
            all_headers["X-Watergrid-Signature"] = f"sha256={digest}"
        try:
            response = self.http.post(url, content=raw, headers=all_headers)
        except (httpx.UnsupportedProtocol, httpx.InvalidURL, httpx.LocalProtocolError) as exc:
            raise PermanentError(f"bad address: {exc}") from exc
        except httpx.TimeoutException as exc:
            raise TransientError(f"timeout after {self.settings.http_timeout_s:g} s") from exc
        except httpx.TransportError as exc:
            raise TransientError(f"connection failed: {type(exc).__name__}: {exc}") from exc
        verdict = classify_status(response.status_code)
        if verdict == "transient":
            raise TransientError(
                f"HTTP {response.status_code}: {_snippet(response.content)}",
                retry_after_s=_retry_after(response),
            )
        if verdict == "permanent":
            raise PermanentError(f"HTTP {response.status_code}: {_snippet(response.content)}")
        return response

    @staticmethod
    def _errcode(response: httpx.Response) -> tuple[int, str]:
        """The robots' own verdict. A body without errcode (a proxy, a test sink) counts as
        success: the HTTP layer already said 2xx."""
        try:
            data = response.json()
        except ValueError:
            return 0, ""
        if not isinstance(data, dict):
            return 0, ""
        try:
            code = int(data.get("errcode", 0))
        except (TypeError, ValueError):
            code = 0
        return code, str(data.get("errmsg", ""))

    def _text(self, env: Envelope) -> str:
        return render_text(env, prefix=self.settings.text_prefix, base_url=self.base_url)

    # -- channels --------------------------------------------------------------------

    def _inapp(self, env: Envelope) -> None:
        # The inbox item was written with the outbox row; there is nothing left to send.
        return None

    def _wecom(self, env: Envelope) -> None:
        """WeCom group robot; the address is its webhook URL (…/webhook/send?key=…)."""
        response = self._post(
            env, env.address, {"msgtype": "text", "text": {"content": self._text(env)}}
        )
        code, msg = self._errcode(response)
        if code == 0:
            return
        if code in WECOM_TRANSIENT_ERRCODES:
            raise TransientError(f"wecom errcode {code}: {msg}", retry_after_s=60.0)
        raise PermanentError(f"wecom errcode {code}: {msg}")

    def _dingtalk(self, env: Envelope) -> None:
        """DingTalk group robot; the address is its webhook URL (…/robot/send?access_token=…).
        A robot secured by signature (加签) needs its secret in dingtalk_secrets."""
        url = env.address
        token = parse_qs(urlsplit(url).query).get("access_token", [""])[0]
        secret = self.settings.dingtalk_secrets.get(token)
        if secret:
            url = _with_query(url, dingtalk_signature(secret, now_ms=int(time.time() * 1000)))
        response = self._post(env, url, {"msgtype": "text", "text": {"content": self._text(env)}})
        code, msg = self._errcode(response)
        if code == 0:
            return
        if code in DINGTALK_TRANSIENT_ERRCODES:
            raise TransientError(f"dingtalk errcode {code}: {msg}", retry_after_s=60.0)
        raise PermanentError(f"dingtalk errcode {code}: {msg}")

    def _webhook(self, env: Envelope) -> None:
        """Generic JSON webhook for outside systems; any 2xx is success."""
        payload = {
            "message_id": env.message_id,
            "topic": env.topic,
            "subject": env.subject,
            "body": env.body,
            "link": absolute_link(env.link, self.base_url) if env.link else None,
            "subject_type": env.subject_type,
            "subject_id": env.subject_id,
            "attempt": env.attempt,
        }
        self._post(
            env,
            env.address,
            payload,
            {"X-Watergrid-Topic": env.topic},
            sign_with=self.settings.webhook_secret,
        )

    def _sms(self, env: Envelope) -> None:
        """HTTP SMS gateway: POST {message_id, to, text}; any 2xx is success."""
        url = self.settings.sms_url
        if not url:
            raise PermanentError("SMS is not configured: set WATERGRID_NOTIFY_SMS_URL")
        headers = {}
        if self.settings.sms_token:
            headers["Authorization"] = f"Bearer {self.settings.sms_token}"
        payload = {"message_id": env.message_id, "to": env.address, "text": self._text(env)}
        self._post(env, url, payload, headers)

    def _email(self, env: Envelope) -> None:
        import apprise

        if not self.settings.smtp_url:
            raise PermanentError("e-mail is not configured: set WATERGRID_NOTIFY_SMTP_URL")
        if "@" not in env.address:
            raise PermanentError("not an e-mail address")
        url = email_url(
            self.settings.smtp_url,
            to=env.address,
            message_id=env.message_id,
            timeout_s=self.settings.http_timeout_s,
        )
        plugin = apprise.Apprise.instantiate(url)
        if plugin is None:
            raise PermanentError("WATERGRID_NOTIFY_SMTP_URL is not a valid apprise mail URL")
        body = env.body
        if env.link:
            body = f"{body}\n\n{absolute_link(env.link, self.base_url)}"
        with apprise.LogCapture(level=logging.DEBUG) as captured:
            ok = plugin.notify(body=body or env.subject, title=env.subject)
        if ok:
            return
        # apprise answers only True/False; the SMTP reply code survives only in its log. A
        # 5xx reply there (mailbox unknown, relay refused) will not change on retry; with
        # no code to go by (server down, or a future apprise logging differently), retry,
        # bounded by max_attempts.
        logtext = captured.getvalue().replace(env.address, "<recipient>")
        reason = "SMTP delivery failed: " + _apprise_reason(logtext)
        if _SMTP_PERMANENT.search(logtext):
            raise PermanentError(reason)
        raise TransientError(reason)


# smtplib's refusals as apprise logs them, e.g. {'<recipient>': (550, b'no such user')}
# or (554, b'...'): the reply code right after an opening parenthesis.
_SMTP_PERMANENT = re.compile(r"\(5\d\d, b['\"]")


def _apprise_reason(logtext: str) -> str:
    lines = [ln.split(" - ", 2)[-1] for ln in logtext.splitlines()]
    wanted = [
        ln for ln in lines if "Exception" in ln or "failed" in ln.lower() or "error" in ln.lower()
    ]
    return _snippet(" | ".join(wanted[-3:]) or "apprise reported failure")


def _with_query(url: str, extra: dict[str, str]) -> str:
    parts = urlsplit(url)
    query = parts.query + ("&" if parts.query else "") + urlencode(extra)
    return urlunsplit(parts._replace(query=query))


def dingtalk_signature(secret: str, *, now_ms: int) -> dict[str, str]:
    """timestamp and sign query parameters of a DingTalk robot secured by signature:
    base64(HMAC-SHA256(key=secret, msg=f"{timestamp}\\n{secret}"))."""
    digest = hmac.new(secret.encode(), f"{now_ms}\n{secret}".encode(), hashlib.sha256).digest()
    return {"timestamp": str(now_ms), "sign": base64.b64encode(digest).decode()}


def email_url(smtp_url: str, *, to: str, message_id: str, timeout_s: float) -> str:
    """The configured apprise mail URL with this message's recipient, its message-id
    header (apprise's "+Name=value" argument) and our connect timeout added."""
    extra = {"to": to, "+" + MESSAGE_ID_HEADER: message_id}
    if "cto=" not in urlsplit(smtp_url).query:
        extra["cto"] = f"{timeout_s:g}"
    return _with_query(smtp_url, extra)
