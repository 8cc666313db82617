"""Label a collection folder: grade each answer into ``quality`` in [0, 1].

Exact graders compare the answer with a gold column of the prompts (quality 1 or 0):

- ``exact``   — equal after case folding, whitespace collapsing and stripping surrounding
  punctuation/quotes;
- ``regex``   — the gold value is a regular expression that must match somewhere in the answer
  (case-insensitive);
- ``numeric`` — the answer's final number (after ``####`` or "answer is" when present, else the last
  number; ``1,234.5``, ``$3``, ``-2``, ``50%`` understood) equals the gold number within ``tol``;
- ``choice``  — the first of the allowed choices (``choices``, default: the distinct gold values)
  that occurs as a word in the answer is the model's pick; quality is pick == gold.

The LLM judge lives in :mod:`thrifty.judge`. Every label stores its provenance next to the quality:
``label_method``, ``label_verdict`` (what was parsed) and, for the judge, ``judge``,
``rubric_version`` and ``judge_raw`` (the judge's raw reply).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from thrifty.errors import ConfigError, DataError
from thrifty.outcomes_log import OutcomeLog

__all__ = ["Grader", "make_grader", "parse_number", "parse_choice", "normalise", "label_folder", "LabelSummary", "MATCHES"]

MATCHES = ("exact", "regex", "numeric", "choice")
LABEL_COLUMNS = ("quality", "label_method", "label_verdict", "judge", "rubric_version", "judge_raw", "label_error")

_PUNCT = " \t\r\n.,;:!?\"'`()[]{}<>*_"
_NUM = re.compile(r"[-+]?\$?\s?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?%?|[-+]?\.\d+")


def normalise(text: Any) -> str:
    """Case-folded text with whitespace collapsed and surrounding punctuation/quotes removed."""
    return " ".join(str(text).split()).casefold().strip(_PUNCT)


def _to_float(tok: str) -> float:
    return float(tok.replace("$", "").replace(",", "").replace("%", "").replace(" ", ""))


def parse_number(text: Any) -> float | None:
    """The answer's final number: after ``####`` / "answer is" when present, else the last number."""
    s = str(text)
    for marker in (r"####", r"answer is", r"answer:"):
        m = re.search(marker, s, re.IGNORECASE)
        if m:
            tail = _NUM.search(s[m.end():])
            if tail:
                return _to_float(tail.group())
    nums = _NUM.findall(s)
    return _to_float(nums[-1]) if nums else None


def parse_choice(text: Any, choices: Sequence[str]) -> str | None:
    """The first allowed choice occurring as a whole word in ``text`` (case-insensitive), else None."""
    s = str(text).casefold()
    best: tuple[int, str] | None = None
    for c in choices:
        m = re.search(r"(?<![\w])" + re.escape(c.casefold()) + r"(?![\w])", s)
        if m and (best is None or m.start() < best[0]):
            best = (m.start(), c)
    return None if best is None else best[1]


@dataclass(frozen=True)
class Grader:
    """An exact grader: ``grade(answer, gold) -> (quality, verdict)``."""

    method: str
    choices: tuple[str, ...] = ()
    tol: float = 1e-6

    def grade(self, answer: Any, gold: Any, *, where: str = "") -> tuple[float, str]:
        if gold is None:
            raise DataError("no gold value", field="gold", expected=f"a gold answer for {where or 'this prompt'}")
        answer = "" if answer is None else str(answer)
        if self.method == "exact":
            return float(normalise(answer) == normalise(gold)), normalise(answer)
        if self.method == "regex":
            try:
                m = re.search(str(gold), answer, re.IGNORECASE)
            except re.error as exc:
                raise DataError(f"invalid regular expression {gold!r}: {exc}", field="gold", expected=f"a regex for {where}") from None
            return float(m is not None), m.group() if m else ""
        if self.method == "numeric":
            try:
                want = _to_float(str(gold).strip())
            except ValueError:
                raise DataError(f"gold {gold!r} is not a number", field="gold", expected=f"a number for {where}") from None
            got = parse_number(answer)
            ok = got is not None and math.isclose(got, want, rel_tol=self.tol, abs_tol=self.tol)
            return float(ok), "" if got is None else repr(got)
        if self.method == "choice":
            pick = parse_choice(answer, self.choices)
            return float(pick is not None and normalise(pick) == normalise(gold)), pick or ""
        raise ConfigError(f"unknown match {self.method!r}", key="--match", fix=f"use one of: {', '.join(MATCHES)}")

    def grade_row(self, answer: Any, gold: Any, *, where: str = "") -> dict[str, Any]:
        """The label columns for one outcome row."""
        q, verdict = self.grade(answer, gold, where=where)
        return {"quality": q, "label_method": self.method, "label_verdict": verdict}


