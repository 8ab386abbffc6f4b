"""Stability thresholds: which step sizes make the risk diverge.

SGD (constant η, batch B, weights w): the mean dynamics has a finite fixed
point iff every mode contracts, `ηλ_i(1 + 1/B) < 2`, and the kernel norm

    F(η) = (η/B) Σ_i w_i λ_i / (2 − ηλ_i(1 + 1/B)) < 1

(secular equation of the rank-one noise feedback through `P`). `F` increases
with η, so the threshold `η*` solves `F(η*) = 1` (or is `2/(λ_max(1+1/B))`).
It holds for the exact recursion and the ODE alike.
"""

from __future__ import annotations

import functools
import math

import numpy as np

from .._errors import DivergenceError
from ..optimizers import DANA, SGD
from ._momentum import momentum_stability_threshold

__all__ = ["stability_threshold", "check_stable", "sgd_kernel_norm"]


def sgd_kernel_norm(problem, lr: float, batch: int = 1) -> float:
    """`F(η)` above (`inf` if some mode is itself unstable)."""
    lam = np.asarray(problem.eigenvalues)
    w = np.asarray(problem.mode_weights)
    den = 2 - lr * lam * (1 + 1 / batch)
    if np.any(den <= 0):
        return math.inf
    return float(lr / batch * np.sum(w * lam / den))


@functools.singledispatch
def stability_threshold(optimizer, problem) -> float:
    """Largest stable constant step size (`inf` when the method cannot diverge)."""
    return math.inf


@stability_threshold.register(SGD)
def _(optimizer: SGD, problem) -> float:
    B = optimizer.batch
    if optimizer.has_momentum:  # heavy ball / Nesterov: per-mode 3×3 blocks (momentum.md)
        return momentum_stability_threshold(problem, float(optimizer.momentum), B,
                                            optimizer.nesterov)
    lam_max = float(np.max(problem.eigenvalues))
    if lam_max <= 0:
        return math.inf
    hi = 2.0 / (lam_max * (1 + 1 / B))
    if sgd_kernel_norm(problem, hi * (1 - 1e-12), B) < 1:
        return hi
    lo = 0.0
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if sgd_kernel_norm(problem, mid, B) < 1:
            lo = mid
        else:
            hi = mid
    return lo


def check_stable(problem, optimizer, k_max: int = 1) -> float:
    """Raise `DivergenceError` if `optimizer.lr` exceeds the stability threshold.

    Schedules are checked at 64 log-spaced iterations in `[0, k_max]`.
    Returns the threshold.
    """
    thr = stability_threshold(optimizer, problem)
    if not math.isfinite(thr):
        return thr
    if optimizer.constant_lr:
        lr_max, where = float(optimizer.lr), 0
    else:
        ks = np.unique(np.concatenate([[0.0], np.logspace(0, np.log10(max(k_max, 1)), 64)]))
        vals = np.array([float(optimizer.lr(k)) for k in ks])
        lr_max, where = float(vals.max()), int(ks[vals.argmax()])
    if lr_max >= thr:
        raise DivergenceError(
            f"lr={lr_max:.6g} (at k={where}) is divergent for {optimizer.name} with "
            f"batch={optimizer.batch} on {problem.label}: the stability threshold from "
            f"theory is lr < {thr:.6g}",
            lr=lr_max,
            threshold=thr,
        )
    return thr


@stability_threshold.register(DANA)
def _dana_threshold(optimizer: DANA, problem) -> float:
    """Largest stable constant `γ2` at `k = 0` (where DANA is SGD with step
    `γ2 + g3`): the SGD threshold minus `g3`. Later divergence from the growing
    momentum is `dana_divergence_time`."""
    sgd = stability_threshold(SGD(1.0, optimizer.batch), problem)
    return max(sgd - float(optimizer.g3), 0.0)
