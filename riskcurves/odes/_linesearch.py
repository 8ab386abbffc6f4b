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

Default where a few modes hold the spectrum (`topmodes="auto"`: 16 top modes when
`tr K/λ_max < 50`, else 0): the top-mode hybrid `LineSearchTopModes` of
`odes._topmodes` (`docs/theory/topmodes.md`). The `m` largest-eigenvalue coordinates
are `N` particles `y^(n)` taking the exact oracle step of their own state,
`η^(n) = s₂^(n)/((1 + 1/B) s₃^(n) + tr(K²)(2P^(n) + σ²)/B)` with
`s_p^(n) = Σ_top λ_iᵖ (y_i^(n))² + Σ_bulk w_j λ_jᵖ D_j`, and the exact minibatch
gradient `g_top = (1/B) Σ_b x_b,top r_b`, `r_b = x_b,topᵀ y + z_b − ε_b`,
`z_b ~ N(0, 2P_bulk)`; the bulk energies take the exact one-step mean
`D_j ← (1 − 2⟨η⟩λ_j + ⟨η²⟩λ_j²(1 + 1/B)) D_j + λ_j ⟨η²(2P + σ²)⟩/B`
(`⟨·⟩` the particle mean). It is a discrete map (solved by `recursion`), within 1.7%
of 1024–4096-run simulations on power laws with `α ∈ {1, 1.5}`; `topmodes=0` is the
mean-field ODE above, 11–13% off there at every `d` (`η(Δ)` does not concentrate).
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from ..optimizers import LineSearch, concrete_batch
from ..problems import Problem
from ._base import AbstractRateTheory, register
from ._sgd import _variance, sgd_rates
from ._topmodes import (
    DEFAULT_PARTICLES,
    AbstractTopModeTheory,
    check_top_mode_options,
    draw_top_gradient,
    hybrid_fields,
    mean_field_arrays,
    normal,
)

__all__ = ["LineSearchTheory", "LineSearchTopModes", "line_search_step"]


def line_search_step(lam, weights, D, sigma2, batch: int):
    """Mean-field oracle step `η(D)` (module docstring); 0 where `Σ wλ²D = 0`."""
    s2 = jnp.sum(weights * lam**2 * D)
    s3 = jnp.sum(weights * lam**3 * D)
    two_p = jnp.sum(weights * lam * D)
    den = (1 + 1 / batch) * s3 + jnp.sum(weights * lam**2) * (two_p + sigma2) / batch
    return jnp.where(den > 0, s2 / jnp.where(den > 0, den, 1.0), 0.0)


class LineSearchTheory(AbstractRateTheory):
    """ODE of SGD with the exact line-search step (see module docstring), in SGD's
    rate form at the state-dependent step `η(D)`."""

    lam: jnp.ndarray
    weights: jnp.ndarray
    D0: jnp.ndarray
    sigma2: jnp.ndarray
    batch: jax.Array   # a leaf: a new batch (or a vmap over it) does not recompile
    exact_rates: bool = eqx.field(static=True, default=False)

    def init_state(self):
        return self.D0

    def risk(self, D):
        return 0.5 * jnp.sum(self.weights * self.lam * D)

    def lr(self, k, D):
        return line_search_step(self.lam, self.weights, D, self.sigma2, self.batch)

    def _rates(self, k, D):
        a, c = sgd_rates(self.lam, self.lr(k, D), self.batch, self.exact_rates)
        return a, c * (2 * self.risk(D) + self.sigma2)


