"""Clipped SGD: the mode-energy ODE in the large-intrinsic-dimension limit.

Update `θ ← θ − η(k)·g·min(1, c/‖g‖)` (global-norm clipping of the minibatch
gradient). With `‖x‖² ≈ tr K` (valid when `tr K / λ_max` is large), the
threshold on the residual is `c' = c/√(tr K)` and, time = iteration count `k`,

    dD_i/dk = −2η μ(P) λ_i D_i + η² G(P) λ_i² D_i + η² λ_i ν(P),   P = ½ Σ w_i λ_i D_i

with `μ = Pr(|r| < c')`, `ν = E[min(r², c'²)]`, `G = 2 Σ_k w_k E_k[r²1{|r|<c'}]/t_k²`
over `r = z − ε`, `z ~ N(0, 2P)` (batch 1, every noise law, exact through the
noise's scale mixture). `G λ_i² D_i` is the finite-η part of the second moment
of the step along mode i (`G = 2` without clipping, reproducing SGD's
`η²λ_i²(1 + 1/B) D_i`; `G → 0` when every step is clipped). Batch `B > 1`:
`μ_B, ν_B, G_B` of `riskcurves.theory.clip_coefficients` (Gaussian noise only).
Coefficients: `riskcurves.theory.clip_coefficients`; derivation and measured
accuracy: `docs/theory/clipping.md`.

Default for batch 1 where a few modes hold the spectrum (`topmodes="auto"`: 16 top
modes when `tr K/λ_max < 50`, else 0): the top-mode hybrid `ClippedSGDTopModes`
(`odes._topmodes`, `docs/theory/topmodes.md`), which keeps the `m` largest-eigenvalue
coordinates as `N` particles and clips with the exact `‖x‖² = ‖x_top‖² + tr K_bulk`:
each particle steps `y ← y − η x_top clamp(r, ±c/‖x‖)` with `x_top ~ N(0, diag λ_top)`,
`r = x_topᵀy + z − ε`, `z ~ N(0, 2P_bulk)`; the bulk energies take the exact one-step
mean `D_j ← D_j − 2η⟨μ⟩λ_j D_j + η²⟨G⟩λ_j² D_j + η²λ_j⟨ν⟩`, where `μ, ν, G` are the
coefficients above conditional on the particle and its `x_top` (residual
`r ~ a + N(0, 2P_bulk + v_k)`, `a = x_topᵀy`, threshold `c/‖x‖`; closed forms over the
noise's scale mixture). It removes the `O(λ_max/tr K)` error of the
large-intrinsic-dimension limit (4–6% at α = 1, 10–19% at α = 1.5 on power laws).
`topmodes=0` (and every `B > 1`) is the ODE above.

Options of `solve_ode(problem, ClippedSGD(...), ks, **options)`:
`finite_lr_correction=True` (keep the `G` term), `topmodes="auto"`,
`particles=4096`, `seed=0` (the hybrid; `topmodes=0` for the ODE).
"""

from __future__ import annotations

from typing import ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp

from ..optimizers import ClippedSGD, concrete_batch, numeric
from ..problems import Problem
from ..theory._clipping import (
    _check_batch_noise,
    check_intrinsic_dimension,
    clip_coefficients,
    prob_not_clipped,
)
from ._base import AbstractRateTheory, register
from ._topmodes import (
    DEFAULT_PARTICLES,
    AbstractTopModeTheory,
    check_top_mode_options,
    hybrid_fields,
    mean_field_arrays,
    normal,
)

__all__ = ["ClippedSGDTheory", "ClippedSGDTopModes"]


class ClippedSGDTheory(AbstractRateTheory):
    """Mode-energy ODE of clipped SGD (see module docstring), in rate form
    `dD/dk = −a ⊙ D + η² λ ν` with `a = 2ημλ − η²Gλ²`.

    `opt` (its step size, constant or schedule) and `clip_eff` (`c' = c/√(tr K)`,
    `inf` = no clipping) are array leaves, so sweeps over them reuse one
    compilation (and can be vmapped). The field is the expected one-step increment
    of the mean-field map, so the solver runs it as that map for the first
    iterations (`discrete_start`); with `c = ∞` it is then SGD's exact recursion.
    """

    discrete_start: ClassVar[bool] = True

    lam: jax.Array
    weights: jax.Array
    D0: jax.Array
    opt: ClippedSGD
    clip_eff: jax.Array
    noise: object
    finite_lr_correction: bool = eqx.field(static=True, default=True)

    def init_state(self):
        return self.D0

    def lr(self, k, D=None):
        return self.opt.lr_at(k)

    def risk(self, D):
        return 0.5 * jnp.sum(self.weights * self.lam * D)

    def _rates(self, k, D):
        mu, nu, g = clip_coefficients(self.noise, 2 * self.risk(D), self.clip_eff,
                                      self.opt.batch)
        eta = self.lr(k)
        a = 2 * eta * mu * self.lam
        if self.finite_lr_correction:
            a = a - eta**2 * g * self.lam**2
        return a, eta**2 * self.lam * nu

    def observables(self, k, D):
        p = prob_not_clipped(self.noise, 2 * self.risk(D), self.clip_eff, self.opt.batch)
        return {"clip_frac": 1.0 - p}


