"""SignSVD with a general row-overlap matrix `S = ΔΔᵀ`.

Derivation: docs/theory/signsvd_derivation.md §2, §5 problem 1.

The deterministic equivalent of signsvd_derivation.md §2 written for any `S` (not only the
diagonal closure `S = diag(D)`). With `K = diag(λ)` (eigenbasis), `a = Γ22`,
`c0 = 1 + a σ²`, the push-through identity `Δ(c0 + a ΔᵀKΔ)⁻¹Δᵀ = (c0 + a SK)⁻¹S`
makes every block depend on `Δ` through `S` only. With

    N = K^½ S K^½ = V diag(ν) Vᵀ,   h(ν) = ν/(c0 + aν),   q(ν) = (ν + σ²)/(1 + a(ν + σ²))²,
    H(s) = −s K⁻¹ + Γ11 I − Γ12² h(N)      (d × d),   H̃ = VᵀHV = −s VᵀK⁻¹V + diag(Γ11 − Γ12² h(ν)),

the `(1,1)` block of the equivalent is `C⁻¹ = K^-½ H⁻¹ K^-½` and the three
scalars solve (the diagonal closure is the special case `V = I`)

    x11 = (1/B) tr H̃⁻¹,
    x12 = −(Γ12/B) Σ_j h(ν_j) (H̃⁻¹)_jj,
    x22 = (1/B) [Σ_j (ν_j + σ²)/(1 + a(ν_j + σ²)) + (m − d) σ²/c0 + Γ12² Σ_j q(ν_j) ν_j (H̃⁻¹)_jj].

(`Σ_j` runs over the `d` eigenvalues of `N`; for `m < d` the `d − m` zero
eigenvalues are removed again by the `(m − d)σ²/c0` term.) Then, with
`polar(G) = (2/π)∫₀^∞ (t² + GGᵀ)⁻¹G dt`, the drift matrix is exactly linear in `S`:

    E[QΔᵀ] = F S,   F = K^-½ V R Vᵀ K^½,   R = (2/π) ∫₀^∞ −Γ12 H̃⁻¹ diag(1/(c0 + aν)) dt,

and the noise `E[QQᵀ] = I + lim_{s→0} s K^-½ V H̃⁻¹ Vᵀ K^-½` (the projector on
`col G`); for `B < d, m >= B` it is exactly `K(K + κ0)⁻¹` (independent of `S`) and
for `B, m >= d` it is `I`.

Cost: one `eigh` of `N` per evaluation plus ONE Cholesky of `−H̃` per quadrature node
and Newton step: the Newton Jacobian comes from `∂(H̃⁻¹)_jj/∂δ_k = −(H̃⁻¹)_jk²`
(`H̃` depends on `x` only through its diagonal `δ`), an `O(d²)` product (32 nodes,
at most 3 Newton steps with early stop; 8 ms at d = 64 vs 60 ms before, single
thread). `O(d³)` vs `O(d)` for the diagonal closure: meant for `d` up to a few
hundred, where the closure is wrong (Gaussian-row targets, `m < d`, fluctuating `S`).
"""

from __future__ import annotations

import functools
from typing import ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from ._base import AbstractRateTheory
from ._signsvd_common import (
    RESIDUAL_TOL,
    from_z,
    gamma,
    leaf_opt,
    log_nodes,
    noise_mode,
    to_z,
)

__all__ = ["GeneralEquivalent", "SignSVDGeneralTheory", "signsvd_general_theory"]

_NEWTON_STOP = 1e-11  # relative residual at which a node stops iterating


