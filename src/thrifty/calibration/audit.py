"""One sampled audit, without I/O of its own: which requests are audited, how every tier's answer is
obtained and judged against the reference, and what the audit cost.

- :func:`audit_sampled` decides from a hash of ``seed`` and the request id, so the same request id
  always gets the same answer (reproducible, and the same in every worker process).
- :func:`match_verdict` grades an answer against the reference's answer with no model
  (``match:exact|choice|numeric|agree``); :func:`llm_verdicts` asks an LLM judge with the versioned
  rubrics of :mod:`thrifty.calibration.judge` (``absolute-v1``: both rated 1–10; ``pairwise-v1``: both orders).
- :func:`run_audit` drives one audit: answers the cascade already produced are reused, the other
  tiers are called (``call``), then every answer is judged (``ask`` for an LLM judge). A reference or
  judge failure raises :class:`AuditFailed` (the caller records a retryable error).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Mapping, Sequence

from thrifty.calibration.audit_sampling import uniform_draw
from thrifty.calibration.judge import RUBRICS, parse_preference, parse_rating
from thrifty.calibration.label import make_grader, normalise, parse_choice, parse_number
from thrifty.errors import ProviderError
from thrifty.types import Completion

__all__ = [
    "audit_sampled",
    "agree_key",
    "match_verdict",
    "rubric_version",
    "Verdict",
    "TierAnswer",
    "AuditFailed",
    "llm_verdicts",
    "run_audit",
    "JUDGE_MAX_TOKENS",
]

JUDGE_MAX_TOKENS = 16  # a verdict is a number or a letter


def audit_sampled(request_id: str, rate: float, seed: int = 0) -> bool:
    """Whether ``request_id`` is audited at ``rate``: a uniform draw from SHA-256(seed, id)."""
    if rate >= 1.0:
        return True
    if rate <= 0.0:
        return False
    return uniform_draw(request_id, seed) < rate


def rubric_version(judge: str, rubric: str | None) -> str:
    """``match-agree-v1`` for a match judge, the rubric's own version (``pairwise-v1``) for an LLM judge."""
    if judge.startswith("match:"):
        return f"match-{judge[6:]}-v1"
    return RUBRICS[rubric or "pairwise"].version


def agree_key(text: Any, choices: Sequence[str] = ()) -> str:
    """What ``match:agree`` compares: the first allowed choice in the answer when ``choices`` are
    set (and one occurs), else the first non-empty line, case-folded, whitespace collapsed and
    surrounding punctuation stripped ("Up." and "up\\n\\nNews: …" agree)."""
    s = "" if text is None else str(text)
    if choices:
        pick = parse_choice(s, sorted(choices, key=len, reverse=True))
        if pick is not None:
            return normalise(pick)
    for line in s.splitlines():
        if normalise(line):
            return normalise(line)
    return ""


class AuditFailed(Exception):
    """The audit cannot finish now (reference or judge failed); ``cost_usd``: paid to the judge so far."""

    def __init__(self, message: str, cost_usd: float = 0.0) -> None:
        super().__init__(message)
        self.cost_usd = cost_usd


def match_verdict(method: str, answer: str | None, reference: str | None, choices: Sequence[str] = ()) -> tuple[float, str]:
    """(quality 1/0, parsed verdict) of ``answer`` against the reference's answer."""
    ref = "" if reference is None else str(reference)
    if method == "agree":
        want = agree_key(ref, choices)
        if not want:
            raise AuditFailed("the reference's answer is empty: nothing to agree with")
        got = agree_key(answer, choices)
        return float(got == want), got
    if method == "choice":
        grader = make_grader("choice", choices=list(choices))
        gold = parse_choice(ref, grader.choices)
        if gold is None:
            raise AuditFailed(f"the reference's answer names none of the choices {list(choices)}")
        return grader.grade(answer, gold)
    if method == "numeric":
        number = parse_number(ref)
        if number is None:
            raise AuditFailed("the reference's answer has no number to compare with")
        return make_grader("numeric").grade(answer, repr(number))
    return make_grader("exact").grade(answer, ref)


@dataclass(frozen=True)
class Verdict:
    quality: float
    at_least_as_good: bool
    verdict: str
    raw: str | None = None


Ask = Callable[[str], Awaitable[Completion]]