def make_grader(match: str, *, choices: Sequence[str] | None = None, golds: Sequence[Any] = (), tol: float = 1e-6) -> Grader:
    """A grader for ``match``; ``choice`` without explicit ``choices`` uses the distinct ``golds``."""
    if match not in MATCHES:
        raise ConfigError(f"unknown match {match!r}", key="--match", fix=f"use one of: {', '.join(MATCHES)}")
    if not (isinstance(tol, (int, float)) and math.isfinite(tol) and tol >= 0):
        raise ConfigError(f"the numeric tolerance must be a finite number ≥ 0, got {tol!r}", key="--tol", fix="pass --tol 1e-6")
    ch: tuple[str, ...] = ()
    if match == "choice":
        ch = tuple(dict.fromkeys(str(c).strip() for c in (choices or [g for g in golds if g is not None]) if str(c).strip()))
        if not ch:
            raise ConfigError("no choices to match", key="--choices", fix="pass --choices a,b,c or a gold column")
        # longer choices first so "not sure" is preferred over "not" at the same position
        ch = tuple(sorted(ch, key=len, reverse=True))
    return Grader(match, ch, tol)


def needs_label(row: dict[str, Any], force: bool = False) -> bool:
    """A row is (re)labelled when forced, when it has no quality, or when its quality is only the
    live scorer's estimate (``quality_source = "score"`` in an exported log)."""
    return force or row.get("quality") is None or row.get("quality_source") == "score"


@dataclass
class LabelSummary:
    labelled: int = 0
    skipped: int = 0
    unparseable: int = 0
    by_model: dict[str, tuple[int, float]] | None = None  # model -> (n labelled, mean quality)

    def table_rows(self) -> list[tuple[str, int, float]]:
        return [(m, n, q) for m, (n, q) in sorted((self.by_model or {}).items())]


def rows_to_label(folder: str | Path) -> tuple[OutcomeLog, list[dict[str, Any]]]:
    """The folder's log and every row a labeller sees (outcomes plus an exported log's pending
    answers, :meth:`OutcomeLog.for_labelling`); a folder with none is a :class:`DataError`."""
    log = OutcomeLog(folder)
    rows = log.for_labelling()
    if not rows:
        raise DataError("no outcomes to label", file=str(log.outcomes_path), expected="run thrifty collect first")
    return log, rows


def _prompt_gold(log: OutcomeLog, gold: str) -> dict[str, Any]:
    rows = log.prompts()
    if not rows:
        raise DataError("no prompts file", file=str(log.prompts_path), expected="a folder written by thrifty collect")
    if not any(gold in r for r in rows):
        cols = sorted({k for r in rows for k in r} - {"prompt_id", "instruction"})
        raise ConfigError(f"the prompts have no column {gold!r}", key="--gold", fix=f"use one of: {', '.join(cols) or '(none)'}")
    return {str(r["prompt_id"]): r.get(gold) for r in rows}


def _summarise(rows: list[dict[str, Any]], summary: LabelSummary) -> LabelSummary:
    acc: dict[str, list[float]] = {}
    for r in rows:
        if r.get("quality") is not None:
            acc.setdefault(str(r["model"]), []).append(float(r["quality"]))
    summary.by_model = {m: (len(v), sum(v) / len(v)) for m, v in acc.items()}
    return summary


def label_folder(
    folder: str | Path, *, gold: str = "gold", match: str = "exact", choices: Sequence[str] | None = None,
    tol: float = 1e-6, force: bool = False,
) -> LabelSummary:
    """Grade every unlabelled outcome (all of them with ``force``) against the gold column, in place."""
    log, rows = rows_to_label(folder)
    golds = _prompt_gold(log, gold)
    grader = make_grader(match, choices=choices, golds=list(golds.values()), tol=tol)
    summary = LabelSummary()
    for i, r in enumerate(rows, start=1):
        if needs_label(r, force) is False:
            summary.skipped += 1
            continue
        pid = str(r.get("prompt_id"))
        if golds.get(pid) is None:
            raise DataError(f"prompt {pid!r} has no {gold!r} value", file=str(log.prompts_path), field=gold,
                            expected="a gold value for every collected prompt")
        for k in LABEL_COLUMNS:
            r.pop(k, None)
        r.update(grader.grade_row(r.get("output"), golds[pid], where=f"prompt {pid!r} (outcomes line {i})"))
        if "quality_source" in r:
            r["quality_source"] = "label"
        summary.labelled += 1
    log.save_labelled(rows)
    return _summarise(rows, summary)