class GeneralEquivalent(eqx.Module):
    """Deterministic equivalent of one SignSVD step at a general `S` (see module doc)."""

    lam: jax.Array
    m: jax.Array
    batch: jax.Array
    sigma2: jax.Array
    n_nodes: int = eqx.field(static=True)
    n_newton: int = eqx.field(static=True)

    def solve(self, S):
        """`(F, noise, residual)`: `E[QΔᵀ] = F S`, `noise = E[QQᵀ]` (`d × d`); `residual`
        is the largest relative residual of the three scalars over the nodes."""
        lam, B, sigma2, m = self.lam, self.batch, self.sigma2, self.m
        d = lam.shape[0]
        S = 0.5 * (S + S.T)
        sl = jnp.sqrt(lam)
        nu, V = jnp.linalg.eigh(sl[:, None] * S * sl[None, :])
        nu = jnp.clip(nu, 0.0, None)
        Ainv = (V.T / lam[None, :]) @ V  # VᵀK⁻¹V
        Ainv = 0.5 * (Ainv + Ainv.T)
        eye = jnp.eye(d, dtype=S.dtype)
        cc = nu + sigma2

        def delta(x):  # H̃ = −s VᵀK⁻¹V + diag(δ)
            G11, G12, G22 = gamma(x)
            return G11 - G12**2 * nu / (1 + G22 * sigma2 + G22 * nu)

        def T(x, dg):  # the map x ↦ T(x) at fixed dg = diag(H̃⁻¹); linear in dg
            G11, G12, G22 = gamma(x)
            c0 = 1 + G22 * sigma2
            h = nu / (c0 + G22 * nu)
            y11 = jnp.sum(dg) / B
            y12 = -G12 * jnp.sum(h * dg) / B
            y22 = (jnp.sum(cc / (1 + G22 * cc)) + (m - d) * sigma2 / c0
                   + G12**2 * jnp.sum(cc / (1 + G22 * cc) ** 2 * nu * dg)) / B
            return jnp.stack([y11, y12, y22])

        def evaluate(x, s):
            """Residual `x − T(x)`, its exact Jacobian and `(−H̃)⁻¹`, from ONE Cholesky.

            `∂(H̃⁻¹)_jj/∂δ_k = −(H̃⁻¹)_jk²`, so `d dg/dx = −(H̃⁻¹ ∘ H̃⁻¹) ∂δ/∂x` costs
            `O(d²)` once `H̃⁻¹` is known (no forward-mode pass through the Cholesky).
            −H̃ is positive definite on the physical branch (NaN off it, rejected)."""
            L = jnp.linalg.cholesky(s * Ainv - jnp.diag(delta(x)))
            Li = jax.scipy.linalg.solve_triangular(L, eye, lower=True)
            Minv = Li.T @ Li  # (−H̃)⁻¹
            dg = -jnp.diagonal(Minv)
            Jx = jax.jacfwd(T)(x, dg)  # (3, 3) at fixed dg
            Wg = jax.jacrev(T, argnums=1)(x, dg)  # (3, d)
            ddg = -(Minv * Minv) @ jax.jacfwd(delta)(x)  # (d, 3)
            return x - T(x, dg), jnp.eye(3) - (Jx + Wg @ ddg), Minv

        def rel(x, r):
            m_ = jnp.max(jnp.abs(r) / (jnp.abs(x) + 1e-300))
            return jnp.where(jnp.isfinite(m_), m_, jnp.inf)

        def newton(s):
            # Newton with one fallback (quarter step) when the full step does not
            # reduce the relative residual; one Cholesky per trial point. A node whose
            # residual is already below `_NEWTON_STOP` skips the remaining steps.
            def step(c, _):
                x, r, J, Minv = c

                def iterate(_):
                    dx = jnp.linalg.solve(J, r)
                    x1 = x - dx
                    c1 = (x1,) + evaluate(x1, s)

                    def fallback(_):
                        x2 = x - 0.25 * dx
                        c2 = (x2,) + evaluate(x2, s)
                        ok2 = rel(x2, c2[1]) < rel(x, r)
                        return jax.tree.map(lambda a, b: jnp.where(ok2, a, b), c2, c)

                    return jax.lax.cond(rel(x1, c1[1]) < rel(x, r), lambda _: c1, fallback,
                                        None)

                return jax.lax.cond(rel(x, r) < _NEWTON_STOP, lambda _: c, iterate, None), None
            return step

        D = jnp.diagonal(S)
        P2 = jnp.sum(nu)
        scale = jnp.sqrt(jnp.sum(lam**2 * jnp.clip(D, 0.0, None))
                         + jnp.sum(lam) * (P2 + m * sigma2) / B)
        scale = jnp.maximum(scale, 1e-150)
        t, wt = log_nodes(scale, self.n_nodes)
        wt = wt.at[0].add(t[0]).at[-1].add(t[-1])  # head/tail corrections

        def node(carry, sw):
            # predictor: quadratic extrapolation in log s of z = (log(−x11), x12, log x22)
            # through the three previous nodes; then up to `n_newton` Newton steps.
            zs, lss, R, _ = carry
            s, wgt = sw
            ls = jnp.log(s)
            l0, l1, l2 = lss[0], lss[1], lss[2]
            # Lagrange weights (equally spaced nodes in log s after the start-up)
            w0 = (ls - l1) * (ls - l2) / ((l0 - l1) * (l0 - l2))
            w1 = (ls - l0) * (ls - l2) / ((l1 - l0) * (l1 - l2))
            w2 = (ls - l0) * (ls - l1) / ((l2 - l0) * (l2 - l1))
            x = from_z(w0 * zs[0] + w1 * zs[1] + w2 * zs[2])
            c, _ = jax.lax.scan(newton(s), (x,) + evaluate(x, s), None, length=self.n_newton)
            x, r, _, Minv = c
            G11, G12, G22 = gamma(x)
            R = R + wgt * G12 * Minv / (1 + G22 * sigma2 + G22 * nu)[None, :]
            zs = jnp.stack([to_z(x), zs[0], zs[1]])
            return (zs, jnp.stack([ls, l0, l1]), R, Minv), rel(x, r)

        s_f = t**2
        x0 = jnp.stack([-jnp.sum(lam) / (B * s_f[0]), jnp.zeros(()), (P2 + m * sigma2) / B])
        z0, l0 = to_z(x0), jnp.log(s_f[0])
        # start: three copies of the explicit large-s solution (constant extrapolation)
        carry0 = (jnp.stack([z0, z0, z0]), jnp.stack([l0 + 1.0, l0 + 2.0, l0 + 3.0]),
                  jnp.zeros_like(S), jnp.zeros_like(S))
        (_, _, R, Mlast), res = jax.lax.scan(node, carry0, (s_f, wt))
        R = (2 / jnp.pi) * R
        Fm = (V @ R @ V.T) * (sl[None, :] / sl[:, None])  # K^-½ V R Vᵀ K^½
        isl = 1 / sl
        noise = eye - s_f[-1] * isl[:, None] * (V @ Mlast @ V.T) * isl[None, :]
        return Fm, noise, jnp.max(res)


