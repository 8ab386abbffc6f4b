"""SignSVD (and Muon) on matrix least squares: the row-energy ODE (signsvd_derivation.md §1–2).

Exact one-step structure (`Q = polar(G)`, eigenbasis of `K`):

    D_i' = D_i − 2η (QΔᵀ)_ii + η² (QQᵀ)_ii,   dD_i/dk = −2η drift_i + η² noise_i

with `drift_i = E(QΔᵀ)_ii` and `noise_i = E(QQᵀ)_ii`; time = iteration count `k`.

**Noise (exact projector structure).** `QQᵀ` projects onto `col(G)`, so
`Σ_i noise_i = rank G = min(B, d, m)` exactly:

- `B >= d` and `m >= d`: `noise_i = 1`;
- `B < d` and `m >= B`: `col(G) = row space of X`, `noise_i = λ_i/(λ_i + κ0)` with
  `Σ_j λ_j/(λ_j + κ0) = B` (independent of Δ, σ, m);
- `m < min(B, d)`: from the deterministic equivalent below,
  `noise_i = 1 + lim_{s→0} s g11_i(s)`, renormalised to `Σ noise_i = m`.

**Drift (deterministic equivalent, closure `S = ΔΔᵀ ≈ diag(D)`).** Per mode, with
`a_i = λ_i`, `b_i = λ_i √D_i`, `c_i = λ_i D_i + σ²` and the three scalars
`x = (x11, x12, x22)`, `det = (1 + x12)² − x11 x22`,
`Γ11 = −x22/det`, `Γ12 = (1 + x12)/det`, `Γ22 = −x11/det`:

    M_i(s) = [[−s + Γ11 a_i, Γ12 b_i], [Γ12 b_i, 1 + Γ22 c_i]],  (g11, g12, g22)_i = M_i⁻¹
    x11 = (1/B) Σ_i a_i g11_i,  x12 = (1/B) Σ_i b_i g12_i,
    x22 = (1/B) [Σ_i c_i g22_i + (m − d) σ²/(1 + Γ22 σ²)]

solved at each quadrature node `s = t²` by Newton's method (3×3 Jacobian by
forward-mode AD), scanning the nodes from large to small `s` so each node starts
from the previous node's solution (continuation; the large-`s` start is the
explicit `g ≈ diag(−1/s, 1)`). Then, from `polar(G) = (2/π) ∫₀^∞ (t² + GGᵀ)⁻¹ G dt`,

    drift_i = √D_i (2/π) ∫₀^∞ g12_i(t²) dt = ρ_i D_i,
    ρ_i = (2/π) ∫₀^∞ −Γ12 λ_i / det M_i(t²) dt

(Gauss–Legendre in `log t` on `[10^-5, 10^2]·‖G‖_est` with the head/tail
`∫₀^{t_lo} ≈ t_lo g(t_lo²)`, `∫_{t_hi}^∞ ≈ t_hi g(t_hi²)`). The exact linearity
`drift_i = ρ_i D_i` gives the ETD2 damping `2ηρ_i` (the field is
`−2ηρ_i D_i + η² noise_i`). Everything is float64, jit-compiled and vectorised
over modes; compressed spectra (`weights`) are supported: sums become
`Σ_i w_i (…)` and `d = Σ w_i`.

**Regime of validity.** The closure is exact at `k = 0` for orthogonal target rows
(`rows="orthogonal"`, `m >= d`) and is kept by the mean flow; measured accuracy is
in `docs/theory/signsvd.md` (1–4% on trajectories with label noise; larger errors
on the noiseless late floor, Gaussian-row targets and `m < d`, where `ΔΔᵀ` has
off-diagonal structure the closure ignores). Limits: `B → ∞` gives
`drift_i → √D_i` (whitening); noise dominated gives `drift_i ∝ √λ_i D_i` for
`λ_i ≫ κ0(B)` and `∝ λ_i D_i` (SGD-like) for `λ_i ≪ κ0(B)`.

Muon (Newton–Schulz, with momentum) has its own ODE in `_muon.py`, built on the
same fixed point (`_Equivalent.at_nodes`, `_gamma` for non-uniform sample weights).
"""

from __future__ import annotations

