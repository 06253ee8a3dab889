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


SessionDep = Annotated[Session, Depends(get_db)]
