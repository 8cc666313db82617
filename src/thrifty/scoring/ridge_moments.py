"""Ridge / reduced-rank ridge fitted from sufficient statistics, so inner cross-validation does one
pass over the rows instead of one per fold and setting.

The router's linear heads (:class:`~thrifty.scoring.router_heads.MFHead`) regress the quality matrix Y on
``X = [embedding, w·(features − μ)/σ]``. Everything the closed-form fit needs is a function of the
moments of ``Z = [embedding, features]`` and Y over the training rows — n, ΣZ, ZᵀZ, ΣY, ZᵀY — and
moments are additive, so the moments of "all rows but inner fold k" are total − fold k. With
``D = diag(1…1, w/σ)``: ``XcᵀXc = D (ZᵀZ − n z̄z̄ᵀ) D`` and ``XcᵀYc = D (ZᵀY − n z̄ȳᵀ)``; the rank-r
projection needs only ``(XcB)ᵀ(XcB) = Bᵀ XcᵀXc B``. μ and σ are the training rows' own (from the
moments), exactly as a fit on those rows computes them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

__all__ = ["Moments", "moments", "fit_from_moments", "predict_rows"]


@dataclass
class Moments:
    n: int
    z_sum: np.ndarray  # (d,)
    gram: np.ndarray  # (d, d) ZᵀZ
    y_sum: np.ndarray  # (M,)
    zy: np.ndarray  # (d, M) ZᵀY

    def __add__(self, other: "Moments") -> "Moments":
        return Moments(self.n + other.n, self.z_sum + other.z_sum, self.gram + other.gram, self.y_sum + other.y_sum, self.zy + other.zy)

    def __sub__(self, other: "Moments") -> "Moments":
        return Moments(self.n - other.n, self.z_sum - other.z_sum, self.gram - other.gram, self.y_sum - other.y_sum, self.zy - other.zy)


def moments(Z: np.ndarray, Y: np.ndarray) -> Moments:
    """Moments of the rows of ``Z`` (n, d) and ``Y`` (n, M)."""
    return Moments(len(Z), Z.sum(axis=0), Z.T @ Z, Y.sum(axis=0), Z.T @ Y)


def fit_from_moments(mom: Moments, n_emb: int, settings: Sequence[tuple[int | None, float]], feat_weight: float) -> list[dict[str, Any]]:
    """Per (rank, alpha): the fitted head's state ``{coef, bias, x_mean, f_mu, f_sd, rank, alpha}``
    (the fields of :class:`~thrifty.scoring.router_heads.MFHead`), sharing one eigendecomposition."""
    n = max(mom.n, 1)
    z_bar, y_bar = mom.z_sum / n, mom.y_sum / n
    f_mu = z_bar[n_emb:]
    f_var = np.diag(mom.gram)[n_emb:] / n - f_mu**2
    f_sd = np.sqrt(np.clip(f_var, 0.0, None)) + 1e-6
    D = np.ones(len(z_bar))
    D[n_emb:] = feat_weight / f_sd
    xtx = D[:, None] * (mom.gram - n * np.outer(z_bar, z_bar)) * D[None, :]
    xty = D[:, None] * (mom.zy - n * np.outer(z_bar, y_bar))
    s, V = np.linalg.eigh(xtx)
    vtxy = V.T @ xty
    x_mean = np.concatenate([z_bar[:n_emb], np.zeros(len(z_bar) - n_emb)])
    out = []
    for rank, alpha in settings:
        B = V @ (vtxy / (np.clip(s, 0, None) + alpha)[:, None])
        if rank is not None and rank < B.shape[1]:
            w, vecs = np.linalg.eigh(B.T @ xtx @ B)  # right singular vectors of the fitted values Xc·B
            v = vecs[:, np.argsort(w)[::-1][:rank]]
            B = B @ v @ v.T
        out.append({"coef": B, "bias": y_bar, "x_mean": x_mean, "f_mu": f_mu, "f_sd": f_sd, "rank": rank, "alpha": alpha, "scale": D})
    return out


def predict_rows(Z: np.ndarray, state: dict[str, Any]) -> np.ndarray:
    """Predictions of a head fitted by :func:`fit_from_moments` on raw rows ``Z = [emb, feats]``:
    ``ȳ + ((Z − z̄)·D) B``, computed as ``Z (D B) − z̄ D B`` without forming the design matrix."""
    DB = state["scale"][:, None] * state["coef"]
    z_bar = np.concatenate([state["x_mean"][: len(state["x_mean"]) - len(state["f_mu"])], state["f_mu"]])
    return state["bias"][None, :] + Z @ DB - (z_bar @ DB)[None, :]
