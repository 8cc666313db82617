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


def query_features(text: str | None) -> np.ndarray:
    """Feature vector (float32, ``len(QUERY_FEATURE_NAMES)``) of one query text."""
    t = text or ""
    n = max(len(t), 1)
    letters = sum(map(str.isalpha, t)) or 1
    head = t.lstrip()[:200]
    return np.array(
        [
            math.log1p(len(t)),
            math.log1p(len(t.split())),
            math.log1p(t.count("\n") + 1),
            min(len(_CODE.findall(t)), 10) / 2.0,
            min(len(_MATHS.findall(t)), 10) / 2.0,
            float("?" in t),
            float(bool(_WH.match(head))),
            float(bool(_IMPERATIVE.match(head))),
            float(bool(_CREATIVE.search(t))),
            float(bool(_LIST.search(t))),
            float(bool(_TRANSLATE.search(t))),
            (len(t) - len(t.encode("ascii", "ignore"))) / n * 10,  # characters beyond ASCII
            sum(map(str.isdigit, t)) / n * 10,
            sum(map(str.isupper, t)) / letters * 10,
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
