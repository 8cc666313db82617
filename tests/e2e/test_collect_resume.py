"""Resume after a killed ``thrifty collect``: SIGKILL a real run mid-way, rerun, nothing lost or doubled.

Runs the real CLI in a subprocess with the built-in SmolLM2 GGUF model (1 thread, short answers).
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("llama_cpp") is None, reason="llama-cpp-python not installed (pip install 'thrifty[local]')"
)

SRC = str(Path(__file__).resolve().parents[2] / "src")
N = 14


def _cmd(prompts: Path, out: Path) -> list[str]:
    return [
        sys.executable,
        "-c",
        "from thrifty.cli.main import entry; entry()",
        "collect",
        "--prompts",
        str(prompts),
        "--models",
        "smollm2",
        "--out",
        str(out),
        "--max-tokens",
        "12",
        "--concurrency",
        "1",
        "--no-progress",
    ]


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = SRC + os.pathsep + env.get("PYTHONPATH", "")
    return env


def _rows(out: Path) -> list[dict]:
    path = out / "outcomes.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def test_sigkill_mid_run_then_resume(tmp_path):
    prompts = tmp_path / "prompts.jsonl"
    with open(prompts, "w") as fh:
        for i in range(N):
            fh.write(
                json.dumps({"prompt_id": f"p{i}", "prompt": f"Name one fruit that is {['red', 'yellow', 'green'][i % 3]} (#{i})."}) + "\n"
            )
    out = tmp_path / "run"
    proc = subprocess.Popen(_cmd(prompts, out), env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 240
    try:
        while len(_rows(out)) < 3:
            assert proc.poll() is None, f"collect exited early: {proc.communicate()}"
            assert time.monotonic() < deadline, "no answers within 240 s"
            time.sleep(0.05)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    before = _rows(out)  # the torn tail (if any) is not a row yet; the resumed run repairs it
    k = len(before)
    assert 3 <= k < N, f"the kill came too late to test resuming ({k} of {N} answered)"

    done = subprocess.run(_cmd(prompts, out), env=_env(), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    rows = _rows(out)
    pairs = [(r["prompt_id"], r["model"]) for r in rows]
    assert len(pairs) == len(set(pairs)) == N  # no duplicate, no lost pair
    assert {p for p, _ in pairs} == {f"p{i}" for i in range(N)}
    assert rows[:k] == before  # rows written before the kill are kept as they were (append-only)
    m = re.search(r"collected (\d+) answers .*\((\d+) pairs already done", done.stdout)
    assert m and int(m.group(1)) == N - k and int(m.group(2)) == k, done.stdout
    assert all(r["output_tokens"] > 0 and r["input_tokens"] > 0 for r in rows)
    # a third run has nothing left to do
    again = subprocess.run(_cmd(prompts, out), env=_env(), capture_output=True, text=True, timeout=120)
    assert again.returncode == 0 and "collected 0 answers" in again.stdout and f"({N} pairs already done" in again.stdout