import functools
from typing import ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from ..optimizers import SignSVD
from ._base import AbstractRateTheory, register
from ._matrix_sampled import sampled_applies, sampled_theory
from ._signsvd_common import (
    RESIDUAL_TOL,
    check_matrix,
    check_spectrum,
    from_z,
    gamma,
    leaf_opt,
    log_nodes,
    noise_mode,
    projector_kappa,
    to_z,
)
from ._signsvd_general import signsvd_general_theory

# re-exported names (used by `_muon.py`, `riskcurves.theory` and the tests)
_gamma, _check_matrix, _noise_mode = gamma, check_matrix, noise_mode

__all__ = ["SignSVDTheory", "signsvd_drift_noise", "projector_kappa", "signsvd_theory",
           "log_nodes", "check_spectrum"]


def _blocks(x, s, a, lam, b, c, sigma2, classes=None):
    G11, G12, G22 = gamma(x, classes)
    A = -s + G11 * a
    C = 1 + G22 * c
    dM = A * C - (G12 * b) ** 2
    # g12 / √D = −Γ12 λ / det M (finite at D = 0)
    return C / dM, -G12 * lam / dM, A / dM, G22


class _Equivalent(eqx.Module):
    lam: jax.Array
    w: jax.Array
    m: float
    batch: float
    sigma2: float
    n_nodes: int = eqx.field(static=True)
    n_newton: int = eqx.field(static=True)

    def solve(self, D):
        """`(ρ, s·g11 at the smallest node + 1, max residual)` for row energies `D`."""
        lam, w, B = self.lam, self.w, self.batch
        scale = jnp.sqrt(jnp.sum(w * lam**2 * D)
                         + jnp.sum(w * lam) * (jnp.sum(w * lam * D) + self.m * self.sigma2) / B)
        scale = jnp.maximum(scale, 1e-150)
        t, wt = log_nodes(scale, self.n_nodes)
        g11, g12n, res = self.at_nodes(D, t**2)
        integ = jnp.sum(wt[:, None] * g12n, 0) + t[0] * g12n[0] + t[-1] * g12n[-1]
        rho = (2 / jnp.pi) * integ
        noise_small_s = 1 + t[-1] ** 2 * g11[-1]
        return rho, noise_small_s, res

    def at_nodes(self, D, s_f, batch=None, classes=None):
        """`(g11, g12/√D, max residual)` at the descending nodes `s_f` (shape `(n,)`);
        the blocks have shape `(n, modes)`. `batch`/`classes`: sample weights (`_gamma`)."""
        lam, w, sigma2 = self.lam, self.w, self.sigma2
        B = self.batch if batch is None else batch
        sqD = jnp.sqrt(jnp.clip(D, 0.0, None))
        a, b, c = lam, lam * sqD, lam * D + sigma2
        extra = (self.m - jnp.sum(w)) * sigma2

        def T(x, s):
            g11, g12n, g22, G22 = _blocks(x, s, a, lam, b, c, sigma2, classes)
            y11 = jnp.sum(w * a * g11) / B
            y12 = jnp.sum(w * b * sqD * g12n) / B
            y22 = (jnp.sum(w * c * g22) + extra / (1 + G22 * sigma2)) / B
            return jnp.stack([y11, y12, y22])

        def F(x, s):
            return x - T(x, s)

        jac = jax.jacfwd(F)

        def merit(x, s):
            return jnp.sum((F(x, s) / (jnp.abs(x) + 1e-300)) ** 2)

        steps = jnp.asarray([1.0, 0.5, 0.2, 0.05])

        def newton(s):
            # damped Newton: the best of 4 step lengths by relative residual (merit)
            def step(x, _):
                dx = jnp.linalg.solve(jac(x, s), F(x, s))
                cands = x[None, :] - steps[:, None] * dx[None, :]
                mer = jax.vmap(lambda xc: merit(xc, s))(cands)
                mer = jnp.where(jnp.isfinite(mer), mer, jnp.inf)
                best = cands[jnp.argmin(mer)]
                ok = jnp.min(mer) < merit(x, s)
                return jnp.where(ok, best, x), None
            return step

        def node(carry, s):
            # predictor: linear extrapolation in log s of (log(−x11), x12, log x22)
            # from the two previous nodes; then `n_newton` damped Newton steps.
            z1, z2, ls1, ls2 = carry
            ls = jnp.log(s)
            frac = jnp.where(ls2 != ls1, (ls - ls1) / (ls1 - ls2), 0.0)
            x = from_z(z1 + frac * (z1 - z2))
            x, _ = jax.lax.scan(newton(s), x, None, length=self.n_newton)
            return (to_z(x), z1, ls, ls1), x

        s0 = s_f[0]
        x0 = jnp.stack([-jnp.sum(w * a) / (B * s0), jnp.zeros(()),
                        (jnp.sum(w * c) + extra) / B])
        z0 = to_z(x0)
        l0 = jnp.log(s0)
        _, xs = jax.lax.scan(node, (z0, z0, l0, l0 + 1.0), s_f)
        res = jax.vmap(lambda x, s: jnp.max(jnp.abs(F(x, s)) / (jnp.abs(x) + 1e-300)))(xs, s_f)
        g11, g12n, _, _ = jax.vmap(
            lambda x, s: _blocks(x, s, a, lam, b, c, sigma2, classes))(xs, s_f)
        return g11, g12n, jnp.max(res)


