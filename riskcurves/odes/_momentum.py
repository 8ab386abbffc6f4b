"""SGD with heavy-ball or Nesterov momentum: the exact per-mode recursion and its ODE.

State: per mode `i` the second moments `y_i = (D_i, C_i, V_i) = (E Δ_i², E Δ_i v_i,
E v_i²)` (shape `(n, 3)`), `P = ½ Σ_i w_i λ_i D_i`. Exact one-step mean (any batch
`B`, Gaussian data, any noise law with variance `σ²`; `riskcurves.theory`
`second_moment_map`):

    y_i(k+1) = T_i(k) y_i(k) + u_i(k) (2P(k) + σ²)              (iteration time k)

with `v(0) = 0`. Default model (`solve_ode`): this recursion exactly for the
first `exact_steps` iterations (1024), then its continuous counterpart, the
*modified equation* of the map (the ODE whose unit-time flow equals one step of
the recursion up to third order in the per-step change):

    dy_i/dk = −(X_i + ½ X_i²) y_i + (I + ½ X_i) u_i (2P + σ²) − u_i dP/dk,
    X_i = I − T_i(k − ½),   dP/dk = ½ Σ_i w_i λ_i [−X_i y_i + u_i (2P + σ²)]_D

integrated by ETD2 with the 3×3 blocks `X + ½X²` treated exactly. For every
stable block the eigenvalues of `X + ½X²` have real part `>= (1 − Re ρ)² > 0`
(`ρ` an eigenvalue of `T`), its fixed point for frozen `P` is the recursion's
(`X⁻¹ u (2P + σ²)`), and `−X − ½X²` is the first two terms of `log T`; the
`− u dP/dk` term is the half-step lag of the forcing and `k − ½` the half-step
lag of the coefficients. `field="increment"` gives the first-order field
`dy/dk = (T − I) y + u (2P + σ²)` (the increment itself as the ODE). Measured
errors of both against the exact recursion: docs/theory/momentum.md.
"""

from __future__ import annotations

from typing import Any, ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .._curve import Curve, validate_checkpoints
from ..optimizers import SGD, numeric
from ..problems import Problem
from ..theory._momentum import momentum_coefficients, second_moment_map
from ._base import AbstractRateTheory, build_theory

__all__ = ["AbstractMomentumTheory", "MomentumSGDTheory", "momentum_recursion",
           "momentum_init_state", "momentum_scale"]

_FIELDS = ("modified", "increment")


def _sched(x, k):
    return jnp.asarray(x(k) if callable(x) else x)


class AbstractMomentumTheory(AbstractRateTheory):
    """Second-moment dynamics of a two-buffer momentum method (module docstring).

    Subclasses implement `coefficients(k) -> (μ, c, e)` (the update
    `v' = μ v + g`, `Δ' = Δ − c g − e v` at step `k`) and `lr(k, y)`, and hold the
    fields `lam`, `weights`, `y0`, `scale`, `sigma2`, `batch` (array leaves) and
    `field` (static: `"modified"` or `"increment"`).

    State coordinates: per mode `(D, S, V)` with `S = E(Δ + s v)²/(2s) =
    D/(2s) + C + sV/2 >= 0` (`s = scale_i > 0`) instead of the cross moment `C`,
    which changes sign: every component then stays positive, so the solver's
    relative error control never chases a zero crossing (with `C` itself the ODE
    needs ~20x more steps). `s_i = (1 − μ)/λ_i` balances `D/s` and `sV` for a
    mode driven at rate `λ/(1 − μ)`.
    """

    discrete_start: ClassVar[bool] = True
    # the modified-equation ODE needs ~0.5–2 iterations per step while the oscillating
    # transients last (B = 1, μ = 0.9: 5523 steps for 10⁴ iterations at d = 1000,
    # 75 s); the exact map costs O(nodes) per iteration, so it runs longer
    default_exact_steps: ClassVar[int] = 65_536

    def coefficients(self, k):
        raise NotImplementedError

    def init_state(self):
        return self.y0

    def risk(self, y):
        return 0.5 * jnp.sum(self.weights * self.lam * y[:, 0])

    def moments(self, y):
        """`(D, C, V)` per mode from the state `(D, S, V)`."""
        s = self.scale
        return jnp.stack([y[:, 0], y[:, 1] - y[:, 0] / (2 * s) - s * y[:, 2] / 2, y[:, 2]], -1)

    def observables(self, k, y) -> dict:
        return {"velocity_energy": jnp.sum(self.weights * y[:, 2])}

    def blocks(self, k):
        """`(T, u)` of the exact one-step map at iteration `k`, in state coordinates."""
        mu, c, e = self.coefficients(k)
        T, u = second_moment_map(self.lam, mu, c, e, self.batch)
        R, Rinv = _change_of_basis(self.scale)
        return (jnp.einsum("nij,njk,nkl->nil", Rinv, T, R), jnp.einsum("nij,nj->ni", Rinv, u))

    def increment(self, k, y):
        T, u = self.blocks(k)
        forcing = 2 * self.risk(y) + self.sigma2
        return jnp.einsum("nij,nj->ni", T, y) - y + u * forcing

    def _rates(self, k, y):
        modified = self.field == "modified"
        kk = jnp.maximum(jnp.asarray(k, jnp.float64) - 0.5, 0.0) if modified else k
        T, u = self.blocks(kk)
        X = jnp.eye(3) - T
        forcing = 2 * self.risk(y) + self.sigma2
        if not modified:
            return X, u * forcing
        F = -jnp.einsum("nij,nj->ni", X, y) + u * forcing
        dP = 0.5 * jnp.sum(self.weights * self.lam * F[:, 0])
        A = X + 0.5 * jnp.einsum("nij,njk->nik", X, X)
        f = (u + 0.5 * jnp.einsum("nij,nj->ni", X, u)) * forcing - u * dP
        return A, f


