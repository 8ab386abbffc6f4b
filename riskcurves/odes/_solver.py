"""`ETD2`: an adaptive exponential Runge–Kutta solver for diffrax.

The risk ODEs are `dy/dk = −A(k, y) y + N(k, y)` where the linear part `A` is
stiff (power laws: rates `λ_i` from 1 down to 1e-9) but acts on each mode
separately, and the coupling `N` only goes through a few scalars (the risk
`P`, `b²`, …). Per state leaf, `A` is either

- *diagonal*: the damping leaf has the shape of the state leaf (`a_i ≥ 0`,
  field `−a ⊙ y`), or
- *block diagonal*: the state leaf has shape `(n, p)` (one small vector of
  `p ≤ 4` moments per mode, e.g. momentum's energy, cross term and velocity
  energy) and the damping leaf has shape `(n, p, p)` (field `−A_i y_i` per mode).

ETD2 (Cox & Matthews 2002, "ETD2RK") integrates this linear part exactly over
each step, so the step is limited only by how fast the coupling changes
(log-spaced steps on power laws: O(log horizon) steps) at O(d p³) cost per step.
With `A` frozen at the start of the step, `f0 = f(k0, y0)` (the full field),
`h = k1 − k0`:

    y_pred = y0 + h φ1(−A h) f0
    y1     = y_pred + h φ2(−A h) (f(k1, y_pred) − f0 + A (y_pred − y0))

with `φ1(Z) = Z⁻¹(e^Z − I)` and `φ2(Z) = Z⁻²(e^Z − I − Z)`. It is second order,
exact for linear systems with constant `A`, and reduces to Heun's method where
`A = 0`. Diagonal `φ`'s are closed forms; block `φ`'s come from one matrix
exponential of the `3p × 3p` augmented matrix `[[Z, I, 0], [0, 0, I], [0, 0, 0]]`
(whose first block row is `[e^Z, φ1(Z), φ2(Z)]`).

Exponential tails (noiseless problems at finite `d`): once every mode decays at
least as fast as the risk, the risk falls like `e^{−ρk}` and the coupling (which
goes through the risk) does too, so a polynomial model of the coupling over the
step limits `h` to `O(√rtol/ρ)` and a tail of hundreds of e-folds costs 1e5+
steps. With `risk` given, each step therefore uses the integrating factor
`z = e^{ρ(k − k0)} y` with the scalar `ρ = −(dP/dk)/P` at the step start, clipped
to `[0, min_i a_i]` (diagonal leaves; `ρ = 0` with a block leaf): ETD2 on `z` with
damping `A − ρ`, i.e. with `f̃ = e^{ρh} f(k1, y_pred) − f0 + A (z_pred − y0)` in
the corrector and `y = e^{−ρh} z`. It is the same second-order method (an exact
change of variables per step; `ρ = 0` is the scheme above), exact when the
coupling decays like `e^{−ρk}`, so the tail takes a few steps per checkpoint.

Below `atol` (`rescale=(rtol, atol)`, as `odes.integrate` runs it): the state is kept
as `y = e^l ⊙ u`, each step moving the decay `ρh` into the log-scale `l`, so the
state's shape survives far below `atol` and below the smallest float64
(docs/theory/solver.md, "Below atol").

Error estimate: the correction `y1 − y_pred` (first vs second order), filtered by
`(I + hA)⁻¹` (Shampine's filter with the frozen Jacobian `−A`: stiff components
that track a moving equilibrium are not penalised for the equilibrium's motion,
which ETD2 follows exactly); it drives diffrax's PID controller.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar

import diffrax
import jax
import jax.numpy as jnp
from jax.scipy.linalg import expm

__all__ = ["ETD2", "block_phis"]


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


_MAX_SQUARINGS = 64


def _expm_scaled(M):
    """`expm` of a stack of matrices, robust to huge norms (stiff steps `h‖A‖ ≫ 1`).

    Scaling and squaring with a per-matrix exponent `s` (`‖M/2^s‖_∞ ≤ 1/2`), a fixed
    loop of masked squarings (so reverse-mode differentiation works), and JAX's
    `expm` on the scaled matrices (whose Padé terms then cannot overflow).
    """
    norm = jnp.max(jnp.sum(jnp.abs(M), axis=-1), axis=-1)
    s = jnp.clip(jnp.ceil(jnp.log2(jnp.maximum(norm, 1e-300) / 0.5)), 0, _MAX_SQUARINGS)
    X = expm(M / (2.0 ** s)[..., None, None])
    smax = jnp.max(s)

    def body(j, X):
        return jax.lax.cond(j < smax,
                            lambda X: jnp.where((j < s)[..., None, None], X @ X, X),
                            lambda X: X, X)

    return jax.lax.fori_loop(0, _MAX_SQUARINGS, body, X)


def block_phis(A, h):
    """`(e^{−Ah}, h φ1(−Ah), h φ2(−Ah))` for a stack of `p × p` blocks `A` (`(..., p, p)`)."""
    p = A.shape[-1]
    Z = -A * h
    eye = jnp.broadcast_to(jnp.eye(p, dtype=A.dtype), A.shape)
    zero = jnp.zeros_like(A)
    top = jnp.concatenate([Z, eye, zero], axis=-1)
    mid = jnp.concatenate([zero, zero, eye], axis=-1)
    bot = jnp.concatenate([zero, zero, zero], axis=-1)
    M = jnp.concatenate([top, mid, bot], axis=-2)
    E = _expm_scaled(M.reshape((-1, 3 * p, 3 * p))).reshape(M.shape)
    return E[..., :p, :p], h * E[..., :p, p:2 * p], h * E[..., :p, 2 * p:]


def _mv(M, v):
    return jnp.einsum("...ij,...j->...i", M, v)


def _apply(a, v):
    return _mv(a, v) if a.ndim == v.ndim + 1 else a * v


def _is_block(a, y):
    return a.ndim == y.ndim + 1


class ETD2(diffrax.AbstractAdaptiveSolver):
    """Exponential Runge–Kutta (ETD2RK) with an embedded first-order estimate.

    **Arguments:**

    - `damping`: `(k, y, args) -> A`, a pytree like `y`: per leaf either the
      non-negative rates `a` of a diagonal stiff part `−a ⊙ y` (same shape as the
      leaf) or per-mode blocks `A_i` (shape `(n, p, p)` for a leaf `(n, p)`) of a
      block-diagonal stiff part `−A_i y_i`.
    - `risk`: `y -> P` (optional): enables the exponential-tail integrating factor
      (module docstring).
    - `field_and_damping`: `(k, y, args) -> (field, A)` (optional): both at the step
      start from one evaluation (else the term's field and `damping` separately).
    - `rescale`: `None`, or the controller's `(rtol, atol)`: then the state is `(u, l)`
      with `y = e^l ⊙ u` per leaf (`l` one scalar per leaf of `u`; field, damping and
      `risk` are those of the rescaled theory, with a zero `l` part). Each step moves
      the integrating factor's decay `ρh` into `l` instead of into `u`, so `u` keeps
      its scale (module docstring). The error is reported so that the controller
      applies `atol` to `y` itself, as without rescaling: `err_u (atol + rtol|u|) /
      (atol e^{−l} + rtol|u|)`. The step sizes are then those of the plain scheme,
      while the representation keeps the state's shape in floating point below
      `atol` (and below the smallest float).
    """

    damping: Callable
    risk: Callable | None = None
    field_and_damping: Callable | None = None
    rescale: tuple | None = None  # (rtol, atol) of the controller: state (u, l)
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
        if self.field_and_damping is None:
            f0, A = terms.vf(t0, y0, args), self.damping(t0, y0, args)
        else:
            f0, A = self.field_and_damping(t0, y0, args)
        if self.rescale is not None:
            (u0, l0), (f0u, _), (Au, _) = y0, f0, A
        else:
            u0, f0u, Au, l0 = y0, f0, A, None
        treedef = jax.tree.structure(u0)
        y0l, f0l, Al = (treedef.flatten_up_to(t) for t in (u0, f0u, Au))
        rhos = self._tail_rates(y0, f0, y0l, Al, h)
        shifted = [a - r if r is not None else a for a, r in zip(Al, rhos)]

        def phis(a, y):
            if _is_block(a, y):
                _, p1, p2 = block_phis(a, h)
                return (lambda v: _mv(p1, v), lambda v: _mv(p2, v),
                        lambda v: jnp.linalg.solve(jnp.eye(a.shape[-1]) + h * a,
                                                   v[..., None])[..., 0])
            p1, p2 = _phi1h(a, h), _phi2h(a, h)
            return (lambda v: p1 * v, lambda v: p2 * v, lambda v: v / (1.0 + a * h))

        ops = [phis(a, y) for a, y in zip(shifted, y0l)]
        rl = [jnp.zeros((), y0l[0].dtype) if r is None else r for r in rhos]
        decay, grow = [jnp.exp(-r * h) for r in rl], [jnp.exp(r * h) for r in rl]
        zpl = [y + op[0](f + r * y) for y, op, f, r in zip(y0l, ops, f0l, rl)]
        if self.rescale is not None:
            # the predicted state as `(z_pred, l0 − ρh)`: its `u` field is `e^{ρh} f`
            # in the units of `l0`, i.e. already the `g ⊙ f_b` of the corrector
            l_pred = treedef.unflatten([lv - r * h for lv, r in
                                        zip(treedef.flatten_up_to(l0), rl)])
            f1u, _ = terms.vf(t1, (treedef.unflatten(zpl), l_pred), args)
            gfb = treedef.flatten_up_to(f1u)
        else:
            f1l = treedef.flatten_up_to(
                terms.vf(t1, treedef.unflatten([e * z for e, z in zip(decay, zpl)]), args))
            gfb = [g * fb for g, fb in zip(grow, f1l)]
        corr = [op[1](gf - fa + _apply(a, zp - y))
                for op, a, gf, fa, zp, y in zip(ops, Al, gfb, f0l, zpl, y0l)]
        if self.rescale is not None:
            rtol, atol = self.rescale
            u1l = [zp + c for zp, c in zip(zpl, corr)]
            errl = [op[2](c) * (atol + rtol * jnp.abs(u))
                    / (atol * jnp.exp(-lv) + rtol * jnp.abs(u))
                    for op, c, u, lv in zip(ops, corr, u1l, treedef.flatten_up_to(l_pred))]
            y1 = (treedef.unflatten(u1l), l_pred)
            err = (treedef.unflatten(errl), jax.tree.map(jnp.zeros_like, l0))
        else:
            y1 = treedef.unflatten([e * (zp + c) for e, zp, c in zip(decay, zpl, corr)])
            err = treedef.unflatten([e * op[2](c) for e, op, c in zip(decay, ops, corr)])
        dense_info = dict(y0=y0, y1=y1)
        return y1, err, dense_info, None, diffrax.RESULTS.successful

    def _tail_rates(self, y0, f0, y0l, Al, h):
        """Per leaf: `ρ = −(dP/dk)/P` clipped to `[0, min a]` of the leaf and to
        `ρh ≤ 300`; `None` (no shift) for block leaves or without `risk`."""
        if self.risk is None:
            return [None] * len(Al)
        P0, dP = jax.jvp(self.risk, (y0,), (f0,))  # the full state (rescale: (u, l))
        ok = (P0 > 0) & jnp.isfinite(dP)
        rho = jnp.where(ok, -dP / jnp.where(ok, P0, 1.0), 0.0)
        rho = jnp.minimum(jnp.maximum(rho, 0.0), 300.0 / h)
        return [None if _is_block(a, y) else jnp.clip(rho, 0.0, jnp.maximum(jnp.min(a), 0.0))
                for a, y in zip(Al, y0l)]

    def func(self, terms, t0, y0, args):
        return terms.vf(t0, y0, args)
