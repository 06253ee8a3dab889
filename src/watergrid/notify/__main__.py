"""`python -m watergrid.notify [--worker-id ID]`: a delivery worker process, until SIGTERM."""

from __future__ import annotations

import argparse

from watergrid.notify.jobs import run_worker
from watergrid.ops.logs import setup_logging
from watergrid.settings import get_settings


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m watergrid.notify")
    parser.add_argument("--worker-id", default=None, help="defaults to host:pid:random")
    args = parser.parse_args()
    settings = get_settings()
    setup_logging(level=settings.log_level, as_json=settings.log_json)
    run_worker(worker_id=args.worker_id)


if __name__ == "__main__":
    main()
