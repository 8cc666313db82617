"""CPU seconds used by benchmark servers, read from ``/proc`` (Linux): per process group, per
process tree, per list of processes — the number that holds on a busy machine, unlike req/s."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Iterable


def _stats() -> dict[int, list[str]]:
    """Every live process's ``/proc/<pid>/stat`` fields after the command name:
    state(0) ppid(1) pgrp(2) … utime(11) stime(12) cutime(13) cstime(14)."""
    out: dict[int, list[str]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            out[int(stat.parent.name)] = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, ValueError, IndexError):
            continue
    return out


def group_cpu_s(pgid: int) -> float:
    """CPU seconds (user + system) used so far by every live process in process group ``pgid``."""
    ticks = sum(int(f[11]) + int(f[12]) for f in _stats().values() if int(f[2]) == pgid)
    return ticks / os.sysconf("SC_CLK_TCK")


def tree_cpu_s(root: int) -> float:
    """CPU seconds (user + system) of ``root`` and every live descendant, plus children ``root`` reaped."""
    stats = _stats()
    children: dict[int, list[int]] = {}
    for pid, f in stats.items():
        children.setdefault(int(f[1]), []).append(pid)
    total, todo = 0, [root]
    while todo:
        pid = todo.pop()
        if pid in stats:
            f = stats[pid]
            total += int(f[11]) + int(f[12]) + (int(f[13]) + int(f[14]) if pid == root else 0)
        todo.extend(children.get(pid, ()))
    return total / os.sysconf("SC_CLK_TCK")


def pids_cpu_s(pids: Iterable[int]) -> float:
    """CPU seconds of each of ``pids`` (own + children it waited for); gone processes count 0."""
    total = 0
    for pid in pids:
        try:
            f = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(f[11]) + int(f[12]) + int(f[13]) + int(f[14])
    return total / os.sysconf("SC_CLK_TCK")


def children_of(parent: int) -> list[int]:
    """The live processes whose parent is ``parent`` (a PostgreSQL postmaster's backends, say)."""
    return [pid for pid, f in _stats().items() if int(f[1]) == parent]


def settle(pid: int, *, idle_share: float = 0.05, timeout_s: float = 60.0) -> None:
    """Wait until the server's process tree is idle (< ``idle_share`` of a core over 0.5 s): a slow
    server is still working off the requests queued by the previous load when wrk stops, and that
    backlog would otherwise show up as the next measurement's latency."""
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        c0 = tree_cpu_s(pid)
        time.sleep(0.5)
        if tree_cpu_s(pid) - c0 < idle_share * 0.5:
            return