class SignSVDTheory(AbstractRateTheory):
    """Row-energy ODE of SignSVD (see module docstring). State: `D` (modes).

    `increment(k, D) = −2η ρ(D) D + η² noise(D)` is the one-step mean map (exact up to
    the closure; `discrete_start = True`: the solver runs it for the first iterations);
    the ODE field is the same expression read as a rate in continuous `k`. `residual`
    is the Newton residual of the fixed point."""

    eq: _Equivalent
    D0: jax.Array
    noise_fixed: jax.Array | None
    opt: object  # `leaf_opt(opt)`: η(k) = opt.lr_at(k) (sweep by tree_at on `opt.lr`)
    rank: jax.Array

    discrete_start: ClassVar[bool] = True
    residual_tol: ClassVar[float] = RESIDUAL_TOL

    def init_state(self):
        return self.D0

    @property
    def lam(self):
        return self.eq.lam

    @property
    def w(self):
        return self.eq.w

    def risk(self, D):
        return 0.5 * jnp.sum(self.w * self.lam * D)

    def drift_noise(self, D):
        """`(drift, noise, residual)` per mode (for one-step checks)."""
        rho, noise_s, res = self.eq.solve(D)
        if self.noise_fixed is None:
            noise = jnp.clip(noise_s, 0.0, 1.0)
            noise = noise * self.rank / jnp.sum(self.w * noise)
        else:
            noise = self.noise_fixed
        return rho * D, noise, res

    def _step_rates(self, k, D):
        rho, noise_s, _ = self.eq.solve(D)
        if self.noise_fixed is None:
            noise = jnp.clip(noise_s, 0.0, 1.0)
            noise = noise * self.rank / jnp.sum(self.w * noise)
        else:
            noise = self.noise_fixed
        eta = self.lr(k, D)
        return 2 * eta * jnp.clip(rho, 0.0, None), eta**2 * noise

    def _rates(self, k, D):
        return self._step_rates(k, D)

    def residual(self, k, D):
        return self.eq.solve(D)[2]

    def lr(self, k, D):
        return jnp.asarray(self.opt.lr_at(k), jnp.float64)


def signsvd_theory(opt, lam, D0, m, batch=None, sigma2=0.0, weights=None, *,
                   n_nodes: int = 48, n_newton: int = 3) -> SignSVDTheory:
    """Build the SignSVD ODE from a spectrum (`weights` = multiplicities, compressed).

    `batch` defaults to `opt.batch`. Used by the `MatrixProblem` builder and by the
    large-`d` phase diagram (`riskcurves.theory`).
    """
    lam, D0, w = check_spectrum(lam, D0, weights, m)
    B = int(opt.batch if batch is None else batch)
    if not (n_nodes >= 8 and n_newton >= 1):
        raise ValueError(f"`n_nodes` must be >= 8 and `n_newton` >= 1, got {n_nodes}, "
                         f"{n_newton}")
    d_eff = float(np.sum(w))
    _, noise = noise_mode(lam, w, d_eff, float(m), B)
    f64 = functools.partial(jnp.asarray, dtype=jnp.float64)
    eq = _Equivalent(f64(lam), f64(w), f64(m), f64(B), f64(sigma2), int(n_nodes),
                     int(n_newton))
    return SignSVDTheory(eq, f64(D0), None if noise is None else f64(noise), leaf_opt(opt),
                         f64(min(B, d_eff, m)))


