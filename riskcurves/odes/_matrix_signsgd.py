"""Matrix SignSGD (`W ← W − η sign(G)` entrywise) on matrix least squares.

Derivation: docs/theory/signsvd_derivation.md §4.

Row energies `D_i = ‖u_iᵀΔ‖²`, `P = ½ Σ λ_i D_i`, per-entry label noise `σ²`,
time = iteration count `k`:

    dD_i/dk = −2η drift_i + η² noise_i,   drift_i = √(2/π) λ_i D_i / √(v_i + τ_i²)

Entry `(i, j)` of `G` has mean `λ_i Δ_ij` and variance `v_i`; averaging the sign
over `Δ_ij ~ N(0, D_i/m)` across the `m` columns gives the drift (a Gaussian
closure of the entries, which is what the random right rotation of the target
makes true at `k = 0`).

- Diagonal `K`: `v_i = [λ_i(2P/m + σ²) + λ_i² D_i/m]/B`, `τ_i² = λ_i² D_i/m`,
  `noise_i = m` (`sign(G)` has unit entries).
- Generic (rotated) `K`: coordinates mix all modes, so
  `v = [(tr K/d)(2P/m + σ²) + τ²]/B`, `τ² = Σ_i λ_i² D_i/(d m)` (one scalar), and
  the noise follows the arcsine law of the entry signs,
  `noise_i = m[(2/π) s_i/mean(s) + 1 − 2/π]`,
  `s_i = λ_i² D_i/m + λ_i(2P/m + σ²)/B`.

Regime of validity: per-entry noise dominating the signal (`τ²/v ≲ 1`), where the
measured error is 3–12%; the early transient at high per-entry SNR (entries
moving by exactly `±η`) is not captured by a closure in `D_i` (20–35% error,
see `docs/theory/signsvd.md`). For diagonal `K` and a constant step size the
default (`transient="auto"`) is therefore the lattice density evolution of the
entries (`_matrix_signsgd_density.py`, docs/theory/matrix_signsgd.md; 0.5–0.8% on
the demo problem where this closure is 5% off); this closure is used for rotated
`K`, schedules and traced step sizes, and with `transient="closure"` (a continuous
ODE: no discrete start, see `MatrixSignSGDTheory.discrete_start`).
"""

from __future__ import annotations

from typing import ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp

from ..optimizers import MatrixSignSGD, concrete_batch, is_concrete
from ._base import AbstractRateTheory, register
from ._matrix_signsgd_density import MatrixSignSGDDensity, build_grid
from ._signsvd_common import leaf_opt

__all__ = ["MatrixSignSGDTheory"]

_C = (2 / jnp.pi) ** 0.5


class MatrixSignSGDTheory(AbstractRateTheory):
    """Row-energy ODE of matrix SignSGD (see module docstring)."""

    lam: jax.Array
    w: jax.Array  # multiplicities (compressed spectra); ones otherwise
    D0: jax.Array
    m: jax.Array
    batch: jax.Array
    sigma2: jax.Array
    opt: MatrixSignSGD
    diagonal: bool = eqx.field(static=True)

    def init_state(self):
        return self.D0

    def risk(self, D):
        return 0.5 * jnp.sum(self.w * self.lam * D)

    # The closure is kept as a continuous-time ODE (no discrete start, no exact
    # log-rates): its one-step map is biased in the high per-entry SNR transient, and
    # running the map exactly makes the rotated-K error larger (d = 128, m = 256, B = 8,
    # σ = 0.1, k <= 1000, 8 runs: plain ODE 6.7%, one-step map 11.7%, map log-rates
    # 13.9%; docs/theory/matrix_signsgd.md). Diagonal K uses the exact density recursion.
    discrete_start: ClassVar[bool] = False

    def _rates(self, k, D):
        return self._step_rates(k, D)

    def _step_rates(self, k, D):
        lam, m, B, s2 = self.lam, self.m, self.batch, self.sigma2
        P = self.risk(D)
        eta = self.opt.lr_at(k)
        if self.diagonal:
            tau2 = lam**2 * D / m
            v = (lam * (2 * P / m + s2) + tau2) / B
            noise = jnp.full_like(lam, 1.0) * m
        else:
            w = self.w
            d = jnp.sum(w)
            tau2 = jnp.sum(w * lam**2 * D) / (d * m)
            v = (jnp.sum(w * lam) / d * (2 * P / m + s2) + tau2) / B
            s = lam**2 * D / m + lam * (2 * P / m + s2) / B
            noise = m * ((2 / jnp.pi) * s / (jnp.sum(w * s) / d) + 1 - 2 / jnp.pi)
        rate = _C * lam / jnp.sqrt(jnp.maximum(v + tau2, 1e-300))
        return 2 * eta * rate, eta**2 * noise

    def lr(self, k, D):
        return self.opt.lr_at(k)


_TRANSIENTS = ("auto", "density", "closure")


def _density_possible(problem, opt, density) -> bool:
    """Diagonal `K`, a concrete constant step size and batch, and a grid within
    `max_cells`."""
    if (not problem.is_diagonal or not opt.constant_lr or not is_concrete(opt.lr)
            or not is_concrete(opt.batch)):
        return False
    try:
        build_grid(problem, opt, **density)
    except ValueError:
        return False
    return True


@register(MatrixSignSGD)
def _matrix_signsgd_theory(opt, problem, transient: str = "auto", **density):
    """Builder. `transient="density"` (diagonal `K`, constant `lr`): the lattice density
    recursion of the entries, `_matrix_signsgd_density.py` (options `n_offsets`,
    `init`, `column_rows`, `horizon`, `max_cells`), exact in the high per-entry SNR
    transient (docs/theory/matrix_signsgd.md). `transient="closure"`: the row-energy
    ODE above. `"auto"` (default): the density wherever it applies (diagonal `K`, a
    concrete constant `lr` and batch, grid within `max_cells`), else the closure
    (rotated `K`, schedules, traced step sizes or batch)."""
    if not hasattr(problem, "m"):
        raise ValueError(f"MatrixSignSGD needs a matrix problem (rc.MatrixProblem), got "
                         f"{type(problem).__name__}")
    if transient not in _TRANSIENTS:
        raise ValueError(f"`transient` must be one of {_TRANSIENTS}, got {transient!r}")
    if transient == "auto":
        transient = "density" if _density_possible(problem, opt, density) else "closure"
        if transient == "closure":
            density = {}
    if transient == "density":
        concrete_batch(opt.batch, "transient='density' (the lattice)",
                       "use transient='closure' to sweep the batch")
        return MatrixSignSGDDensity(build_grid(problem, opt, **density),
                                    jnp.asarray(float(opt.lr), jnp.float64))
    if density:
        raise ValueError(f"unexpected options {sorted(density)} for transient='closure'")
    f64 = lambda x: jnp.asarray(x, jnp.float64)  # noqa: E731
    return MatrixSignSGDTheory(f64(problem.eigenvalues), f64(problem.mode_weights),
                               f64(problem.initial_energies),
                               f64(problem.m), f64(opt.batch), f64(problem.sigma2),
                               leaf_opt(opt),
                               bool(problem.is_diagonal))
