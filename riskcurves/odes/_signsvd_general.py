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

Cost: one `eigh` of `N` per evaluation plus one dense `d × d` solve per quadrature
node and Newton step (`O(d³)`, vs `O(d)` for the diagonal closure): meant for
`d` up to a few hundred, where the closure is wrong (Gaussian-row targets,
`m < d`, fluctuating `S`).
"""

from __future__ import annotations

import functools

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from ._base import AbstractRateTheory
from ._signsvd import _noise_mode, log_nodes

__all__ = ["GeneralEquivalent", "SignSVDGeneralTheory", "signsvd_general_theory"]


class GeneralEquivalent(eqx.Module):
    """Deterministic equivalent of one SignSVD step at a general `S` (see module doc)."""

    lam: jax.Array
    m: float
    batch: float
    sigma2: float
    n_nodes: int = eqx.field(static=True)
    n_newton: int = eqx.field(static=True)

    def solve(self, S):
        """`(F, noise, residual)`: `E[QΔᵀ] = F S`, `noise = E[QQᵀ]` (`d × d`)."""
        lam, B, sigma2, m = self.lam, self.batch, self.sigma2, self.m
        d = lam.shape[0]
        S = 0.5 * (S + S.T)
        sl = jnp.sqrt(lam)
        nu, V = jnp.linalg.eigh(sl[:, None] * S * sl[None, :])
        nu = jnp.clip(nu, 0.0, None)
        Ainv = (V.T / lam[None, :]) @ V  # VᵀK⁻¹V
        Ainv = 0.5 * (Ainv + Ainv.T)
        eye = jnp.eye(d, dtype=S.dtype)

        def gammas(x):
            x11, x12, x22 = x[0], x[1], x[2]
            det = (1 + x12) ** 2 - x11 * x22
            return -x22 / det, (1 + x12) / det, -x11 / det

        def chol(x, s):
            # −H̃ = s VᵀK⁻¹V − diag(Γ11 − Γ12² h) is positive definite on the physical
            # branch (Γ11 < 0): Cholesky, NaN (rejected by the merit) off the branch.
            G11, G12, G22 = gammas(x)
            c0 = 1 + G22 * sigma2
            h = nu / (c0 + G22 * nu)
            L = jnp.linalg.cholesky(s * Ainv - jnp.diag(G11 - G12**2 * h))
            Li = jax.scipy.linalg.solve_triangular(L, eye, lower=True)
            return G12, G22, c0, h, Li

        def T(x, s):
            G12, G22, c0, h, Li = chol(x, s)
            dg = -jnp.sum(Li**2, axis=0)  # diag(H̃⁻¹)
            cc = nu + sigma2
            y11 = jnp.sum(dg) / B
            y12 = -G12 * jnp.sum(h * dg) / B
            y22 = (jnp.sum(cc / (1 + G22 * cc)) + (m - d) * sigma2 / c0
                   + G12**2 * jnp.sum(cc / (1 + G22 * cc) ** 2 * nu * dg)) / B
            return jnp.stack([y11, y12, y22])

        def F(x, s):
            r = x - T(x, s)
            return r, r

        jac = jax.jacfwd(F, has_aux=True)
        D = jnp.diagonal(S)
        P2 = jnp.sum(nu)
        scale = jnp.sqrt(jnp.sum(lam**2 * jnp.clip(D, 0.0, None))
                         + jnp.sum(lam) * (P2 + m * sigma2) / B)
        scale = jnp.maximum(scale, 1e-150)
        t, wt = log_nodes(scale, self.n_nodes)
        wt = wt.at[0].add(t[0]).at[-1].add(t[-1])  # head/tail corrections

        def rel(x, r):
            m_ = jnp.max(jnp.abs(r) / (jnp.abs(x) + 1e-300))
            return jnp.where(jnp.isfinite(m_), m_, jnp.inf)

        def newton(s):
            # Newton with one fallback (quarter step) when the full step does not
            # reduce the relative residual; J and F(x) from one forward-mode pass.
            def step(x, _):
                J, r = jac(x, s)
                dx = jnp.linalg.solve(J, r)
                x1 = x - dx
                r1 = F(x1, s)[0]
                ok = rel(x1, r1) < rel(x, r)

                def fallback(_):
                    x2 = x - 0.25 * dx
                    return jnp.where(rel(x2, F(x2, s)[0]) < rel(x, r), x2, x)

                return jax.lax.cond(ok, lambda _: x1, fallback, None), None
            return step

        def to_z(x):
            return jnp.stack([jnp.log(jnp.maximum(-x[0], 1e-300)), x[1],
                              jnp.log(jnp.maximum(x[2], 1e-300))])

        def from_z(z):
            return jnp.stack([-jnp.exp(z[0]), z[1], jnp.exp(z[2])])

        def node(carry, sw):
            z1, z2, ls1, ls2, R, _ = carry
            s, wgt = sw
            ls = jnp.log(s)
            frac = jnp.where(ls2 != ls1, (ls - ls1) / (ls1 - ls2), 0.0)
            x = from_z(z1 + frac * (z1 - z2))
            x, _ = jax.lax.scan(newton(s), x, None, length=self.n_newton)
            G12, G22, c0, h, Li = chol(x, s)
            Hi = -(Li.T @ Li)
            R = R + wgt * (-G12) * Hi / (c0 + G22 * nu)[None, :]
            res = rel(x, F(x, s)[0])
            return (to_z(x), z1, ls, ls1, R, Hi), res

        s_f = t**2
        s0 = s_f[0]
        x0 = jnp.stack([-jnp.sum(lam) / (B * s0), jnp.zeros(()),
                        (P2 + m * sigma2) / B])
        z0 = to_z(x0)
        l0 = jnp.log(s0)
        carry0 = (z0, z0, l0, l0 + 1.0, jnp.zeros_like(S), jnp.zeros_like(S))
        (_, _, _, _, R, Hlast), res = jax.lax.scan(node, carry0, (s_f, wt))
        R = (2 / jnp.pi) * R
        Fm = (V @ R @ V.T) * (sl[None, :] / sl[:, None])  # K^-½ V R Vᵀ K^½
        isl = 1 / sl
        noise = eye + s_f[-1] * isl[:, None] * (V @ Hlast @ V.T) * isl[None, :]
        return Fm, noise, jnp.max(res)


@functools.partial(jax.jit, static_argnames=("n_nodes", "n_newton"))
def general_drift_noise(lam, S, m, batch, sigma2, n_nodes: int = 48, n_newton: int = 3):
    """`(E[QΔᵀ], E[QQᵀ], residual)` for one SignSVD step at `S` (jit-compiled)."""
    eq = GeneralEquivalent(jnp.asarray(lam, jnp.float64), jnp.asarray(m, jnp.float64),
                           jnp.asarray(batch, jnp.float64), jnp.asarray(sigma2, jnp.float64),
                           n_nodes, n_newton)
    S = jnp.asarray(S, jnp.float64)
    Fm, noise, res = eq.solve(S)
    return Fm @ S, noise, res


class SignSVDGeneralTheory(AbstractRateTheory):
    """Row-energy ODE of SignSVD with the drift from the general-`S` equivalent.

    State: row energies `D` (as the diagonal closure). The overlap matrix is
    modelled as the initial one with each row scaled by its decay,

        S(D) = diag(g) S0 diag(g),   g_i = √(D_i / D_i(0)),   S0 = Δ0Δ0ᵀ,

    exact at `k = 0` for any target (Gaussian rows, `m < d`, rotated targets) and
    equal to the diagonal closure when `S0` is diagonal. Then

        dD_i/dk = −2η (F(S) S)_ii + η² noise_i,

    with `F`, `noise` from `GeneralEquivalent` (noise fixed to `1` or
    `λ_i/(λ_i + κ0)` where it does not depend on `S`, else the diagonal of the
    equivalent's projector renormalised to `min(B, d, m)`). ETD2 damping:
    `2η (F S)_ii / D_i`. Cost `O(d³)` per field evaluation.
    """

    eq: GeneralEquivalent
    D0: jax.Array
    S0n: jax.Array  # S0 / √(D0_i D0_j)
    noise_fixed: jax.Array | None
    eta: jax.Array | None
    schedule: object = eqx.field(static=True)
    rank: jax.Array = eqx.field(default=None)

    def init_state(self):
        return self.D0

    def risk(self, D):
        return 0.5 * jnp.sum(self.eq.lam * D)

    def lr(self, k, D):
        if self.schedule is not None:
            return jnp.asarray(self.schedule(k), jnp.float64)
        return self.eta

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

    def _rates(self, k, D):
        drift, noise, _ = self.drift_noise(D)
        eta = self.lr(k, D)
        rho = jnp.clip(drift / jnp.maximum(D, 1e-300), 0.0, None)
        return 2 * eta * rho, eta**2 * noise


def signsvd_general_theory(opt, lam, S0, m, sigma2=0.0, *, n_nodes: int = 40,
                           n_newton: int = 3) -> SignSVDGeneralTheory:
    """Build the general-`S` SignSVD ODE (`S0 = Δ0Δ0ᵀ` in the eigenbasis of `K`)."""
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
    B = int(opt.batch)
    _, noise = _noise_mode(lam, np.ones_like(lam), float(d), float(m), B)
    f64 = functools.partial(jnp.asarray, dtype=jnp.float64)
    eq = GeneralEquivalent(f64(lam), f64(m), f64(B), f64(sigma2), int(n_nodes), int(n_newton))
    eta = None if callable(opt.lr) else f64(opt.lr)
    S0n = S0 / np.sqrt(D0[:, None] * D0[None, :])
    return SignSVDGeneralTheory(eq, f64(D0), f64(S0n), None if noise is None else f64(noise),
                                eta, opt.lr if callable(opt.lr) else None, f64(min(B, d, m)))