def _shifted_clip_moments(a, t2, c):
    """For `r ~ N(a, t²)` and `|r|` clipped at `c`: `(Pr(|r| < c), E[clamp(r, ±c)],
    E[min(r², c²)], E[f''(r)])` with `f = min(r², c²)`, i.e.
    `2 Pr(|r| < c) − 2c (p(c) + p(−c))` (`p` the density of `r`)."""
    t = jnp.sqrt(jnp.maximum(t2, 1e-300))
    al, be = (-c - a) / t, (c - a) / t
    Pa, Pb = jax.scipy.stats.norm.cdf(al), jax.scipy.stats.norm.cdf(be)
    fa, fb = jax.scipy.stats.norm.pdf(al), jax.scipy.stats.norm.pdf(be)
    p_in = Pb - Pa
    m1 = a * p_in + t * (fa - fb)
    m2 = (a**2 + t2) * p_in + 2 * a * t * (fa - fb) + t2 * (al * fa - be * fb)
    clamp = m1 + c * (1 - Pb) - c * Pa
    nu = m2 + c**2 * (1 - p_in)
    g = 2 * p_in - 2 * c * (fa + fb) / t
    return p_in, clamp, nu, g


class ClippedSGDTopModes(AbstractTopModeTheory):
    """Top-mode hybrid of clipped SGD, batch 1 (module docstring; `odes._topmodes`)."""

    opt: ClippedSGD
    finite_lr_correction: bool = eqx.field(static=True, default=True)

    def _eta(self, k):
        return self.opt.lr_at(k)

    def _particle_step(self, key, k, Y, D):
        n, m = Y.shape
        eta, c = self._eta(k), self.opt.clip
        kx, kz, ke = jax.random.split(key, 3)
        x = normal(kx, (n, m)) * jnp.sqrt(self.lam_t)
        norm = jnp.sqrt(jnp.sum(x**2, -1) + jnp.sum(self.w_b * self.lam_b))
        cx = c / norm
        a = jnp.sum(x * Y, -1)
        # conditional on (y, x_top, the noise component v): r = a + u, u ~ N(0, 2P_bulk + v)
        t2 = self.residual_variance(ke, (n,), D)
        p_in, clamp, nu, g = _shifted_clip_moments(a, t2, cx)
        r = a + normal(kz, (n,)) * jnp.sqrt(t2)
        Yn = Y - eta * x * jnp.clip(r, -cx, cx)[:, None]
        # E[y_i'² | y, x] = (y_i − η x_i E[clamp])² + η² x_i² Var(clamp), Var = ν − E[clamp]²
        m_i = Y - eta * x * clamp[:, None]
        top_next = jnp.sum(self.lam_t * (m_i**2 + eta**2 * x**2 * (nu - clamp**2)[:, None]), -1)
        return Yn, (p_in, nu, g), {"lr": eta, "clip_frac": 1.0 - p_in}, top_next

    def _bulk_update(self, k, D, coeffs):
        mu, nu, g = coeffs
        eta, lb = self._eta(k), self.lam_b
        rate = 2 * eta * mu * lb
        if self.finite_lr_correction:
            rate = rate - eta**2 * g * lb**2
        return (1 - rate) * D + eta**2 * lb * nu


@register(ClippedSGD)
def _clipped_theory(opt: ClippedSGD, problem: Problem, finite_lr_correction: bool = True,
                    topmodes: int | str = "auto", particles: int = DEFAULT_PARTICLES,
                    seed: int = 0):
    # the batch selects the closed form (the law of the clipped batch norm, χ_B)
    concrete_batch(opt.batch, "the clipped-SGD theory", "loop over the batch values")
    _check_batch_noise(problem.noise, opt.batch)
    opt = numeric(opt)  # step size (constant or schedule) and clip are array leaves
    m, n, seed = check_top_mode_options(problem, topmodes, particles, seed)
    if m > 0 and opt.batch > 1 and topmodes != "auto":
        raise ValueError(f"`topmodes`={topmodes!r}: the clipped-SGD top-mode hybrid needs "
                         f"batch 1, got batch={opt.batch}; use topmodes=0 (the ODE)")
    if m > 0 and opt.batch == 1:
        fields = hybrid_fields(problem, m, n, seed)
        mf = ClippedSGDTheory(
            **mean_field_arrays(fields), opt=opt,
            clip_eff=opt.clip / jnp.sqrt(jnp.asarray(problem.trace, jnp.float64)),
            noise=problem.noise, finite_lr_correction=bool(finite_lr_correction))
        return ClippedSGDTopModes(**fields, opt=opt, mean_field=mf,
                                  finite_lr_correction=bool(finite_lr_correction))
    check_intrinsic_dimension(problem, stacklevel=4)
    return ClippedSGDTheory(
        lam=jnp.asarray(problem.eigenvalues),
        weights=jnp.asarray(problem.mode_weights),
        D0=jnp.asarray(problem.initial_energies),
        opt=opt,
        clip_eff=opt.clip / jnp.sqrt(jnp.asarray(problem.trace, jnp.float64)),
        noise=problem.noise,
        finite_lr_correction=bool(finite_lr_correction),
    )
