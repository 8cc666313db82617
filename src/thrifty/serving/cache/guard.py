"""Cheap lexical guard against semantic-cache near-misses (pure).

Sentence embeddings place "Convert 5 km to miles" and "Convert 7 km to miles" (or "… in France" and
"… in Spain", "is" and "is not") almost on top of each other. Before a semantic hit is served, the
cached prompt and the new one must agree on the features that flip an answer while barely moving the
embedding:

- **numbers** — the multiset of numbers (digits, with ``1,000`` = ``1000``; number words one…twenty,
  hundred, thousand, million, billion);
- **negations** — the count of negation markers (not, no, never, n't, without, none, nobody,
  nothing, nowhere, neither, nor, cannot);
- **units** — the set of unit words and symbols (km, miles, °C, $, %, …, singular/plural merged);
- **named entities** — every capitalised word that does not start a sentence (and every all-caps
  acronym) in one text must occur, case-folded, somewhere in the other. Checking containment rather
  than equality keeps lower-cased or re-punctuated paraphrases matching.

With ``strict=True`` one more feature must agree:

- **content words** — per sentence, the sequence of words left after dropping function words
  (articles, pronouns, auxiliaries, prepositions, conjunctions) and politeness fillers (please,
  thanks, hi, …); the texts must have the same multiset of these sequences. Question words
  (what/why/how …), negations, quantifiers and comparatives are kept: they change answers. This
  admits re-casing, punctuation, politeness and filler words and a different *sentence* order, and
  refuses any substitution of a content word — an antonym, another instruction verb, another unit,
  but also a synonym — and any swap of words inside a sentence ("from km to miles" / "from miles
  to km"), which MiniLM embeddings barely notice. ``benchmarks/semantic_cache.py`` measures both levels: embeddings cannot tell "best"
  from "worst" or "What" from "Why" inside a long prompt, so only the strict level meets a 1 %
  false-hit target at useful recall.

``lexical_mismatch(a, b, strict=False)`` returns the name of the first feature that differs, or None.
"""

from __future__ import annotations

import re
from collections import Counter
from functools import lru_cache
from typing import NamedTuple

__all__ = ["features", "lexical_mismatch", "LexicalFeatures", "content_words", "FUNCTION_WORDS"]

_WORD = re.compile(r"[A-Za-z][A-Za-z'’\-]*|\d[\d,]*(?:\.\d+)?|[$€£¥%°]")
_NUMBER = re.compile(r"^\d[\d,]*(?:\.\d+)?$")
_NUMBER_WORDS = {
    "zero": 0,
    "one": 1,
    "two": 2,
    "three": 3,
    "four": 4,
    "five": 5,
    "six": 6,
    "seven": 7,
    "eight": 8,
    "nine": 9,
    "ten": 10,
    "eleven": 11,
    "twelve": 12,
    "thirteen": 13,
    "fourteen": 14,
    "fifteen": 15,
    "sixteen": 16,
    "seventeen": 17,
    "eighteen": 18,
    "nineteen": 19,
    "twenty": 20,
    "thirty": 30,
    "forty": 40,
    "fifty": 50,
    "hundred": 100,
    "thousand": 1000,
    "million": 10**6,
    "billion": 10**9,
    "first": "1st",
    "second": "2nd",
    "third": "3rd",
    "fourth": "4th",
    "fifth": "5th",
}
_NEGATIONS = {"not", "no", "never", "without", "none", "nobody", "nothing", "nowhere", "neither", "nor", "cannot"}
_UNITS = {
    "mm": "mm",
    "cm": "cm",
    "m": "m",
    "km": "km",
    "meter": "m",
    "metre": "m",
    "kilometer": "km",
    "kilometre": "km",
    "centimeter": "cm",
    "millimeter": "mm",
    "mile": "mile",
    "mi": "mile",
    "mph": "mph",
    "kph": "kph",
    "foot": "ft",
    "feet": "ft",
    "ft": "ft",
    "inch": "in",
    "inches": "in",
    "yard": "yd",
    "g": "g",
    "gram": "g",
    "kg": "kg",
    "kilogram": "kg",
    "mg": "mg",
    "pound": "lb",
    "lb": "lb",
    "lbs": "lb",
    "ounce": "oz",
    "oz": "oz",
    "ton": "t",
    "tonne": "t",
    "liter": "l",
    "litre": "l",
    "l": "l",
    "ml": "ml",
    "gallon": "gal",
    "cup": "cup",
    "tablespoon": "tbsp",
    "teaspoon": "tsp",
    "celsius": "c",
    "fahrenheit": "f",
    "kelvin": "k",
    "second": "s",
    "sec": "s",
    "minute": "min",
    "min": "min",
    "hour": "h",
    "hr": "h",
    "day": "day",
    "week": "week",
    "month": "month",
    "year": "year",
    "decade": "decade",
    "century": "century",
    "dollar": "usd",
    "usd": "usd",
    "$": "usd",
    "euro": "eur",
    "eur": "eur",
    "€": "eur",
    "pound sterling": "gbp",
    "£": "gbp",
    "yen": "jpy",
    "¥": "jpy",
    "percent": "%",
    "%": "%",
    "°": "deg",
    "degree": "deg",
    "byte": "B",
    "kb": "kB",
    "mb": "MB",
    "gb": "GB",
    "tb": "TB",
    "watt": "W",
    "kw": "kW",
    "kwh": "kWh",
    "volt": "V",
    "hz": "Hz",
    "ghz": "GHz",
    "mhz": "MHz",
    "calorie": "cal",
    "kcal": "kcal",
}
_SENTENCE_END = {".", "!", "?", ":", ";", "\n"}
#: dropped before comparing content words (wh-words, negations, quantifiers, comparatives are NOT here)
FUNCTION_WORDS = frozenset(
    """a an the this that these those it its it's i i'm i've i'd i'll me my mine myself we us our ours you your
    yours yourself he him his she her hers they them their theirs is are was were be been being am do does did
    done have has had having will would shall should can could may might must of to in on at by for with from
    into onto about as than then so and or but if because while also just very really too there here
    please kindly thanks thank thx hi hello hey dear question quick help assist appreciate advance carefully
    answer tell let know like want wondering wonder okay ok well oh""".split()
)


