"""The two SQL dialects of the log store: portable SQL in, what each engine runs out.

thrifty's SQL is written once, for both engines: ``?`` placeholders (``?N`` numbered ones too),
TEXT/REAL/INTEGER/BIGINT columns, ``INSERT … ON CONFLICT``. SQLite runs it as written. For PostgreSQL
:func:`to_postgres` rewrites, outside string literals and comments:

- ``?`` → ``%s`` and ``?N`` → ``%s`` with the parameters reordered (:func:`reorder`);
- a literal ``%`` → ``%%``, in string literals too (psycopg's placeholder syntax; statements are
  always sent with a parameter tuple, empty or not, so psycopg always turns ``%%`` back into ``%``);
- ``REAL`` → ``DOUBLE PRECISION`` (PostgreSQL's REAL is 4 bytes: a unix time would lose its
  seconds), ``BEGIN IMMEDIATE`` → ``BEGIN``.

The rewrite is cached per statement, so the hot path pays a dict lookup.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

__all__ = ["POSTGRES", "SQLITE", "Row", "reorder", "to_postgres"]

SQLITE = "sqlite"
POSTGRES = "postgresql"

_TOKEN = re.compile(
    r"""('(?:[^']|'')*')              # a string literal
      |("(?:[^"]|"")*")               # a quoted identifier
      |(--[^\n]*)                     # a comment
      |(\?(\d+)?)                     # a placeholder
      |(%)                            # a literal percent sign
      |\b(REAL)\b                     # a 4-byte float in PostgreSQL
    """,
    re.VERBOSE | re.IGNORECASE,
)


@lru_cache(maxsize=1024)
def to_postgres(sql: str) -> tuple[str, tuple[int, ...] | None]:
    """``sql`` in PostgreSQL's words and, when it has numbered placeholders, the index of the
    parameter each ``%s`` takes (None: the parameters pass through in order)."""
    out: list[str] = []
    order: list[int] = []
    numbered = False
    pos = 0
    for m in _TOKEN.finditer(sql):
        out.append(sql[pos : m.start()])
        pos = m.end()
        if m.group(1):  # psycopg reads '%' even inside literals: LIKE '%,%' must reach it as '%%,%%'
            out.append(m.group(0).replace("%", "%%"))
        elif m.group(2):
            out.append(m.group(0))
        elif m.group(3):
            continue  # comments go: psycopg would read a '?' or '%' in them
        elif m.group(4):
            out.append("%s")
            if m.group(5):
                numbered = True
                order.append(int(m.group(5)) - 1)
            else:
                order.append(len(order))
        elif m.group(6):
            out.append("%%")
        else:
            out.append("DOUBLE PRECISION")
    out.append(sql[pos:])
    text = "".join(out).strip()
    if re.match(r"BEGIN\s+(IMMEDIATE|EXCLUSIVE|DEFERRED)\b", text, re.IGNORECASE):
        text = "BEGIN"
    return text, (tuple(order) if numbered else None)


def reorder(params: Sequence[Any], order: tuple[int, ...] | None) -> Sequence[Any]:
    """The parameters in ``%s`` order for a statement with numbered placeholders."""
    if order is None:
        return params
    return tuple(params[i] for i in order)


class Row(tuple):
    """A result row read by position or by column name, like :class:`sqlite3.Row` (``dict(row)`` works)."""

    __slots__ = ()
    _names: tuple[str, ...] = ()
    _index: dict[str, int] = {}  # noqa: RUF012 - replaced per subclass by row_class, never mutated

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, str):
            return tuple.__getitem__(self, self._index[key])
        return tuple.__getitem__(self, key)

    def keys(self) -> list[str]:
        return list(self._names)


@lru_cache(maxsize=256)
def row_class(names: tuple[str, ...]) -> type[Row]:
    """A :class:`Row` subclass for one result shape (built once per column list)."""
    return type("Row", (Row,), {"__slots__": (), "_names": names, "_index": {n: i for i, n in enumerate(names)}})
