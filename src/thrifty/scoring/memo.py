"""Bounded in-process memos (least recently used entries go first).

Every memo on the live path — the embedding memo, the answer-feature memo, the few-shot selection
memo, the fine-tuned scorer memo — is an :class:`LRUMemo`, so a long-running gateway that sees
endless distinct queries holds a bounded amount of memory. ``[server] memo_entries`` (default
:data:`DEFAULT_ENTRIES`) sets the size of the per-text memos through :func:`set_memo_entries`;
memos of whole fitted models have their own small fixed size.
"""

from __future__ import annotations

import threading
import weakref
from collections import OrderedDict
from typing import Generic, Hashable, TypeVar

__all__ = ["LRUMemo", "DEFAULT_ENTRIES", "set_memo_entries", "memo_entries"]

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

DEFAULT_ENTRIES = 10_000
_entries = DEFAULT_ENTRIES
_SIZED: "weakref.WeakSet[LRUMemo]" = weakref.WeakSet()  # memos that follow the memo_entries setting


class LRUMemo(Generic[K, V]):
    """A thread-safe mapping of at most ``maxsize`` entries (None: follow ``memo_entries``)."""

    def __init__(self, maxsize: int | None = None, name: str = "memo") -> None:
        self.name = name
        self.follows_setting = maxsize is None
        self.maxsize = _entries if maxsize is None else _check(maxsize)
        self._data: OrderedDict[K, V] = OrderedDict()
        self._lock = threading.Lock()
        if self.follows_setting:
            _SIZED.add(self)

    def __repr__(self) -> str:
        return f"LRUMemo({self.name!r}, {len(self._data)}/{self.maxsize})"

    def __len__(self) -> int:
        return len(self._data)

    def __contains__(self, key: object) -> bool:
        return key in self._data

    def get(self, key: K) -> V | None:
        with self._lock:
            value = self._data.get(key)
            if value is not None:
                self._data.move_to_end(key)
            return value

    def put(self, key: K, value: V) -> V:
        with self._lock:
            self._data[key] = value
            self._data.move_to_end(key)
            while len(self._data) > self.maxsize:
                self._data.popitem(last=False)
        return value

    def resize(self, maxsize: int) -> None:
        with self._lock:
            self.maxsize = _check(maxsize)
            while len(self._data) > self.maxsize:
                self._data.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._data.clear()


def _check(maxsize: int) -> int:
    if int(maxsize) < 1:
        raise ValueError(f"a memo needs room for at least 1 entry, got {maxsize}")
    return int(maxsize)


def set_memo_entries(entries: int) -> None:
    """Resize every memo that follows the setting (existing and future ones)."""
    global _entries
    _entries = _check(entries)
    for memo in list(_SIZED):
        memo.resize(_entries)


def memo_entries() -> int:
    return _entries
