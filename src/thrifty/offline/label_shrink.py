"""Empirical-Bayes label shrinkage for training (``--opt shrink=mean|prompt``): fit on de-noised labels.

A single judge's label is the model's true quality on the prompt plus judge noise. Fitting a router
on the raw labels fits the noise too; the posterior mean of the true quality given the label is

    q̃_pm = prior_pm + r_m · (q_pm − prior_pm),      r_m = max(0, 1 − σ²_noise,m / var_p(q_pm − prior_pm))

(per model m, empirical Bayes: the prior's spread is the labels' spread around the prior minus the
noise). Two priors:

``mean``    prior_pm = μ_m, the model's mean label (the de-noised oracle's shrinkage,
            :func:`thrifty.offline.ceilings.denoised_oracle`, but with a reliability per model);
``prompt``  prior_pm = μ_m + (e_p^(−m) − ē^(−m)): the model's mean moved by the prompt's easiness
            measured on the *other* models (leave-one-model-out, so a label never shrinks towards
            itself) — the additive prompt + model fit.

The noise variance comes from, in this order: ``reliability`` given (``label_reliability=r``: the
noise is (1 − r) of the labels' median per-model variance); a replicate pair in the table (the same
model run twice, :func:`~thrifty.offline.ceilings.find_replicate`: noise = (1 − ρ)·their mean
variance); for binary labels and the ``prompt`` prior, the Bernoulli variance of the prior
(``p(1 − p)`` per cell: a binary label's noise around its own success probability — around the
model's mean alone that is the whole variance, r = 0, which is why ``mean`` needs one of the
others; measured: a constant router on HEADLINES). Otherwise a :class:`ConfigError` asks for
``label_reliability``. Evaluation always uses the raw held-out labels: only the fit sees q̃.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from thrifty.data.table import RoutingTable
from thrifty.errors import ConfigError
from thrifty.offline.ceilings import find_replicate
from thrifty.offline.noise import is_binary

__all__ = ["Shrinkage", "shrink_labels", "shrink_table", "SHRINK_MODES"]

SHRINK_MODES = ("none", "mean", "prompt")


@dataclass
class Shrinkage:
    """What a shrinkage did: the de-noised matrix, each model's reliability and the noise source."""

    quality: np.ndarray
    reliability: np.ndarray  # (M,) r_m
    source: str


def _prior(Q: np.ndarray, mode: str) -> np.ndarray:
    have = ~np.isnan(Q)
    Qz = np.where(have, Q, 0.0)
    mu = Qz.sum(axis=0) / np.maximum(have.sum(axis=0), 1)
    if mode == "mean" or Q.shape[1] < 2:
        return np.broadcast_to(mu[None, :], Q.shape).copy()
    row_s, row_n = Qz.sum(axis=1, keepdims=True), have.sum(axis=1, keepdims=True)
    loo_n = row_n - have  # outcomes of the other models on this prompt
    loo = np.where(loo_n > 0, (row_s - Qz) / np.maximum(loo_n, 1), np.nan)  # easiness without model m
    loo_mean = np.nanmean(np.where(have, loo, np.nan), axis=0)  # over the prompts model m answered
    dev = np.where(np.isnan(loo), 0.0, loo - loo_mean[None, :])
    return np.clip(mu[None, :] + dev, 0.0, 1.0)


def shrink_labels(Q: np.ndarray, mode: str = "mean", *, noise_var: np.ndarray | float | None = None, source: str = "given") -> Shrinkage:
    """Shrink ``Q`` towards the ``mode`` prior (module doc). ``noise_var``: the judge-noise variance (a
    number, or one per model); ``None`` = the Bernoulli variance of the prior (binary labels)."""
    if mode not in ("mean", "prompt"):
        raise ConfigError(f"unknown shrinkage {mode!r}", key="shrink", fix="use shrink=none, mean or prompt")
    prior = _prior(Q, mode)
    have = ~np.isnan(Q)
    resid = np.where(have, Q - prior, np.nan)
    with np.errstate(invalid="ignore"):
        var = np.nanvar(resid, axis=0)
    if noise_var is None:
        noise = np.nanmean(np.where(have, prior * (1.0 - prior), np.nan), axis=0)
        source = "Bernoulli variance of the prior (binary labels)"
    else:
        noise = np.broadcast_to(np.asarray(noise_var, dtype=float), var.shape)
    r = np.where(var > 0, np.clip(1.0 - noise / np.where(var > 0, var, 1.0), 0.0, 1.0), 1.0)
    r = np.nan_to_num(r, nan=1.0)
    out = np.where(have, prior + r[None, :] * (Q - prior), np.nan)
    return Shrinkage(out, r, source)


def shrink_table(table: RoutingTable, mode: str, reliability: float | None = None) -> tuple[RoutingTable, Shrinkage]:
    """``table`` with its labels shrunk for training (the noise source: module doc, in that order)."""
    Q = table.quality
    with np.errstate(invalid="ignore"):
        var = np.nanvar(Q, axis=0)
    noise: float | None
    if reliability is not None:
        if not 0.0 < reliability <= 1.0:
            raise ConfigError(f"label_reliability must be in (0, 1], got {reliability}", key="label_reliability", fix="pass e.g. 0.65")
        noise, source = (1.0 - reliability) * float(np.nanmedian(var)), f"given reliability {reliability:g}"
    elif (rep := find_replicate(table)) is not None and rep[2] > 0:
        a, b, rho = rep
        pair = var[[table.model_index(a), table.model_index(b)]]
        noise, source = (1.0 - rho) * float(pair.mean()), f"replicate pair {a} / {b} (ρ = {rho:.3f})"
    elif is_binary(Q) and mode == "prompt":
        noise, source = None, "bernoulli"
    else:
        raise ConfigError(
            "label shrinkage needs a noise estimate: the table has no replicate pair"
            + (
                " (binary labels: the Bernoulli estimate needs shrink=prompt; around the model's mean it is the whole variance)"
                if is_binary(Q)
                else ""
            ),
            key="label_reliability",
            fix="pass --opt label_reliability=r (the correlation of two judgements of the same answers)",
        )
    s = shrink_labels(Q, mode, noise_var=noise, source=source)
    return replace(table, quality=s.quality), s