async def llm_verdicts(ask: Ask, rubric: str, prompt: str, answers: Mapping[str, str], reference: str) -> tuple[dict[str, Verdict], float]:
    """Every answer judged against ``answers[reference]`` by an LLM judge; (verdicts, judge cost).

    ``absolute``: each answer (the reference's too) rated 1–10, quality = (rating − 1) / 9, at least
    as good = its rating ≥ the reference's. ``pairwise``: each answer compared with the reference in
    both orders, win 1 / tie 0.5 / loss 0 averaged; at least as good = quality ≥ 0.5; the reference
    itself gets 0.5. An unparseable reply raises :class:`AuditFailed` (retried later)."""
    rb = RUBRICS[rubric]
    paid = 0.0

    async def reply(text: str) -> str:
        nonlocal paid
        try:
            c = await ask(text)
        except ProviderError as exc:
            raise AuditFailed(f"the judge failed: {exc}", paid) from exc
        paid += float(c.cost_usd)
        return c.text or ""

    out: dict[str, Verdict] = {}
    if rubric == "absolute":
        ratings: dict[str, tuple[float, str]] = {}
        for model in [reference, *[m for m in answers if m != reference]]:
            raw = await reply(rb.template.format(prompt=prompt, answer=answers[model]))
            rating = parse_rating(raw)
            if rating is None:
                raise AuditFailed(f"unparseable verdict for {model}: {raw[:200]!r}", paid)
            ratings[model] = (rating, raw)
        ref_rating = ratings[reference][0]
        for model, (rating, raw) in ratings.items():
            out[model] = Verdict((rating - 1.0) / 9.0, rating >= ref_rating, f"{rating:g}", raw)
        return out, paid
    ref = answers[reference]
    for model, answer in answers.items():
        if model == reference:
            out[model] = Verdict(0.5, True, "reference", "")
            continue
        raw1 = await reply(rb.template.format(prompt=prompt, a=answer, b=ref))
        raw2 = await reply(rb.template.format(prompt=prompt, a=ref, b=answer))
        p1, p2 = parse_preference(raw1), parse_preference(raw2)
        scores = [s for s in ({"A": 1.0, "C": 0.5, "B": 0.0}.get(p1 or ""), {"B": 1.0, "C": 0.5, "A": 0.0}.get(p2 or "")) if s is not None]
        if not scores:
            raise AuditFailed(f"unparseable verdicts for {model}: {raw1[:100]!r} ||| {raw2[:100]!r}", paid)
        q = sum(scores) / len(scores)
        out[model] = Verdict(q, q >= 0.5, f"{p1 or '?'},{p2 or '?'}", f"{raw1} ||| {raw2}")
    return out, paid


@dataclass
class TierAnswer:
    """One tier's answer to the audited request (reused from serving, or called by the audit)."""

    model: str
    tier: int  # index in the profile's tiers; -1: a reference outside them
    text: str | None = None
    cost_usd: float = 0.0
    input_tokens: int | None = None
    output_tokens: int | None = None
    reused: bool = False
    error: str | None = None

    def row(self, verdict: Verdict | None = None) -> dict[str, Any]:
        """The ``audit_answers`` row (:mod:`thrifty.store.audits`)."""
        return {
            "model": self.model,
            "tier": self.tier,
            "answer": self.text,
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "cost_usd": self.cost_usd,
            "reused": self.reused,
            "error": self.error,
            "quality": verdict.quality if verdict else None,
            "at_least_as_good": verdict.at_least_as_good if verdict else None,
            "verdict": verdict.verdict if verdict else None,
            "judge_raw": verdict.raw if verdict else None,
        }


@dataclass
class AuditResult:
    answers: dict[str, TierAnswer]
    verdicts: dict[str, Verdict]
    judge_cost_usd: float = 0.0
    rows: list[dict[str, Any]] = field(default_factory=list)


Call = Callable[[str], Awaitable[Completion]]
Saved = Callable[[TierAnswer], Awaitable[None]]


async def run_audit(
    *,
    tiers: Sequence[str],
    reference: str,
    served_model: str | None,
    explore: str,
    judge: str,
    rubric: str | None,
    prompt: str,
    have: Mapping[str, TierAnswer],
    call: Call,
    saved: Saved,
    ask: Ask | None = None,
    choices: Sequence[str] = (),
) -> AuditResult:
    """Obtain and judge the answers of one audit.

    ``have``: answers already at hand (the cascade's, or saved by an earlier run); the others among
    ``tiers`` (``explore="all"``) or just the reference (``"served"``) come from ``call(model)``, and
    each is passed to ``saved`` at once. A non-reference tier that fails is kept with its error (no
    verdict); a reference failure raises :class:`AuditFailed`."""
    answers = dict(have)
    wanted = list(tiers) if explore == "all" else [m for m in (served_model,) if m]
    wanted += [reference] if reference not in wanted else []
    for model in wanted:
        if model in answers and answers[model].error is None:
            continue
        tier = list(tiers).index(model) if model in tiers else -1
        try:
            c = await call(model)
        except ProviderError as exc:
            if model == reference:
                raise AuditFailed(f"the reference {model} failed: {exc}") from exc
            answers[model] = TierAnswer(model, tier, error=str(exc)[:500])
            await saved(answers[model])
            continue
        answers[model] = TierAnswer(model, tier, c.text or "", float(c.cost_usd), c.usage.input_tokens, c.usage.output_tokens)
        await saved(answers[model])
    judged = {m: a.text or "" for m, a in answers.items() if a.error is None and m in wanted}
    paid = 0.0
    if judge.startswith("match:"):
        verdicts = {}
        for m, text in judged.items():
            q, v = (1.0, "reference") if m == reference else match_verdict(judge[6:], text, judged[reference], choices)
            verdicts[m] = Verdict(q, q >= 1.0, v)
    else:
        assert ask is not None and rubric is not None
        verdicts, paid = await llm_verdicts(ask, rubric, prompt, judged, reference)
    rows = [a.row(verdicts.get(m)) for m, a in answers.items() if m in wanted]
    return AuditResult(answers, verdicts, paid, rows)
