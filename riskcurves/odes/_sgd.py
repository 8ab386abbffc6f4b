"""SGD: the exact finite-d second-moment recursion and its ODE.

Mode energies `D_i = (u_iᵀΔ)²`, `P = ½ Σ_i w_i λ_i D_i`, `σ² = E[ε²]`. Exact
one-step mean (Gaussian data, any noise law with variance σ², batch `B`):

    E[D_i(k+1)] = (1 − a_i) D_i + c_i (2P + σ²),
    a_i = 2ηλ_i − η²λ_i²(1 + 1/B),      c_i = η²λ_i / B

Default model (`solve_ode`): this recursion exactly for the first
`exact_steps` iterations (1024), then the ODE in iteration time `k` with the
exact per-step log-rates and the half-step lag of the forcing

    dD_i/dk = −r_i D_i + c_i (r_i / a_i)(2P̃ + σ²),   r_i = −ln(1 − a_i),
    P̃ = P − ½ dP/dk

(for frozen `P` one unit of ODE time is then exactly one step of the
recursion; the recursion holds `P` at its value at the start of each step,
which lags the continuous `P(k)` by half a step on average: `P̃` removes that
first-order gap). `rates="logrates"` drops the lag term, `rates="plain"` gives
the plain high-dimensional-limit ODE `dD_i/dk = −a_i D_i + c_i (2P + σ²)` (its
gap from the exact mean peaks at about `ηλ_max` near `k ≈ 1/(ηλ_max)`). Measured
errors of each against the recursion: docs/theory/sgd.md.

Momentum (`SGD(..., momentum=μ)` or `nesterov=True`) is a different theory
(per-mode 3×3 blocks): see `riskcurves.odes` momentum module when registered.
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
from ._base import AbstractRateTheory, register
from ._momentum import momentum_sgd_theory

__all__ = ["SGDTheory", "sgd_recursion", "sgd_rates", "sgd_plain_rates"]


def sgd_plain_rates(lam, eta, batch):
    """`(a, c)` of the exact one-step map `E[D'] = (1 − a) D + c (2P + σ²)`."""
    a = 2 * eta * lam - eta**2 * lam**2 * (1 + 1 / batch)
    c = eta**2 / batch * lam
    return a, c


def sgd_rates(lam, eta, batch, exact_rates: bool = True):
    """Per-mode SGD ODE rates `(r, f)`: `dD/dk = −r ⊙ D + f (2P + σ²)` at step size `η`.

    `exact_rates=True`: `r = −ln(1 − a)` and `f = c r/a` (exact per step for frozen
    `P`); `False`: `r = a`, `f = c` (the plain ODE). Shared by every ODE whose modes
    move like SGD at an effective (possibly state-dependent) step size.
    """
    a, c = sgd_plain_rates(lam, eta, batch)
    if exact_rates:
        rho = jnp.clip(1.0 - a, 1e-300, None)
        r = -jnp.log(rho)
        big = jnp.abs(a) > 1e-8
        scale = jnp.where(big, r / jnp.where(big, a, 1.0), 1.0 + 0.5 * a)
        return r, c * scale
    return a, c


def _variance(problem) -> float:
    return float(problem.noise.variance)  # raises ValueError for infinite variance


class SGDTheory(AbstractRateTheory):
    """Mode-energy dynamics of minibatch SGD (see module docstring).

    Every number (`schedule`'s leaves, `batch`, `sigma2`, the spectrum) is an
    array leaf.
    """

    lam: jax.Array
    weights: jax.Array
    D0: jax.Array
    sigma2: jax.Array
    batch: jax.Array
    schedule: Any  # the optimizer's `lr`: an array or a schedule
    exact_rates: bool = eqx.field(static=True, default=True)
    lag: bool = eqx.field(static=True, default=True)
    discrete_start: ClassVar[bool] = True

    def init_state(self):
        return self.D0

    def lr(self, k, D=None):
        lr = self.schedule
        return jnp.asarray(lr(k) if callable(lr) else lr)

    def risk(self, D):
        return 0.5 * jnp.sum(self.weights * self.lam * D)

    def _rates(self, k, D):
        r, f = sgd_rates(self.lam, self.lr(k), self.batch, self.exact_rates)
        P = self.risk(D)
        if self.lag:  # P̃ = P − ½ dP/dk (the recursion's forcing lags by half a step)
            dP = 0.5 * jnp.sum(self.weights * self.lam * (-r * D + f * (2 * P + self.sigma2)))
            P = P - 0.5 * dP
        return r, f * (2 * P + self.sigma2)

    def increment(self, k, D):
        a, c = sgd_plain_rates(self.lam, self.lr(k), self.batch)
        return -a * D + c * (2 * self.risk(D) + self.sigma2)


@register(SGD)
def _sgd_theory(opt: SGD, problem: Problem, rates: str = "exact", field: str = "modified"):
    """Builder; option `rates`: `"exact"` (default: exact per-step log-rates and the
    half-step lag of the forcing), `"logrates"` (log-rates only) or `"plain"` (the
    plain continuous ODE). With momentum: `MomentumSGDTheory` (option `field`,
    see `riskcurves.odes._momentum`)."""
    if opt.has_momentum:
        return momentum_sgd_theory(opt, problem, field)
    if rates not in ("exact", "logrates", "plain"):
        raise ValueError(f"`rates` must be 'exact', 'logrates' or 'plain', got {rates!r}")
    opt = numeric(opt)
    return SGDTheory(
        lam=jnp.asarray(problem.eigenvalues),
        weights=jnp.asarray(problem.mode_weights),
        D0=jnp.asarray(problem.initial_energies),
        sigma2=jnp.asarray(problem.noise.variance, jnp.float64),
        batch=jnp.asarray(opt.batch, jnp.float64),
        schedule=opt.lr,
        exact_rates=rates != "plain",
        lag=rates == "exact",
    )


@eqx.filter_jit
def _recursion(theory: SGDTheory, n_steps: int, ks):
    def body(D, k):
        Dn = D + theory.increment(k, D)
        return Dn, theory.risk(Dn)

    _, risks = jax.lax.scan(body, theory.D0, jnp.arange(n_steps, dtype=jnp.float64))
    risks = jnp.concatenate([theory.risk(theory.D0)[None], risks])
    return risks[ks]


def sgd_recursion(problem: Problem, optimizer: SGD, checkpoints) -> Curve:
    """Exact mean risk of SGD at finite `d` (the one-step recursion), at `checkpoints`.

    One `lax.scan` over every iteration up to `max(checkpoints)` (use `solve_ode`
    for long horizons: it runs the same recursion for its first `exact_steps`).
    """
    if not isinstance(optimizer, SGD):
        raise ValueError(f"`optimizer` must be an SGD config, got {type(optimizer).__name__}")
    if optimizer.has_momentum:
        raise ValueError("`optimizer` must have momentum=0 and nesterov=False for "
                         "sgd_recursion")
    ks = validate_checkpoints(checkpoints)
    th = _sgd_theory(optimizer, problem)
    risk = np.asarray(_recursion(th, int(ks[-1]), jnp.asarray(ks)))
    lr = np.asarray(jax.vmap(th.lr)(jnp.asarray(ks, jnp.float64)))
    return Curve(k=ks, risk=risk, kind="recursion", label="SGD exact recursion", lr=lr,
                 noise_variance=float(th.sigma2),
                 meta={"problem": problem.label, "d": problem.d, **optimizer.describe()})