@functools.partial(jax.jit, static_argnames=("n_nodes", "n_newton"))
def general_drift_noise(lam, S, m, batch, sigma2, n_nodes: int = 32, n_newton: int = 3):
    """`(E[QΔᵀ], E[QQᵀ], residual)` for one SignSVD step at `S` (jit-compiled)."""
    f64 = functools.partial(jnp.asarray, dtype=jnp.float64)
    eq = GeneralEquivalent(f64(lam), f64(m), f64(batch), f64(sigma2), n_nodes, n_newton)
    S = f64(S)
    Fm, noise, res = eq.solve(S)
    return Fm @ S, noise, res


class SignSVDGeneralTheory(AbstractRateTheory):
    """Row-energy ODE of SignSVD with the drift from the general-`S` equivalent.

    State: row energies `D` (as the diagonal closure). The overlap matrix is
    modelled as the initial one with each row scaled by its decay,

        S(D) = diag(g) S0 diag(g),   g_i = √(D_i / D_i(0)),   S0 = Δ0Δ0ᵀ,

    exact at `k = 0` for any target (Gaussian rows, `m < d`, rotated targets) and
    equal to the diagonal closure when `S0` is diagonal. The exact one-step mean map
    (`increment`, time = iteration count `k`) is

        D_i(k+1) − D_i(k) = −2η (F(S) S)_ii + η² noise_i,

    with `F`, `noise` from `GeneralEquivalent` (noise fixed to `1` or
    `λ_i/(λ_i + κ0)` where it does not depend on `S`, else the diagonal of the
    equivalent's projector renormalised to `min(B, d, m)`); `discrete_start = True`
    (the solver runs this map first); the ODE field is the same expression in
    continuous `k`, ETD2 damping `2η (F S)_ii / D_i`. Cost `O(d³)` per evaluation.
    """

    eq: GeneralEquivalent
    D0: jax.Array
    S0n: jax.Array  # S0 / √(D0_i D0_j)
    noise_fixed: jax.Array | None
    opt: object  # `leaf_opt(opt)`: η(k) = opt.lr_at(k)
    rank: jax.Array

    discrete_start: ClassVar[bool] = True
    residual_tol: ClassVar[float] = RESIDUAL_TOL

    def init_state(self):
        return self.D0

    def risk(self, D):
        return 0.5 * jnp.sum(self.eq.lam * D)

    def lr(self, k, D):
        return jnp.asarray(self.opt.lr_at(k), jnp.float64)

    def overlap(self, D):
        sq = jnp.sqrt(jnp.clip(D, 0.0, None))
        return sq[:, None] * self.S0n * sq[None, :]

    def drift_noise(self, D):
        """`(drift, noise, residual)` per mode at row energies `D`."""
        S = self.overlap(D)
        Fm, noise, res = self.eq.solve(S)
        drift = jnp.sum(Fm * S.T, axis=1)  # diag(F S)
        if self.noise_fixed is None:
            noise = jnp.clip(jnp.diagonal(noise), 0.0, 1.0)
            noise = noise * self.rank / jnp.sum(noise)
        else:
            noise = self.noise_fixed
        return drift, noise, res

    def _step_rates(self, k, D):
        drift, noise, _ = self.drift_noise(D)
        eta = self.lr(k, D)
        rho = jnp.clip(drift / jnp.maximum(D, 1e-300), 0.0, None)
        return 2 * eta * rho, eta**2 * noise

    def _rates(self, k, D):
        return self._step_rates(k, D)

    def residual(self, k, D):
        return self.drift_noise(D)[2]


