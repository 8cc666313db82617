"""``[profiles.NAME.audit]``: the settings of sampled audits (issue #12) and their parser.

Kept apart from the other sections so the audit settings can change without touching them. Every
problem raises :class:`~thrifty.errors.ConfigError` whose ``key`` is the TOML path
(``profiles.support.audit.rate``) and whose ``fix`` says what to write instead. What the settings do:
``docs/audits.md``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping

from thrifty.errors import ConfigError

__all__ = ["AuditSettings", "AUDIT_MATCHES", "AUDIT_SAMPLINGS", "AUDIT_RUBRICS", "parse_audit", "check_audit_judges"]

#: the judges that need no model: each answer is compared with the reference's answer
AUDIT_MATCHES = ("exact", "choice", "numeric", "agree")
#: the versioned rubrics of :mod:`thrifty.calibration.judge` an LLM judge can use
AUDIT_RUBRICS = ("absolute", "pairwise")
_PERIODS = ("total", "day", "month")  # thrifty.serving.budget.PERIODS (a unit test keeps them equal)
_KEYS = (
    "rate",
    "judge",
    "rubric",
    "reference",
    "explore",
    "budget_usd",
    "budget_period",
    "seed",
    "choices",
    "queue_size",
    "max_attempts",
    "sampling",
)
#: how requests are picked for audit (thrifty.calibration.audit_sampling.SAMPLINGS; a unit test keeps them equal)
AUDIT_SAMPLINGS = ("uniform", "near_threshold", "near_or_above_threshold")


@dataclass(frozen=True)
class AuditSettings:
    """``[profiles.NAME.audit]``: sampled audits of served answers (see :mod:`thrifty.gateway.audits`).

    ``judge`` is ``"match:<exact|choice|numeric|agree>"`` (no model) or a provider / profile name
    used as an LLM judge with ``rubric``. ``reference`` None means the profile's dearest tier."""

    rate: float  # share of requests audited, in [0, 1] (seeded: decided from the request id)
    judge: str
    rubric: str = "pairwise"  # "absolute" | "pairwise" (LLM judge only)
    reference: str | None = None  # a tier or provider name; None: the profile's dearest tier
    explore: str = "all"  # "all": every tier answers | "served": only the served answer is judged
    budget_usd: float | None = None  # audit spend cap (kept apart from the serving budget)
    budget_period: str = "total"  # "total" | "day" | "month" (UTC)
    seed: int = 0
    choices: tuple[str, ...] = ()  # match:choice (and optionally match:agree): the allowed labels
    queue_size: int = 256  # audits waiting in memory at most; a full queue drops (and counts) the audit
    max_attempts: int = 3  # a failing audit is retried until it has been tried this many times
    sampling: str = "uniform"  # | "near_threshold" | "near_or_above_threshold": oversample requests scored near a threshold

    @property
    def match(self) -> str | None:
        """The method of a ``match:`` judge; None for an LLM judge."""
        return self.judge.split(":", 1)[1] if self.judge.startswith("match:") else None


def _number(tbl: Mapping[str, Any], key: str, path: str, default: Any, *, integer: bool = False, positive: bool = False) -> Any:
    if key not in tbl:
        return default
    v = tbl[key]
    ok = isinstance(v, int) if integer else isinstance(v, (int, float))
    what = ("an integer" if integer else "a number") + (" > 0" if positive else " ≥ 0")
    if isinstance(v, bool) or not ok or not math.isfinite(float(v)) or v < 0 or (positive and v == 0):
        raise ConfigError(f"expected {what}, got {v!r}", key=f"{path}.{key}", fix=f"write {key} = <{what}>")
    return v


def _text(tbl: Mapping[str, Any], key: str, path: str, default: str | None, example: str) -> str | None:
    if key not in tbl:
        return default
    v = tbl[key]
    if not isinstance(v, str) or not v.strip():
        raise ConfigError(f"expected a non-empty string, got {v!r}", key=f"{path}.{key}", fix=f"write {key} = {example}")
    return v