_CLOSURES = ("auto", "diagonal", "general")
_AUTO_GENERAL_MAX_D = 256


def _use_general(problem, closure: str) -> bool:
    if closure not in _CLOSURES:
        raise ValueError(f"`closure` must be one of {_CLOSURES}, got {closure!r}")
    if closure != "auto":
        return closure == "general"
    if problem.weights is not None or problem.d > _AUTO_GENERAL_MAX_D:
        return False
    S0 = problem.row_overlap0
    off = S0 - np.diag(np.diag(S0))
    return bool(np.linalg.norm(off) > 1e-8 * np.linalg.norm(np.diag(S0))
                and np.all(problem.eigenvalues > 0) and np.all(np.diag(S0) > 0))


_ONE_STEP = ("auto", "sampled", "equivalent")


def use_sampled(problem, opt, one_step: str, samples: int | None = None) -> bool:
    """`one_step`: `"sampled"` (the closure's one-step mean over fixed batch draws,
    `_matrix_sampled`), `"equivalent"` (the deterministic equivalent), or `"auto"`:
    sampled where it applies (d <= m, Gaussian or no noise, uncompressed, no momentum,
    draws that fit), else the equivalent."""
    if one_step not in _ONE_STEP:
        raise ValueError(f"`one_step` must be one of {_ONE_STEP}, got {one_step!r}")
    if one_step == "auto":
        return sampled_applies(problem, opt, samples)
    return one_step == "sampled"


@register(SignSVD)
def _signsvd_builder(opt, problem, n_nodes: int | None = None, n_newton: int | None = None,
                     closure: str = "auto", one_step: str = "auto", samples: int | None = None,
                     sample_seed: int = 0):
    """SignSVD ODE. `closure`: `"diagonal"` (`S = ΔΔᵀ ≈ diag(D)`, O(d) per step),
    `"general"` (drift from the general-`S` equivalent at `S(D) = g S0 g`, O(d³);
    `riskcurves.odes._signsvd_general`), or `"auto"`: general when `S0 = Δ0Δ0ᵀ` is
    not diagonal (Gaussian-row targets, `m < d`) and `d <= 256`, else diagonal.
    With the diagonal closure, `one_step` (`use_sampled`) chooses how the one-step
    mean is evaluated: over `samples` batch draws per step (seed `sample_seed`;
    default 256 at batch < d, 64 at batch >= d) or by the deterministic equivalent."""
    check_matrix(problem, opt)
    options = {k: v for k, v in (("n_nodes", n_nodes), ("n_newton", n_newton)) if v is not None}
    general = _use_general(problem, closure)
    if one_step == "auto" and options:   # the equivalent's options ask for it
        one_step = "equivalent"
    if use_sampled(problem, opt, one_step, samples) and not general:
        return sampled_theory(opt, problem, 0, samples=samples, seed=sample_seed)
    if general:
        return signsvd_general_theory(opt, problem.eigenvalues, problem.row_overlap0,
                                      problem.m, problem.sigma2, **options)
    return signsvd_theory(opt, problem.eigenvalues, problem.initial_energies, problem.m,
                          sigma2=problem.sigma2, weights=problem.weights, **options)


def signsvd_drift_noise(problem, D=None, batch: int = 1, closure: str = "diagonal",
                        **options):
    """One-step theory on `problem` at row energies `D` (default `D(0)`):
    `(drift, noise)` numpy arrays (float64). `closure="general"` evaluates the
    general-`S` equivalent at the problem's `S0 = Δ0Δ0ᵀ` (rows rescaled to `D`)."""
    if _use_general(problem, closure):
        th = signsvd_general_theory(SignSVD(1.0, batch), problem.eigenvalues,
                                    problem.row_overlap0, problem.m, problem.sigma2,
                                    **options)
    else:
        th = signsvd_theory(SignSVD(1.0, batch), problem.eigenvalues,
                            problem.initial_energies, problem.m, sigma2=problem.sigma2,
                            **options)
    dr, no, _ = _jit_dn(th, th.D0 if D is None else jnp.asarray(D, jnp.float64))
    return np.asarray(dr), np.asarray(no)


@eqx.filter_jit
def _jit_dn(th, D):
    return th.drift_noise(D)
