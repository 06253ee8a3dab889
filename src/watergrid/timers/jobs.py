"""The sweeper: the loop that runs due items. `watergrid worker` runs it in the foreground;
`watergrid serve` runs it in a thread next to the web app (start_embedded). Any number of
sweepers may share one database: claims keep them from doing the same item twice."""

from __future__ import annotations

import logging
import os
import secrets
import signal
import socket
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import timedelta
from types import FrameType

from sqlalchemy.orm import Session

from watergrid.timers.clock import Clock, SystemClock
from watergrid.timers.service import LEASE, Registry, run_due

log = logging.getLogger(__name__)

DEFAULT_INTERVAL_S = 5.0
DEFAULT_BATCH = 100


def default_worker_id() -> str:
    """host:pid:random — unique per process start, and says where a stuck claim came from."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


def sweeper_loop(
    session_factory: Callable[[], Session],
    *,
    clock: Clock,
    worker_id: str,
    interval_s: float = DEFAULT_INTERVAL_S,
    stop_event: threading.Event,
    limit: int = DEFAULT_BATCH,
    lease: timedelta = LEASE,
    registry: Registry | None = None,
) -> int:
    """Run due items until `stop_event` is set; returns how many were run. A full batch is
    followed at once by another (a backlog drains without waiting); otherwise the loop waits
    `interval_s`. On stop the item in hand is finished and the rest of the batch released.
    Database trouble is logged and retried after the interval, never fatal: the rows wait."""
    total = 0
    log.info("sweeper started", extra={"fields": {"worker_id": worker_id}})
    while not stop_event.is_set():
        try:
            ran = run_due(
                session_factory,
                worker_id=worker_id,
                now=clock.now(),
                limit=limit,
                lease=lease,
                registry=registry,
                stop_event=stop_event,
            )
        except Exception:
            log.exception("sweep failed", extra={"fields": {"worker_id": worker_id}})
            ran = 0
        total += ran
        if ran < limit:
            stop_event.wait(interval_s)
    log.info("sweeper stopped", extra={"fields": {"worker_id": worker_id, "ran": total}})
    return total


def install_stop_signals(
    stop_event: threading.Event, signals: Iterable[signal.Signals] = (signal.SIGTERM, signal.SIGINT)
) -> None:
    """Make SIGTERM/SIGINT set `stop_event` (main thread only), so the worker finishes the
    item in hand instead of dying in the middle of it."""

    def _handler(signum: int, _frame: FrameType | None) -> None:
        log.info("stop requested", extra={"fields": {"signal": signum}})
        stop_event.set()

    for sig in signals:
        signal.signal(sig, _handler)


def run_worker(
    session_factory: Callable[[], Session],
    *,
    worker_id: str | None = None,
    interval_s: float = DEFAULT_INTERVAL_S,
    limit: int = DEFAULT_BATCH,
    lease: timedelta = LEASE,
    registry: Registry | None = None,
) -> int:
    """Foreground worker (`watergrid worker`): sweeps until SIGTERM or SIGINT. Import the
    domains' jobs modules first: importing them is what registers their handlers."""
    stop = threading.Event()
    install_stop_signals(stop)
    return sweeper_loop(
        session_factory,
        clock=SystemClock(),
        worker_id=worker_id or default_worker_id(),
        interval_s=interval_s,
        stop_event=stop,
        limit=limit,
        lease=lease,
        registry=registry,
    )


@dataclass
class EmbeddedSweeper:
    thread: threading.Thread
    stop_event: threading.Event
    worker_id: str

    def stop(self, timeout: float | None = 30.0) -> bool:
        """Ask the sweeper to stop after the item in hand; True when it has."""
        self.stop_event.set()
        self.thread.join(timeout)
        return not self.thread.is_alive()


def start_embedded(
    session_factory: Callable[[], Session],
    *,
    clock: Clock | None = None,
    worker_id: str | None = None,
    interval_s: float = DEFAULT_INTERVAL_S,
    limit: int = DEFAULT_BATCH,
    lease: timedelta = LEASE,
    registry: Registry | None = None,
) -> EmbeddedSweeper:
    """A sweeper thread inside the web process (`watergrid serve`); stop it on shutdown.
    Every uvicorn worker may run one: they share the work through claims."""
    stop = threading.Event()
    wid = worker_id or default_worker_id()
    thread = threading.Thread(
        target=sweeper_loop,
        name=f"sweeper-{wid}",
        kwargs={
            "session_factory": session_factory,
            "clock": clock or SystemClock(),
            "worker_id": wid,
            "interval_s": interval_s,
            "stop_event": stop,
            "limit": limit,
            "lease": lease,
            "registry": registry,
        },
        # A hung handler must not keep the process alive after shutdown; its claim comes
        # back after the lease.
        daemon=True,
    )
    thread.start()
    return EmbeddedSweeper(thread, stop, wid)
