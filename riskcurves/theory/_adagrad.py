"""Limits of AdaGrad-Norm and of exact line search (derivations: docs/theory/adagrad.md).

All statements are about the ODEs of `riskcurves.odes` (iteration time `k`), noiseless
unless said otherwise; `Q = Σ_i w_i D_i = ‖Δ‖²`, `P = ½ Σ w λ D`, `B` the batch.

**AdaGrad-Norm limit.** Along the ODE, exactly, `dQ/dk = −4γP + γ² E‖g‖²` and
`db²/dk = E‖g‖² = (2P/B)(tr K + (B+1) λ_S)` with `λ_S = Σwλ²D/ΣwλD`. Taking
`λ_S ≈ c_K := tr(K²)/tr K` (exact for a flat spectrum; an `O(B λ_max/tr K)` error in
general) and `γ = η/b`, integration over `k ∈ [0, ∞)` (noiseless: `Q(∞) = 0`) gives

    b∞ − b0 = (tr K + (B+1) c_K)/(4ηB) · (Q0 + 2η² ln(b∞/b0)),      η∞ = η/b∞

so `η∞ · (tr K/d) → 4Bη²/(d (Q0 + 2η² ln(b∞/b0)))` when `b∞ ≫ b0`: the limit is
inversely proportional to the mean eigenvalue `tr K/d`. With noise `b² ~ σ² tr K k/B`
and `η_k → 0` like `k^{-1/2}`.

**Power-law phase transition** (`λ_j = j^-α`, `D_j(0) = j^-β`, `d → ∞`): `η∞ > 0` iff
`Q0 = Σ j^-β < ∞` and `tr K < ∞`, i.e. `β > 1` and `α > 1`. For `α > 1 > β`,
`η_k ~ k^{-(1-β)/(α+1-β)}` and `P ~ k^{-(α+β-1)/(α+1-β)}`. For `α ≤ 1`, `tr K = ∞`
and `η_k = O(1/tr K) → 0` at every fixed `k`.

**Two-level spectra.** With `n_a` modes at `λ_a` (a = 1, 2) and `m_a = Σ_{i∈a} D_i`,
the noiseless ODE at step `γ` is linear, `dm/dk = M(γ) m` with
`M(γ) = −diag(2γλ_a − γ²λ_a²(1+1/B)) + (γ²/B) (n_a λ_a)(λ_1, λ_2)`. A constant step
decays at rate `−eig_max M(γ)`; line search picks `γ(m)` (a function of
`ρ = m_1/m_2` only), so `ρ` converges to a fixed point `ρ*` and the line-search rate is
`−eig_max M(γ(ρ*))`.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.optimize import brentq, minimize_scalar

__all__ = [
    "adagrad_norm_limit_lr",
    "adagrad_norm_phase",
    "two_level_sgd_best_rate",
    "two_level_line_search_limit",
]


def _noise_var(problem) -> float:
    try:
        return float(problem.noise.variance)
    except ValueError:
        return math.inf


def adagrad_norm_limit_lr(problem, optimizer) -> float:
    """Limiting AdaGrad-Norm step `η∞ = η/b∞` (module docstring), noiseless targets.

    **Arguments:** a `Problem` and an `AdaGradNorm` config (constant `lr`).

    **Returns:** `η∞` (0.0 for a noisy problem: then `η_k → 0` like `k^{-1/2}`).

    **Raises:** `ValueError` for a schedule `lr` or a problem with `tr K = 0`.
    """
    if not optimizer.constant_lr:
        raise ValueError("`optimizer.lr` must be a constant for the AdaGrad-Norm limit")
    if _noise_var(problem) > 0:
        return 0.0
    lam = np.asarray(problem.eigenvalues, np.float64)
    w = np.asarray(problem.mode_weights, np.float64)
    trK = float(np.sum(w * lam))
    if trK <= 0:
        raise ValueError("`problem` must have tr K > 0")
    cK = float(np.sum(w * lam**2)) / trK
    B, eta, b0 = optimizer.batch, float(optimizer.lr), float(optimizer.b0)
    Q0 = float(np.sum(w * np.asarray(problem.initial_energies)))
    A = (trK + (B + 1) * cK) / (4 * eta * B)

    def f(x):
        return x - b0 - A * (Q0 + 2 * eta**2 * math.log(x / b0))

    hi = max(2 * b0, 4 * A * eta**2, b0 + A * Q0)
    while f(hi) <= 0:
        hi *= 2
    lo = max(b0, 2 * A * eta**2) if f(max(b0, 2 * A * eta**2)) < 0 else b0
    return eta / brentq(f, lo, hi, xtol=1e-14 * hi, rtol=1e-13)


def adagrad_norm_phase(alpha: float, beta: float) -> dict:
    """Phase of the AdaGrad-Norm step on the noiseless power law, `d → ∞`.

    **Returns:** `{"phase", "lr_exponent", "risk_exponent"}` with `η_k ~ k^-lr_exponent`
    and `P ~ k^-risk_exponent` at large `k`: `"constant"` (`α > 1, β > 1`: `η∞ > 0`),
    `"decay"` (`α > 1 ≥ β`; logarithmic at `β = 1`), `"vanishing"` (`α ≤ 1`: `tr K = ∞`).

    **Raises:** `ValueError` unless `α ≥ 0` and `α + β > 1` (finite initial risk).
    """
    a, b = float(alpha), float(beta)
    if not (math.isfinite(a) and math.isfinite(b) and a >= 0 and a + b > 1):
        raise ValueError(f"need alpha >= 0 and alpha + beta > 1, got alpha={alpha}, beta={beta}")
    if a <= 1:
        return {"phase": "vanishing", "lr_exponent": math.nan, "risk_exponent": math.nan}
    if b > 1:
        return {"phase": "constant", "lr_exponent": 0.0,
                "risk_exponent": min(a + b - 1, 2 * a - 1) / a}
    return {"phase": "decay", "lr_exponent": (1 - b) / (a + 1 - b),
            "risk_exponent": (a + b - 1) / (a + 1 - b)}


def _two_levels(problem):
    lam = np.asarray(problem.eigenvalues, np.float64)
    w = np.asarray(problem.mode_weights, np.float64)
    levels = np.unique(lam)
    if levels.size != 2:
        raise ValueError(f"`problem` must have exactly two distinct eigenvalues, got {levels.size}")
    hi, lo = levels[1], levels[0]
    return hi, lo, float(np.sum(w[lam == hi])), float(np.sum(w[lam == lo]))


def _M(g, l1, l2, n1, n2, B):
    a = 2 * g * np.array([l1, l2]) - g**2 * np.array([l1, l2]) ** 2 * (1 + 1 / B)
    return -np.diag(a) + g**2 / B * np.outer([n1 * l1, n2 * l2], [l1, l2])


def _rate(g, *args):
    return -float(np.max(np.linalg.eigvals(_M(g, *args)).real))


def two_level_sgd_best_rate(problem, batch: int = 1) -> dict:
    """Best constant-step SGD on a two-level spectrum (noiseless ODE, asymptotic).

    **Returns:** `{"lr", "rate"}`: the step maximising the asymptotic decay rate
    `−d ln P/dk = −eig_max M(γ)` and that rate.
    """
    l1, l2, n1, n2 = _two_levels(problem)
    args = (l1, l2, n1, n2, int(batch))
    gmax = 2 / (l1 * (1 + 1 / batch))
    grid = np.geomspace(gmax * 1e-6, gmax, 400)
    rates = np.array([_rate(g, *args) for g in grid])
    i = int(np.argmax(rates))
    lo, hi = grid[max(i - 1, 0)], grid[min(i + 1, grid.size - 1)]
    res = minimize_scalar(lambda g: -_rate(g, *args), bounds=(lo, hi), method="bounded",
                          options={"xatol": 1e-12 * hi})
    return {"lr": float(res.x), "rate": float(-res.fun)}


def _ls_step(rho, l1, l2, n1, n2, B):
    s2 = l1**2 * rho + l2**2
    s3 = l1**3 * rho + l2**3
    return s2 / ((1 + 1 / B) * s3 + (n1 * l1**2 + n2 * l2**2) * (l1 * rho + l2) / B)


def two_level_line_search_limit(problem, batch: int = 1) -> dict:
    """Asymptotics of exact line search on a two-level spectrum (noiseless ODE).

    **Returns:** `{"lr", "rate", "ratio"}`: the limiting step `η∞ = γ(ρ*)`, the
    asymptotic decay rate `−d ln P/dk` and `ρ* = lim m_high/m_low`.
    """
    l1, l2, n1, n2 = _two_levels(problem)
    args = (l1, l2, n1, n2, int(batch))

    def drift(log_rho):  # d ln ρ/dk
        rho = math.exp(log_rho)
        M = _M(_ls_step(rho, *args), *args)
        dm = M @ np.array([rho, 1.0])
        return dm[0] / rho - dm[1]

    xs = np.linspace(-60, 60, 1201)
    fs = np.array([drift(x) for x in xs])
    # stable fixed points: drift crosses zero from + to −
    idx = np.where((fs[:-1] > 0) & (fs[1:] <= 0))[0]
    if idx.size == 0:
        x_star = xs[0] if fs[0] < 0 else xs[-1]
    else:
        j = idx[0]
        x_star = brentq(drift, xs[j], xs[j + 1], xtol=1e-13)
    rho = math.exp(x_star)
    g = _ls_step(rho, *args)
    return {"lr": float(g), "rate": _rate(g, *args), "ratio": rho}
