"""SignSGD theory: the four effects of taking signs, made computable.

Setting (setting.md §1.1, §5): `g = (1/B) Σ_b x_b r_b`, `r_b = x_bᵀΔ − ε_b`,
`x ~ N(0, K)`, update `Δ ← Δ − η sign(g)`. Every noise law is a Gaussian scale
mixture (`ε | k ~ N(0, v_k)` w.p. `w_k`), so a residual has variance
`τ_k = 2P + v_k` given its component. Write `ξ_b = r_b/√τ_b` (standardised),
`A = Σ_b ξ_b²`, `‖r‖² = Σ_b τ_b ξ_b²`. Derivations: `docs/theory/signsgd.md`.

1. **Effective learning rate** `φ_B(P)`: `E[sign(g_j)] ≈ φ_B(P) (KΔ)_j/√K_jj`
   to first order in the per-coordinate correlation, with

       φ_B = √(2/π) E[A/‖r‖]
           = (√2/π) B ∫_0^∞ s^(−1/2) m1(s) m0(s)^(B−1) ds,
       m0(s) = Σ_k w_k (1 + 2sτ_k)^(−1/2),  m1(s) = Σ_k w_k (1 + 2sτ_k)^(−3/2).

   `B = 1`: `φ_1 = 2√(2/π) p_r(0)` (`effective_sign_gain`); Gaussian noise
   `φ_B = √(2/π) E[χ_B]/√(2P + σ²)` → `√(2/π) √B/√(2P + σ²)` for large `B`.
2. **Noise compression**: `E[sign(g_i)²] = 1`, so the per-coordinate noise
   forcing is `η²` whatever `σ`, `P` or `B` (SGD: `η² λ_i (2P + σ²)/B`).
3. **Diagonal preconditioning**: on diagonal `K` the linear drift of mode `i`
   is `2ηφ √λ_i D_i` (SGD: `2ηλ_i D_i`); on a generic rotated `K`,
   `diag(K) ≈ (tr K/d) I` and the drift is `∝ KΔ` (no preconditioning).
4. **Noise reshaping**: `E[sign(g_i) sign(g_j)] = K̃_ij = (2/π) arcsin(C_ij)`,
   `C = Dg^(−1/2) K Dg^(−1/2)` (exact for `B = 1`), plus for `B > 1` the
   signal term `(2/π) χ_B q_i q_j` (`i ≠ j`), `q = Dg^(−1/2) KΔ`, with

       χ_B = E[(A² − A)/‖r‖²]   (Gaussian noise: (B − 1)/(2P + σ²)).

`expected_sign` is the exact `E[sign(g_i) | Δ]` for diagonal `K` at any `B`
(arcsin/arctan for `B = 1`, Gil-Pelaez inversion of the characteristic
function of `Σ_b x_bi r_b` for `B > 1`).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from ..optimizers import is_concrete
from ._noise_expectations import effective_sign_gain

__all__ = [
    "sign_gain",
    "sign_noise_coefficient",
    "expected_sign",
    "reshaped_noise",
    "signsgd_basis",
    "SignBasis",
    "drift_rates",
    "noise_forcing",
]

_TINY = 1e-300
_N_S = 320  # nodes of the log-s trapezoid for φ_B, χ_B (analytic in a strip: error < 1e-10)
_N_W = 168  # nodes of the log-ω trapezoid (Gil-Pelaez; abs. error < 1e-6)
_W_LO, _W_HI = -24.0, 18.0


def _check_batch(batch) -> int:
    if isinstance(batch, bool) or int(batch) != batch or batch < 1:
        raise ValueError(f"`batch` must be an integer >= 1, got {batch!r}")
    return int(batch)


def _log_s_grid(tau, n):
    """Log grid in `s` covering every scale `1/τ_k` with e^(±60) margins (traceable)."""
    lo = -jnp.log(jnp.max(tau, axis=-1, keepdims=True)) - 60.0
    hi = -jnp.log(jnp.min(tau, axis=-1, keepdims=True)) + 60.0
    t = jnp.linspace(0.0, 1.0, n)
    u = lo + (hi - lo) * t
    return u, (hi - lo) / (n - 1)


def _mixture(noise):
    """`(w, v)` float64; concrete: numpy with the components of negligible weight
    dropped; traced (a noise scale swept by `jax.vmap`): every component kept."""
    w, v = noise.scale_mixture()
    if not (is_concrete(w) and is_concrete(v)):
        return jnp.asarray(w, jnp.float64), jnp.asarray(v, jnp.float64)
    w, v = np.asarray(w, np.float64), np.asarray(v, np.float64)
    keep = w > 1e-14 * np.max(w)
    return w[keep], v[keep]


def sign_gain(noise, s2, batch: int = 1):
    """`φ_B(P)` with `s2 = 2P` (see module docstring). Traceable in `s2`.

    **Arguments:** `noise` a noise law; `s2 = 2P >= 0` (array ok); `batch` `B >= 1`.
    """
    B = _check_batch(batch)
    if B == 1:
        return effective_sign_gain(noise, s2)
    w, v = _mixture(noise)
    s2 = jnp.asarray(s2, jnp.float64)
    tau = jnp.maximum(s2[..., None] + v, _TINY)  # (..., n_k)
    u, h = _log_s_grid(tau, _N_S)  # (..., n)
    s = jnp.exp(u)[..., :, None]
    q = 1.0 + 2.0 * s * tau[..., None, :]
    m0 = jnp.sum(w * q**-0.5, axis=-1)
    m1 = jnp.sum(w * q**-1.5, axis=-1)
    f = jnp.exp(0.5 * u) * m1 * m0 ** (B - 1)
    integral = h[..., 0] * (jnp.sum(f, axis=-1) - 0.5 * (f[..., 0] + f[..., -1]))
    return math.sqrt(2 / math.pi) / math.sqrt(math.pi) * B * integral


def sign_noise_coefficient(noise, s2, batch: int = 1):
    """`χ_B(P) = E[(A² − A)/‖r‖²]` with `s2 = 2P`; `0` for `B = 1`. Traceable in `s2`.

    The off-diagonal second moment of the signs gains `(2/π) χ_B q_i q_j`,
    `q = Dg^(−1/2) KΔ` (see module docstring; Gaussian noise `(B − 1)/(2P + σ²)`).
    """
    B = _check_batch(batch)
    s2 = jnp.asarray(s2, jnp.float64)
    if B == 1:
        return jnp.zeros_like(s2)
    w, v = _mixture(noise)
    tau = jnp.maximum(s2[..., None] + v, _TINY)
    u, h = _log_s_grid(tau, _N_S)
    s = jnp.exp(u)[..., :, None]
    q = 1.0 + 2.0 * s * tau[..., None, :]
    m0 = jnp.sum(w * q**-0.5, axis=-1)
    m1 = jnp.sum(w * q**-1.5, axis=-1)
    m2 = 3.0 * jnp.sum(w * q**-2.5, axis=-1)
    br = B * m2 * m0 ** (B - 1) + B * (B - 1) * m1**2 * m0 ** (B - 2) - B * m1 * m0 ** (B - 1)
    f = jnp.exp(u) * br
    return h[..., 0] * (jnp.sum(f, axis=-1) - 0.5 * (f[..., 0] + f[..., -1]))


def expected_sign(noise, signal, rest2, batch: int = 1):
    """Exact `E[sign(Σ_b z_b r_b)]` for i.i.d. pairs with `z_b ~ N(0, 1)`,
    `r_b = a z_b + ρ_b`, `ρ_b ~ N(0, rest2) + ε_b` (noise law) independent of `z_b`.

    For diagonal `K` this is `E[sign(g_i) | Δ]` with `a = √λ_i Δ_i` and
    `rest2 = 2P − λ_i Δ_i²`. `B = 1`:
    `Σ_k w_k (2/π) arctan(a/√(rest2 + v_k)) = Σ_k w_k (2/π) arcsin(a/√(2P + v_k))`.
    `B > 1`, one noise component (Gaussian or noiseless): the Student-t closed form
    `sign(a) P(|T_B| < √B a/√(rest2 + v))` (`_student_sign`, exact, `O(B)`).
    `B > 1`, a scale mixture (Gil-Pelaez): `(2/π) ∫_0^∞ Im[ψ(ω)^B] dω/ω`,
    `ψ(ω) = Σ_k w_k (1 − 2iωa + ω²(rest2 + v_k))^(−1/2)`.
    Broadcasts over `signal`, `rest2`; traceable.
    """
    B = _check_batch(batch)
    w, v = _mixture(noise)
    a = jnp.asarray(signal, jnp.float64)
    rest2 = jnp.maximum(jnp.asarray(rest2, jnp.float64), 0.0)
    a, rest2 = jnp.broadcast_arrays(a, rest2)
    R = jnp.maximum(rest2[..., None] + v, 0.0)  # (..., n_k)
    if B == 1:
        rt = jnp.sqrt(R)
        return jnp.sum(w * (2 / jnp.pi) * jnp.arctan2(a[..., None], rt), axis=-1)
    if w.size == 1:
        return _student_sign(a, R[..., 0], B)
    # ω grid in units of 1/√τ, τ = a² + mean-ish residual scale; R floored at 1e-10 τ.
    tau = jnp.maximum(a**2 + jnp.sum(w * R, axis=-1), _TINY)
    R = jnp.maximum(R, 1e-10 * tau[..., None])
    u = jnp.linspace(_W_LO, _W_HI, _N_W)
    h = (_W_HI - _W_LO) / (_N_W - 1)
    om = jnp.exp(u) / jnp.sqrt(tau)[..., None]  # (..., n)
    # z_k = 1 + ω²R_k − 2iωa in polar form (real arithmetic is ~3x faster on CPU)
    x = 1.0 + om[..., None] ** 2 * R[..., None, :]
    yv = -2.0 * om * a[..., None]
    if w.size == 1:
        r2 = x[..., 0] ** 2 + yv**2
        th = jnp.arctan2(yv, x[..., 0])
        f = r2 ** (-0.25 * B) * jnp.sin(-0.5 * B * th)
    else:
        r2 = x**2 + yv[..., None] ** 2
        th = jnp.arctan2(yv[..., None], x)
        m = w * r2**-0.25
        pre, pim = jnp.sum(m * jnp.cos(0.5 * th), axis=-1), -jnp.sum(m * jnp.sin(0.5 * th), axis=-1)
        f = (pre**2 + pim**2) ** (0.5 * B) * jnp.sin(B * jnp.arctan2(pim, pre))  # Re ψ > 0
    integral = h * (jnp.sum(f, axis=-1) - 0.5 * (f[..., 0] + f[..., -1]))
    return (2 / jnp.pi) * integral


def _student_sign(a, R, B: int):
    """`E[sign(a‖z‖² + √R ‖z‖ ξ)]`, `z ~ N(0, I_B)`, `ξ ~ N(0, 1)`: one noise component.

    `T = ξ √B/‖z‖` is Student-t with `B` degrees of freedom, so the expectation is
    `P(|T| < √B a/√R) sign(a)`, in closed form (Abramowitz & Stegun 26.7.3–4) with
    `θ = arctan(a/√R)`, `x = cos²θ`:
    `B` odd: `(2/π)[θ + sinθ cosθ Σ_{j<(B−1)/2} c_j x^j]`, `c_j = Π_{i≤j} 2i/(2i+1)`;
    `B` even: `sinθ Σ_{j<B/2} e_j x^j`, `e_j = Π_{i≤j} (2i−1)/(2i)`. Exact, `O(B)`."""
    rt = jnp.sqrt(jnp.maximum(R, _TINY))
    den = jnp.sqrt(a**2 + rt**2)
    sin, cos = a / den, rt / den
    x = cos**2
    n = (B - 1) // 2 if B % 2 else B // 2
    j = np.arange(1, n)
    coef = np.concatenate([[1.0], np.cumprod(2 * j / (2 * j + 1) if B % 2
                                              else (2 * j - 1) / (2 * j))])
    poly, _ = jax.lax.scan(lambda acc, c: (acc * x + c, None), jnp.zeros_like(x),
                           jnp.asarray(coef[::-1]))
    if B % 2:
        return (2 / jnp.pi) * (jnp.arctan2(a, rt) + sin * cos * poly)
    return sin * poly


# ---- noise reshaping: K̃ and the K̄ eigenbasis ------------------------------------------
def reshaped_noise(K) -> np.ndarray:
    """`K̃ = (2/π) arcsin(C)`, `C = Dg^(−1/2) K Dg^(−1/2)`: the sign second moment (B = 1)."""
    K = np.asarray(K, np.float64)
    if K.ndim != 2 or K.shape[0] != K.shape[1]:
        raise ValueError(f"`K` must be a square matrix, got shape {K.shape}")
    dg = np.diag(K)
    if np.any(dg <= 0):
        raise ValueError("`K` must have a positive diagonal (every coordinate must vary)")
    s = 1.0 / np.sqrt(dg)
    C = np.clip(K * s[:, None] * s[None, :], -1.0, 1.0)
    return (2 / np.pi) * np.arcsin(C)


class SignBasis:
    """The SignSGD ODE basis of setting.md §5 for a dense `K`.

    `K̄ = Dg^(−1/4) K Dg^(−1/4) = V diag(λ̄) Vᵀ`; `n_j = w_jᵀ K̃ w_j` with
    `w_j = Dg^(1/4) v_j`; `y_j = (w'_jᵀ Δ)²` with `w'_j = Dg^(1/4) v_j` too.
    Attributes: `lam_bar`, `V`, `dg`, `n`, `Ktilde`.
    """

    def __init__(self, K):
        K = np.asarray(K, np.float64)
        self.Ktilde = reshaped_noise(K)
        self.dg = np.diag(K).copy()
        q = self.dg**-0.25
        Kbar = K * q[:, None] * q[None, :]
        lam, V = np.linalg.eigh(0.5 * (Kbar + Kbar.T))
        order = np.argsort(lam)[::-1]
        self.lam_bar = np.clip(lam[order], 0.0, None)
        self.V = V[:, order]
        W = self.V * (self.dg**0.25)[:, None]
        self.n = np.sum(W * (self.Ktilde @ W), axis=0)

    def coordinates(self, delta) -> np.ndarray:
        """`y_j = (v_jᵀ Dg^(1/4) Δ)²` for a coordinate-basis `Δ`."""
        return (self.V.T @ (self.dg**0.25 * np.asarray(delta, np.float64))) ** 2


def signsgd_basis(problem) -> SignBasis:
    """`SignBasis` of a (simulable) problem; diagonal problems give `λ̄ = √λ`, `n = √λ`."""
    return SignBasis(problem.K)


# ---- the effects at a given risk level --------------------------------------------------
def drift_rates(problem, optimizer, P):
    """Linear per-mode drift rates `a` (`dE/dk = −a E + …`) at excess risk `P`.

    SGD: `2ηλ_i − η²λ_i²(1 + 1/B)` on `D_i`; SignSGD: `2ηφ_B(P) √λ_i` on `D_i`
    (diagonal `K`) or `2ηφ_B(P) λ̄_j` on `y_j` (general `K`). `η = lr_at(0)`.
    Returns `(eigenvalues of the basis, rates)` as numpy arrays.
    """
    from ..optimizers import SGD, SignSGD

    eta = float(optimizer.lr_at(0.0))
    B = optimizer.batch
    lam = np.asarray(problem.eigenvalues)
    if isinstance(optimizer, SGD):
        return lam, 2 * eta * lam - eta**2 * lam**2 * (1 + 1 / B)
    if isinstance(optimizer, SignSGD):
        phi = float(sign_gain(problem.noise, 2.0 * P, B))
        if problem.is_diagonal:
            return lam, 2 * eta * phi * np.sqrt(lam)
        basis = signsgd_basis(problem)
        return basis.lam_bar, 2 * eta * phi * basis.lam_bar
    raise ValueError(f"`optimizer` must be SGD or SignSGD, got {type(optimizer).__name__}")


def noise_forcing(problem, optimizer, P):
    """Per-mode noise forcing at excess risk `P` (the `η²` term of the ODE).

    SGD: `η² λ_i (2P + σ²)/B` (grows with σ²); SignSGD: `η²` on diagonal `K`
    (noise compression: independent of σ, P and B), `η² n_j` on general `K`.
    """
    from ..optimizers import SGD, SignSGD

    eta = float(optimizer.lr_at(0.0))
    lam = np.asarray(problem.eigenvalues)
    if isinstance(optimizer, SGD):
        return eta**2 * lam * (2 * P + problem.noise.variance) / optimizer.batch
    if isinstance(optimizer, SignSGD):
        if problem.is_diagonal:
            return np.full(lam.shape, eta**2)
        return eta**2 * signsgd_basis(problem).n
    raise ValueError(f"`optimizer` must be SGD or SignSGD, got {type(optimizer).__name__}")
