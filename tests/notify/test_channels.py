"""Each channel against local receivers, without a database."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import random
import socket
from urllib.parse import parse_qs, urlsplit

import pytest
from hypothesis import given
from hypothesis import strategies as st
from tests.notify.helpers import sender_for, settings_for
from tests.notify.sink import HttpSink, Reply, SmtpSink

from watergrid.notify.api import mask_address
from watergrid.notify.channels import (
    Envelope,
    PermanentError,
    TransientError,
    classify_status,
    dingtalk_signature,
)
from watergrid.notify.jobs import backoff_delay


def _env(channel: str, address: str, **kw: object) -> Envelope:
    values: dict[str, object] = {
        "message_id": "0b4f8e0e-1111-4c33-9a7e-5a0f3c2d1e00",
        "channel": channel,
        "address": address,
        "subject": "工单升级",
        "body": "GM-2025-0001 超时未处置",
        "link": "/orders/GM-2025-0001",
        "topic": "order.escalated",
        "subject_type": "order",
        "subject_id": "GM-2025-0001",
        "attempt": 1,
    }
    values.update(kw)
    return Envelope(**values)  # type: ignore[arg-type]


def _robot_reply(errcode: int, errmsg: str = "x") -> Reply:
    return Reply(body=json.dumps({"errcode": errcode, "errmsg": errmsg}).encode())


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (200, None),
        (202, None),
        (204, None),
        (301, "permanent"),
        (400, "permanent"),
        (401, "permanent"),
        (403, "permanent"),
        (404, "permanent"),
        (408, "transient"),
        (413, "permanent"),
        (429, "transient"),
        (500, "transient"),
        (502, "transient"),
        (503, "transient"),
        (504, "transient"),
    ],
)
def test_classify_status(status: int, expected: str | None) -> None:
    assert classify_status(status) == expected


@given(attempt=st.integers(1, 200), base=st.floats(0.1, 600), cap=st.floats(1, 7200))
def test_backoff_stays_within_its_bounds(attempt: int, base: float, cap: float) -> None:
    rng = random.Random(attempt)
    delay = backoff_delay(attempt, base_s=base, cap_s=cap, rng=rng)
    ceiling = min(cap, base * 2 ** (attempt - 1))
    assert ceiling / 2 <= delay <= ceiling <= cap


def test_backoff_grows_and_is_jittered() -> None:
    rng = random.Random(1)
    delays = [backoff_delay(n, base_s=30, cap_s=3600, rng=rng) for n in range(1, 12)]
    assert delays[0] <= 30 and delays[5] > 400 and max(delays) <= 3600
    spread = {round(backoff_delay(3, base_s=30, cap_s=3600, rng=rng)) for _ in range(20)}
    assert len(spread) > 5  # workers failing together do not return together


def test_webhook_payload_headers_and_signature(sink: HttpSink) -> None:
    cfg = settings_for(sink, webhook_secret="s3cret")
    with sender_for(cfg) as send:
        send(_env("webhook", f"{sink.url}/hook", attempt=3))
    [req] = sink.requests
    assert req.headers["x-watergrid-message-id"] == "0b4f8e0e-1111-4c33-9a7e-5a0f3c2d1e00"
    assert req.headers["x-watergrid-topic"] == "order.escalated"
    expected = hmac.new(b"s3cret", req.body, hashlib.sha256).hexdigest()
    assert req.headers["x-watergrid-signature"] == f"sha256={expected}"
    assert req.json() == {
        "message_id": "0b4f8e0e-1111-4c33-9a7e-5a0f3c2d1e00",
        "topic": "order.escalated",
        "subject": "工单升级",
        "body": "GM-2025-0001 超时未处置",
        "link": "https://water.example.gov.cn/orders/GM-2025-0001",
        "subject_type": "order",
        "subject_id": "GM-2025-0001",
        "attempt": 3,
    }


def test_redirects_are_not_followed(sink: HttpSink) -> None:
    sink.plan(Reply(status=302, headers={"Location": "http://elsewhere.example/"}))
    with sender_for(settings_for(sink)) as send, pytest.raises(PermanentError, match="HTTP 302"):
        send(_env("webhook", f"{sink.url}/hook"))


def test_bad_address_is_permanent(sink: HttpSink) -> None:
    with sender_for(settings_for(sink)) as send:
        with pytest.raises(PermanentError):
            send(_env("webhook", "ftp://example.org/x"))
        with pytest.raises(PermanentError):
            send(_env("webhook", ""))
        with pytest.raises(PermanentError, match="unknown channel"):
            send(_env("fax", "123"))


def test_wecom_robot_text_and_errcodes(sink: HttpSink) -> None:
    url = f"{sink.url}/cgi-bin/webhook/send?key=abc"
    cfg = settings_for(sink, text_prefix="【光明水务】")
    sink.plan(
        _robot_reply(0, "ok"),
        _robot_reply(45009, "api freq out of limit"),
        _robot_reply(93000, "invalid webhook url"),
    )
    with sender_for(cfg) as send:
        send(_env("wecom", url))
        with pytest.raises(TransientError, match="45009"):
            send(_env("wecom", url))
        with pytest.raises(PermanentError, match="93000"):
            send(_env("wecom", url))
    first = sink.requests[0]
    assert first.path == "/cgi-bin/webhook/send?key=abc"
    assert first.headers["x-watergrid-message-id"] == "0b4f8e0e-1111-4c33-9a7e-5a0f3c2d1e00"
    assert first.json() == {
        "msgtype": "text",
        "text": {
            "content": "【光明水务】工单升级\nGM-2025-0001 超时未处置\n"
            "https://water.example.gov.cn/orders/GM-2025-0001"
        },
    }


def test_dingtalk_robot_signature_and_errcodes(sink: HttpSink) -> None:
    url = f"{sink.url}/robot/send?access_token=tok1"
    cfg = settings_for(sink, dingtalk_secrets={"tok1": "SECabc"})
    sink.plan(
        _robot_reply(0),
        _robot_reply(130101, "send too fast"),
        _robot_reply(310000, "keywords not in content"),
    )
    with sender_for(cfg) as send:
        send(_env("dingtalk", url))
        with pytest.raises(TransientError, match="130101"):
            send(_env("dingtalk", url))
        with pytest.raises(PermanentError, match="310000"):
            send(_env("dingtalk", url))
    query = parse_qs(urlsplit(sink.requests[0].path).query)
    assert query["access_token"] == ["tok1"]
    ts = query["timestamp"][0]
    digest = hmac.new(b"SECabc", f"{ts}\nSECabc".encode(), hashlib.sha256).digest()
    assert query["sign"] == [base64.b64encode(digest).decode()]
    assert sink.requests[0].json()["msgtype"] == "text"


def test_dingtalk_robot_without_secret_is_unsigned(sink: HttpSink) -> None:
    with sender_for(settings_for(sink)) as send:
        send(_env("dingtalk", f"{sink.url}/robot/send?access_token=other"))
    assert "sign=" not in sink.requests[0].path


def test_dingtalk_signature_known_answer() -> None:
    sig = dingtalk_signature("SEC000", now_ms=1700000000000)
    digest = hmac.new(b"SEC000", b"1700000000000\nSEC000", hashlib.sha256).digest()
    assert sig == {"timestamp": "1700000000000", "sign": base64.b64encode(digest).decode()}


def test_sms_gateway_token(sink: HttpSink) -> None:
    with sender_for(settings_for(sink, sms_token="tkn")) as send:
        send(_env("sms", "13800000000", link=None))
    [req] = sink.requests
    assert req.headers["authorization"] == "Bearer tkn"
    assert req.json()["text"] == "工单升级\nGM-2025-0001 超时未处置"


def test_email_through_apprise_carries_the_message_id(sink: HttpSink, smtp_sink: SmtpSink) -> None:
    smtp = f"mailto://127.0.0.1:{smtp_sink.port}?from=noreply@water.example.gov.cn&mode=insecure"
    with sender_for(settings_for(sink, smtp_url=smtp)) as send:
        send(_env("email", "duty+flood@water.example.gov.cn"))
    [mail] = smtp_sink.mails
    assert mail.recipients == ["duty+flood@water.example.gov.cn"]
    msg = mail.message
    assert msg["X-Watergrid-Message-Id"] == "0b4f8e0e-1111-4c33-9a7e-5a0f3c2d1e00"
    text = (
        msg.get_payload(decode=True)
        if not msg.is_multipart()
        else msg.get_payload(0).get_payload(decode=True)
    )
    assert "https://water.example.gov.cn/orders/GM-2025-0001" in text.decode()


def test_email_refused_recipient_is_permanent_server_down_is_transient(
    sink: HttpSink, smtp_sink: SmtpSink
) -> None:
    smtp = f"mailto://127.0.0.1:{smtp_sink.port}?from=noreply@water.example.gov.cn&mode=insecure"
    smtp_sink.refuse_rcpt = 550
    with sender_for(settings_for(sink, smtp_url=smtp)) as send:
        with pytest.raises(PermanentError, match="550") as err:
            send(_env("email", "nobody@water.example.gov.cn"))
        assert "nobody@" not in err.value.detail  # addresses stay out of the log
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    down = f"mailto://127.0.0.1:{port}?from=noreply@water.example.gov.cn&mode=insecure"
    with sender_for(settings_for(sink, smtp_url=down)) as send, pytest.raises(TransientError):
        send(_env("email", "duty@water.example.gov.cn"))
    unconfigured = settings_for(sink, smtp_url="")
    with sender_for(unconfigured) as send, pytest.raises(PermanentError, match="SMTP_URL"):
        send(_env("email", "duty@water.example.gov.cn"))


def test_inapp_needs_no_sending(sink: HttpSink) -> None:
    with sender_for(settings_for(sink)) as send:
        send(_env("inapp", ""))
    assert sink.requests == []


@pytest.mark.parametrize(
    ("channel", "address", "masked"),
    [
        ("sms", "13812345678", "138****5678"),
        ("email", "zhang.san@water.example.gov.cn", "z***@water.example.gov.cn"),
        (
            "wecom",
            "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=SECRET",
            "https://qyapi.weixin.qq.com/***",
        ),
        (
            "dingtalk",
            "https://oapi.dingtalk.com/robot/send?access_token=SECRET",
            "https://oapi.dingtalk.com/***",
        ),
        ("webhook", "not a url", "***"),
        ("inapp", "", ""),
    ],
)
def test_mask_address(channel: str, address: str, masked: str) -> None:
    assert mask_address(channel, address) == masked
