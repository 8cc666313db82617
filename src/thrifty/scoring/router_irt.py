"""Item-response router head (``router:irt``), the predict side: pooled prompt traits + per-model links.

A prompt's *easiness* — its mean quality over every model — is a far less noisy target than any
single model's label (it pools M judgements), and is stable across halves of the pool. The head
reads traits of the prompt from the query and maps them to every model's quality through a
per-model logistic link, as an item-response (IRT) model does:

    t̂(x) = t̄ + (x − x̄) W                       (ridge on embedding + query features, d traits)
    q̂_m(x) = σ(b_m + a_mᵀ t̂(x))                  (per-model slopes a_m and bias b_m)

Trait 1 is the pooled easiness (the standardised row mean of the quality matrix); traits 2..d are
the top principal directions of what the easiness leaves over (a low-rank, EmbedLLM-style model of
model × prompt interactions). The fit (:mod:`thrifty.offline.router_irt`) fits the links on
cross-fitted t̂, so a_m already reflects how well the traits can be read from text.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

__all__ = ["IRTHead", "sigmoid", "irt_design"]


def sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * z))  # overflow-free logistic


def irt_design(emb: np.ndarray, feats: np.ndarray, f_mu: np.ndarray, f_sd: np.ndarray, feat_weight: float) -> np.ndarray:
    """The query design matrix: embedding next to the standardised, down-weighted query features."""
    return np.hstack([emb, feat_weight * (feats - f_mu) / f_sd])


@dataclass
class IRTHead:
    """A fitted item-response head (see the module docstring); every array is set by the fit."""

    dims: int = 1
    alpha: float = 30.0
    feat_weight: float = 0.3
    x_mean: np.ndarray = field(default=None, repr=False)  # type: ignore[arg-type]
    f_mu: np.ndarray = field(default=None, repr=False)  # type: ignore[arg-type]
    f_sd: np.ndarray = field(default=None, repr=False)  # type: ignore[arg-type]
    W: np.ndarray = field(default=None, repr=False)  # type: ignore[arg-type]  # (p, d) query → traits
    t_mean: np.ndarray = field(default=None, repr=False)  # type: ignore[arg-type]  # (d,)
    slopes: np.ndarray = field(default=None, repr=False)  # type: ignore[arg-type]  # (M, d)
    bias: np.ndarray = field(default=None, repr=False)  # type: ignore[arg-type]  # (M,)

    def traits(self, emb: np.ndarray, feats: np.ndarray) -> np.ndarray:
        X = irt_design(emb, feats, self.f_mu, self.f_sd, self.feat_weight)
        return self.t_mean[None, :] + (X - self.x_mean) @ self.W

    def predict(self, emb: np.ndarray, feats: np.ndarray) -> np.ndarray:
        return sigmoid(self.bias[None, :] + self.traits(emb, feats) @ self.slopes.T)