def parse_audit(tbl: Any, path: str, tiers: tuple[str, ...], providers: Mapping[str, Any]) -> AuditSettings | None:
    """``[profiles.NAME.audit]`` at TOML path ``path`` (None when absent). An LLM judge that names a
    profile is checked once every profile is known (:func:`check_audit_judges`)."""
    if tbl is None:
        return None
    if not isinstance(tbl, Mapping):
        raise ConfigError("expected a table", key=path, fix=f'write it as [{path}] with rate = 0.02 and judge = "match:agree"')
    for k in tbl:
        if k not in _KEYS:
            raise ConfigError(f"unknown setting {k!r}", key=f"{path}.{k}", fix=f"remove it or use one of: {', '.join(_KEYS)}")
    if "rate" not in tbl:
        raise ConfigError("missing", key=f"{path}.rate", fix="add rate = 0.02 (the share of requests audited, 0 to 1)")
    rate = tbl["rate"]
    if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0.0 <= float(rate) <= 1.0:
        raise ConfigError(
            f"a share of requests is in [0, 1], got {rate!r}",
            key=f"{path}.rate",
            fix="write rate = 0.02 (2% of requests), 1.0 (all) or 0 (off)",
        )
    if "judge" not in tbl:
        raise ConfigError("missing", key=f"{path}.judge", fix='add judge = "match:agree" or the name of a provider/profile')
    judge = _text(tbl, "judge", path, None, '"match:agree"')
    assert judge is not None
    if judge.startswith("match:"):
        if judge[6:] not in AUDIT_MATCHES:
            raise ConfigError(
                f"unknown match judge {judge!r}",
                key=f"{path}.judge",
                fix=f"use {', '.join('match:' + m for m in AUDIT_MATCHES)}, or a provider/profile name (LLM judge)",
            )
        if "rubric" in tbl:
            raise ConfigError(
                "a rubric applies to an LLM judge only",
                key=f"{path}.rubric",
                fix=f"remove it, or name a provider/profile as judge instead of {judge!r}",
            )
    rubric = _text(tbl, "rubric", path, "pairwise", '"pairwise"')
    if rubric not in AUDIT_RUBRICS:
        raise ConfigError(f"unknown rubric {rubric!r}", key=f"{path}.rubric", fix=f"use one of: {', '.join(AUDIT_RUBRICS)}")
    reference = _text(tbl, "reference", path, None, '"strong"')
    if reference is not None and reference not in tiers and reference not in providers:
        raise ConfigError(
            f"unknown reference {reference!r}",
            key=f"{path}.reference",
            fix=f"name a tier ({', '.join(tiers)}) or a configured provider, or remove it (default: the dearest tier)",
        )
    explore = _text(tbl, "explore", path, "all", '"all"')
    if explore not in ("all", "served"):
        raise ConfigError(
            f"unknown explore {explore!r}",
            key=f"{path}.explore",
            fix='use "all" (every tier answers an audited request) or "served" (only the served answer is judged)',
        )
    choices = tbl.get("choices", [])
    if not isinstance(choices, list) or not all(isinstance(c, str) and c.strip() for c in choices):
        raise ConfigError("expected a list of labels", key=f"{path}.choices", fix='write choices = ["up", "down", "neutral"]')
    if judge == "match:choice" and not choices:
        raise ConfigError("match:choice needs the allowed labels", key=f"{path}.choices", fix='add choices = ["up", "down", "neutral"]')
    period = _text(tbl, "budget_period", path, "total", '"day"')
    if period not in _PERIODS:
        raise ConfigError(
            f"unknown budget period {period!r}",
            key=f"{path}.budget_period",
            fix='write budget_period = "day" (resets 00:00 UTC), "month" or "total" (never resets)',
        )
    budget = _number(tbl, "budget_usd", path, None)
    sampling = _text(tbl, "sampling", path, "uniform", '"uniform"')
    if sampling not in AUDIT_SAMPLINGS:
        raise ConfigError(
            f"unknown sampling {sampling!r}",
            key=f"{path}.sampling",
            fix='use "uniform" (every request at rate), "near_threshold" or "near_or_above_threshold" (oversample requests '
            "scored near a threshold, same mean rate; docs/learning_loop.md)",
        )
    return AuditSettings(
        rate=float(rate),
        judge=judge,
        rubric=str(rubric),
        reference=reference,
        explore=str(explore),
        budget_usd=None if budget is None else float(budget),
        budget_period=str(period),
        seed=int(_number(tbl, "seed", path, 0, integer=True)),
        choices=tuple(c.strip() for c in choices),
        queue_size=int(_number(tbl, "queue_size", path, 256, integer=True, positive=True)),
        max_attempts=int(_number(tbl, "max_attempts", path, 3, integer=True, positive=True)),
        sampling=str(sampling),
    )


def check_audit_judges(profiles: Mapping[str, Any], providers: Mapping[str, Any]) -> None:
    """Every LLM judge names a provider or a profile (``NAME`` or ``thrifty/NAME``)."""
    for name, p in profiles.items():
        a = getattr(p, "audit", None)
        if a is None or a.match is not None:
            continue
        if a.judge not in providers and a.judge.removeprefix("thrifty/") not in profiles:
            known = [*providers, *profiles] or ["none defined"]
            raise ConfigError(
                f"unknown judge {a.judge!r}",
                key=f"profiles.{name}.audit.judge",
                fix=f"use match:{'|'.join(AUDIT_MATCHES)}, or a provider/profile: {', '.join(known)}",
            )
