"""DANA: the exact per-mode second-moment recursion and its ODE.

DANA (`riskcurves.DANA`) is the momentum update `v' = μ v + g`,
`Δ' = Δ − a g − b v'` with step-dependent coefficients

    μ(k) = 1 − δ/(δ + k) = k/(δ + k),   a(k) = γ2(k),   b(k) = γ3(k) = g3 (1 + k)^(−κ),

so its mean dynamics is the momentum family's (`riskcurves.odes._momentum`): the
exact recursion `y_i(k+1) = T_i(k) y_i(k) + u_i(k)(2P + σ²)` on the per-mode
moments `(E Δ_i², E Δ_i v_i, E v_i²)` for the first `exact_steps` iterations,
then the modified-equation ODE with 3×3 blocks (iteration time `k`). As `k`
grows, `μ → 1` and the effective step `γ2 + γ3 k/δ` grows: DANA-constant
(`κ = 0`) needs `g3 ∝ 1/d` and diverges once that step crosses the stability
threshold (`riskcurves.theory.dana_divergence_time`, a frozen-coefficient
criterion); measured errors in
docs/theory/momentum.md.
"""

from __future__ import annotations

from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp

from ..optimizers import DANA, numeric
from ..problems import Problem
from ._base import register
from ._momentum import AbstractMomentumTheory, check_field, momentum_fields

__all__ = ["DANATheory"]


class DANATheory(AbstractMomentumTheory):
    """Second-moment dynamics of DANA; every number is an array leaf."""

    lam: jax.Array
    weights: jax.Array
    y0: jax.Array
    scale: jax.Array
    sigma2: jax.Array
    batch: jax.Array
    schedule: Any  # γ2: an array or a schedule
    g3: jax.Array
    delta: jax.Array
    kappa: jax.Array
    field: str = eqx.field(static=True, default="modified")

    def lr(self, k, y=None):
        lr = self.schedule
        return jnp.asarray(lr(k) if callable(lr) else lr)

    def coefficients(self, k):
        k = jnp.asarray(k, jnp.float64)
        mu = k / (self.delta + k)
        b = self.g3 * (1.0 + k) ** (-self.kappa)
        return mu, self.lr(k) + b, b * mu


@register(DANA)
def _dana_theory(opt: DANA, problem: Problem, field: str = "modified"):
    """Builder; option `field`: `"modified"` (default) or `"increment"` (see
    `riskcurves.odes._momentum`)."""
    check_field(field)
    opt = numeric(opt)
    return DANATheory(
        **momentum_fields(problem, opt, 0.0),
        g3=jnp.asarray(opt.g3, jnp.float64),
        delta=jnp.asarray(opt.delta, jnp.float64),
        kappa=jnp.asarray(opt.kappa, jnp.float64),
        field=field,
    )
