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
import jax
import jax.numpy as jnp
import numpy as np

from ..optimizers import AdaGradNorm, numeric
from ..problems import Problem
from ._base import AbstractRateTheory, register
from ._sgd import sgd_plain_rates, sgd_rates
from ._topmodes import (
    AbstractTopModeTheory,
    check_top_mode_options,
    draw_top_gradient,
    hybrid_fields,
    mean_field_arrays,
    normal,
    split_top_modes,
)

__all__ = ["AdaGradNormTheory", "AdaGradNormParticles", "expected_sq_grad_norm"]

PARTICLES = 1024  # the particle map's default ensemble (×4 in the first 64 iterations)


def _base_lr(schedule, k):
    """`η(k)` of a constant step or a schedule (both AdaGrad-Norm theories)."""
    return jnp.asarray(schedule(k) if callable(schedule) else schedule, jnp.float64)


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
        return _base_lr(self.schedule, k)

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


def _safe_div(a, b):
    return jnp.where(b > 0, a / jnp.where(b > 0, b, 1.0), 0.0)


class AdaGradNormParticles(AbstractTopModeTheory):
    """AdaGrad-Norm with a random normaliser: the particle map of `docs/theory/adagrad.md` §8.

    Per particle: the top coordinates `y` (`m` modes, possibly 0) and its own `b²`;
    the bulk energies `D` are shared. One iteration `k → k + 1`:

    - the minibatch residuals `r_b = a_b + z_b + ε_b` (top part `a_b`, bulk part
      `z_b ~ N(0, 2P_bulk)`, noise `ε_b` with its scale-mixture variance) and the exact
      top gradient (`_topmodes.draw_top_gradient`);
    - the bulk gradient enters through two scalars of the draw,
      `s = Σ_b z_b r_b/(B·2P_bulk)` and `R = Σ_b r_b²`: given them, a bulk mode has
      `E[g_j] = λ_j Δ_j s` and `E[g_j²] = λ_j² D_j s² + λ_j (R/B²)(1 − λ_j D_j/2P_bulk)`,
      so `‖g_bulk‖² = s² S₂ + (R/B²)(T − S₂/2P_bulk)` (`S₂ = Σ_bulk wλ²D`,
      `T = Σ_bulk wλ`) plus its Gaussian fluctuation over the bulk modes;
    - `b² ← b² + ‖g_top‖² + ‖g_bulk‖²`, `γ = η(k)/b`, `y ← y − γ g_top`;
    - `D_j ← D_j − 2⟨γs⟩λ_j D_j + ⟨γ²s²⟩λ_j² D_j + ⟨γ²R⟩/B² λ_j (1 − λ_j D_j/2P_bulk)`.

    The step `γ` is random (at `B = 4`, `R` alone has a coefficient of variation 0.7)
    and correlated with the gradient it scales; the mean-field ODE replaces it by
    `η/√(b² + E‖g‖²)`. After `handover` iterations (`b²` has concentrated) the
    mean-field ODE continues from the particle means.
    """

    schedule: object
    b0: jax.Array
    batch: jax.Array
    tr_b: jax.Array
    tr2_b: jax.Array
    n_batch: int = eqx.field(static=True)

    def init_particles(self, Y0):
        return (Y0, jnp.full(Y0.shape[:1], jnp.asarray(self.b0, jnp.float64) ** 2))

    def top(self, P):
        return P[0]

    def base_lr(self, k):
        return _base_lr(self.schedule, k)

    def _particle_step(self, key, k, P, D):
        Y, b2 = P
        n, B = Y.shape[0], self.n_batch
        kv, kz, ke, kg, kf = jax.random.split(key, 5)
        lb, wb = self.lam_b, self.w_b
        two_pb = self.bulk_risk2(D)
        v = self.residual_variance(kv, (n, B), D) - two_pb  # noise variance per sample
        z = normal(kz, (n, B)) * jnp.sqrt(two_pb)
        eps = normal(ke, (n, B)) * jnp.sqrt(jnp.maximum(v, 0.0))
        g, r = draw_top_gradient(kg, Y, self.lam_t, z + eps)
        R = jnp.sum(r**2, -1)
        s = jnp.where(two_pb > 0, jnp.sum(z * r, -1) / (B * jnp.where(two_pb > 0, two_pb, 1.0)),
                      1.0)
        s2 = jnp.sum(wb * lb**2 * D)
        s3 = jnp.sum(wb * lb**3 * D)
        xi = normal(kf, (2, n))
        n_bulk = (s**2 * s2 + R / B**2 * (self.tr_b - _safe_div(s2, two_pb))
                  + R / B**2 * jnp.sqrt(2 * self.tr2_b) * xi[0]
                  + 2 * jnp.abs(s) * jnp.sqrt(s3 * R) / B * xi[1])
        b2n = b2 + jnp.sum(g**2, -1) + jnp.maximum(n_bulk, 0.0)
        eta = self.base_lr(k)
        gam = eta / jnp.sqrt(b2n)
        coeffs = (gam * s, gam**2 * s**2, gam**2 * R / B**2)
        report = {"lr": eta / jnp.sqrt(b2), "b2": b2}
        return (Y - gam[:, None] * g, b2n), coeffs, report, None

    def _bulk_update(self, k, D, coeffs):
        c1, c2, c3 = coeffs
        lb = self.lam_b
        frac = _safe_div(lb * D, self.bulk_risk2(D))
        return D - 2 * c1 * lb * D + c2 * lb**2 * D + c3 * lb * (1 - frac)

    def handover_state(self, y):
        P, D = y
        return (jnp.concatenate([jnp.mean(P[0] ** 2, axis=0), D]), jnp.mean(P[1]))


