"""`ETD2`: an adaptive exponential Runge–Kutta solver for diffrax.

The risk ODEs are `dy/dk = −a(k, y) ⊙ y + N(k, y)` with per-mode damping rates
`a_i` spanning many decades (power laws: `λ_i` from 1 down to 1e-9) and a
coupling `N` that only goes through a few scalars (the risk `P`, `b²`, …).
Explicit solvers are limited by the fastest rate, implicit ones need a dense
Jacobian (`d × d`). ETD2 (Cox & Matthews 2002, "ETD2RK") integrates the diagonal
part exactly over each step, so the step is limited only by how fast the
coupling scalars change (log-spaced steps on power laws: O(log horizon) steps),
at O(d) cost per step.

With `a` frozen at the start of the step, `f0 = f(k0, y0)`, `h = k1 − k0`:

    y_pred = y0 + h φ1(−a h) ⊙ f0
    y1     = y_pred + h φ2(−a h) ⊙ (f(k1, y_pred) − f0 + a ⊙ (y_pred − y0))

with `φ1(z) = (e^z − 1)/z` and `φ2(z) = (e^z − 1 − z)/z²`. It is second order,
exact for linear diagonal systems, and reduces to Heun's method where `a = 0`.
The error estimate `y1 − y_pred` (first vs second order) drives diffrax's PID
controller.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar

import diffrax
import jax
import jax.numpy as jnp

__all__ = ["ETD2"]


def _phi1h(a, h):
    x = a * h
    safe = jnp.where(x > 1e-8, a, 1.0)
    return jnp.where(x > 1e-8, -jnp.expm1(-x) / safe, h * (1.0 - 0.5 * x))


def _phi2h(a, h):
    x = a * h
    xs = jnp.where(x > 1e-3, x, 1.0)
    small = h * (0.5 - x / 6.0 + x**2 / 24.0)
    # h (x − 1 + e^{−x}) / x²
    return jnp.where(x > 1e-3, h * (xs + jnp.expm1(-xs)) / xs**2, small)


class ETD2(diffrax.AbstractAdaptiveSolver):
    """Exponential Runge–Kutta (ETD2RK) with an embedded first-order estimate.

    **Arguments:**

    - `damping`: `(k, y, args) -> a`, a non-negative pytree like `y`: the rates of
      the stiff diagonal part `−a ⊙ y` of the vector field.
    """

    damping: Callable
    term_structure: ClassVar = diffrax.AbstractTerm
    interpolation_cls: ClassVar = diffrax.LocalLinearInterpolation

    def order(self, terms):
        return 2

    def error_order(self, terms):
        return 2

    def init(self, terms, t0, t1, y0, args):
        return None

    def step(self, terms, t0, t1, y0, args, solver_state, made_jump):
        del solver_state, made_jump
        h = t1 - t0
        f0 = terms.vf(t0, y0, args)
        a = self.damping(t0, y0, args)
        y_pred = jax.tree.map(lambda y, ai, f: y + _phi1h(ai, h) * f, y0, a, f0)
        f1 = terms.vf(t1, y_pred, args)
        corr = jax.tree.map(
            lambda ai, fa, fb, yp, y: _phi2h(ai, h) * (fb - fa + ai * (yp - y)),
            a, f0, f1, y_pred, y0,
        )
        y1 = jax.tree.map(jnp.add, y_pred, corr)
        # Shampine's filtered error estimate (I − h γ J)⁻¹ est with the diagonal
        # Jacobian J = −a: stiff components that track a moving equilibrium are
        # not penalised for the equilibrium's motion (which ETD2 follows).
        err = jax.tree.map(lambda c, ai: c / (1.0 + ai * h), corr, a)
        dense_info = dict(y0=y0, y1=y1)
        return y1, err, dense_info, None, diffrax.RESULTS.successful

    def func(self, terms, t0, y0, args):
        return terms.vf(t0, y0, args)
