"""Momentum methods: the exact per-mode second-moment map and its stability.

Every method of the momentum family (optax heavy ball and Nesterov, DANA) is,
per step `k`, the linear update with coefficients `(μ, a, b)`

    v' = μ v + g,        Δ' = Δ − a g − b v'  =  Δ − c g − e v,
    c = a + b,  e = b μ

(`g` the minibatch gradient, `Δ = θ − θ*`): heavy ball `a = 0, b = η`;
Nesterov (optax) `a = η, b = ημ`; DANA `μ = 1 − Δ(k), a = γ2(k), b = γ3(k)`.

In the eigenbasis of `K`, mode `i` (eigenvalue `λ`) moves by
`z' = M z + s ξ`, `z = (Δ_i, v_i)`, `M = [[1 − cλ, −e], [λ, μ]]`, `s = (−c, 1)`,
with the gradient noise `ξ_i` (mean 0 given the state) of variance
`E[ξ_i²] = (λ² D_i + λ (2P + σ²)) / B` (Gaussian data, any label-noise law with
variance `σ²`, batch `B`). The second moments `y_i = (D_i, C_i, V_i) =
(E Δ_i², E Δ_i v_i, E v_i²)` therefore obey the exact linear recursion

    y_i' = T_i y_i + u_i (2P + σ²),   P = ½ Σ_i w_i λ_i D_i,
    T_i = sym(M ⊗ M) + (λ²/B) (c², −c, 1)ᵀ e_Dᵀ,   u_i = (λ/B) (c², −c, 1)ᵀ,

one 3×3 block per mode, coupled only through the rank-one feedback of `P`
(derivation and checks: docs/theory/momentum.md).

Stability (constant coefficients): the map on second moments is completely
positive, so its spectral radius is a real eigenvalue; it is `< 1` iff every
block is stable, `ρ(T_i) < 1`, and the kernel norm

    F = Σ_i w_i λ_i [(I − T_i)^{-1} u_i]_D / 1   < 1

(the secular equation of the rank-one feedback at `z = 1`). With `μ = 0` this is
`riskcurves.theory.sgd_kernel_norm`.
"""

from __future__ import annotations

import math

import jax.numpy as jnp
import numpy as np

from ..optimizers import DANA

__all__ = [
    "momentum_coefficients",
    "second_moment_map",
    "momentum_kernel_norm",
    "momentum_stability_threshold",
    "frozen_kernel_norm",
    "dana_divergence_time",
]


def momentum_coefficients(lr, momentum, nesterov: bool = False):
    """`(μ, c, e)` of optax's `sgd(lr, momentum, nesterov)` (see module docstring)."""
    if nesterov:
        return momentum, lr * (1.0 + momentum), lr * momentum**2
    return momentum, lr, lr * momentum


def second_moment_map(lam, mu, c, e, batch, xp=jnp):
    """Per-mode blocks `(T, u)`: `T` of shape `(n, 3, 3)`, `u` of shape `(n, 3)`.

    The exact one-step map of `y_i = (E Δ_i², E Δ_i v_i, E v_i²)` is
    `y_i' = T_i y_i + u_i (2P + σ²)` (one step, coefficients `(μ, c, e)` frozen).
    `xp` is `jax.numpy` (default, traceable) or `numpy`.
    """
    lam = xp.asarray(lam)
    one = xp.ones_like(lam)
    m11, m12, m21, m22 = 1.0 - c * lam, -e * one, lam, mu * one
    T = xp.stack([
        xp.stack([m11**2, 2 * m11 * m12, m12**2], -1),
        xp.stack([m11 * m21, m11 * m22 + m12 * m21, m12 * m22], -1),
        xp.stack([m21**2, 2 * m21 * m22, m22**2], -1),
    ], -2)
    s = xp.stack([c**2 * one, -c * one, one], -1)  # s sᵀ read at (DD, Dv, vv)
    col = xp.stack([one, 0 * one, 0 * one], -1)
    T = T + (lam**2 / batch)[:, None, None] * s[:, :, None] * col[:, None, :]
    u = (lam / batch)[:, None] * s
    return T, u