@register(AdaGradNorm)
def _adagrad_theory(opt: AdaGradNorm, problem: Problem, lookahead: bool = True,
                    exact_rates: bool = True, random_step: bool = True,
                    topmodes: int | str = "auto", particles: int = PARTICLES,
                    seed: int = 0):
    """Builder. Default (`random_step=True`): the particle map `AdaGradNormParticles`
    (random normaliser `b²` per particle; `topmodes` top modes as particles, `"auto"`:
    16 when `tr K/λ_max < 50`, else 0), then the mean-field ODE. `random_step=False`:
    the mean-field ODE `AdaGradNormTheory` from `k = 0` (its discrete start, then the
    ODE; `E‖g‖²` in place of `‖g‖²`). `lookahead` and `exact_rates` (both default True) set the
    mean-field theory; `particles` (default 1024) and `seed` (default 0) the ensemble."""
    opt = numeric(opt)
    m, n, seed = check_top_mode_options(problem, topmodes, particles, seed)
    if not isinstance(random_step, bool):
        raise ValueError(f"`random_step` must be True or False, got {random_step!r}")
    sigma2 = jnp.asarray(problem.noise.variance, jnp.float64)
    common = dict(schedule=opt.lr, b0=jnp.asarray(opt.b0, jnp.float64),
                  batch=jnp.asarray(opt.batch, jnp.float64), lookahead=bool(lookahead),
                  exact_rates=bool(exact_rates), sigma2=sigma2)
    if not random_step and topmodes not in (0, "auto"):
        raise ValueError(f"`topmodes` applies to the particle map (random_step=True); "
                         f"with random_step=False it must be 0 or 'auto', got {topmodes!r}")
    if random_step:
        fields = hybrid_fields(problem, m, n, seed)
        mf = mean_field_arrays(fields)
        _, _, lb, wb, _ = split_top_modes(problem, m)  # numpy (concrete under jit)
        return AdaGradNormParticles(
            **fields, schedule=opt.lr, b0=common["b0"], batch=common["batch"],
            tr_b=jnp.asarray(np.sum(wb * lb), jnp.float64),
            tr2_b=jnp.asarray(np.sum(wb * lb**2), jnp.float64), n_batch=int(opt.batch),
            mean_field=AdaGradNormTheory(lam=mf["lam"], weights=mf["weights"], D0=mf["D0"],
                                         **common))
    return AdaGradNormTheory(
        lam=jnp.asarray(problem.eigenvalues),
        weights=jnp.asarray(problem.mode_weights),
        D0=jnp.asarray(problem.initial_energies), **common)
