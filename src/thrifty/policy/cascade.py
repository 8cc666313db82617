"""The cascade policy (FrugalGPT): ask tiers cheapest-first, accept the first good-enough answer.

Sans-I/O: ``plan()`` yields ``Call(k)``, is sent tier k's :class:`Completion` (or the exception the
call raised) and returns a :class:`Decision`. The gateway drives it live, offline replay drives it
over recorded answers — the same object, so offline numbers predict online behaviour.

Rules
-----
- Tier k < last: score its answer; accept if ``score >= thresholds[k]``, else escalate.
- The last tier's answer is always accepted (it is not scored unless ``score_last``).
- A tier that fails (provider error before any output) is skipped: escalate to the next tier.
- If the last tier fails too, the best-scored answer already received is returned; if no tier
  produced an answer the decision has ``completion=None`` and the caller reports the failure.
- ``start`` lets a router choose the first tier (the hybrid policy).

Answer selection (``select``)
-----------------------------
- ``"last"`` (default, FrugalGPT): when no tier accepts, the last tier's answer is returned.
- ``"best"``: when no tier accepts, the last tier's answer is scored too and the best-scored answer
  among every tier called is returned (ties go to the later tier). Cost is unchanged — every tier
  called is paid — and an accepted answer is still returned at once. A live driver must therefore
  buffer the last tier as well (the engine streams it live only with ``select="last"``).
- ``"running"``: the cascade carries the best-scored answer so far; tier k stops the cascade when
  *that* score (max over the tiers called, ties to the later tier) reaches ``thresholds[k]`` and
  returns that answer — earlier tiers' evidence counts at every decision, not only at the end (a
  weak tier-k answer after a nearly-good earlier one need not pay for tier k+1). The last tier is
  as with ``"best"``. A step's ``score`` is its own answer's score.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Sequence

from thrifty.types import Call, ChatRequest, Completion, Decision, Plan, Scorer, Step

__all__ = ["CascadePolicy", "SELECT_MODES"]

SELECT_MODES = ("last", "best", "running")


class CascadePolicy:
    blocking = False  # scoring an answer is cheap; the engine advances the plan on the event loop

    def __init__(
        self,
        tiers: Sequence[str],
        thresholds: Sequence[float],
        scorer: Scorer | None,
        *,
        score_last: bool = False,
        select: str = "last",
    ) -> None:
        if not tiers:
            raise ValueError("a cascade needs at least one tier")
        if len(thresholds) != len(tiers) - 1:
            raise ValueError(f"{len(tiers)} tiers need {len(tiers) - 1} thresholds, got {len(thresholds)}")
        if len(tiers) > 1 and scorer is None:
            raise ValueError("a cascade with more than one tier needs a scorer")
        if select not in SELECT_MODES:
            raise ValueError(f"select must be one of {SELECT_MODES}, not {select!r}")
        self.tiers = tuple(tiers)
        self.thresholds = tuple(float(t) for t in thresholds)
        self.scorer = scorer
        self.select = select
        self.score_last = score_last or (select != "last" and len(self.tiers) > 1)

    def __repr__(self) -> str:
        sel = "" if self.select == "last" else f", select={self.select!r}"
        return f"CascadePolicy(tiers={list(self.tiers)}, thresholds={[round(t, 4) for t in self.thresholds]}{sel})"

    def plan(self, request: ChatRequest, start: int = 0) -> Plan:
        steps: list[Step] = []
        best: tuple[float, int, Completion] | None = None
        last = len(self.tiers) - 1
        for k in range(max(0, min(start, last)), last + 1):
            model = self.tiers[k]
            result = yield Call(k)
            if isinstance(result, BaseException):
                steps.append(Step(k, model, error=f"{type(result).__name__}: {result}"))
                continue
            cost, latency = result.cost_usd, result.latency_s
            if k == last:
                score = float(self.scorer.score(request, result, model)) if (self.score_last and self.scorer) else None
                if self.select != "last" and best is not None and score is not None and best[0] > score:
                    steps.append(Step(k, model, score=score, accepted=False, cost_usd=cost, latency_s=latency))
                    return Decision(best[1], best[2], tuple(_accept(steps, best[1])))
                steps.append(Step(k, model, score=score, accepted=True, cost_usd=cost, latency_s=latency))
                return Decision(k, result, tuple(steps))
            assert self.scorer is not None
            score = float(self.scorer.score(request, result, model))
            if best is None or score >= best[0]:
                best = (score, k, result)
            ok = (best[0] if self.select == "running" else score) >= self.thresholds[k]
            if ok and best[1] != k and self.select == "running":  # the best answer so far is good enough
                steps.append(Step(k, model, score=score, threshold=self.thresholds[k], cost_usd=cost, latency_s=latency))
                return Decision(best[1], best[2], tuple(_accept(steps, best[1])))
            steps.append(Step(k, model, score=score, threshold=self.thresholds[k], accepted=ok, cost_usd=cost, latency_s=latency))
            if ok:
                return Decision(k, result, tuple(steps))
        if best is not None:  # the last tier failed: fall back to the best answer we did get
            return Decision(best[1], best[2], tuple(steps))
        return Decision(-1, None, tuple(steps))


def _accept(steps: list[Step], tier: int) -> list[Step]:
    """The trace with tier ``tier``'s step marked accepted (the answer ``select="best"`` returned)."""
    return [replace(s, accepted=True) if s.tier == tier else s for s in steps]