def momentum_kernel_norm(problem, lr, momentum, batch=1, nesterov: bool = False) -> float:
    """`F(η)` of the module docstring (`inf` if some block has `ρ(T_i) >= 1`).

    The risk of heavy-ball/Nesterov SGD at constant `(η, μ)` converges (to a finite
    noise floor) iff `F < 1`.
    """
    mu, c, e = momentum_coefficients(float(lr), float(momentum), nesterov)
    return frozen_kernel_norm(problem, mu, c, e, batch)


def frozen_kernel_norm(problem, mu, c, e, batch=1) -> float:
    """`F` for the update `v' = μv + g`, `Δ' = Δ − c g − e v` with frozen coefficients
    (`inf` if some block has `ρ(T_i) >= 1`)."""
    lam = np.asarray(problem.eigenvalues, np.float64)
    T, u = second_moment_map(lam, float(mu), float(c), float(e), float(batch), xp=np)
    if np.max(np.abs(np.linalg.eigvals(T))) >= 1.0:
        return math.inf
    h = np.linalg.solve(np.eye(3)[None] - T, u[..., None])[..., 0, 0]
    w = np.asarray(problem.mode_weights, np.float64)
    lam = np.asarray(problem.eigenvalues, np.float64)
    return float(np.sum(w * lam * h))


def momentum_stability_threshold(problem, momentum, batch=1, nesterov: bool = False,
                                 *, iters: int = 200) -> float:
    """Largest stable constant step size `η*` of SGD with momentum `μ` (optax semantics).

    Bisection on `η` of "every block stable and `F(η) < 1`" (the stable set is an
    interval `[0, η*)`); `η*` is below the momentum-free mode bound
    `2(1 + μ)/λ_max` (heavy ball) and `2(1 + μ)/((1 + 2μ) λ_max)` (Nesterov).

    **Arguments:** `problem` (any object with `eigenvalues` and `mode_weights`),
    `momentum` `μ ∈ [0, 1)`, `batch` `B >= 1`, `nesterov`.
    """
    mu = float(momentum)
    if not 0.0 <= mu < 1.0:
        raise ValueError(f"`momentum` must be in [0, 1), got {momentum!r}")
    if float(batch) < 1:
        raise ValueError(f"`batch` must be >= 1, got {batch!r}")
    lam_max = float(np.max(problem.eigenvalues))
    if lam_max <= 0:
        return math.inf
    lo, hi = 0.0, 4.0 / lam_max  # every mode of both variants is unstable at 4/λ_max

    def stable(eta):
        return momentum_kernel_norm(problem, eta, mu, batch, nesterov) < 1.0

    for _ in range(iters):
        mid = 0.5 * (lo + hi)
        if stable(mid):
            lo = mid
        else:
            hi = mid
        if hi - lo <= 1e-14 * hi:
            break
    return lo


def _dana_coefficients(opt: DANA, k: float):
    mu = k / (float(opt.delta) + k)
    b = float(opt.g3) * (1.0 + k) ** (-float(opt.kappa))
    return mu, float(opt.lr_at(k)) + b, b * mu


def dana_divergence_time(problem, optimizer: DANA, k_max: float = 1e12, n: int = 400) -> float:
    """First iteration `k <= k_max` at which DANA's frozen coefficients
    `(μ(k), γ2(k) + γ3(k), γ3(k) μ(k))` are unstable (`frozen_kernel_norm >= 1`), on
    `n` log-spaced `k`; `inf` if none. A quasi-static prediction of when the risk
    of DANA-constant starts to blow up (its effective step `γ2 + γ3 (δ + k)/δ`
    grows without bound)."""
    if not isinstance(optimizer, DANA):
        raise ValueError(f"`optimizer` must be a DANA config, got {type(optimizer).__name__}")
    for k in np.unique(np.concatenate([[0.0], np.logspace(0, np.log10(k_max), n)])):
        if frozen_kernel_norm(problem, *_dana_coefficients(optimizer, k), optimizer.batch) >= 1:
            return float(k)
    return math.inf
