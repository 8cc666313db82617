"""Cheap text features of a query (no model, microseconds): what a router sees besides embeddings.

``query_features(text)`` returns a fixed-length float vector, named by ``QUERY_FEATURE_NAMES``:

- ``log_chars``, ``log_words``: log1p of the length in characters / whitespace words;
- ``n_lines``: log1p of the number of lines;
- ``code``: code markers (fences, ``def``/``class``/``import``, braces and semicolons, ``#include``);
- ``maths``: maths markers (digits with operators, LaTeX, words like *solve*, *equation*, *integral*);
- ``question``: the text contains a question mark; ``wh_question``: it starts with a wh-word;
- ``imperative``: it starts with a writing/doing verb (*write*, *explain*, *list*, *create* …);
- ``creative``: asks for a story, poem, song, joke …; ``list_request``: asks for a list / steps / ideas;
- ``translation``: asks to translate or names a language pair; ``non_ascii``: share of non-ASCII characters;
- ``digits``: share of digit characters; ``upper``: share of upper-case letters.

All values are in roughly [0, 10]; heads standardise them anyway.
"""

from __future__ import annotations

import math
import re
import string
from typing import Sequence

import numpy as np

__all__ = ["QUERY_FEATURE_NAMES", "query_features", "query_feature_matrix"]

QUERY_FEATURE_NAMES: tuple[str, ...] = (
    "log_chars",
    "log_words",
    "n_lines",
    "code",
    "maths",
    "question",
    "wh_question",
    "imperative",
    "creative",
    "list_request",
    "translation",
    "non_ascii",
    "digits",
    "upper",
)

_CODE = re.compile(
    r"```|\bdef \w+\(|\bclass \w+|\bimport \w+|#include|\bfunction\b|\breturn\b|=>|\bSELECT\b|"
    r"\bpython\b|\bjavascript\b|\bjava\b|\bc\+\+|\bsql\b|\bcode\b|\bregex\b|\bbash\b|[{};]\s*$",
    re.IGNORECASE | re.MULTILINE,
)
_MATHS = re.compile(
    r"\d\s*[-+*/^=]\s*\d|\\frac|\\sum|\$[^$]+\$|\bsolve\b|\bequation\b|\bintegral\b|\bderivative\b|"
    r"\bprobability\b|\bcalculate\b|\bcompute\b|\bmath\w*\b|\bprove\b|\bx\s*=",
    re.IGNORECASE,
)
_WH = re.compile(r"^\s*(what|why|how|when|where|who|which|whom|whose|is|are|can|could|do|does|should|would)\b", re.IGNORECASE)
_IMPERATIVE = re.compile(
    r"^\s*(write|explain|describe|list|create|generate|give|make|suggest|summari[sz]e|rewrite|classify|"
    r"convert|find|tell|provide|compose|design|draft|plan|identify|compare|translate|edit|correct)\b",
    re.IGNORECASE,
)
_CREATIVE = re.compile(r"\b(story|poem|song|lyrics|joke|haiku|limerick|script|fiction|rap|essay|tweet|slogan)\b", re.IGNORECASE)
_LIST = re.compile(r"\b(list|steps|ideas|examples|ways|tips|suggestions|options|bullet)\b", re.IGNORECASE)
_TRANSLATE = re.compile(r"\btranslat\w*|\b(into|to) (english|french|spanish|german|chinese|japanese|italian|russian)\b", re.IGNORECASE)


# Literal text every match of a pattern contains (lower case); an ASCII text holding none of them
# cannot match, so the regular expression is skipped (exact: IGNORECASE folds beyond ASCII, e.g. "ſ"
# matching "s", are why non-ASCII texts always run it). Saves most of the featuriser's time.
_CODE_NEEDS = ("```", "def ", "class", "import", "#include", "function", "return", "=>", "select", "python",
               "java", "c++", "sql", "code", "regex", "bash", "{", "}", ";")  # fmt: skip
_MATHS_WORDS = ("\\frac", "\\sum", "$", "solve", "equation", "integral", "derivative", "probability", "calculate",
                "compute", "math", "prove", "=")  # fmt: skip
