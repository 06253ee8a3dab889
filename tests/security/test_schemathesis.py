"""Fuzz every operation of /openapi.json with schemathesis, in-process, as the administrator
(who passes every gate, so the generated input reaches the routes' own code): no input may
produce a server error.

The examples per operation are few (the whole run must stay within a minute on the CI
machine); hypothesis derandomised, so a failure here repeats on the next run."""

from __future__ import annotations

import time

import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from tests.security.conftest import Deployment

EXAMPLES_PER_OPERATION = 6


def test_no_input_makes_a_server_error(dep: Deployment) -> None:
    started = time.monotonic()
    schema = schemathesis.openapi.from_asgi("/openapi.json", dep.app)
    admin = dep.headers["admin"]
    failures: dict[str, str] = {}
    operations = 0
    calls = 0
    statuses: dict[int, int] = {}

    def runner(op: object, label: str) -> object:
        @settings(
            max_examples=EXAMPLES_PER_OPERATION,
            deadline=None,
            derandomize=True,
            database=None,
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        @given(case=op.as_strategy())  # type: ignore[attr-defined]
        def run(case: object) -> None:
            nonlocal calls
            try:
                response = case.call(headers=admin)  # type: ignore[attr-defined]
            except Exception as exc:  # the in-process transport re-raises the server's error
                failures.setdefault(label, f"{exc!r:.200} for path={case.path_parameters}")  # type: ignore[attr-defined]
                return
            calls += 1
            statuses[response.status_code // 100] = statuses.get(response.status_code // 100, 0) + 1
            if response.status_code >= 500 and label not in failures:
                failures[label] = (
                    f"{response.status_code} for path={case.path_parameters} "  # type: ignore[attr-defined]
                    f"query={case.query} body={case.body!r:.300}"  # type: ignore[attr-defined]
                )

        return run

    for result in schema.get_all_operations():
        op = result.ok()
        operations += 1
        runner(op, f"{op.method.upper()} {op.path}")()  # type: ignore[operator]

    elapsed = time.monotonic() - started
    print(f"schemathesis: {operations} operations, {calls} calls in {elapsed:.1f} s, {statuses}")
    assert operations > 100
    assert not failures, "server errors:\n" + "\n".join(f"{k}: {v}" for k, v in failures.items())
