#!/usr/bin/env bash
# Restore a backup made by scripts/backup.sh into a NEW database.
#
#   scripts/restore.sh BACKUP TARGET_URL
#
#   BACKUP      a .dump (PostgreSQL, pg_dump custom format) or .sqlite3 (SQLite) file
#   TARGET_URL  where to restore, as a SQLAlchemy URL like WATERGRID_DATABASE_URL:
#               postgresql+psycopg://user@host:5432/watergrid_restored or sqlite:///path.db
#
# It never writes over data. PostgreSQL: the target database is created (the connecting
# role needs CREATEDB); if it exists already it must be empty, so a DBA may create it
# beforehand with the right owner. SQLite: the target file must not exist.
# Objects are owned by the role that restores, so restore as the application's role.
# Then point WATERGRID_DATABASE_URL at the target and run `watergrid migrate` (a backup of an
# older release is brought up to this release's schema; one of this release is left as is).
set -euo pipefail

usage() { sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
[ $# -eq 2 ] || usage
backup="$1"
url="$2"
[ -f "$backup" ] || { echo "restore: no such backup: $backup" >&2; exit 1; }

here="$(cd "$(dirname "$0")" && pwd)"
if [ -n "${PYTHON:-}" ]; then
    python="$PYTHON"
elif [ -x "$here/../.venv/bin/python" ]; then
    python="$here/../.venv/bin/python"
else
    python="python3"
fi

case "$url" in
    postgresql*|postgres:*)
        libpq="postgresql://${url#*://}"
        base="${libpq%%\?*}"
        query=""
        [ "$base" = "$libpq" ] || query="?${libpq#*\?}"
        name="${base##*/}"
        [ -n "$name" ] && [ "$name" != "$base" ] || { echo "restore: the URL names no database" >&2; exit 2; }
        # The server's maintenance database, to create the target from.
        maint="${base%/*}/postgres$query"

        # pg_restore --list fails on anything that is not a whole custom-format archive.
        pg_restore --list "$backup" >/dev/null

        exists="$(psql --no-psqlrc -XAt --dbname="$maint" -v ON_ERROR_STOP=1 -v name="$name" \
            <<<"SELECT count(*) FROM pg_database WHERE datname = :'name';")"
        created=0
        if [ "$exists" = "0" ]; then
            createdb --maintenance-db="$maint" "$name"
            created=1
        else
            tables="$(psql --no-psqlrc -XAt --dbname="$libpq" -v ON_ERROR_STOP=1 <<<"
                SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                WHERE c.relkind IN ('r', 'p', 'v', 'm', 'S')
                  AND n.nspname NOT IN ('pg_catalog', 'information_schema')
                  AND n.nspname NOT LIKE 'pg_toast%';")"
            if [ "$tables" != "0" ]; then
                echo "restore: database $name exists and is not empty; choose a new name" >&2
                exit 1
            fi
        fi
        # One transaction: a restore that fails half-way leaves an empty database, not half
        # a bureau's records.
        if ! pg_restore --no-owner --no-acl --exit-on-error --single-transaction \
                --dbname="$libpq" "$backup"; then
            if [ "$created" = 1 ]; then
                dropdb --maintenance-db="$maint" "$name" || true
            fi
            echo "restore: pg_restore failed; nothing was restored" >&2
            exit 1
        fi
        # A dump carries no planner statistics; without them the first queries plan blind.
        psql --no-psqlrc -Xq --dbname="$libpq" -v ON_ERROR_STOP=1 <<<"ANALYZE;"
        where="database $name"
        ;;
    sqlite:///*)
        path="${url#sqlite:///}"
        path="${path%%\?*}"
        if [ -e "$path" ]; then
            echo "restore: $path exists; restore into a new file" >&2
            exit 1
        fi
        mkdir -p "$(dirname "$path")"
        "$python" - "$backup" "$path" <<'PY'
import os
import sqlite3
import sys
from pathlib import Path

src_path, dst_path = sys.argv[1], sys.argv[2]
src = sqlite3.connect(Path(src_path).resolve().as_uri() + "?mode=ro", uri=True)
status = src.execute("PRAGMA integrity_check").fetchone()[0]
if status != "ok":
    sys.exit(f"restore: the backup fails its integrity check: {status}")
# Copied beside the target and renamed, so the target never exists half-written.
tmp = dst_path + ".partial"
dst = sqlite3.connect(tmp)
src.backup(dst)
dst.close()
src.close()
os.replace(tmp, dst_path)
PY
        where="$path"
        ;;
    *)
        echo "restore: unsupported database URL (PostgreSQL or SQLite file only)" >&2; exit 2 ;;
esac
echo "restore: $backup restored into $where" >&2
