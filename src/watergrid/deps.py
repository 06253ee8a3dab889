"""FastAPI dependencies shared by every domain's routes."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.orm import Session

from watergrid.db import begin_write, session_factory

SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}


def get_db(request: Request) -> Iterator[Session]:
    """One session per request; write methods begin as writers and commit at the end."""
    session = session_factory()()
    if request.method not in SAFE_METHODS:
        begin_write(session)
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


# scope="function": the commit happens when the route returns, before the response is sent,
# so a 2xx is only ever sent for a change that is already durable. A streamed response that
# reads after the route returns must open its own session (db.session_scope).
SessionDep = Annotated[Session, Depends(get_db, scope="function")]
