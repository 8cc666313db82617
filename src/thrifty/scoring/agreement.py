"""Agreement between cascade tiers: how similar a tier's answer is to an earlier tier's answer.

Two models that independently reach the same answer are more often right than either alone (the
"agreement-based cascading" and mixture-of-thought signal). For answers ``a`` (this tier) and ``b``
(the earlier tier) the features are:

``agree_jaccard``  token Jaccard similarity of the lower-cased word sets (1.0 when both are empty);
``agree_exact``    1.0 when the normalised answers are equal (case, surrounding punctuation and
                   whitespace ignored) — for short-answer tasks the decisive form;
``agree_cosine``   cosine of the two answers' embeddings, when embeddings are given (else absent).

Pure functions; the cascade (:mod:`thrifty.offline.cascade_policy`, option ``agreement``) adds them
to every non-first tier's scorer inputs, compared with the first tier's answer.
"""

from __future__ import annotations

import re
from typing import Sequence

import numpy as np

__all__ = ["AGREEMENT_NAMES", "normalise_answer", "token_jaccard", "agreement_features"]

AGREEMENT_NAMES = ("agree_jaccard", "agree_exact", "agree_cosine")
_WORD = re.compile(r"\w+", re.UNICODE)
_EDGE = re.compile(r"^[\W_]+|[\W_]+$", re.UNICODE)


def normalise_answer(text: str | None) -> str:
    """Lower-cased, inner whitespace collapsed, leading/trailing punctuation and spaces removed."""
    return _EDGE.sub("", " ".join((text or "").lower().split()))


def token_jaccard(a: str | None, b: str | None) -> float:
    """|words(a) ∩ words(b)| / |words(a) ∪ words(b)| over lower-cased word tokens (1.0 if both empty)."""
    sa, sb = set(_WORD.findall((a or "").lower())), set(_WORD.findall((b or "").lower()))
    if not sa and not sb:
        return 1.0
    return len(sa & sb) / len(sa | sb)


def agreement_features(
    answers: Sequence[str | None],
    earlier: Sequence[str | None],
    emb: np.ndarray | None = None,
    earlier_emb: np.ndarray | None = None,
) -> np.ndarray:
    """(n, 2) [jaccard, exact] per answer pair, or (n, 3) with the embeddings' cosine appended."""
    if len(answers) != len(earlier):
        raise ValueError(f"agreement needs one earlier answer per answer ({len(answers)} vs {len(earlier)})")
    cols = [
        [token_jaccard(a, b) for a, b in zip(answers, earlier)],
        [float(normalise_answer(a) == normalise_answer(b)) for a, b in zip(answers, earlier)],
    ]
    if emb is not None and earlier_emb is not None:
        x, y = np.asarray(emb, np.float64), np.asarray(earlier_emb, np.float64)
        nx, ny = np.linalg.norm(x, axis=1), np.linalg.norm(y, axis=1)
        cols.append(list(np.einsum("ij,ij->i", x, y) / np.maximum(nx * ny, 1e-12)))
    return np.asarray(cols, dtype=np.float64).T.reshape(len(answers), len(cols))
