"""Child processes of the scale scenarios: each in a process group of its own (so a
uvicorn supervisor and its workers, or a worker and anything it spawns, go down together),
output kept in a log file that the failure message can quote."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SRC = ROOT / "src"


def child_env(**extra: str) -> dict[str, str]:
    """The test's environment without its WATERGRID_* settings (a developer's shell may
    carry some), plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("WATERGRID_")}
    env["PYTHONPATH"] = str(SRC) + os.pathsep + env.get("PYTHONPATH", "")
    env.update(extra)
    return env


@dataclass
class Child:
    name: str
    proc: subprocess.Popen[bytes]
    log: Path

    def tail(self, lines: int = 30) -> str:
        try:
            text = self.log.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def alive(self) -> bool:
        return self.proc.poll() is None


@dataclass
class Processes:
    children: list[Child] = field(default_factory=list)

    def start(self, name: str, argv: list[str], *, env: dict[str, str], log: Path) -> Child:
        fh = log.open("ab")
        try:
            proc = subprocess.Popen(
                argv,
                env=env,
                cwd=log.parent,  # not the repository: a developer's .env must not leak in
                stdin=subprocess.DEVNULL,
                stdout=fh,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        finally:
            fh.close()
        child = Child(name, proc, log)
        self.children.append(child)
        return child

    def terminate(self, child: Child, timeout_s: float = 30.0) -> int:
        """SIGTERM (finish the item in hand, hand the rest back) and wait; SIGKILL after
        `timeout_s`. Returns the exit status."""
        if child.alive():
            child.proc.send_signal(signal.SIGTERM)
        try:
            return child.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.kill(child)
            return child.proc.wait()

    def kill(self, child: Child) -> None:
        """SIGKILL the child's whole process group."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(child.proc.pid, signal.SIGKILL)
        child.proc.wait()

    def kill_all(self) -> None:
        for child in self.children:
            self.kill(child)


def worker_argv(worker_id: str, loops: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "watergrid.cli",
        "worker",
        "--worker-id",
        worker_id,
        "--loops",
        loops,
    ]


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time a live process has used so far (Linux /proc); 0 when it
    is gone. The run time of these scenarios depends on what else the machine is doing;
    CPU time says what the scenario itself cost."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    # utime and stime are fields 14 and 15 of stat(5); fields[0] here is field 3.
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wait_until(cond: Callable[[], bool], *, timeout_s: float, every_s: float = 0.5) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(every_s)
    return cond()
