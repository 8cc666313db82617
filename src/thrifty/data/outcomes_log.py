"""The on-disk state of a collection folder: append-only outcome rows that survive ``kill -9``.

A collection folder is a routing table in the shared layout (see :mod:`thrifty.data.table_io`):

- ``outcomes.jsonl`` — one JSON row per answered (prompt, model) pair, appended and fsynced one at
  a time, so an interrupted run loses at most the rows in flight. Rows carry ``prompt_id``,
  ``model``, ``output``, ``input_tokens``, ``output_tokens``, ``cost_usd``, ``latency_s`` and, once
  graded, ``quality`` plus the label columns (``label_method``, ``label_verdict``, ``judge``,
  ``rubric_version``, ``judge_raw``).
- ``prompts.jsonl`` — ``prompt_id``, ``instruction`` (the bare prompt), ``gold`` and other columns.
- ``models.csv`` — every model collected, with prices when known.
- ``errors.jsonl`` — pairs that failed after retries (they are retried on the next run).

A torn last line (the process died mid-write) is dropped when the folder is opened again.

Folders written by ``thrifty logs export`` (gzip ``outcomes.jsonl.gz`` / ``prompts.jsonl.gz`` plus
``pending.jsonl.gz``: logged answers with no quality yet) are read too: :meth:`OutcomeLog.for_labelling`
merges the pending answers in and :meth:`OutcomeLog.save_labelled` writes everything back in place.
"""

from __future__ import annotations

import gzip
import io
import json
import os
from pathlib import Path
from typing import Any, Iterable

from thrifty.data.rows import read_rows
from thrifty.data.table_io import read_models, write_models
from thrifty.errors import DataError

__all__ = ["OutcomeLog", "read_jsonl", "write_jsonl_atomic"]


