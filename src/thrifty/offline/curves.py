"""Cost–quality curves: the least concave non-decreasing majorant and exact integrals over it.

Convention used by every metric in :mod:`thrifty.offline.metrics`: a set of operating points
``(cost, quality)`` is summarised by its *least concave non-decreasing majorant* — the smallest
function that is concave, non-decreasing and ≥ every point. It is the right summary because

- two operating points can be mixed at random (prompt by prompt), which interpolates linearly
  between them in (mean cost, mean quality), so everything under the segment is achievable;
- a larger budget may be left unspent, so the curve never goes down (flat after its best point).

The curve starts at the cheapest point (the highest quality among points at that cost) and is
*undefined* (NaN) below it: a policy cannot be cheaper than its cheapest operating point.
Pure numpy; no I/O.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable

import numpy as np

__all__ = ["Curve", "majorant", "integrate_log", "integrate_linear"]


@dataclass(frozen=True)
class Curve:
    """A piecewise-linear concave non-decreasing curve through ``(x[i], y[i])`` (x strictly increasing).

    ``x`` is usually mean cost per query (USD) but may be any axis (e.g. share of strong calls).
    The curve is undefined (NaN) for ``x < x[0]`` and flat at ``y[-1]`` for ``x > x[-1]``.
    """

    x: np.ndarray
    y: np.ndarray

    @property
    def x_min(self) -> float:
        return float(self.x[0])

    @property
    def y_max(self) -> float:
        return float(self.y[-1])

    def quality_at(self, cost: float | np.ndarray) -> float | np.ndarray:
        """Curve value at ``cost``: linear interpolation; NaN below the cheapest point; flat after the last."""
        c = np.asarray(cost, dtype=float)
        out = np.interp(c, self.x, self.y)
        out = np.where(c < self.x[0], np.nan, out)
        return float(out) if out.ndim == 0 else out

    def cost_for(self, quality: float, *, rtol: float = 1e-12) -> float | None:
        """The cheapest x at which the curve reaches ``quality`` (within ``rtol``); None if it never does."""
        if not math.isfinite(quality):
            return None
        tol = rtol * max(1.0, abs(quality))
        if quality <= self.y[0] + tol:
            return float(self.x[0])
        if quality > self.y[-1] + tol:
            return None
        if quality >= self.y[-1]:
            # reached (within tolerance) only at the curve's top: the first vertex at that level
            return float(self.x[int(np.argmax(self.y >= self.y[-1] - tol))])
        # y is strictly increasing on the vertices (see majorant), so the segment is unique
        j = int(np.searchsorted(self.y, quality, side="left"))
        x0, x1, y0, y1 = self.x[j - 1], self.x[j], self.y[j - 1], self.y[j]
        return float(x0 + (x1 - x0) * (quality - y0) / (y1 - y0))

    def to_json(self) -> list[dict[str, float]]:
        return [{"cost": float(a), "quality": float(b)} for a, b in zip(self.x, self.y)]


def majorant(points: Iterable[tuple[float, float]] | np.ndarray) -> Curve:
    """The least concave non-decreasing majorant of ``(x, y)`` points, as its vertices.

    Computed as the upper convex hull (monotone chain) of the points up to the cheapest point of
    highest ``y``; points with NaN coordinates are ignored. The vertices have strictly increasing
    x and strictly increasing y, so the curve is flat only after its last vertex.
    Raises ValueError when no finite point is given.
    """
    pts = np.asarray(list(points) if not isinstance(points, np.ndarray) else points, dtype=float).reshape(-1, 2)
    pts = pts[np.isfinite(pts).all(axis=1)]
    if len(pts) == 0:
        raise ValueError("majorant of an empty point set")
    # sort by x, then by y descending so that for equal x the best comes first
    order = np.lexsort((-pts[:, 1], pts[:, 0]))
    pts = pts[order]
    keep = np.ones(len(pts), dtype=bool)
    keep[1:] = pts[1:, 0] != pts[:-1, 0]
    pts = pts[keep]
    top = int(np.argmax(pts[:, 1]))  # first (cheapest) point of highest y
    pts = pts[: top + 1]
    hull: list[tuple[float, float]] = []
    for x, y in pts:
        while len(hull) >= 2:
            (x1, y1), (x2, y2) = hull[-2], hull[-1]
            # drop the middle point when it is on or below the chord from hull[-2] to (x, y)
            if (y2 - y1) * (x - x1) <= (y - y1) * (x2 - x1):
                hull.pop()
            else:
                break
        hull.append((x, y))
    # a leading run of equal-y vertices cannot follow from the hull except at the start: drop
    # vertices that do not raise y (keeps y strictly increasing)
    out = [hull[0]]
    for x, y in hull[1:]:
        if y > out[-1][1]:
            out.append((x, y))
    arr = np.asarray(out)
    return Curve(arr[:, 0].copy(), arr[:, 1].copy())


def _pieces(curves: list[Curve], lo: float, hi: float, log: bool) -> tuple[np.ndarray, list[np.ndarray]]:
    """A grid on [lo, hi] holding every vertex of ``curves``, and each curve's values on it."""
    xs = [np.array([lo, hi])] + [c.x[(c.x > lo) & (c.x < hi)] for c in curves]
    grid = np.unique(np.concatenate(xs))
    return grid, [np.asarray(c.quality_at(grid), dtype=float) for c in curves]