def _change_of_basis(s):
    """`R` maps the state `(D, S, V)` to the moments `(D, C, V)`; `Rinv` back."""
    one, zero = jnp.ones_like(s), jnp.zeros_like(s)
    R = jnp.stack([jnp.stack([one, zero, zero], -1),
                   jnp.stack([-1 / (2 * s), one, -s / 2], -1),
                   jnp.stack([zero, zero, one], -1)], -2)
    Rinv = jnp.stack([jnp.stack([one, zero, zero], -1),
                      jnp.stack([1 / (2 * s), one, s / 2], -1),
                      jnp.stack([zero, zero, one], -1)], -2)
    return R, Rinv


def momentum_scale(lam, momentum):
    """`s_i = max(1 − μ, 10⁻³)/λ_i` (the state coordinate `S`, see above)."""
    return jnp.maximum(1.0 - momentum, 1e-3) / jnp.asarray(lam, jnp.float64)


def momentum_init_state(problem, scale) -> jax.Array:
    """`(n, 3)` initial state: `D(0)` from the problem, `v(0) = 0` (`S = D/(2s)`, `V = 0`)."""
    D0 = jnp.asarray(problem.initial_energies, jnp.float64)
    return jnp.stack([D0, D0 / (2 * scale), jnp.zeros_like(D0)], -1)


class MomentumSGDTheory(AbstractMomentumTheory):
    """SGD with optax heavy-ball (`v ← μv + g`, `θ ← θ − ηv`) or Nesterov momentum
    (`θ ← θ − η(g + μv)`); every number is an array leaf."""

    lam: jax.Array
    weights: jax.Array
    y0: jax.Array
    scale: jax.Array
    sigma2: jax.Array
    batch: jax.Array
    schedule: Any  # the optimizer's `lr`: an array or a schedule
    momentum: jax.Array
    nesterov: bool = eqx.field(static=True, default=False)
    field: str = eqx.field(static=True, default="modified")

    def lr(self, k, y=None):
        return _sched(self.schedule, k)

    def coefficients(self, k):
        return momentum_coefficients(self.lr(k), self.momentum, self.nesterov)


def check_field(field):
    if field not in _FIELDS:
        raise ValueError(f"`field` must be one of {_FIELDS}, got {field!r}")


def momentum_fields(problem, opt, momentum) -> dict:
    """The fields every momentum-family theory shares (spectrum, state, noise, batch,
    step size), with the state scaling of momentum `momentum`."""
    lam = jnp.asarray(problem.eigenvalues, jnp.float64)
    scale = momentum_scale(lam, momentum)
    return dict(lam=lam, weights=jnp.asarray(problem.mode_weights, jnp.float64),
                y0=momentum_init_state(problem, scale), scale=scale,
                sigma2=jnp.asarray(problem.noise.variance, jnp.float64),
                batch=jnp.asarray(opt.batch, jnp.float64), schedule=opt.lr)


def momentum_sgd_theory(opt: SGD, problem: Problem, field: str = "modified"):
    """Builder of `MomentumSGDTheory` (called by the SGD builder when
    `opt.has_momentum`); option `field`: `"modified"` (default) or `"increment"`."""
    check_field(field)
    opt = numeric(opt)
    return MomentumSGDTheory(
        **momentum_fields(problem, opt, opt.momentum),
        momentum=jnp.asarray(opt.momentum, jnp.float64),
        nesterov=opt.nesterov,
        field=field,
    )


@eqx.filter_jit
def _recursion(theory: AbstractMomentumTheory, n_steps: int, ks):
    def body(y, k):
        y1 = y + theory.increment(k, y)
        return y1, theory.risk(y1)

    _, risks = jax.lax.scan(body, theory.init_state(), jnp.arange(n_steps, dtype=jnp.float64))
    risks = jnp.concatenate([theory.risk(theory.init_state())[None], risks])
    return risks[ks]


def momentum_recursion(problem: Problem, optimizer, checkpoints) -> Curve:
    """Exact mean risk of a momentum method (SGD with momentum, DANA) at finite `d`.

    One `lax.scan` of the exact recursion over every iteration up to
    `max(checkpoints)` (use `solve_ode` for long horizons: it runs the same
    recursion for its first `exact_steps`, then the ODE).
    """
    ks = validate_checkpoints(checkpoints)
    th = build_theory(numeric(optimizer), problem)
    if not isinstance(th, AbstractMomentumTheory):
        raise ValueError(f"`optimizer` must be SGD with momentum or DANA, got "
                         f"{type(optimizer).__name__} without a momentum theory")
    risk = np.asarray(_recursion(th, int(ks[-1]), jnp.asarray(ks)))
    lr = np.asarray(jax.vmap(lambda k: th.lr(k))(jnp.asarray(ks, jnp.float64)))
    return Curve(k=ks, risk=risk, kind="recursion", label=f"{optimizer.name} exact recursion",
                 lr=lr, noise_variance=float(th.sigma2),
                 meta={"problem": problem.label, "d": problem.d, **optimizer.describe()})
