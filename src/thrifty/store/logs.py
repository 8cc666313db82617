"""The request log: one ``requests`` row plus its ``steps`` rows, committed together or not at all.

A row is written only once the answer is known (after the last tier, or after the stream ended),
in one transaction: a crash or a bad input never leaves a request without its steps, and a request
that never reached a model (invalid body, unknown key, over budget) is not logged at all.

Async callers (the gateway) hand their writes to the store's one writer thread — a slow disk, a WAL
checkpoint or another process holding the write lock then delays only the queue, never the event
loop — and :meth:`LogStore.close` finishes every queued write before closing the database.
:meth:`LogStore.submit_in_transaction` is *group commit*: the writer runs every such job waiting in
its queue inside one ``BEGIN IMMEDIATE`` transaction, each under its own savepoint (a job that
raises is rolled back alone and gets its exception), and resolves their futures only after the
``COMMIT``. Under load that is one commit and one pair of thread hand-offs for many requests
instead of one per request, which is what keeps the gateway's throughput; jobs still run one at a
time, in submission order, each seeing the writes of the jobs before it.

The same store runs on SQLite (a path: the embedded default) or PostgreSQL (a ``postgresql://``
URL, shared by several gateway replicas; :mod:`thrifty.store.backend`), with the same guarantee:
a future resolves only after its transaction is committed.
"""

from __future__ import annotations

import builtins
import json
import logging
import os
import queue
import sqlite3
import threading
import time
from concurrent.futures import Future
from pathlib import Path
from typing import Any, Callable, Sequence

from thrifty.store import search
from thrifty.store.backend import SqliteBackend, open_backend
from thrifty.store.records import RequestRecord, StepRecord, insert_record, record_rows

__all__ = ["StepRecord", "RequestRecord", "LogStore"]

log = logging.getLogger("thrifty.store")


