"""``[profiles.NAME.refit]``: the settings of the learning loop (:mod:`thrifty.calibration.loop`),
kept apart from the other sections so the object and its parser live together.

::

    [profiles.support.refit]
    every = 200          # refit after this many new audits (an integer ≥ 1)
    target = 0.95        # share of answers at least as good as the reference's, in (0, 1]
    mean_cost_usd = …    # optional: the refit picks by mean cost per request instead of the target
    step = 0.05          # the quality guardrail's threshold step, in (0, 1]
    folds = 3            # cross-validation folds of the refit's validation (≥ 2)
    min_gain = 0.01      # relative gain a candidate must show to be swapped in (≥ 0)
    share_z = 1.0        # confidence of the refit's pick: the share's one-sided lower bound at this
                         # z must reach the target (0: the point estimate; 0 to 5)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping

from thrifty.errors import ConfigError

__all__ = ["RefitConfig", "parse_refit"]

_KEYS = ("every", "target", "mean_cost_usd", "step", "folds", "min_gain", "share_z")


@dataclass(frozen=True)
class RefitConfig:
    """``[profiles.NAME.refit]`` (see the module docstring)."""

    every: int = 200
    target: float = 0.95
    mean_cost_usd: float | None = None
    step: float = 0.05
    folds: int = 3
    min_gain: float = 0.01
    share_z: float = 1.0


def _number(
    tbl: Mapping[str, Any],
    key: str,
    path: str,
    default: Any,
    lo: float,
    hi: float,
    *,
    integer: bool = False,
    lo_open: bool = False,
    fix: str,
) -> Any:
    v = tbl.get(key, default)
    if v is None:
        return None
    ok = isinstance(v, int) if integer else isinstance(v, (int, float))
    if isinstance(v, bool) or not ok or math.isnan(float(v)) or not ((lo < v) if lo_open else (lo <= v)) or v > hi:
        what = "an integer" if integer else "a number"
        span = f"{'(' if lo_open else '['}{lo:g}, {hi:g}]" if hi != math.inf else f"{'>' if lo_open else '≥'} {lo:g}"
        raise ConfigError(f"expected {what} {'in ' if hi != math.inf else ''}{span}, got {v!r}", key=f"{path}.{key}", fix=fix)
    return v


def parse_refit(tbl: Any, path: str) -> RefitConfig | None:
    """The ``[profiles.NAME.refit]`` table at ``path`` (None when absent); ConfigError naming the key and the fix."""
    if tbl is None:
        return None
    if not isinstance(tbl, Mapping):
        raise ConfigError("expected a table", key=path, fix=f"write it as [{path}] with every = 200")
    for k in tbl:
        if k not in _KEYS:
            raise ConfigError(f"unknown setting {k!r}", key=f"{path}.{k}", fix=f"remove it or use one of: {', '.join(_KEYS)}")
    every = _number(tbl, "every", path, 200, 1, math.inf, integer=True, fix="write every = 200 (refit after this many new audits)")
    target = _number(
        tbl, "target", path, 0.95, 0, 1, lo_open=True, fix="write target = 0.95 (share of answers at least as good as the reference)"
    )
    cost = _number(
        tbl, "mean_cost_usd", path, None, 0, math.inf, lo_open=True, fix="write mean_cost_usd = 0.0002 (USD per request) or remove it"
    )
    step = _number(tbl, "step", path, 0.05, 0, 1, lo_open=True, fix="write step = 0.05")
    folds = _number(tbl, "folds", path, 3, 2, math.inf, integer=True, fix="write folds = 3")
    gain = _number(tbl, "min_gain", path, 0.01, 0, math.inf, fix="write min_gain = 0.01")
    share_z = _number(
        tbl,
        "share_z",
        path,
        1.0,
        0,
        5,
        fix="write share_z = 1.0 (the refit's confidence: 0 picks on the point estimate, 1.645 ≈ 95% one-sided)",
    )
    return RefitConfig(
        every=int(every),
        target=float(target),
        mean_cost_usd=None if cost is None else float(cost),
        step=float(step),
        folds=int(folds),
        min_gain=float(gain),
        share_z=float(share_z),
    )
