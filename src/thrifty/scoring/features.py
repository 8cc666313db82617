"""Cheap, pure features of a (query, answer) pair for answer scorers.

Every feature is a float computed from the text alone (no models, no I/O), so the same function runs
offline over a routing table and live in the gateway. Judges of open-ended answers (AlpacaEval's
GPT-4 judge in particular) prefer long, structured answers and punish refusals and empty or
degenerate output; these features expose exactly that. ``answer=None`` (no answer text, e.g. a
query-only scorer) gives the query features and zeros for the answer features.

``FEATURE_NAMES`` lists the columns of :func:`answer_features` / :func:`feature_matrix` in order.
The query–answer cosine needs embeddings and is added by :func:`with_cosine`.
"""

from __future__ import annotations

import math
import re
from typing import Sequence

import numpy as np

__all__ = ["FEATURE_NAMES", "QueryPart", "query_part", "answer_features", "feature_matrix", "with_cosine", "REFUSAL_MARKERS"]

REFUSAL_MARKERS: tuple[str, ...] = (
    "i'm sorry",
    "i am sorry",
    "i apologize",
    "i apologise",
    "my apologies",
    "i cannot",
    "i can't",
    "i can not",
    "i'm not able",
    "i am not able",
    "i'm unable",
    "i am unable",
    "as an ai",
    "as a language model",
    "as an artificial intelligence",
    "i don't have personal",
    "i do not have personal",
    "i'm just an ai",
    "not appropriate",
    "i won't",
    "i will not",
    "unfortunately",
)

_RX_REFUSAL = re.compile("|".join(re.escape(m) for m in REFUSAL_MARKERS))
_RX_WORD = re.compile(r"\w+", re.UNICODE)
_RX_LIST = re.compile(r"^\s*(?:[-*•+]|\d+[.)])\s+", re.MULTILINE)
_RX_HEADER = re.compile(r"^\s*#{1,6}\s", re.MULTILINE)
_RX_BOLD = re.compile(r"\*\*[^*\n]+\*\*")
_RX_CODE_FENCE = re.compile(r"```")
_RX_CODE_HINT = re.compile(r"\b(def|class|return|import|function|var|const|public|printf|SELECT|#include)\b|[{};]\s*$", re.MULTILINE)
_RX_MATH = re.compile(r"\$[^$]+\$|\\frac|\\sqrt|\d\s*[-+*/^=]\s*\d|[=≈≤≥×÷√∑∫]")
_RX_DIGIT = re.compile(r"\d")
_RX_QUERY_CODE = re.compile(r"\b(code|python|javascript|java|c\+\+|sql|function|program|script|regex|html|css|bash)\b", re.I)
_RX_QUERY_MATH = re.compile(r"\b(calculate|solve|equation|sum|integral|derivative|probability|how many|math)\b|\d\s*[-+*/^=]\s*\d", re.I)

FEATURE_NAMES: tuple[str, ...] = (
    "q_log_chars",
    "q_log_words",
    "q_is_code",
    "q_is_math",
    "q_is_question",
    "a_empty",
    "a_log_chars",
    "a_log_words",
    "a_log_lines",
    "a_log_ratio_to_query",
    "a_refusal_markers",
    "a_refusal_start",
    "a_list_items",
    "a_headers",
    "a_bold",
    "a_code_fence",
    "a_code_hints",
    "a_math_markers",
    "a_digit_share",
    "a_unique_word_share",
    "a_repeated_line_share",
    "a_ends_cleanly",
    "a_non_ascii_share",
    "a_query_word_overlap",
)


def _log1p(x: float) -> float:
    return math.log1p(max(0.0, x))


_ASCII_DIGITS = b"0123456789"
# Literal text each pattern's every match holds: a text holding none of them skips the regular
# expression (exact: these patterns are case-sensitive or run on the already lower-cased text).
_CODE_HINT_NEEDS = ("def", "class", "return", "import", "function", "var", "const", "public", "printf", "SELECT",
                    "#include", "{", "}", ";")  # fmt: skip
_MATH_NEEDS = ("$", "\\frac", "\\sqrt", "=", "≈", "≤", "≥", "×", "÷", "√", "∑", "∫")
_OPS = ("-", "+", "*", "/", "^", "=")
_LIST_NEEDS = ("-", "*", "•", "+")


# ASCII bytes that are not \w (letters, digits, underscore) → space: splitting that is \w+'s findall, in C
_NON_WORD_TO_SPACE = bytes(c if (chr(c).isalnum() or c == 95) else 32 for c in range(128)) + b" " * 128


def _words(text: str) -> list[str]:
    """``re.findall(r"\\w+", text)``; ASCII text goes through ``bytes.translate`` (3–5× faster)."""
    if text.isascii():
        return text.encode("ascii").translate(_NON_WORD_TO_SPACE).decode("ascii").split()
    return _RX_WORD.findall(text)


