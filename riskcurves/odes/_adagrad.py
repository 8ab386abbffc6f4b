"""AdaGrad-Norm: mode energies plus the accumulated squared gradient norm `b²`.

Update (simulated): `b²_{k+1} = b²_k + ‖g_k‖²`, `θ_{k+1} = θ_k − (η(k)/b_{k+1}) g_k`.

ODE in iteration time `k`, state `y = (D, b²)` (float64):

    E‖g‖²   = (1 + 1/B) Σ_i w_i λ_i² D_i + (tr K)(2P + σ²)/B      (Gaussian data)
    db²/dk  = E‖g‖²
    dD_i/dk = −2γλ_i D_i + γ²λ_i²(1 + 1/B) D_i + (γ²/B) λ_i (2P + σ²)

i.e. the SGD mode dynamics (`odes._sgd.sgd_rates`) at the effective step `γ`:

- `lookahead=True` (default): `γ = η(k)/√(b² + E‖g‖²)`. The simulated step uses
  `b_{k+1}`, which already contains `‖g_k‖²`; this is its mean-field value. It
  matters when `b0² ≲ ‖g_0‖²`: there the plain choice takes a huge first step
  (`η/b0`) that the simulation never takes (measured in `docs/theory/adagrad.md`:
  it halves the early-time error, and more).
- `lookahead=False`: `γ = η(k)/√b²` (docs/theory/setting.md §6 as written).

Saved: `lr = η(k)/√b²(k)` (the step that produced iterate `k`, the same quantity
the simulator records), `observables = {"b2": b²}`.
"""

from __future__ import annotations

from typing import Any, ClassVar

import equinox as eqx
import jax.numpy as jnp

from ..optimizers import AdaGradNorm, numeric
from ..problems import Problem
from ._base import AbstractRateTheory, register
from ._sgd import sgd_plain_rates, sgd_rates

__all__ = ["AdaGradNormTheory", "expected_sq_grad_norm"]


def expected_sq_grad_norm(lam, weights, D, sigma2, batch):
    """`E‖g‖² = (1 + 1/B) Σ w λ² D + (Σ w λ)(2P + σ²)/B` (exact for Gaussian data)."""
    two_p = jnp.sum(weights * lam * D)
    return ((1 + 1 / batch) * jnp.sum(weights * lam**2 * D)
            + jnp.sum(weights * lam) * (two_p + sigma2) / batch)


class AdaGradNormTheory(AbstractRateTheory):
    """Dynamics of AdaGrad-Norm (see module docstring); state `(D, b²)`.

    The first `exact_steps` iterations run the discrete mean-field map
    `b²' = b² + E‖g‖²`, `D' = D − a(γ) D + c(γ)(2P + σ²)` (the SGD one-step mean at
    the step `γ`); the ODE after the hand-over uses the exact per-step log-rates
    (`exact_rates=True`, default) or the plain rates.
    """

    lam: jnp.ndarray
    weights: jnp.ndarray
    D0: jnp.ndarray
    sigma2: jnp.ndarray
    schedule: Any  # the optimizer's `lr` (array or schedule)
    b0: jnp.ndarray
    batch: jnp.ndarray
    lookahead: bool = eqx.field(static=True, default=True)
    exact_rates: bool = eqx.field(static=True, default=True)
    discrete_start: ClassVar[bool] = True

    def init_state(self):
        return (self.D0, jnp.asarray(self.b0, jnp.float64) ** 2)

    def risk(self, y):
        return 0.5 * jnp.sum(self.weights * self.lam * y[0])

    def grad_sq(self, y):
        return expected_sq_grad_norm(self.lam, self.weights, y[0], self.sigma2, self.batch)

    def base_lr(self, k):
        """`η(k)`: the constant step or the schedule."""
        lr = self.schedule
        return jnp.asarray(lr(k) if callable(lr) else lr)

    def step_size(self, k, y):
        """The effective step `γ` used by the mode dynamics."""
        b2 = y[1] + self.grad_sq(y) if self.lookahead else y[1]
        return self.base_lr(k) / jnp.sqrt(b2)

    def _rates(self, k, y):
        r, f = sgd_rates(self.lam, self.step_size(k, y), self.batch, self.exact_rates)
        return (r, jnp.zeros_like(y[1])), (f * (2 * self.risk(y) + self.sigma2),
                                           self.grad_sq(y))

    def increment(self, k, y):
        a, c = sgd_plain_rates(self.lam, self.step_size(k, y), self.batch)
        return (-a * y[0] + c * (2 * self.risk(y) + self.sigma2), self.grad_sq(y))

    def lr(self, k, y):
        return self.base_lr(k) / jnp.sqrt(y[1])

    def observables(self, k, y) -> dict:
        return {"b2": y[1]}


@register(AdaGradNorm)
def _adagrad_theory(opt: AdaGradNorm, problem: Problem, lookahead: bool = True,
                    exact_rates: bool = True) -> AdaGradNormTheory:
    """Builder; options `lookahead` (default True) and `exact_rates` (default True)."""
    opt = numeric(opt)
    return AdaGradNormTheory(
        lam=jnp.asarray(problem.eigenvalues),
        weights=jnp.asarray(problem.mode_weights),
        D0=jnp.asarray(problem.initial_energies),
        sigma2=jnp.asarray(problem.noise.variance, jnp.float64),
        schedule=opt.lr,
        b0=jnp.asarray(opt.b0, jnp.float64),
        batch=jnp.asarray(opt.batch, jnp.float64),
        lookahead=bool(lookahead),
        exact_rates=bool(exact_rates),
    )
