"""Memory of a deployment's processes, sampled once a second from /proc (Linux).

Every process started by the bench is a root; its descendants (uvicorn's workers, the MQTT
receiver process, multiprocessing's resource tracker) are found through
/proc/<pid>/task/<tid>/children on every sample, so a process that appears late (a receiver
replaced after a crash) is still seen. For each process the peak resident memory is the
kernel's own high-water mark (VmHWM), which catches a spike between two samples; the
current RSS is kept at the first and the last sample so growth over the run shows too."""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path


def _status(pid: int) -> dict[str, int]:
    out: dict[str, int] = {}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(("VmHWM:", "VmRSS:")):
                out[line.split(":", 1)[0]] = int(line.split()[1])
    except OSError:
        pass
    return out


def _children(pid: int) -> list[int]:
    out: list[int] = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for tid in tasks:
        try:
            out += [int(p) for p in Path(f"/proc/{pid}/task/{tid}/children").read_text().split()]
        except OSError:
            continue
    return out


def _cmdline(pid: int) -> str:
    try:
        return (
            Path(f"/proc/{pid}/cmdline")
            .read_bytes()
            .replace(b"\0", b" ")
            .decode("utf-8", "replace")
        )
    except OSError:
        return ""


@dataclass
class Proc:
    pid: int
    label: str
    first_rss_kb: int = 0
    last_rss_kb: int = 0
    max_rss_kb: int = 0
    hwm_kb: int = 0
    samples: int = 0
    # (seconds since the watcher started, RSS MB) every `series_every` samples: a steady
    # climb over a long run is a leak, a plateau is a cache filling.
    series: list[tuple[float, float]] = field(default_factory=list)

    def summary(self) -> dict[str, object]:
        mb = lambda kb: round(kb / 1024, 1)  # noqa: E731
        return {
            "label": self.label,
            "pid": self.pid,
            "peak_rss_mb": mb(max(self.hwm_kb, self.max_rss_kb)),
            "rss_first_sample_mb": mb(self.first_rss_kb),
            "rss_last_sample_mb": mb(self.last_rss_kb),
            "samples": self.samples,
            "rss_series_mb": self.series,
        }


@dataclass
class Watcher:
    """Samples every `interval_s` in a thread until stop(). `roots` maps a pid to its label;
    `child_label(parent_label, index, cmdline)` names a descendant the first time it is seen."""

    roots: dict[int, str]
    interval_s: float = 1.0
    series_every: int = 15
    started: float = field(default_factory=time.monotonic)
    procs: dict[int, Proc] = field(default_factory=dict)
    load_max_1min: float = 0.0
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="procwatch", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        self.sample()  # a last one, so the high-water marks are final

    def _run(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self.interval_s)

    @staticmethod
    def child_label(parent: str, index: int, cmdline: str) -> str:
        if "resource_tracker" in cmdline:
            return f"{parent} / multiprocessing resource tracker"
        if "multiprocessing" in cmdline:
            # uvicorn's workers and the MQTT receiver are both spawned processes; which one
            # this is depends on the parent, and the caller's labels say.
            return f"{parent} / spawned process {index}"
        return f"{parent} / {cmdline[:60]}"

    def sample(self) -> None:
        self.load_max_1min = max(self.load_max_1min, os.getloadavg()[0])
        seen: set[int] = set()
        stack = [(pid, label) for pid, label in self.roots.items()]
        while stack:
            pid, label = stack.pop()
            if pid in seen:
                continue
            seen.add(pid)
            st = _status(pid)
            if not st:
                continue
            p = self.procs.get(pid)
            if p is None:
                p = self.procs[pid] = Proc(pid=pid, label=label, first_rss_kb=st.get("VmRSS", 0))
            rss = st.get("VmRSS", 0)
            p.last_rss_kb = rss
            p.max_rss_kb = max(p.max_rss_kb, rss)
            p.hwm_kb = max(p.hwm_kb, st.get("VmHWM", 0))
            if p.samples % self.series_every == 0:
                p.series.append((round(time.monotonic() - self.started), round(rss / 1024, 1)))
            p.samples += 1
            kids = sorted(_children(pid))
            spawned = 0
            for kid in kids:
                if kid in self.roots:
                    continue  # walked as a root, under its own name
                cmd = _cmdline(kid)
                if "multiprocessing" in cmd and "resource_tracker" not in cmd:
                    spawned += 1
                if kid in self.procs:
                    stack.append((kid, self.procs[kid].label))
                else:
                    stack.append((kid, self.relabel(label, spawned, cmd)))

    def relabel(self, parent: str, index: int, cmdline: str) -> str:
        return self.child_label(parent, index, cmdline)

    def summary(self) -> list[dict[str, object]]:
        return [p.summary() for p in sorted(self.procs.values(), key=lambda p: p.label)]


def wait_until(pred: object, timeout_s: float, step_s: float = 0.2) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if pred():  # type: ignore[operator]
            return True
        time.sleep(step_s)
    return bool(pred())  # type: ignore[operator]
