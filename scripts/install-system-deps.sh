#!/bin/sh
# System packages the tests need, from Debian's archive:
#   chromium        driven by Playwright (no browser download)
#   fonts-noto-cjk  without it Chinese renders as empty boxes
#   poppler-utils   pdftoppm/pdfinfo, to look at and count printed pages
#   postgresql-client  pg_dump, pg_restore, psql, createdb: scripts/backup.sh and
#                   scripts/restore.sh, and their test (tests/ops/test_backup_restore.py)
#
# Idempotent: when everything is present it prints nothing and changes nothing; otherwise it
# runs `apt-get update` once and installs only what is missing. Needs root (or sudo) only in
# that case.
set -eu

missing=""
[ -x /usr/bin/chromium ] || missing="$missing chromium"
if ! ls /usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc >/dev/null 2>&1 \
    && ! fc-list 2>/dev/null | grep -q "Noto Sans CJK"; then
    missing="$missing fonts-noto-cjk"
fi
command -v pdftoppm >/dev/null 2>&1 || missing="$missing poppler-utils"
for tool in pg_dump pg_restore psql createdb; do
    if ! command -v "$tool" >/dev/null 2>&1; then
        missing="$missing postgresql-client"
        break
    fi
done

[ -z "$missing" ] && exit 0

if [ "$(id -u)" -eq 0 ]; then
    as_root=""
elif command -v sudo >/dev/null 2>&1; then
    as_root="sudo"
else
    echo "install-system-deps: missing:$missing — run this script as root" >&2
    exit 1
fi

echo "install-system-deps: installing$missing" >&2
export DEBIAN_FRONTEND=noninteractive
$as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
# shellcheck disable=SC2086  # word splitting of the package list is intended
$as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing >&2
