"""SGD: the mode-energy ODE and the exact finite-d second-moment recursion.

Mode energies `D_i = (u_iᵀΔ)²`, `P = ½ Σ_i w_i λ_i D_i`, `σ² = E[ε²]`.
Exact one-step mean (Gaussian data, any noise law with variance σ²):

    E[D_i(k+1)] = (1 − 2ηλ_i + η²λ_i²(1 + 1/B)) D_i + (η²/B) λ_i (2P + σ²)

ODE (high-dimensional limit, time = iteration count `k`):

    dD_i/dk = −2ηλ_i D_i + η²λ_i²(1 + 1/B) D_i + (η²/B) λ_i (2P + σ²)

Option `exact_rates=True` replaces each mode's rate by its exact per-step
log-rate `r_i = −ln(1 − 2ηλ_i + η²λ_i²(1+1/B))` and scales the forcing by
`r_i/(1 − e^{−r_i})`; for frozen `P` one unit of ODE time then equals one step
of the recursion exactly (removes the O(ηλ_max) early-time discretisation gap).
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .._curve import Curve, validate_checkpoints
from ..optimizers import SGD
from ..problems import Problem
from ._base import AbstractTheory, register

__all__ = ["SGDTheory", "sgd_recursion", "sgd_rates"]


def sgd_rates(lam, eta, batch: int, exact_rates: bool = False):
    """Per-mode SGD rates `(a, c)`: `dD/dk = −a ⊙ D + c (2P + σ²)` at step size `η`.

    `a = 2ηλ − η²λ²(1 + 1/B)`, `c = η²λ/B`; `exact_rates` as in the module
    docstring. Shared by every ODE whose modes move like SGD at an effective
    (possibly state-dependent) step size (AdaGrad-Norm, line search).
    """
    a = 2 * eta * lam - eta**2 * lam**2 * (1 + 1 / batch)
    c = eta**2 / batch * lam
    if exact_rates:
        rho = jnp.clip(1.0 - a, 1e-300, None)
        r = -jnp.log(rho)
        scale = jnp.where(a > 1e-12, r / jnp.where(a > 1e-12, a, 1.0), 1.0 + 0.5 * a)
        return r, c * scale
    return a, c


def _variance(problem) -> float:
    return float(problem.noise.variance)  # raises ValueError for infinite variance


class SGDTheory(AbstractTheory):
    """Mode-energy ODE of minibatch SGD (see module docstring)."""

    lam: jax.Array
    weights: jax.Array
    D0: jax.Array
    sigma2: float
    opt: SGD
    exact_rates: bool = eqx.field(static=True, default=False)

    def init_state(self):
        return self.D0

    def _rates(self, k):
        return sgd_rates(self.lam, self.opt.lr_at(k), self.opt.batch, self.exact_rates)

    def risk(self, D):
        return 0.5 * jnp.sum(self.weights * self.lam * D)

    def vector_field(self, k, D, args):
        a, c = self._rates(k)
        return -a * D + c * (2 * self.risk(D) + self.sigma2)

    def damping(self, k, D, args):
        return jnp.clip(self._rates(k)[0], 0.0, None)

    def lr(self, k, D):
        return self.opt.lr_at(k)


@register(SGD)
def _sgd_theory(opt: SGD, problem: Problem, exact_rates: bool = False) -> SGDTheory:
    return SGDTheory(
        lam=jnp.asarray(problem.eigenvalues),
        weights=jnp.asarray(problem.mode_weights),
        D0=jnp.asarray(problem.initial_energies),
        sigma2=_variance(problem),
        opt=opt,
        exact_rates=exact_rates,
    )


@eqx.filter_jit
def _recursion(theory: SGDTheory, n_steps: int, ks):
    def body(D, k):
        eta = theory.opt.lr_at(k)
        B = theory.opt.batch
        lam = theory.lam
        rho = 1 - 2 * eta * lam + eta**2 * lam**2 * (1 + 1 / B)
        Dn = rho * D + eta**2 / B * lam * (2 * theory.risk(D) + theory.sigma2)
        return Dn, theory.risk(Dn)

    _, risks = jax.lax.scan(body, theory.D0, jnp.arange(n_steps, dtype=jnp.float64))
    risks = jnp.concatenate([theory.risk(theory.D0)[None], risks])
    return risks[ks]


def sgd_recursion(problem: Problem, optimizer: SGD, checkpoints) -> Curve:
    """Exact mean risk of SGD at finite `d` (the §3 recursion), at `checkpoints`."""
    if not isinstance(optimizer, SGD):
        raise ValueError(f"`optimizer` must be an SGD config, got {type(optimizer).__name__}")
    ks = validate_checkpoints(checkpoints)
    th = _sgd_theory(optimizer, problem)
    risk = np.asarray(_recursion(th, int(ks[-1]), jnp.asarray(ks)))
    return Curve(k=ks, risk=risk, kind="recursion", label="SGD exact recursion",
                 lr=np.asarray(jax.vmap(optimizer.lr_at)(jnp.asarray(ks, jnp.float64)))
                 if not optimizer.constant_lr else np.full(ks.shape, optimizer.lr),
                 noise_variance=th.sigma2,
                 meta={"problem": problem.label, "d": problem.d, **optimizer.describe()})