def _int_linear_pieces(x0: np.ndarray, x1: np.ndarray, f0: np.ndarray, f1: np.ndarray, log: bool) -> np.ndarray:
    """∫ f over [x0, x1] for f linear in x, measured in x (log=False) or in log10 x (log=True)."""
    if not log:
        return 0.5 * (f0 + f1) * (x1 - x0)
    # f(x) = a + b x  →  ∫ f d(log10 x) = [a ln x + b x] / ln 10
    with np.errstate(divide="ignore", invalid="ignore"):
        b = np.where(x1 > x0, (f1 - f0) / (x1 - x0), 0.0)
    a = f0 - b * x0
    return (a * np.log(x1 / x0) + b * (x1 - x0)) / math.log(10.0)


def _positive_part_integral(grid: np.ndarray, d: np.ndarray, log: bool) -> float:
    """∫ max(0, D) where D is linear between grid points (NaN = undefined: contributes 0)."""
    x0, x1, d0, d1 = grid[:-1], grid[1:], d[:-1], d[1:]
    ok = np.isfinite(d0) & np.isfinite(d1) & (x1 > x0)
    x0, x1, d0, d1 = x0[ok], x1[ok], d0[ok], d1[ok]
    total = 0.0
    both = (d0 >= 0) & (d1 >= 0)
    total += float(_int_linear_pieces(x0[both], x1[both], d0[both], d1[both], log).sum())
    cross = (d0 >= 0) != (d1 >= 0)
    if cross.any():
        cx0, cx1, cd0, cd1 = x0[cross], x1[cross], d0[cross], d1[cross]
        xr = cx0 + (cx1 - cx0) * cd0 / (cd0 - cd1)  # root of the linear piece
        up = cd0 >= 0  # positive on [x0, root]
        lo_x = np.where(up, cx0, xr)
        hi_x = np.where(up, xr, cx1)
        lo_d = np.where(up, cd0, 0.0)
        hi_d = np.where(up, 0.0, cd1)
        total += float(_int_linear_pieces(lo_x, hi_x, lo_d, hi_d, log).sum())
    return total


def integrate_log(upper: Curve, lower: Curve, lo: float, hi: float) -> float:
    """Exact ∫ max(0, upper − lower) d(log10 x) over [lo, hi].

    Both curves are linear in x between their vertices (not in log x): the integral is taken
    piece by piece in closed form, splitting pieces where the difference changes sign. Where
    ``upper`` is undefined (below its first vertex) the integrand counts as 0.
    """
    if not (hi > lo > 0):
        return 0.0
    grid, (u, l_) = _pieces([upper, lower], lo, hi, log=True)
    return _positive_part_integral(grid, u - l_, log=True)


def integrate_linear(curve: Curve, lo: float, hi: float) -> float:
    """Exact ∫ curve dx over [lo, hi]; the undefined part (below the first vertex) counts as 0."""
    if not hi > lo:
        return 0.0
    grid, (u,) = _pieces([curve], lo, hi, log=False)
    keep = grid[:-1] >= curve.x_min  # pieces starting at or after the first vertex are defined
    return float(_int_linear_pieces(grid[:-1][keep], grid[1:][keep], u[:-1][keep], u[1:][keep], False).sum())