def _has(text: str, needs: Sequence[str]) -> bool:
    return any(map(text.__contains__, needs))  # map over a bound method: no generator frame per text


QueryPart = tuple[list[float], frozenset[str]]  # the query's features and its distinct lower-cased words


def query_part(query: str | None) -> QueryPart:
    """The query's share of :func:`answer_features` (the same for every answer to it)."""
    q = query or ""
    q_words = _words(q.lower())
    return [
        _log1p(len(q)),
        _log1p(len(q_words)),
        float(bool(_RX_QUERY_CODE.search(q))),
        float(bool(_RX_QUERY_MATH.search(q))),
        float("?" in q),
    ], frozenset(q_words)


def answer_features(query: str | None, answer: str | None, part: QueryPart | None = None) -> np.ndarray:
    """Feature vector (``len(FEATURE_NAMES)`` floats) of one (query, answer) pair. ``part``: the
    query's :func:`query_part`, when a batch has it already (one pass per query, not per answer)."""
    q = query or ""
    q_out, q_words = query_part(q) if part is None else part
    log1p = math.log1p
    out = list(q_out)
    if answer is None:
        return np.asarray(out + [0.0] * (len(FEATURE_NAMES) - len(out)), dtype=np.float64)
    a = answer
    stripped = a.strip()
    low = stripped.lower()
    words = _words(low)
    n_chars, n_words = len(stripped), len(words)
    lines = [ln for ln in map(str.strip, stripped.splitlines()) if ln]
    head = low[:160]
    uniq_lines = len(set(lines))
    ascii_ = stripped.isascii()
    if ascii_:  # the same count as \d over ASCII text, in C
        b = stripped.encode("ascii")
        n_digits = len(b) - len(b.translate(None, _ASCII_DIGITS))
    else:
        n_digits = len(_RX_DIGIT.findall(stripped))
    low2k = low[:2000]
    refusal = _has(low2k, REFUSAL_MARKERS)  # the pattern is these literals: none → no match
    maths = _has(stripped, _MATH_NEEDS) or (n_digits > 0 and _has(stripped, _OPS))
    listy = _has(stripped, _LIST_NEEDS) or (n_digits > 0 and ("." in stripped or ")" in stripped))
    out += [
        float(n_chars < 2),
        log1p(n_chars),
        log1p(n_words),
        log1p(len(lines)),
        math.log((n_chars + 1.0) / (len(q) + 1.0)),
        float(len(_RX_REFUSAL.findall(low2k))) if refusal else 0.0,
        float(bool(_RX_REFUSAL.search(head))) if refusal else 0.0,
        log1p(len(_RX_LIST.findall(stripped))) if listy else 0.0,
        log1p(len(_RX_HEADER.findall(stripped))) if "#" in stripped else 0.0,
        log1p(len(_RX_BOLD.findall(stripped))) if "**" in stripped else 0.0,
        float(stripped.count("```") >= 2),  # non-overlapping, as findall counts a literal
        log1p(len(_RX_CODE_HINT.findall(stripped))) if _has(stripped, _CODE_HINT_NEEDS) else 0.0,
        log1p(len(_RX_MATH.findall(stripped))) if maths else 0.0,
        n_digits / max(1, n_chars),
        len(set(words)) / max(1, n_words),
        1.0 - uniq_lines / max(1, len(lines)),
        float(stripped[-1:] in ".!?)]}`\"'*" if stripped else 0.0),
        0.0 if ascii_ else (n_chars - len(stripped.encode("ascii", "ignore"))) / max(1, n_chars),  # chars > U+007F
        len(q_words.intersection(words)) / max(1, len(q_words)),
    ]
    return np.asarray(out, dtype=np.float64)


def feature_matrix(queries: Sequence[str | None], answers: Sequence[str | None]) -> np.ndarray:
    """(N, F) features of N (query, answer) pairs."""
    if len(queries) != len(answers):
        raise ValueError("queries and answers differ in length")
    if not len(queries):
        return np.zeros((0, len(FEATURE_NAMES)))
    parts = {q: query_part(q) for q in set(queries)}
    return np.stack([answer_features(q, a, parts[q]) for q, a in zip(queries, answers)])


def with_cosine(features: np.ndarray, query_emb: np.ndarray | None, answer_emb: np.ndarray | None) -> np.ndarray:
    """Append the query–answer cosine similarity column (0 when either embedding is missing).

    Embeddings are expected L2-normalised (as :mod:`thrifty.scoring.embedding` returns them).
    """
    if query_emb is None or answer_emb is None:
        cos = np.zeros((features.shape[0], 1))
    else:
        cos = np.sum(np.asarray(query_emb, np.float64) * np.asarray(answer_emb, np.float64), axis=1, keepdims=True)
    return np.hstack([features, cos])
