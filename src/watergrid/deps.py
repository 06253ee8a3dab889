"""FastAPI dependencies shared by every domain's routes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from watergrid.db import new_session

SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}


async def get_db(request: Request) -> AsyncIterator[Session]:
    """One session per request; write methods begin as writers and commit at the end.

    Async on purpose: making the session touches no database, and a route that committed
    itself leaves nothing to do at the end, so neither step needs a worker thread (each
    hop to one costs every request CPU and a wait, docs/performance.md). Commit, rollback
    and the close of a session still holding a connection are blocking calls and go to a
    worker thread."""
    session = new_session(write=request.method not in SAFE_METHODS)
    try:
        yield session
        if session.in_transaction():
            await run_in_threadpool(session.commit)
    except BaseException:
        if session.in_transaction():
            await run_in_threadpool(session.rollback)
        raise
    finally:
        # Without a transaction the session holds no connection: closing it is no I/O.
        if session.in_transaction():
            await run_in_threadpool(session.close)
        else:
            session.close()


# scope="function": the commit happens when the route returns, before the response is sent,
# so a 2xx is only ever sent for a change that is already durable. A streamed response that
# reads after the route returns must open its own session (db.session_scope).
SessionDep = Annotated[Session, Depends(get_db, scope="function")]
