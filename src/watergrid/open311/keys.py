"""Issue an Open311 api_key from the command line, until the main CLI has a command for it:

    python -m watergrid.open311.keys "市民通 App"

The key is printed once; only its SHA-256 is stored (auth.service.issue_api_key)."""

from __future__ import annotations

import sys

from watergrid import db as dbmod
from watergrid.auth import service as auth_service


def issue(client_name: str, database_url: str | None = None) -> str:
    dbmod.configure(database_url)
    with dbmod.session_scope() as db:
        return auth_service.issue_api_key(db, client_name=client_name)


def main(argv: list[str]) -> int:
    if len(argv) != 1 or not argv[0].strip():
        print('usage: python -m watergrid.open311.keys "<client name>"', file=sys.stderr)
        return 2
    print(issue(argv[0].strip()[:100]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
