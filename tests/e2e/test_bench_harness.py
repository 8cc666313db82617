"""The load benchmarks' shared harness (``benchmarks/harness``) against real processes: the instant
upstream it starts answers, ``wrk``'s output is parsed into figures that agree with each other, and
failed responses are counted as errors — the four load benchmarks report whatever this parses."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

from harness.cpu import group_cpu_s  # noqa: E402 - after the path setup
from harness.load import parse_wrk, post_script, run_wrk, run_wrk_scripts  # noqa: E402
from harness.servers import start_upstream, stop  # noqa: E402

pytestmark = pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk is not installed (apt-get install -y wrk)")


@pytest.fixture(scope="module")
def upstream():
    proc, port = start_upstream()
    yield proc, port
    stop(proc)
    assert proc.poll() is not None


def test_wrk_against_the_instant_upstream_parses_consistent_figures(upstream) -> None:
    proc, port = upstream
    cpu0 = group_cpu_s(proc.pid)
    r = run_wrk(f"http://127.0.0.1:{port}/v1/chat/completions", "bench-cheap", connections=2, duration=1)
    assert r.requests > 0 and r.errors == 0
    assert 0 < r.p50_ms <= r.p90_ms <= r.p99_ms
    assert r.rps > 0
    assert group_cpu_s(proc.pid) > cpu0  # the upstream's process group did the work


def test_failed_responses_count_as_errors(upstream) -> None:
    _, port = upstream
    a, b = run_wrk_scripts(
        [
            (f"http://127.0.0.1:{port}/v1/chat/completions", post_script('{"model": "m", "messages": []}')),
            (f"http://127.0.0.1:{port}/v1/nowhere", post_script("{}")),  # the upstream answers 404
        ],
        connections=1,
        duration=1,
    )
    assert a.requests > 0 and a.errors == 0
    assert b.requests > 0 and b.errors == b.requests


def test_parse_wrk_leaves_missing_figures_nan() -> None:
    r = parse_wrk("unable to connect to 127.0.0.1:9 Connection refused\n")
    assert r.requests == 0 and r.errors == 0
    assert r.p50_ms != r.p50_ms and r.rps != r.rps  # NaN, not a made-up number
