"""The background work of a deployment, in one place: the timers sweeper (deadlines,
reminders, escalation, call timeouts), outbox delivery and sensor ingestion.

`watergrid worker` runs them in the foreground until SIGTERM; `watergrid serve` runs them
inside the web process for the embedded (SQLite) default. Several workers may run at once:
every loop claims its rows with conditional updates, so none acts twice on one item."""

from __future__ import annotations

import importlib
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from watergrid.db import session_factory, session_scope, utcnow

log = logging.getLogger("watergrid.worker")

# Importing a domain's jobs module registers its due-item handlers with the timers registry.
JOB_MODULES = (
    "watergrid.workorders.jobs",
    "watergrid.inspections.jobs",
    "watergrid.permits.jobs",
    "watergrid.flood.calls",
    "watergrid.flood.wiring",
)
LOOPS = ("timers", "notify", "mqtt")


def register_handlers() -> list[str]:
    loaded = []
    for name in JOB_MODULES:
        try:
            importlib.import_module(name)
        except ModuleNotFoundError as exc:
            # Only a missing module of our own is tolerated (a domain not installed);
            # a missing third-party import inside it must still fail loudly.
            if exc.name != name:
                raise
            continue
        loaded.append(name)
    return loaded


def _arm_standing_jobs(modules: list[str]) -> None:
    """Jobs that re-arm themselves (the flood response sweep) must have been armed once:
    `watergrid demo` does it for the demo, but a deployment set up with `migrate` and its own
    registry would otherwise never run them. A job module may define
    `on_worker_start(db, now)`, which must be idempotent (several workers start)."""
    for name in modules:
        hook = getattr(importlib.import_module(name), "on_worker_start", None)
        if hook is None:
            continue
        try:
            with session_scope() as db:
                hook(db, utcnow())
        except Exception:
            # A worker that cannot arm a standing job still has deadlines to keep.
            log.exception("arming the standing jobs of %s failed", name)


@dataclass
class Worker:
    stop_event: threading.Event = field(default_factory=threading.Event)
    threads: list[threading.Thread] = field(default_factory=list)

    def stop(self, timeout: float = 30.0) -> None:
        self.stop_event.set()
        for t in self.threads:
            t.join(timeout)

    def join(self) -> list[str]:
        """Wait until every loop has ended; returns the names of those that crashed. A loop
        that ends while no stop was asked for has crashed (its traceback is on stderr): the
        others are stopped too, so the process exits and its supervisor restarts the whole
        worker instead of it living on with, say, timers but no delivery."""
        crashed: list[str] = []
        while True:
            for t in self.threads:
                t.join(0.5)
                if not t.is_alive() and not self.stop_event.is_set():
                    crashed.append(t.name)
                    log.error(
                        "worker loop ended unexpectedly; stopping",
                        extra={"fields": {"loop": t.name}},
                    )
                    self.stop_event.set()
            if not any(t.is_alive() for t in self.threads):
                return crashed


def _loop_targets(worker_id: str, stop: threading.Event) -> dict[str, Callable[[], object]]:
    from watergrid.notify.jobs import delivery_loop
    from watergrid.timers.clock import SystemClock
    from watergrid.timers.jobs import sweeper_loop

    factory = session_factory()
    targets: dict[str, Callable[[], object]] = {
        "timers": lambda: sweeper_loop(
            factory, clock=SystemClock(), worker_id=worker_id, stop_event=stop
        ),
        "notify": lambda: delivery_loop(
            factory, clock=utcnow, worker_id=worker_id, stop_event=stop
        ),
    }
    try:
        from watergrid.flood.mqtt import run_consumer
    except ModuleNotFoundError:
        pass
    else:
        targets["mqtt"] = lambda: run_consumer(factory, stop_event=stop)
    return targets


def start(*, worker_id: str, loops: tuple[str, ...] = LOOPS) -> Worker:
    loaded = register_handlers()
    if "timers" in loops:
        _arm_standing_jobs(loaded)
    worker = Worker()
    for name, target in _loop_targets(worker_id, worker.stop_event).items():
        if name not in loops:
            continue
        t = threading.Thread(target=target, name=f"{name}-{worker_id}", daemon=True)
        t.start()
        worker.threads.append(t)
    log.info(
        "worker started",
        extra={"fields": {"worker_id": worker_id, "loops": [t.name for t in worker.threads]}},
    )
    return worker
