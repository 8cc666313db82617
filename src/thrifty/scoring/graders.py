"""Exact graders: an answer against a gold (or reference) value → quality 1 or 0, with what was parsed.

- ``exact``   — equal after case folding, whitespace collapsing and stripping surrounding
  punctuation/quotes;
- ``regex``   — the gold value is a regular expression that must match somewhere in the answer
  (case-insensitive);
- ``numeric`` — the answer's final number (after ``####`` or "answer is" when present, else the last
  number; ``1,234.5``, ``$3``, ``-2``, ``50%`` understood) equals the gold number within ``tol``;
- ``choice``  — the first of the allowed choices (``choices``, default: the distinct gold values)
  that occurs as a word in the answer is the model's pick; quality is pick == gold.

Used by ``thrifty label`` (:mod:`thrifty.calibration.label`), the cache replay and live audits.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, Sequence

from thrifty.errors import ConfigError, DataError

__all__ = ["MATCHES", "Grader", "make_grader", "normalise", "parse_number", "parse_choice"]

MATCHES = ("exact", "regex", "numeric", "choice")

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
            tail = _NUM.search(s[m.end() :])
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