class LogStore:
    """The request log on SQLite (WAL; one connection behind a lock) or PostgreSQL (a pool). Thread-safe."""

    def __init__(self, path: str | os.PathLike, *, password_env: str | None = None) -> None:
        """``path``: a SQLite file, ``sqlite:///file`` or ``postgresql://user@host/db`` (the password
        comes from ``$password_env`` or ``$PGPASSWORD``, never from the URL in a config file)."""
        self._backend = open_backend(path, password_env=password_env)
        self.path: Path | str = self._backend.path  # the SQLite file, or the URL without its password
        self.dialect: str = self._backend.dialect
        self._queue: queue.SimpleQueue[_Task | None] = queue.SimpleQueue()
        self._writer: threading.Thread | None = None  # started by the first submit
        self._writer_guard = threading.Lock()
        self._closed = False
        # SQLite's prompt-search index takes new rows in batches, on the writer thread (thrifty.store.search)
        self._search_batches = self.dialect == "sqlite" and self.read(search.mode) == "fts5"
        self._indexed_at = time.monotonic()  # the migration indexed every row there is: next look in a second

    @property
    def connection(self) -> sqlite3.Connection:
        """The SQLite connection (use under :attr:`lock`); portable code uses :meth:`read` instead."""
        backend = self._backend
        if not isinstance(backend, SqliteBackend):
            raise RuntimeError("a PostgreSQL store has a pool, not one connection: use LogStore.read()")
        return backend.conn

    @property
    def lock(self) -> threading.Lock:
        backend = self._backend
        if not isinstance(backend, SqliteBackend):
            raise RuntimeError("a PostgreSQL store has a pool, not one lock: use LogStore.read()")
        return backend.lock

    def read(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        """``fn(connection, *args, **kwargs)`` on a connection of the calling thread (no transaction)."""
        with self._backend.session() as c:
            return fn(c, *args, **kwargs)

    def read_only(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        """``fn(connection, *args, **kwargs)`` on a read-only connection of the calling thread (SQLite:
        its own WAL reader, so it never waits for the writer; PostgreSQL: one from the pool)."""
        with self._backend.read_session() as c:
            return fn(c, *args, **kwargs)

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future:
        """Run ``fn(*args, **kwargs)`` on the store's writer thread, after everything submitted
        before it (one thread: writes keep their order, and a hold taken after a settlement sees
        it). Returns the future of its result; RuntimeError once the store is closed."""
        return self._put(_Task(fn, args, kwargs, in_transaction=False))

    def submit_in_transaction(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future:
        """Run ``fn(connection, *args, **kwargs)`` on the writer thread inside a write transaction
        shared with the other such jobs queued with it (group commit, see the module docstring);
        the future resolves once that transaction is committed."""
        return self._put(_Task(fn, args, kwargs, in_transaction=True))

    def submit_serialized(self, names: Sequence[str], fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future:
        """:meth:`submit_in_transaction`, with the transaction exclusive per name in ``names`` across
        every process sharing the database (a budget check-and-hold: see ``serial_locks`` in
        :mod:`thrifty.store.backend`)."""
        return self._put(_Task(fn, args, kwargs, in_transaction=True, locks=tuple(names)))

    def run_in_transaction(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        """``fn(connection, *args, **kwargs)`` inside one ``BEGIN IMMEDIATE`` transaction on the
        calling thread: committed when it returns, rolled back when it raises."""
        return self.run_serialized((), fn, *args, **kwargs)

    def run_serialized(self, names: Sequence[str], fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        """:meth:`run_in_transaction` holding the cross-process locks ``names`` (see :meth:`submit_serialized`)."""
        with self._backend.session() as c:
            c.execute("BEGIN IMMEDIATE")
            try:
                self._backend.serial_locks(c, list(names))
                result = fn(c, *args, **kwargs)
                c.execute("COMMIT")
            except BaseException:
                _rollback(c)
                raise
        return result

    def _put(self, task: "_Task") -> Future:
        with self._writer_guard:
            if self._closed:
                raise RuntimeError(f"the log store {self.path} is closed")
            if self._writer is None:
                self._writer = threading.Thread(target=self._write_loop, name="thrifty-log-writer", daemon=True)
                self._writer.start()
            self._queue.put(task)
        return task.future

    def index_search(self, limit: int | None = None) -> int:
        """Put up to ``limit`` rows logged since the last time into the prompt-search index (SQLite;
        one short write transaction); returns how many. The writer thread does it at least every
        second while rows arrive; the dashboard before it reads."""
        if not self._search_batches:
            return 0
        self._indexed_at = time.monotonic()
        if not self.read(search.behind):  # nothing new: no write transaction
            return 0
        return int(self.run_serialized(["dash_search"], search.catch_up, limit or _SEARCH_BATCH))

    def _write_loop(self) -> None:
        stop = False
        while not stop:
            try:
                first = self._queue.get(timeout=_SEARCH_EVERY_S) if self._search_batches else self._queue.get()
            except queue.Empty:  # idle: a good moment to index what arrived
                self._index_quietly()
                continue
            batch = [first]
            while len(batch) < _MAX_BATCH:  # everything already waiting joins this round
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            group: list[_Task] = []
            for task in batch:
                if task is None:
                    stop = True
                elif task.in_transaction:
                    group.append(task)
                else:
                    self._commit_group(group)
                    group = []
                    task.run_alone()
            self._commit_group(group)
            if self._search_batches and time.monotonic() - self._indexed_at >= _SEARCH_EVERY_S:
                self._index_quietly()

    def _index_quietly(self) -> None:
        try:
            self.index_search()
        except Exception as exc:  # noqa: BLE001 - search then reads the rows after the index: slower, still right
            log.warning("thrifty: could not index new prompts for search: %s", exc)

    def _commit_group(self, group: "list[_Task]") -> None:
        group = [t for t in group if t.future.set_running_or_notify_cancel()]
        if not group:
            return
        done: list[tuple[_Task, Any]] = []
        with self._backend.writer() as c:
            try:
                c.execute("BEGIN IMMEDIATE")
                self._backend.serial_locks(c, [name for t in group for name in t.locks])
            except BaseException as exc:  # noqa: BLE001 - every waiter gets it
                _rollback(c)
                for t in group:
                    t.future.set_exception(exc)
                return
            alone = len(group) == 1  # nothing to keep apart: no savepoint (two round trips fewer on PostgreSQL)
            for t in group:
                if not alone:
                    c.execute("SAVEPOINT job")
                try:
                    result = t.fn(c, *t.args, **t.kwargs)
                except BaseException as exc:  # noqa: BLE001 - this job's own failure, rolled back alone
                    if alone:
                        _rollback(c)
                        t.future.set_exception(exc)
                        return
                    c.execute("ROLLBACK TO job")
                    c.execute("RELEASE job")
                    t.future.set_exception(exc)
                    continue
                if not alone:
                    c.execute("RELEASE job")
                done.append((t, result))
            try:
                c.execute("COMMIT")
            except BaseException as exc:  # noqa: BLE001
                _rollback(c)
                for t, _ in done:
                    t.future.set_exception(exc)
                return
        for t, result in done:  # only now: "committed" means on disk
            t.future.set_result(result)

    def close(self) -> None:
        """Finish every submitted write, then close the database."""
        with self._writer_guard:
            writer, self._writer, self._closed = self._writer, None, True
            if writer is not None:
                self._queue.put(None)
        if writer is not None:
            writer.join()
        self._backend.close()

    # ---- writing -------------------------------------------------------------------------------
    def record(self, rec: RequestRecord, also: Callable[[sqlite3.Connection], None] | None = None) -> None:
        """Insert the request and all its steps in one transaction (all or nothing).

        ``also(conn)`` runs inside the same transaction (the budget ledger settles spend there), so
        a logged request and the spend it caused are committed together.
        """
        row, steps = record_rows(rec)
        self.run_in_transaction(insert_record, row, steps, also)

    def submit_record(self, rec: RequestRecord, also: Callable[[sqlite3.Connection], None] | None = None) -> Future:
        """:meth:`record` on the writer thread, group-committed with the other queued writes."""
        row, steps = record_rows(rec)
        return self.submit_in_transaction(insert_record, row, steps, also)

    def set_label(self, request_id: str, label: float, *, idx: int | None = None) -> bool:
        """Store a quality label in [0, 1] for a request (or one of its steps). False if absent."""
        if not 0.0 <= float(label) <= 1.0:
            raise ValueError("a label is a quality in [0, 1]")
        with self._backend.session() as c:
            if idx is None:
                cur = c.execute("UPDATE requests SET label = ? WHERE id = ?", (float(label), request_id))
            else:
                cur = c.execute("UPDATE steps SET label = ? WHERE request_id = ? AND idx = ?", (float(label), request_id, idx))
            return cur.rowcount > 0

    # ---- reading -------------------------------------------------------------------------------
    def count(self) -> int:
        with self._backend.session() as c:
            return int(c.execute("SELECT COUNT(*) FROM requests").fetchone()[0])

    def list(self, limit: int = 20, offset: int = 0) -> list[dict[str, Any]]:
        """Newest first: id, created, key_name, profile, model_requested, final_model, tiers, cost, latency, status, cache."""
        tiebreak = "rowid" if self.dialect == "sqlite" else "id"  # insertion order where the engine keeps one
        with self._backend.session() as c:
            rows = c.execute(
                "SELECT id, created, key_name, profile, model_requested, final_model, tiers_tried, cost_usd,"
                f" latency_s, status, prompt, cache FROM requests ORDER BY created DESC, {tiebreak} DESC LIMIT ? OFFSET ?",
                (int(limit), int(offset)),
            ).fetchall()
        out = []
        for r in rows:
            d = dict(r)
            d["tiers_tried"] = json.loads(d["tiers_tried"])
            out.append(d)
        return out

    def get(self, request_id: str) -> dict[str, Any] | None:
        """The full request row (``request`` decoded) with its ``steps`` list, or None."""
        with self._backend.session() as c:
            r = c.execute("SELECT * FROM requests WHERE id = ?", (request_id,)).fetchone()
            if r is None:
                return None
            steps = c.execute("SELECT * FROM steps WHERE request_id = ? ORDER BY idx", (request_id,)).fetchall()
        d = dict(r)
        d["request"] = json.loads(d.pop("request_json"))
        d["tiers_tried"] = json.loads(d["tiers_tried"])
        d["steps"] = [dict(s) for s in steps]
        return d

    def iter_rows(self, sql: str, params: Sequence[Any] = ()) -> "builtins.list[Any]":  # sqlite3.Row or dialect.Row
        with self._backend.session() as c:
            return c.execute(sql, tuple(params)).fetchall()


_MAX_BATCH = 256  # jobs per group commit at most
_SEARCH_EVERY_S = 1.0  # the writer indexes new prompts at least this often while rows arrive
_SEARCH_BATCH = 2_000  # rows per indexing transaction (~40 ms on one core: the log rows wait at most that)


class _Task:
    """One job for the writer thread and the future its submitter waits on."""

    __slots__ = ("fn", "args", "kwargs", "in_transaction", "locks", "future")

    def __init__(
        self, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any], *, in_transaction: bool, locks: tuple[str, ...] = ()
    ) -> None:
        self.fn, self.args, self.kwargs, self.in_transaction, self.locks = fn, args, kwargs, in_transaction, locks
        self.future: Future = Future()

    def run_alone(self) -> None:
        if not self.future.set_running_or_notify_cancel():
            return
        try:
            result = self.fn(*self.args, **self.kwargs)
        except BaseException as exc:  # noqa: BLE001 - handed to the waiter
            self.future.set_exception(exc)
        else:
            self.future.set_result(result)


def _rollback(c: Any) -> None:
    """ROLLBACK, quietly when there is nothing to roll back (no transaction, or a lost connection)."""
    try:
        c.execute("ROLLBACK")
    except Exception:  # noqa: BLE001 - the original error is the one to report
        pass