_MATHS_OPS = ("-", "+", "*", "/", "^", "=")
_CREATIVE_NEEDS = ("story", "poem", "song", "lyrics", "joke", "haiku", "limerick", "script", "fiction", "rap", "essay",
                   "tweet", "slogan")  # fmt: skip
_LIST_NEEDS = ("list", "steps", "ideas", "examples", "ways", "tips", "suggestions", "options", "bullet")
_TRANSLATE_NEEDS = ("translat", "into ", "to ")


def _may_match(low: str | None, needs: Sequence[str]) -> bool:
    """False only when the ASCII text ``low`` (lower-cased; None: not ASCII) holds none of ``needs``."""
    return low is None or any(w in low for w in needs)


def _count(pattern: re.Pattern[str], t: str, low: str | None, needs: Sequence[str]) -> int:
    return len(pattern.findall(t)) if _may_match(low, needs) else 0


_DIGIT = re.compile(r"[0-9]")
_UPPER, _LOWER, _DIGITS = (string.ascii_uppercase.encode(), string.ascii_lowercase.encode(), string.digits.encode())


def _maths_may_match(low: str | None) -> bool:
    if low is None or _may_match(low, _MATHS_WORDS):
        return True
    # the remaining alternative, digit-operator-digit, needs a digit and an operator character
    return any(op in low for op in _MATHS_OPS) and _DIGIT.search(low) is not None


def query_features(text: str | None) -> np.ndarray:
    """Feature vector (float32, ``len(QUERY_FEATURE_NAMES)``) of one query text."""
    t = text or ""
    n = max(len(t), 1)
    head = t.lstrip()[:200]
    low = t.lower() if t.isascii() else None
    if low is None:
        letters = sum(map(str.isalpha, t)) or 1
        digits, upper = sum(map(str.isdigit, t)), sum(map(str.isupper, t))
    else:  # ASCII: count character classes in C (the same counts as str.isalpha/isdigit/isupper)
        b = t.encode("ascii")
        upper = len(b) - len(b.translate(None, _UPPER))
        letters = (upper + len(b) - len(b.translate(None, _LOWER))) or 1
        digits = len(b) - len(b.translate(None, _DIGITS))
    return np.array(
        [
            math.log1p(len(t)),
            math.log1p(len(t.split())),
            math.log1p(t.count("\n") + 1),
            min(_count(_CODE, t, low, _CODE_NEEDS), 10) / 2.0,
            min(len(_MATHS.findall(t)) if _maths_may_match(low) else 0, 10) / 2.0,
            float("?" in t),
            float(bool(_WH.match(head))),
            float(bool(_IMPERATIVE.match(head))),
            float(_may_match(low, _CREATIVE_NEEDS) and bool(_CREATIVE.search(t))),
            float(_may_match(low, _LIST_NEEDS) and bool(_LIST.search(t))),
            float(_may_match(low, _TRANSLATE_NEEDS) and bool(_TRANSLATE.search(t))),
            (len(t) - len(t.encode("ascii", "ignore"))) / n * 10,  # characters beyond ASCII
            digits / n * 10,
            upper / letters * 10,
        ],
        dtype=np.float32,
    )


_MEMO: dict[str, np.ndarray] = {}  # text → row; pure, so safe to memoise (folds of one table share rows)
_MEMO_MAX = 1_000_000  # ~150 MB at most; cleared when full rather than grown without bound


def query_feature_matrix(texts: Sequence[str | None]) -> np.ndarray:
    """(len(texts), n_features) float32 matrix of :func:`query_features` (memoised per text)."""
    if not texts:
        return np.zeros((0, len(QUERY_FEATURE_NAMES)), dtype=np.float32)
    if len(_MEMO) > _MEMO_MAX:
        _MEMO.clear()
    rows = []
    for t in texts:
        key = t or ""
        row = _MEMO.get(key)
        if row is None:
            row = _MEMO[key] = query_features(key)
        rows.append(row)
    return np.stack(rows)
