"""Line-numbered rows from table files, and the typed field readers every table loader shares.

:func:`read_rows` reads ``.jsonl``, ``.csv`` (either gzipped) and ``.parquet`` files as
``(line number, row)`` pairs; :func:`number_field` and :func:`prompt_id_field` read one field of
a row. Every problem raises :class:`~thrifty.errors.DataError` naming the file, line and field —
the routing-table loader, the outcomes log, prompts files and few-shot example files all read
through here.
"""

from __future__ import annotations

import csv
import gzip
import json
import math
import zlib
from pathlib import Path
from typing import Any, Iterator, Literal, overload

from thrifty.errors import DataError

__all__ = ["TABLE_EXTS", "find_file", "read_rows", "number_field", "prompt_id_field"]

TABLE_EXTS = (".jsonl", ".jsonl.gz", ".csv", ".csv.gz", ".parquet")


def find_file(folder: Path, stem: str, required: bool = True) -> Path | None:
    """``folder/stem`` with the first of :data:`TABLE_EXTS` that exists (a DataError if none and ``required``)."""
    for ext in TABLE_EXTS:
        p = folder / f"{stem}{ext}"
        if p.exists():
            return p
    if required:
        raise DataError(f"no {stem} file in {folder}", file=str(folder), expected=f"one of {', '.join(stem + e for e in TABLE_EXTS)}")
    return None


def read_rows(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, row) pairs; the CSV header is line 1, JSONL lines count from 1."""
    name = path.name
    if name.endswith(".parquet"):
        try:
            import pyarrow.parquet as pq
        except ImportError as exc:  # pragma: no cover - depends on extras
            raise DataError("reading Parquet needs pyarrow: pip install 'thrifty[lab]'", file=str(path)) from exc
        import pyarrow as pa

        try:
            rows = pq.read_table(path).to_pylist()
        except (pa.ArrowException, OSError, ValueError) as exc:
            raise DataError(f"unreadable Parquet: {exc}", file=str(path)) from None
        for i, row in enumerate(rows):
            if not isinstance(row, dict):
                raise DataError("row is not a record", file=str(path), line=i + 1)
            yield i + 1, row
        return
    opener = gzip.open if name.endswith(".gz") else open
    try:
        fh = opener(path, "rt", encoding="utf-8", newline="")
    except OSError as exc:
        raise DataError(f"cannot open: {exc}", file=str(path)) from exc
    with fh:
        if ".csv" in name:
            reader = csv.DictReader(fh)
            try:
                if not reader.fieldnames:
                    raise DataError("empty CSV file", file=str(path), line=1, expected="a header row")
                for row in reader:
                    yield reader.line_num, {k: (None if v == "" else v) for k, v in row.items() if k is not None}
            except (csv.Error, UnicodeDecodeError, EOFError, OSError, zlib.error) as exc:
                raise DataError(f"unreadable CSV: {exc}", file=str(path), line=reader.line_num) from exc
        else:
            try:
                for i, line in enumerate(fh, start=1):
                    if not line.strip():
                        continue
                    try:
                        row = json.loads(line)
                    except ValueError as exc:  # JSONDecodeError, or an integer too long to parse
                        msg = getattr(exc, "msg", str(exc))
                        raise DataError(f"invalid JSON: {msg}", file=str(path), line=i, expected="one JSON object per line") from None
                    if not isinstance(row, dict):
                        raise DataError("row is not a JSON object", file=str(path), line=i, expected="a JSON object")
                    yield i, row
            except (UnicodeDecodeError, EOFError, gzip.BadGzipFile, OSError, zlib.error) as exc:
                raise DataError(f"unreadable file: {exc}", file=str(path)) from exc


@overload
def number_field(
    row: dict,
    key: str,
    path: Path,
    line: int,
    *,
    required: Literal[True],
    lo: float | None = None,
    hi: float | None = None,
    what: str = "a number",
) -> float: ...
@overload
def number_field(
    row: dict, key: str, path: Path, line: int, *, required: bool, lo: float | None = None, hi: float | None = None, what: str = "a number"
) -> float | None: ...
def number_field(
    row: dict, key: str, path: Path, line: int, *, required: bool, lo: float | None = None, hi: float | None = None, what: str = "a number"
) -> float | None:
    """``row[key]`` as a finite number within [``lo``, ``hi``]; None when absent and not ``required``."""
    v = row.get(key)
    if v is None:
        if required:
            raise DataError("missing value", file=str(path), line=line, field=key, expected=what)
        return None
    if isinstance(v, bool):
        raise DataError(f"got {v!r}", file=str(path), line=line, field=key, expected=what)
    try:
        x = float(v)
    except (TypeError, ValueError, OverflowError):
        raise DataError(f"got {v!r}", file=str(path), line=line, field=key, expected=what) from None
    if math.isnan(x) or math.isinf(x) or (lo is not None and x < lo) or (hi is not None and x > hi):
        raise DataError(f"got {v!r}", file=str(path), line=line, field=key, expected=what)
    return x


def prompt_id_field(row: dict, path: Path, line: int) -> str:
    """``row["prompt_id"]`` as text (a float that is a whole number reads as that integer)."""
    v = row.get("prompt_id")
    if v is None or (isinstance(v, str) and not v.strip()):
        raise DataError("missing value", file=str(path), line=line, field="prompt_id", expected="a prompt id")
    if isinstance(v, float) and v.is_integer():
        v = int(v)
    return str(v)