def read_jsonl(path: Path, *, repair_tail: bool = False, require: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    """Rows of a JSONL(.gz) file (``[]`` when it does not exist), parsed by the one line-numbered row
    reader (:func:`thrifty.data.rows.read_rows`). With ``repair_tail`` a torn final line (no newline: the
    writer died mid-row) is cut off a plain file first. A row without a value for a ``require`` column
    is a :class:`DataError` naming the file, line and column."""
    if not path.exists():
        return []
    if repair_tail and not path.name.endswith(".gz"):
        _cut_torn_tail(path)
    rows = []
    for line, row in read_rows(path):
        for key in require:
            if row.get(key) is None:
                raise DataError("missing value", file=str(path), line=line, field=key, expected=f"a {key} on every row")
        rows.append(row)
    return rows


def _cut_torn_tail(path: Path) -> None:
    """Truncate ``path`` after its last newline and fsync, if it does not end in one (reads only the tail)."""
    with open(path, "r+b") as fh:
        end = fh.seek(0, os.SEEK_END)
        if end == 0:
            return
        fh.seek(end - 1)
        if fh.read(1) == b"\n":
            return
        pos = end  # scan back, a block at a time, for the last complete row's newline
        while pos > 0:
            step = min(pos, 1 << 16)
            fh.seek(pos - step)
            nl = fh.read(step).rfind(b"\n")
            pos -= step
            if nl >= 0:
                pos += nl + 1
                break
        fh.truncate(pos)
        fh.flush()
        os.fsync(fh.fileno())


def write_jsonl_atomic(path: Path, rows: Iterable[dict[str, Any]]) -> None:
    """Replace ``path`` with ``rows`` atomically (temp file + fsync + rename)."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as raw:
        fh = gzip.open(raw, "wt", encoding="utf-8") if path.name.endswith(".gz") else io.TextIOWrapper(raw, encoding="utf-8")
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
        fh.flush()
        fh.close() if path.name.endswith(".gz") else fh.detach()
        raw.flush()
        os.fsync(raw.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


def _pair(row: dict[str, Any]) -> tuple[str, str]:
    return str(row.get("prompt_id")), str(row.get("model"))


class OutcomeLog:
    """Append-only writer of one collection folder (one writer at a time)."""

    def __init__(self, folder: str | os.PathLike) -> None:
        self.folder = Path(folder)
        self.outcomes_path = self._existing("outcomes")
        self.prompts_path = self._existing("prompts")
        self.pending_path = self.folder / "pending.jsonl.gz"
        self.models_path = self.folder / "models.csv"
        self.errors_path = self.folder / "errors.jsonl"
        self._fh: Any = None
        self._err: Any = None
        self._done: set[tuple[str, str]] | None = None  # the answered pairs, read once, then kept up to date
        self._pending: list[dict[str, Any]] | None = None  # pending.jsonl.gz, read once

    def _existing(self, stem: str) -> Path:
        """``stem.jsonl``, or ``stem.jsonl.gz`` when only that exists (an exported log)."""
        plain, gz = self.folder / f"{stem}.jsonl", self.folder / f"{stem}.jsonl.gz"
        return gz if gz.exists() and not plain.exists() else plain

    # ---- reading -----------------------------------------------------------------------------
    def outcomes(self) -> list[dict[str, Any]]:
        return read_jsonl(self.outcomes_path, repair_tail=True, require=("prompt_id", "model"))

    def done_pairs(self) -> set[tuple[str, str]]:
        """(prompt_id, model) pairs already answered; raises on a duplicate (a corrupted folder).

        The file is read (and a torn tail repaired) once per log object; :meth:`append` keeps the set
        current, so a long collection run never re-reads what it wrote."""
        if self._done is None:
            done: set[tuple[str, str]] = set()
            for i, row in enumerate(self.outcomes(), start=1):
                key = _pair(row)
                if key in done:
                    raise DataError(
                        f"duplicate pair {key}",
                        file=str(self.outcomes_path),
                        line=i,
                        field="model",
                        expected="each (prompt_id, model) pair once",
                    )
                done.add(key)
            self._done = done
        return set(self._done)

    def prompts(self) -> list[dict[str, Any]]:
        return read_jsonl(self.prompts_path, require=("prompt_id",))

    def models(self) -> dict[str, tuple[float | None, float | None]]:
        return read_models(self.models_path)

    # ---- writing -----------------------------------------------------------------------------
    def merge_prompts(self, rows: list[dict[str, Any]], *, strict: bool = True) -> None:
        """Add new prompt rows (existing ids keep their row; a changed text is an error when ``strict``)."""
        self.folder.mkdir(parents=True, exist_ok=True)
        existing = self.prompts()
        by_id = {str(r["prompt_id"]): r for r in existing}
        added = False
        for r in rows:
            old = by_id.get(str(r["prompt_id"]))
            if old is None:
                existing.append(r)
                by_id[str(r["prompt_id"])] = r
                added = True
            elif strict and old.get("instruction") != r.get("instruction"):
                raise DataError(
                    f"prompt_id {r['prompt_id']!r} was collected with a different prompt text",
                    file=str(self.prompts_path),
                    field="instruction",
                    expected="the same text as the earlier run, or a new --out folder",
                )
        if added or not self.prompts_path.exists():
            write_jsonl_atomic(self.prompts_path, existing)

    def merge_models(self, prices: dict[str, tuple[float | None, float | None]]) -> None:
        merged = self.models()
        for name, p in prices.items():
            if name not in merged or p != (None, None):
                merged[name] = p
        write_models(self.models_path, merged)

    def pending(self) -> list[dict[str, Any]]:
        """The pending (not yet labelled) answers of an exported log, with their ``prompt`` text;
        read once per log object (``[]`` when there are none)."""
        if self._pending is None:
            self._pending = read_jsonl(self.pending_path, require=("prompt_id", "model"))
        return self._pending

    def for_labelling(self) -> list[dict[str, Any]]:
        """All outcome rows plus the pending (unlabelled) answers of an exported log, in one list."""
        rows = self.outcomes()
        for p in self.pending():
            row = {k: v for k, v in p.items() if k != "prompt"}
            row["prompt_id"] = str(row["prompt_id"])
            row["quality_source"] = "pending"  # becomes "label" once labelled
            rows.append(row)
        return rows

    def save_labelled(self, rows: list[dict[str, Any]]) -> None:
        """Write labelled rows back in place; pending answers become outcomes (prompts/models added)."""
        pending = self.pending()
        if pending:
            self.merge_prompts([{"prompt_id": str(p["prompt_id"]), "instruction": p.get("prompt")} for p in pending], strict=False)
            self.merge_models({str(p["model"]): (None, None) for p in pending})
        self.close()  # an open append handle would keep writing to the replaced file
        self._done = None
        write_jsonl_atomic(self.outcomes_path, rows)
        if pending:
            self.pending_path.unlink()
            self._pending = []

    def append(self, row: dict[str, Any]) -> None:
        """Append one outcome row and fsync it; a pair already in the file is refused (it would make
        the folder unreadable as a table)."""
        if self.outcomes_path.name.endswith(".gz"):
            raise DataError(
                "cannot append to a gzip outcomes file",
                file=str(self.outcomes_path),
                expected="a folder written by thrifty collect (outcomes.jsonl)",
            )
        if self._done is None:
            self.done_pairs()  # the one read: also repairs a torn tail before appending after it
        assert self._done is not None
        key = _pair(row)
        if key in self._done:
            raise DataError(
                f"pair {key} is already answered",
                file=str(self.outcomes_path),
                field="model",
                expected="each (prompt_id, model) pair once: rerun thrifty collect to resume",
            )
        if self._fh is None:
            self.folder.mkdir(parents=True, exist_ok=True)
            self._fh = open(self.outcomes_path, "a", encoding="utf-8")
        self._fh.write(json.dumps(row, ensure_ascii=False) + "\n")
        self._fh.flush()
        os.fsync(self._fh.fileno())
        self._done.add(key)

    def append_error(self, row: dict[str, Any]) -> None:
        """Append one failed pair to ``errors.jsonl`` (a record for people: never parsed back)."""
        if self._err is None:
            self.folder.mkdir(parents=True, exist_ok=True)
            if self.errors_path.exists():
                _cut_torn_tail(self.errors_path)  # start on a fresh line
            self._err = open(self.errors_path, "a", encoding="utf-8")
        self._err.write(json.dumps(row, ensure_ascii=False) + "\n")
        self._err.flush()

    def close(self) -> None:
        for fh in (self._fh, self._err):
            if fh is not None:
                fh.close()
        self._fh = self._err = None

    def __enter__(self) -> "OutcomeLog":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