def signsvd_general_theory(opt, lam, S0, m, sigma2=0.0, *, n_nodes: int = 32,
                           n_newton: int = 3) -> SignSVDGeneralTheory:
    """Build the general-`S` SignSVD ODE (`S0 = Δ0Δ0ᵀ` in the eigenbasis of `K`).

    `n_nodes` Gauss–Legendre nodes of the polar integral (32: drift within 5e-5 of
    the 48-node value), `n_newton` Newton steps per node after the continuation
    predictor (3, stopping early below 1e-11: residual ≲ 1e-7; checked by `residual`)."""
    lam = np.asarray(lam, np.float64)
    S0 = 0.5 * (np.asarray(S0, np.float64) + np.asarray(S0, np.float64).T)
    d = lam.size
    if lam.ndim != 1 or S0.shape != (d, d):
        raise ValueError(f"`S0` must be ({d}, {d}) for {d} eigenvalues, got {S0.shape}")
    if not np.all(lam > 0):
        raise ValueError("closure='general' needs eigenvalues > 0 (it uses K^-1/2)")
    D0 = np.diag(S0).copy()
    if not np.all(D0 > 0):
        raise ValueError("closure='general' needs initial row energies D_i(0) > 0")
    if d > 1024:
        raise ValueError(f"closure='general' costs O(d³) per step; d={d} > 1024 — use "
                         "closure='diagonal'")
    if not (n_nodes >= 8 and n_newton >= 1):
        raise ValueError(f"`n_nodes` must be >= 8 and `n_newton` >= 1, got {n_nodes}, "
                         f"{n_newton}")
    B = int(opt.batch)
    _, noise = noise_mode(lam, np.ones_like(lam), float(d), float(m), B)
    f64 = functools.partial(jnp.asarray, dtype=jnp.float64)
    eq = GeneralEquivalent(f64(lam), f64(m), f64(B), f64(sigma2), int(n_nodes), int(n_newton))
    S0n = S0 / np.sqrt(D0[:, None] * D0[None, :])
    return SignSVDGeneralTheory(eq, f64(D0), f64(S0n), None if noise is None else f64(noise),
                                leaf_opt(opt), f64(min(B, d, m)))
