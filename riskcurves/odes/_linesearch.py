"""Idealised exact line search: SGD mode dynamics at the oracle step size.

The oracle step minimises the expected population risk after one step,

    η(Δ) = argmin_η E[R(θ − η g) | θ] = ΔᵀK²Δ / ((1 + 1/B) ΔᵀK³Δ + tr(K²)(2P + σ²)/B)

(exact for Gaussian data and any noise law of variance σ²; derivation and Monte-Carlo
check in `docs/theory/adagrad.md`). The ODE (iteration time `k`, state `D`, float64)
replaces each quadratic form by its mean-field value (`ΔᵀKᵐΔ → Σ_i w_i λ_iᵐ D_i`):

    η_k     = Σ wλ²D / ((1 + 1/B) Σ wλ³D + (Σ wλ²)(2P + σ²)/B)
    dD_i/dk = −2η_kλ_i D_i + η_k²λ_i²(1 + 1/B) D_i + (η_k²/B) λ_i (2P + σ²)

(the SGD field, `odes._sgd.sgd_rates`). Saved: `lr = η_k` at the checkpoint (the step
the next update uses; the simulator records the same oracle value from its `Δ`).
"""

from __future__ import annotations

import equinox as eqx
import jax.numpy as jnp

from ..optimizers import LineSearch
from ..problems import Problem
from ._base import AbstractTheory, register
from ._sgd import _variance, sgd_rates

__all__ = ["LineSearchTheory", "line_search_step"]


def line_search_step(lam, weights, D, sigma2, batch: int):
    """Mean-field oracle step `η(D)` (module docstring); 0 where `Σ wλ²D = 0`."""
    s2 = jnp.sum(weights * lam**2 * D)
    s3 = jnp.sum(weights * lam**3 * D)
    two_p = jnp.sum(weights * lam * D)
    den = (1 + 1 / batch) * s3 + jnp.sum(weights * lam**2) * (two_p + sigma2) / batch
    return jnp.where(den > 0, s2 / jnp.where(den > 0, den, 1.0), 0.0)


class LineSearchTheory(AbstractTheory):
    """ODE of SGD with the exact line-search step (see module docstring)."""

    lam: jnp.ndarray
    weights: jnp.ndarray
    D0: jnp.ndarray
    sigma2: jnp.ndarray
    batch: int = eqx.field(static=True)
    exact_rates: bool = eqx.field(static=True, default=False)

    def init_state(self):
        return self.D0

    def risk(self, D):
        return 0.5 * jnp.sum(self.weights * self.lam * D)

    def lr(self, k, D):
        return line_search_step(self.lam, self.weights, D, self.sigma2, self.batch)

    def _rates(self, k, D):
        return sgd_rates(self.lam, self.lr(k, D), self.batch, self.exact_rates)

    def vector_field(self, k, D, args):
        a, c = self._rates(k, D)
        return -a * D + c * (2 * self.risk(D) + self.sigma2)

    def damping(self, k, D, args):
        return jnp.clip(self._rates(k, D)[0], 0.0, None)


@register(LineSearch)
def _line_search_theory(opt: LineSearch, problem: Problem,
                        exact_rates: bool = False) -> LineSearchTheory:
    """Builder; option `exact_rates` (default False) as for SGD."""
    return LineSearchTheory(
        lam=jnp.asarray(problem.eigenvalues),
        weights=jnp.asarray(problem.mode_weights),
        D0=jnp.asarray(problem.initial_energies),
        sigma2=jnp.asarray(_variance(problem), jnp.float64),
        batch=opt.batch,
        exact_rates=bool(exact_rates),
    )
