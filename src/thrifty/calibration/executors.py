"""Where batch work runs: in this process (:class:`LocalExecutor`) or on a Ray cluster (:class:`RayExecutor`).

An executor maps a module-level function ``fn(job, batch)`` over batches and yields ``(index,
result)`` pairs as batches finish, in any order. The results always come back to the driver (this
process), which alone writes the output folder: a collection's ``outcomes.jsonl``, a judge's labels,
the embedding cache. So the crash-safety and resume rules of the local run hold unchanged on a
cluster — a killed worker loses at most the batches it held (Ray runs them again elsewhere), a killed
driver loses at most the batches in flight, and a rerun skips everything already written.

``fn`` and ``job`` travel by pickle: ``fn`` by reference (every node needs the same thrifty
installed), ``job`` once per map through Ray's object store. Ray is optional (``pip install
'thrifty[ray]'``) and imported only when a :class:`RayExecutor` is made.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Protocol, TypeVar

from thrifty.errors import ConfigError, ThriftyError

__all__ = ["RAY_INSTALL_HINT", "Executor", "LocalExecutor", "RayExecutor", "make_executor"]

J = TypeVar("J")
B = TypeVar("B")
R = TypeVar("R")

RAY_INSTALL_HINT = "pip install 'thrifty[ray]' (Ray, on the driver and every node of the cluster)"
_RAY_FIX = (
    "start a cluster with `ray start --head --port 6379` (and `ray start --address HEAD:6379` on each other machine), "
    "then pass --ray HEAD:6379, or --ray auto on a machine of the cluster; leave --ray out to run here"
)


class Executor(Protocol):
    name: str

    def map_unordered(self, fn: Callable[[J, B], R], job: J, batches: Sequence[B], *, cpus: float = 1.0) -> Iterator[tuple[int, R]]:
        """``(i, fn(job, batches[i]))`` for every batch, as each finishes."""
        ...

    def close(self) -> None: ...


class LocalExecutor:
    """Batches one after another in this process (the default; what tests compare Ray against)."""

    name = "local"

    def map_unordered(self, fn: Callable[[J, B], R], job: J, batches: Sequence[B], *, cpus: float = 1.0) -> Iterator[tuple[int, R]]:
        for i, batch in enumerate(batches):
            yield i, fn(job, batch)

    def close(self) -> None:
        pass


def _call(fn: Callable[[Any, Any], Any], job: Any, batch: Any) -> Any:
    return fn(job, batch)


class RayExecutor:
    """Batches as Ray tasks on the cluster at ``address`` (``HOST:PORT`` of the head's GCS, ``auto``, or
    ``ray://HOST:PORT``). Connecting is checked here, before any work: an address that does not answer
    is a :class:`ConfigError` naming ``--ray``. At most ``in_flight`` tasks are queued at once (default:
    twice the cluster's CPUs); a task whose worker or node dies is run again (``max_retries``)."""

    name = "ray"

    def __init__(self, address: str, *, in_flight: int | None = None, max_retries: int = 3, connect_timeout_s: float = 5.0) -> None:
        self.address = address.strip()
        if not self.address:
            raise ConfigError("empty Ray address", key="--ray", fix=_RAY_FIX)
        try:
            import ray
        except ImportError as exc:
            raise ConfigError("running on a Ray cluster needs Ray", key="--ray", fix=RAY_INSTALL_HINT) from exc
        self._ray = ray
        if self.address != "auto":
            _check_reachable(self.address, connect_timeout_s)
        try:
            if not ray.is_initialized():
                # a cluster on this machine's loopback: the driver must present the same node address
                # (Ray rewrites 127.0.0.1 itself to the machine's outward IP; use 127.0.0.2 to stay on lo)
                local: dict[str, Any] = {"_node_ip_address": _loopback(self.address)} if _loopback(self.address) else {}
                ray.init(address=self.address, namespace="thrifty", log_to_driver=False, logging_level=logging.ERROR, **local)
        except Exception as exc:  # noqa: BLE001 - Ray raises ConnectionError, RuntimeError, ValueError …
            raise ConfigError(f"cannot join the Ray cluster at {self.address!r}: {exc}", key="--ray", fix=_RAY_FIX) from None
        cpus = int(ray.cluster_resources().get("CPU", 1))
        self.cpus = max(1, cpus)
        self.in_flight = in_flight or 2 * self.cpus
        self.max_retries = max_retries

    def map_unordered(self, fn: Callable[[J, B], R], job: J, batches: Sequence[B], *, cpus: float = 1.0) -> Iterator[tuple[int, R]]:
        ray = self._ray
        remote = ray.remote(_call).options(num_cpus=cpus, max_retries=self.max_retries, retry_exceptions=False)
        job_ref = ray.put(job)
        pending: dict[Any, int] = {}
        nxt = 0
        try:
            while nxt < len(batches) or pending:
                while nxt < len(batches) and len(pending) < self.in_flight:
                    pending[remote.remote(fn, job_ref, batches[nxt])] = nxt
                    nxt += 1
                done, _ = ray.wait(list(pending), num_returns=1)
                for ref in done:
                    i = pending.pop(ref)
                    yield i, self._get(ref)
        finally:
            for ref in pending:  # the driver stopped early (an error, Ctrl-C): do not leave work queued
                ray.cancel(ref, force=False)

    def _get(self, ref: Any) -> Any:
        ray = self._ray
        try:
            return ray.get(ref)
        except ray.exceptions.RayTaskError as exc:  # fn raised: re-raise what it raised
            cause = exc.as_instanceof_cause()
            raise cause from None
        except ray.exceptions.RayError as exc:  # a worker or node died more often than max_retries
            raise ThriftyError(
                f"a Ray task failed for good ({type(exc).__name__}: {exc}); what was written so far "
                "is kept: rerun the same command to resume"
            ) from None

    def close(self) -> None:
        if self._ray.is_initialized():
            self._ray.shutdown()


def _loopback(address: str) -> str | None:
    """The address's host when it is a loopback address (``localhost`` → 127.0.0.1), else None."""
    host = address.removeprefix("ray://").rpartition(":")[0].strip("[]")
    host = "127.0.0.1" if host == "localhost" else host
    try:
        return host if ipaddress.ip_address(host).is_loopback else None
    except ValueError:
        return None


def _check_reachable(address: str, timeout_s: float) -> None:
    """Fail fast (a ConfigError naming --ray) when nothing listens at ``address``; ray.init would
    otherwise retry for a long time before giving up."""
    hostport = address.removeprefix("ray://")
    host, sep, port = hostport.rpartition(":")
    if not sep or not port.isdigit() or not host:
        raise ConfigError(
            f"bad Ray address {address!r}",
            key="--ray",
            fix="write HOST:PORT (the head's GCS port, 6379 by default), ray://HOST:PORT or auto",
        )
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s) as sock:
            # Ray's GCS speaks gRPC: an HTTP/2 server answers the client preface with a SETTINGS frame.
            # Anything else (another service on that port) would make ray.init retry for minutes.
            sock.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00")
            head = b""
            while len(head) < 9:
                chunk = sock.recv(9 - len(head))
                if not chunk:
                    break
                head += chunk
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise ConfigError(f"no Ray cluster answers at {address} ({reason})", key="--ray", fix=_RAY_FIX) from None
    if len(head) < 9 or head[3] != 0x04:
        raise ConfigError(
            f"something answers at {address}, but not a Ray cluster (no gRPC)",
            key="--ray",
            fix="pass the head's GCS port (6379 unless `ray start --head --port` said otherwise); " + _RAY_FIX,
        )


def make_executor(ray_address: str | None) -> LocalExecutor | RayExecutor:
    """A :class:`RayExecutor` for ``--ray ADDRESS`` (joined now), else the :class:`LocalExecutor`."""
    return RayExecutor(ray_address) if ray_address else LocalExecutor()