class LexicalFeatures(NamedTuple):
    """Numbers (with multiplicity), negation count, units, entities and tokens — see module docstring."""

    numbers: Counter[str]
    negations: int
    units: frozenset[str]
    entities: frozenset[str]
    tokens: frozenset[str]


def _singular(word: str) -> str:
    if len(word) > 3 and word.endswith("es") and word[:-2] in _UNITS:
        return word[:-2]
    if len(word) > 2 and word.endswith("s") and word[:-1] in _UNITS:
        return word[:-1]
    return word


@lru_cache(maxsize=4096)
def features(text: str) -> LexicalFeatures:
    """Numbers, negations, units, entities and the case-folded token set of ``text``."""
    text = text.replace("’", "'")
    numbers: Counter[str] = Counter()
    negations = 0
    units: set[str] = set()
    entities: set[str] = set()
    tokens: set[str] = set()
    sentence_start = True
    pos = 0
    for match in _WORD.finditer(text):
        gap = text[pos : match.start()]
        pos = match.end()
        if any(ch in _SENTENCE_END for ch in gap):
            sentence_start = True
        tok = match.group(0)
        low = tok.lower().strip("'-")
        if _NUMBER.match(tok):
            value = tok.replace(",", "")
            numbers[value.rstrip("0").rstrip(".") if "." in value else value.lstrip("0") or "0"] += 1
            sentence_start = False
            continue
        if low.endswith("n't"):
            negations += 1
            low = low[:-3]
        elif low in _NEGATIONS:
            negations += 1
        if low in _NUMBER_WORDS:
            numbers[str(_NUMBER_WORDS[low])] += 1
        unit = _UNITS.get(_singular(low))
        if unit is not None and (
            len(low) > 2 or tok in "$€£¥%°" or low in {"km", "kg", "mm", "cm", "lb", "oz", "ml", "mg", "gb", "mb", "kb", "tb"}
        ):
            units.add(unit)
        tokens.add(low)
        is_cap = tok[:1].isupper() and not tok.isupper() or (tok.isupper() and len(tok) >= 2)
        if is_cap and not sentence_start and low not in {"i", "i'm", "i've", "i'd", "i'll"}:
            entities.add(low)
        sentence_start = False
    return LexicalFeatures(numbers, negations, frozenset(units), frozenset(entities), frozenset(tokens))


_SENTENCES = re.compile(r"[.!?:;\n]+(?:\s+|$)")


@lru_cache(maxsize=4096)
def content_words(text: str) -> tuple[tuple[str, ...], ...]:
    """Sorted tuple of the per-sentence content-word sequences of ``text`` (empty ones dropped)."""
    out = []
    for sentence in _SENTENCES.split(text.replace("’", "'")):
        seq = []
        for match in _WORD.finditer(sentence):
            low = match.group(0).lower().strip("'-")
            if low.endswith("n't"):
                low = "not"
            if low and low not in FUNCTION_WORDS:
                seq.append(low)
        if seq:
            out.append(tuple(seq))
    return tuple(sorted(out))


def lexical_mismatch(a: str, b: str, strict: bool = False) -> str | None:
    """Which guarded feature differs between ``a`` and ``b`` ("numbers", "negation", "units",
    "entities", and with ``strict`` "content"), or None when they agree on all of them."""
    fa, fb = features(a), features(b)
    if fa.numbers != fb.numbers:
        return "numbers"
    if fa.negations != fb.negations:
        return "negation"
    if fa.units != fb.units:
        return "units"
    if not fa.entities <= fb.tokens or not fb.entities <= fa.tokens:
        return "entities"
    if strict and content_words(a) != content_words(b):
        return "content"
    return None
