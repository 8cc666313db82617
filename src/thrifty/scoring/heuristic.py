"""A simple, honest answer scorer for the embedded local default: text checks only, no model.

``HeuristicScorer().score(request, completion, model)`` is the product of penalty factors in [0, 1]
(1 = no problem found), each defined below; :meth:`HeuristicScorer.explain` returns them by name.
It catches answers that are obviously bad — empty, refusals, loops, junk, echoes of the prompt,
truncated, too short for the question — and says nothing about whether a fluent answer is *true*.
Deterministic, pure, microseconds per call.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Mapping

from thrifty.types import ChatRequest, Completion

__all__ = ["HeuristicScorer", "REFUSALS"]

REFUSALS = (
    "i'm sorry",
    "i am sorry",
    "i apologize",
    "i apologise",
    "sorry, but",
    "i cannot",
    "i can't",
    "i can not",
    "i'm not able",
    "i am not able",
    "i'm unable",
    "i am unable",
    "as an ai",
    "as a language model",
    "i don't know",
    "i do not know",
    "i'm not sure",
    "i am not sure",
    "not able to help",
)
_WORD = re.compile(r"\w+", re.UNICODE)
_TRANSCRIPT = re.compile(r"(^|\n)\s*(user|assistant|human|ai|question|answer)\s*:", re.IGNORECASE)
_OK_SYMBOLS = set(".,;:!?'\"()[]{}-–—_/\\*#%&+=<>@$€£°|`~^…’‘“”\n\t ")


def _words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def _script(ch: str) -> str:
    """Writing system of a letter: the first word of its Unicode name (LATIN, CYRILLIC, CJK, …)."""
    return unicodedata.name(ch, "?").split(" ", 1)[0]


def _scripts(text: str) -> set[str]:
    return {_script(ch) for ch in text if ch.isalpha()}


def _ngrams(words: list[str], n: int) -> list[tuple[str, ...]]:
    return [tuple(words[i : i + n]) for i in range(len(words) - n + 1)]


class HeuristicScorer:
    """Scores an answer's surface quality in [0, 1]; see :meth:`explain` for the factors."""

    def __init__(self, *, min_words_short: int = 1, min_words_long: int = 8, long_question_words: int = 15) -> None:
        self.min_words_short = min_words_short
        self.min_words_long = min_words_long
        self.long_question_words = long_question_words

    def __repr__(self) -> str:
        return "HeuristicScorer()"

    def explain(self, request: ChatRequest, completion: Completion | None) -> Mapping[str, float]:
        """Penalty factors by name (1.0 = fine):

        - ``empty``: 0 for no text (and no tool call);
        - ``junk``: share of characters (of at least 20) that are control, replacement (U+FFFD) or
          unusual symbols — 1 up to 10 %, falling linearly to 0 at 40 %;
        - ``refusal``: 0.3 if the first 160 characters refuse or apologise;
        - ``repetition``: distinct word-trigram share u (answers of ≥ 12 words) — 1 for u ≥ 0.7,
          linear to 0.05 at u = 0.25; and 0.5 if one non-empty line occurs 3+ times;
        - ``echo``: 0.2 if the answer is the prompt (or starts with it), else 1 − (share of the answer's
          trigrams found in the prompt − 0.6)⁺ × 2;
        - ``length``: words / needed (needed = 1, or 8 for questions of 15+ words), capped at 1, floor 0.3;
        - ``truncated``: 0.8 if generation stopped at the token limit;
        - ``transcript``: 0.6 if the answer carries on the dialogue (``User:`` / ``Assistant:`` lines);
        - ``script``: share s of the answer's letters written in a script the prompt does not use
          (e.g. Hebrew letters in answer to an English question; skipped when the prompt asks to
          translate) — 1 up to 10 %, then 1 − 2·(s − 0.1), floor 0.2.
        """
        if completion is None:
            return {"empty": 0.0}
        text = completion.text.strip()
        if not text:
            return {"empty": 0.9 if completion.tool_calls else 0.0}
        f: dict[str, float] = {}
        odd = sum(
            1
            for ch in text
            if ch == "\ufffd"
            or (unicodedata.category(ch)[0] == "C" and ch not in "\n\t")
            or (not ch.isalnum() and ch not in _OK_SYMBOLS and unicodedata.category(ch)[0] != "S")
        )
        odd += sum(1 for ch in text if unicodedata.category(ch) == "So")  # symbols/emoji soup
        share = odd / max(len(text), 20)  # a stray symbol in a two-word answer is not junk
        f["junk"] = 1.0 if share <= 0.1 else max(0.0, 1.0 - (share - 0.1) / 0.3)
        head = text[:160].lower().replace("’", "'")
        f["refusal"] = 0.3 if any(r in head for r in REFUSALS) else 1.0
        words = _words(text)
        rep = 1.0
        if len(words) >= 12:
            tri = _ngrams(words, 3)
            u = len(set(tri)) / len(tri)
            rep = 1.0 if u >= 0.7 else max(0.05, 0.05 + 0.95 * (u - 0.25) / 0.45)
        lines = [ln.strip().lower() for ln in text.splitlines() if ln.strip()]
        if lines and max(lines.count(ln) for ln in set(lines)) >= 3:
            rep *= 0.5
        f["repetition"] = rep
        prompt = request.prompt_text.strip().lower()
        pwords = _words(prompt)
        if pwords and (words == pwords or (len(words) >= len(pwords) and words[: len(pwords)] == pwords and len(pwords) >= 4)):
            f["echo"] = 0.2
        else:
            tri = _ngrams(words, 3)
            ptri = set(_ngrams(pwords, 3))
            overlap = sum(t in ptri for t in tri) / len(tri) if tri else 0.0
            f["echo"] = max(0.2, 1.0 - max(0.0, overlap - 0.6) * 2)
        needed = self.min_words_long if len(pwords) >= self.long_question_words else self.min_words_short
        f["length"] = max(0.3, min(1.0, len(words) / needed))
        f["truncated"] = 0.8 if completion.finish_reason == "length" else 1.0
        f["transcript"] = 0.6 if _TRANSCRIPT.search(text) else 1.0
        f["script"] = 1.0
        if "translat" not in prompt:
            asked = _scripts(prompt)
            letters = [_script(ch) for ch in text if ch.isalpha()]
            if asked and letters:
                foreign = sum(sc not in asked for sc in letters) / len(letters)
                f["script"] = 1.0 if foreign <= 0.1 else max(0.2, 1.0 - 2 * (foreign - 0.1))
        return f

    def score(self, request: ChatRequest, completion: Completion | None, model: str = "") -> float:
        value = 1.0
        for factor in self.explain(request, completion).values():
            value *= factor
        return round(max(0.0, min(1.0, value)), 4)