class LineSearchTopModes(AbstractTopModeTheory):
    """Top-mode hybrid of exact line search (module docstring; `odes._topmodes`)."""

    sigma2: jax.Array
    tr_k2: jax.Array
    batch: jax.Array
    n_batch: int = eqx.field(static=True)  # B as a sample shape

    def _eta(self, Y, D):
        lt, lb, wb = self.lam_t, self.lam_b, self.w_b
        s2 = jnp.sum(lt**2 * Y**2, -1) + jnp.sum(wb * lb**2 * D)
        s3 = jnp.sum(lt**3 * Y**2, -1) + jnp.sum(wb * lb**3 * D)
        two_p = self.particle_risk2(Y, D)
        B = self.batch
        den = (1 + 1 / B) * s3 + self.tr_k2 * (two_p + self.sigma2) / B
        return jnp.where(den > 0, s2 / jnp.where(den > 0, den, 1.0), 0.0), two_p

    def _top_gradient(self, key, Y, D):
        """Exact draw of `g_top` (`_topmodes.draw_top_gradient`), the rest of the
        residual `z_b − ε_b ~ N(0, 2P_bulk + v)`."""
        kz, ke, kg = jax.random.split(key, 3)
        t2 = self.residual_variance(ke, (Y.shape[0], self.n_batch), D)
        rest = normal(kz, t2.shape) * jnp.sqrt(t2)
        return draw_top_gradient(kg, Y, self.lam_t, rest)[0]

    def _particle_step(self, key, k, Y, D):
        eta, two_p = self._eta(Y, D)
        g = self._top_gradient(key, Y, D)
        coeffs = (eta, eta**2, eta**2 * (two_p + self.sigma2))
        lt, Bf = self.lam_t, self.batch
        e2 = eta[:, None] ** 2
        # E[y_i'² | y] = (1 − 2ηλ_i + η²λ_i²(1 + 1/B)) y_i² + η² λ_i (2P + σ²)/B
        top_next = jnp.sum(lt * ((1 - 2 * eta[:, None] * lt + e2 * lt**2 * (1 + 1 / Bf)) * Y**2
                                 + e2 * lt * (two_p + self.sigma2)[:, None] / Bf), axis=-1)
        return Y - eta[:, None] * g, coeffs, {"lr": eta}, top_next

    def _bulk_update(self, k, D, coeffs):
        e1, e2, e3 = coeffs
        lb, B = self.lam_b, self.batch
        return (1 - 2 * e1 * lb + e2 * lb**2 * (1 + 1 / B)) * D + lb * e3 / B


@register(LineSearch)
def _line_search_theory(opt: LineSearch, problem: Problem, exact_rates: bool = False,
                        topmodes: int | str = "auto", particles: int = DEFAULT_PARTICLES,
                        seed: int = 0):
    """Builder. `topmodes`: number of top modes treated as particles
    (`LineSearchTopModes`, in the eigenbasis, so rotated `K` too); `"auto"` (default)
    is 16 when `tr K/λ_max < 50` and 0 otherwise; `topmodes=0`: the mean-field ODE
    `LineSearchTheory`. `particles` (default 4096) and `seed` (default 0) set the
    hybrid's ensemble. `exact_rates` (mean-field only, default False) as for SGD."""
    m, n, seed = check_top_mode_options(problem, topmodes, particles, seed)
    if m > 0:
        n_batch = concrete_batch(
            opt.batch, f"the top-mode hybrid (`topmodes`={topmodes!r} on this spectrum)",
            "pass topmodes=0 to sweep the mean-field ODE over batch, or loop over the "
            "batch values")
        lam = np.asarray(problem.eigenvalues)
        fields = hybrid_fields(problem, m, n, seed)
        sigma2 = jnp.asarray(_variance(problem), jnp.float64)
        return LineSearchTopModes(
            **fields, sigma2=sigma2,
            tr_k2=jnp.asarray(np.sum(problem.mode_weights * lam**2), jnp.float64),
            batch=jnp.asarray(opt.batch, jnp.float64), n_batch=n_batch,
            mean_field=LineSearchTheory(**mean_field_arrays(fields), sigma2=sigma2,
                                        batch=jnp.asarray(opt.batch, jnp.float64),
                                        exact_rates=bool(exact_rates)))
    return LineSearchTheory(
        lam=jnp.asarray(problem.eigenvalues),
        weights=jnp.asarray(problem.mode_weights),
        D0=jnp.asarray(problem.initial_energies),
        sigma2=jnp.asarray(_variance(problem), jnp.float64),
        batch=jnp.asarray(opt.batch, jnp.float64),
        exact_rates=bool(exact_rates),
    )
