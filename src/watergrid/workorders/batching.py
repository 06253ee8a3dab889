"""Reports that arrive together are written together (group commit).

Each server process keeps one queue of reports waiting to be written. A writer takes every
report waiting (up to MAX_BATCH) and writes them with intake.create_orders in one
transaction on a worker thread, then answers each request with its own receipt or error.
While the writers are busy the next batch gathers, so there is no timer and no added wait:
a lone report is a batch of one, and under load a batch holds what came in during the
writes before it.

Why: a create is a dozen statements and a durable commit. One at a time, each report pays
for all of them, for a hop to a worker thread and for its share of the database's per-
statement work, and at a few hundred reports a second that was most of the cost
(docs/performance.md). Batched, the statements and the commit are paid once per batch.

What does not change: a 2xx is sent only after the report's transaction has committed; a
report that fails validation gets its own error and does not hold up the others; a retry
with the same Idempotency-Key, in the same batch or not, gets the first receipt. Should a
batch fail for another reason (a database error), each of its reports is tried again on
its own, so one bad report costs only itself; an overloaded database fails the batch at
once (503), as it would each report.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections import deque
from collections.abc import Sequence

from sqlalchemy import Connection, Engine
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from watergrid.db import is_overload
from watergrid.errors import AppError, overloaded
from watergrid.ops.metrics import INTAKE_BATCH
from watergrid.workorders import intake
from watergrid.workorders.intake import CreateRequest, Outcome
from watergrid.workorders.schemas import CreateResult

log = logging.getLogger(__name__)

# The routes whose requests wait here rather than in app.Admission: queued, a request holds
# neither a worker thread nor a connection, and the more wait, the larger the next batch.
QUEUED_ROUTES = frozenset({("POST", "/api/v1/orders")})
# Reports waiting per process before more are turned away with 503 and Retry-After (they
# would wait longer than a client should): at 64 a batch, a few seconds of work.
MAX_WAITING = 1024
# The most reports in one transaction: enough to carry a burst, few enough that one batch
# stays a short transaction.
MAX_BATCH = 64

Answer = Outcome | Exception
Bind = Engine | Connection


class IntakeQueue:
    """The queue of one event loop (one server process), written by one writer at a time.

    One, on both engines: SQLite has one writer at a time anyway (and writers waiting for
    its lock poll for it); on PostgreSQL a second writer per process halved the batches
    under load without lowering latency at 300 reports/s (docs/workorders.md)."""

    def __init__(self) -> None:
        self._waiting: deque[tuple[Bind, CreateRequest, asyncio.Future[Answer]]] = deque()
        self._writer: asyncio.Task[None] | None = None

    async def submit(self, bind: Bind, request: CreateRequest) -> CreateResult:
        if len(self._waiting) >= MAX_WAITING:
            log.warning("intake queue full: answering 503")
            raise overloaded()
        future: asyncio.Future[Answer] = asyncio.get_running_loop().create_future()
        self._waiting.append((bind, request, future))
        # A writer that has run out of work is done(): this report needs a new one.
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._drain())
        answer = await future
        if isinstance(answer, Exception):
            raise answer
        return answer

    async def _drain(self) -> None:
        while self._waiting:
            # One batch per bind: a route's is always the engine (tests pass a connection).
            bind = self._waiting[0][0]
            batch: list[tuple[CreateRequest, asyncio.Future[Answer]]] = []
            while self._waiting and self._waiting[0][0] is bind and len(batch) < MAX_BATCH:
                _, request, future = self._waiting.popleft()
                batch.append((request, future))
            INTAKE_BATCH.observe(len(batch))
            try:
                answers = await run_in_threadpool(write_batch, bind, [r for r, _ in batch])
            except BaseException:
                # Cancelled (the server stopping): write_batch itself answers every error.
                stopping = AppError(503, "shutting_down", "The server is stopping", "服务正在停止")
                for _, future in batch:
                    if not future.done():
                        future.set_exception(stopping)
                raise
            for (_, future), answer in zip(batch, answers, strict=True):
                # A client that hung up has had its future cancelled: nothing to tell it.
                if not future.done():
                    future.set_result(answer)


_queues: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, IntakeQueue] = (
    weakref.WeakKeyDictionary()
)


async def submit(db: Session, request: CreateRequest) -> CreateResult:
    """Take in one report through this process's queue: its receipt, or its error raised.
    `db` is the request's session, unused (so no I/O): the batch is written through a
    session of its own on the same bind, which for a route is the engine as a writer."""
    loop = asyncio.get_running_loop()
    queue = _queues.get(loop)
    if queue is None:
        queue = _queues[loop] = IntakeQueue()
    return await queue.submit(db.get_bind(), request)


def write_batch(bind: Bind, requests: Sequence[CreateRequest]) -> list[Answer]:
    """Write a batch in one transaction; when that fails other than from overload, each
    report on its own. An answer per request: its outcome, or the exception it gets."""
    try:
        return list(_write(bind, requests))
    except Exception as exc:
        if len(requests) == 1 or is_overload(exc):
            return [exc] * len(requests)
        log.warning(
            "a batch of reports failed; writing them one by one",
            extra={"fields": {"size": len(requests), "error": repr(exc)}},
        )
    answers: list[Answer] = []
    for r in requests:
        try:
            answers.extend(_write(bind, [r]))
        except Exception as exc:
            answers.append(exc)
    return answers


def _write(bind: Bind, requests: Sequence[CreateRequest]) -> list[Outcome]:
    # On a connection (a test's, inside its own transaction) the commit is a savepoint's.
    db = Session(bind=bind, expire_on_commit=False, join_transaction_mode="create_savepoint")
    try:
        outcomes = intake.create_orders(db, requests)
        db.commit()
        return outcomes
    except BaseException:
        db.rollback()
        raise
    finally:
        db.close()
