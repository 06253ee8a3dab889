"""Local receivers for delivery tests: an HTTP sink and a minimal SMTP sink.

HttpSink records every request (method, path, headers, body) and answers from a plan of
one-off replies, falling back to a default reply; a reply can be an error status, slow, or
hang past the client's timeout. SmtpSink speaks just enough SMTP for smtplib."""

from __future__ import annotations

import json
import socketserver
import threading
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from email import message_from_bytes
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(frozen=True)
class Reply:
    status: int = 200
    body: bytes = b'{"errcode":0,"errmsg":"ok"}'
    delay_s: float = 0.0
    headers: dict[str, str] = field(default_factory=dict)


OK = Reply()


def error(status: int, **kw: Any) -> Reply:
    return Reply(status=status, body=b'{"error":"injected"}', **kw)


@dataclass(frozen=True)
class Recorded:
    method: str
    path: str
    headers: dict[str, str]  # lower-cased names
    body: bytes
    at: float

    def json(self) -> Any:
        return json.loads(self.body)


class HttpSink:
    def __init__(self) -> None:
        self.requests: list[Recorded] = []
        self.default = OK
        self._plan: deque[Reply] = deque()
        self._lock = threading.Lock()
        self._closing = threading.Event()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def plan(self, *replies: Reply) -> None:
        """The next requests get these replies, in order; later ones get the default."""
        with self._lock:
            self._plan.extend(replies)

    def _next_reply(self) -> Reply:
        with self._lock:
            return self._plan.popleft() if self._plan else self.default

    def message_ids(self) -> list[str]:
        return [r.headers.get("x-watergrid-message-id", "") for r in list(self.requests)]

    def counts(self) -> Counter[str]:
        return Counter(self.message_ids())

    def wait_for(self, n: int, timeout_s: float = 10.0) -> bool:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if len(self.requests) >= n:
                return True
            time.sleep(0.01)
        return len(self.requests) >= n

    def reset(self) -> None:
        with self._lock:
            self.requests.clear()
            self._plan.clear()
            self.default = OK

    def close(self) -> None:
        self._closing.set()  # releases handlers that are "hanging"
        self._server.shutdown()
        self._server.server_close()

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        sink = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as real gateways do
            # Headers and body go out in two writes; with Nagle on, the second waits for
            # the client's delayed ACK (~40 ms a request).
            disable_nagle_algorithm = True

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                sink.requests.append(
                    Recorded(
                        method=self.command,
                        path=self.path,
                        headers={k.lower(): v for k, v in self.headers.items()},
                        body=body,
                        at=time.monotonic(),
                    )
                )
                reply = sink._next_reply()
                if reply.delay_s and sink._closing.wait(reply.delay_s):
                    return
                try:
                    self.send_response(reply.status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(reply.body)))
                    for k, v in reply.headers.items():
                        self.send_header(k, v)
                    self.end_headers()
                    self.wfile.write(reply.body)
                except OSError:
                    # The client gave up (timeout) or was killed while we "hung".
                    self.close_connection = True

            do_PUT = do_POST

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler


@dataclass(frozen=True)
class Mail:
    sender: str
    recipients: list[str]
    raw: bytes

    @property
    def message(self) -> Message:
        return message_from_bytes(self.raw)


class SmtpSink:
    """Accepts every mail, or refuses recipients with `refuse_rcpt` (e.g. 550)."""

    def __init__(self) -> None:
        self.mails: list[Mail] = []
        self.refuse_rcpt: int | None = None
        sink = self

        class Handler(socketserver.StreamRequestHandler):
            def reply(self, line: str) -> None:
                self.wfile.write(line.encode() + b"\r\n")

            def handle(self) -> None:
                self.reply("220 sink ESMTP")
                sender, rcpts = "", []
                while True:
                    raw = self.rfile.readline()
                    if not raw:
                        return
                    cmd = raw.decode("utf-8", "replace").strip()
                    verb = cmd[:4].upper()
                    if verb == "EHLO":
                        self.wfile.write(b"250-sink\r\n250 8BITMIME\r\n")
                    elif verb == "HELO":
                        self.reply("250 sink")
                    elif verb == "MAIL":
                        sender, rcpts = cmd.split(":", 1)[1].strip(" <>"), []
                        self.reply("250 OK")
                    elif verb == "RCPT":
                        if sink.refuse_rcpt:
                            self.reply(f"{sink.refuse_rcpt} no such user")
                        else:
                            rcpts.append(cmd.split(":", 1)[1].strip(" <>"))
                            self.reply("250 OK")
                    elif verb == "DATA":
                        self.reply("354 go ahead")
                        lines = []
                        while True:
                            line = self.rfile.readline()
                            if not line or line in (b".\r\n", b".\n"):
                                break
                            lines.append(line[1:] if line.startswith(b"..") else line)
                        sink.mails.append(Mail(sender, rcpts, b"".join(lines)))
                        self.reply("250 queued")
                    elif verb == "QUIT":
                        self.reply("221 bye")
                        return
                    else:  # RSET, NOOP and the rest
                        self.reply("250 OK")

        self._server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
