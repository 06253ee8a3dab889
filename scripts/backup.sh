#!/usr/bin/env bash
# Back up the watergrid database to one file.
#
#   scripts/backup.sh [-u DATABASE_URL] [-o FILE_OR_DIR] [-k DAYS]
#
#   -u  database to back up; default $WATERGRID_DATABASE_URL (the variable the app reads,
#       so `set -a; . /etc/watergrid/watergrid.env; set +a` first is enough)
#   -o  file to write, or a directory to write a timestamped file into; default var/backups/
#   -k  after a successful backup, delete this script's backups older than DAYS from that
#       directory (only files named watergrid-*.dump / watergrid-*.sqlite3)
#
# PostgreSQL: `pg_dump --format=custom` (compressed, restored selectively and in any order
# by pg_restore; see scripts/restore.sh). SQLite: the online backup API, which copies a
# consistent snapshot while the app keeps writing — copying the file with cp would not.
#
# The path of the backup is printed on stdout, and nothing else, so callers can capture it.
# Backups hold personal data (reporters' phone numbers): they are written readable by the
# owner only.
set -euo pipefail

usage() { sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }

url="${WATERGRID_DATABASE_URL:-}"
out="var/backups/"
keep_days=""
while getopts "u:o:k:h" opt; do
    case "$opt" in
        u) url="$OPTARG" ;;
        o) out="$OPTARG" ;;
        k) keep_days="$OPTARG" ;;
        *) usage ;;
    esac
done
shift $((OPTIND - 1))
[ $# -eq 0 ] || usage
[ -n "$url" ] || { echo "backup: no database: pass -u or set WATERGRID_DATABASE_URL" >&2; exit 2; }
if [ -n "$keep_days" ] && ! [[ "$keep_days" =~ ^[0-9]+$ ]]; then
    echo "backup: -k takes a whole number of days" >&2; exit 2
fi

here="$(cd "$(dirname "$0")" && pwd)"
# The project's interpreter when there is one; the SQLite path needs only the standard library.
if [ -n "${PYTHON:-}" ]; then
    python="$PYTHON"
elif [ -x "$here/../.venv/bin/python" ]; then
    python="$here/../.venv/bin/python"
else
    python="python3"
fi

umask 077
stamp="$(date -u +%Y%m%dT%H%M%SZ)"

case "$url" in
    postgresql*|postgres:*)
        # SQLAlchemy's "postgresql+psycopg://" is libpq's "postgresql://".
        libpq="postgresql://${url#*://}"
        base="${libpq%%\?*}"
        name="${base##*/}"
        ext="dump"
        ;;
    sqlite:///*)
        path="${url#sqlite:///}"
        path="${path%%\?*}"
        [ -f "$path" ] || { echo "backup: no SQLite database at $path" >&2; exit 1; }
        name="$(basename "$path" .db)"
        ext="sqlite3"
        ;;
    *)
        echo "backup: unsupported database URL (PostgreSQL or SQLite file only)" >&2; exit 2 ;;
esac

if [ -d "$out" ] || [[ "$out" == */ ]]; then
    dir="${out%/}"
    mkdir -p "$dir"
    target="$dir/watergrid-$name-$stamp.$ext"
else
    dir="$(dirname "$out")"
    mkdir -p "$dir"
    target="$out"
fi
# Written under a temporary name and renamed at the end: a backup file that exists is whole.
tmp="$target.partial"
trap 'rm -f "$tmp"' EXIT

if [ "$ext" = "dump" ]; then
    pg_dump --format=custom --file="$tmp" --dbname="$libpq"
    # Reading the archive's table of contents proves the file is a complete archive.
    pg_restore --list "$tmp" >/dev/null
else
    "$python" - "$path" "$tmp" <<'PY'
import sqlite3
import sys

src_path, dst_path = sys.argv[1], sys.argv[2]
src = sqlite3.connect(src_path)
dst = sqlite3.connect(dst_path)
src.backup(dst)
src.close()
# One self-contained file: the copy does not need a -wal file beside it.
dst.execute("PRAGMA journal_mode=DELETE")
status = dst.execute("PRAGMA integrity_check").fetchone()[0]
dst.close()
if status != "ok":
    sys.exit(f"backup: integrity check of the copy failed: {status}")
PY
fi
mv "$tmp" "$target"
trap - EXIT

if [ -n "$keep_days" ]; then
    find "$dir" -maxdepth 1 -type f \( -name 'watergrid-*.dump' -o -name 'watergrid-*.sqlite3' \) \
        -mtime +"$keep_days" ! -path "$target" -delete
fi
echo "$target"
