"""Which requests an audit samples, and with what probability — sans I/O, the same object in the
gateway (:mod:`thrifty.gateway.audits`) and in ``thrifty simulate``.

``sampling = "uniform"`` (the default): every request is audited with probability ``rate``.

``sampling = "near_threshold"``: the probability depends on how close the cascade's decision was —
the smallest distance ``d`` between a tier's score and its threshold in service (the guardrail's
offset included) among the steps of the request's trace. A request whose score sat right at a
threshold is where the decision is uncertain and where a refit moving that threshold learns most::

    w(d) = floor + (1 − floor) · exp(−d / (width · mean_d))
    p    = min(1, rate · w(d) / mean_w)

``sampling = "near_or_above_threshold"``: the same with ``d = max(0, threshold − score)``: every
answer a cheaper tier's score *accepted* is at distance 0 (the wrong answers that cost the target
hide among them), and only the requests escalated far below a threshold — whose served answer came
from a stronger tier and tells little about the threshold — are audited less.

``mean_d`` and ``mean_w`` are running means (exponential, memory about ``1 / decay`` requests) over
every request the sampler saw, updated *after* its probability is computed, so the expected audit
rate stays ``rate`` whatever the scale of the scores (it is scale-free) and one request's
probability depends only on the ones before it. A request with no thresholded step (a one-tier
policy) gets ``w = 1``. Every audit keeps its probability ``p``; estimates from audits weight each
by ``1 / p`` (inverse-probability weights; :func:`weighted_share`).
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

import numpy as np

__all__ = ["SAMPLINGS", "AuditSampler", "threshold_distance", "uniform_draw", "kish_n", "weighted_share", "ipw_weights"]

SAMPLINGS = ("uniform", "near_threshold", "near_or_above_threshold")


def uniform_draw(request_id: str, seed: int = 0) -> float:
    """A uniform number in [0, 1) from SHA-256(seed, id): the same request id always draws the same."""
    digest = hashlib.sha256(f"{int(seed)}:{request_id}".encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def threshold_distance(steps: Iterable[Any], one_sided: bool = False) -> float | None:
    """The smallest |score − threshold| among the steps that compared a score with a threshold
    (``one_sided``: max(0, threshold − score), so an accepted answer is at distance 0)."""
    pairs = [
        (float(s.score), float(s.threshold))
        for s in steps
        if getattr(s, "score", None) is not None and getattr(s, "threshold", None) is not None
    ]
    ds = [max(0.0, t - x) if one_sided else abs(x - t) for x, t in pairs]
    ds = [d for d in ds if math.isfinite(d)]
    return min(ds) if ds else None


@dataclass
class AuditSampler:
    """One profile's sampling state (see the module docstring)."""

    rate: float
    sampling: str = "uniform"
    # floor and width were chosen on tuning streams (seeds 100–107 of both synthetic structures),
    # not on the streams the sweep reports (seeds 0–19)
    floor: float = 0.1  # the weight far from every threshold, relative to the one at a threshold
    width: float = 0.25  # the distance scale, as a share of the running mean distance
    decay: float = 0.01  # weight of one request in the running means
    mean_d: float | None = None
    mean_w: float | None = None

    def __post_init__(self) -> None:
        if self.sampling not in SAMPLINGS:
            raise ValueError(f"unknown sampling {self.sampling!r}; use one of {SAMPLINGS}")

    @property
    def weighted(self) -> bool:
        """Whether audits must carry inverse-probability weights (False: uniform, equal weights)."""
        return self.sampling != "uniform" and 0.0 < self.rate < 1.0

    def probability(self, distance: float | None) -> float:
        """This request's audit probability; updates the running means (call once per request)."""
        if not self.weighted:
            return min(1.0, max(0.0, self.rate))
        if distance is None:
            w = 1.0
        else:
            scale = self.width * self.mean_d if self.mean_d else 0.0
            w = self.floor + (1.0 - self.floor) * (math.exp(-distance / scale) if scale > 0 else (1.0 if distance <= 0 else 0.0))
            self.mean_d = distance if self.mean_d is None else (1 - self.decay) * self.mean_d + self.decay * distance
        p = self.rate * w / self.mean_w if self.mean_w else self.rate
        self.mean_w = w if self.mean_w is None else (1 - self.decay) * self.mean_w + self.decay * w
        return min(1.0, max(p, 1e-6))

    def sample(self, steps: Iterable[Any], draw: float) -> tuple[bool, float]:
        """(audited, probability) of one request from its trace's steps and a uniform ``draw``."""
        p = self.probability(threshold_distance(steps, one_sided=self.sampling == "near_or_above_threshold"))
        return draw < p, p


def ipw_weights(probs: Sequence[float | None]) -> np.ndarray | None:
    """1/p per audit (None when every probability is None: uniform sampling, equal weights)."""
    if all(p is None for p in probs):
        return None
    return np.array([1.0 if p is None else 1.0 / max(float(p), 1e-6) for p in probs])


def kish_n(w: np.ndarray) -> float:
    """Kish's effective sample size (Σw)² / Σw² (n for equal weights)."""
    s2 = float(np.sum(w * w))
    return float(np.sum(w)) ** 2 / s2 if s2 > 0 else 0.0


def weighted_share(flags: np.ndarray, w: np.ndarray | None) -> tuple[float, float]:
    """(share, effective n) of 0/1 ``flags`` under inverse-probability weights ``w`` (None: equal).

    The share is the Hájek estimate Σw·g / Σw. The effective n is the one whose binomial variance
    equals the estimate's linearised variance, ``share·(1 − share) / V`` with
    ``V = Σ w²·(g − share)² / (Σw)²`` — unlike Kish's n (which assumes the flags do not depend on
    the weights, so it can only shrink), it credits a sampling that put its audits where the flags
    vary. Where V says nothing (share 0 or 1) it falls back to Kish's n."""
    flags = np.asarray(flags, dtype=float)
    if len(flags) == 0:
        return 0.0, 0.0
    if w is None:
        return float(flags.mean()), float(len(flags))
    w = np.asarray(w, dtype=float)
    total = float(np.sum(w))
    share = float(np.sum(w * flags) / total)
    var = float(np.sum(w * w * (flags - share) ** 2)) / total**2
    if var <= 0.0 or not 0.0 < share < 1.0:
        return share, kish_n(w)
    return share, share * (1.0 - share) / var
