"""SignSVD and Muon (no momentum): the closure's exact one-step mean, batch by batch.

The row-energy theory of SignSVD (`_signsvd.py`) and Muon (`_muon.py`) is

    D_i' = D_i − 2η √D_i E[P_ii] + η² E[‖P_i‖²],      P = polar(G Q) (SignSVD)
                                                       P = NS(G Q / ‖G‖_F) (Muon)

under the closure `Δ = diag(√D) O` (orthogonal rows; `Q` rotates `O` onto the first
`d` columns, `Δ Q = [diag √D, 0]`). Their default evaluates the expectation by a
deterministic equivalent (large `B`, `d`, `m`), which at a small batch `B` misses the
law of the `B` nonzero singular values of `G`: the SignSVD drift comes out ~2% too
large at `B = 8`, and the Newton–Schulz gain of the top mode, which depends on the
self-normalised `x_top = s_top/‖G‖_F`, is off by up to 10% (`docs/theory/muon.md` §4b).

Here the expectation is taken over the batch itself, exactly in law: in the eigenbasis
of `K` and the rotated frame,

    G Q = (1/B) Aᵀ C,   A = Z Λ^{1/2} (B×d),   C = [A diag(√D) − σE₁, −σE₂] (B×m),

with `Z, E₁, E₂` standard Gaussian (Gaussian label noise is rotation invariant). With
`AAᵀ = L_A L_Aᵀ`, `CCᵀ = L_C L_Cᵀ` (B×B; `E₂` enters only through the Wishart matrix
`E₂E₂ᵀ`) and the SVD `L_Aᵀ L_C = U S Vᵀ` of the B×B core,

    P = Aᵀ L_A^{-ᵀ} U f(S) Vᵀ L_C^{-1} C,   f = 1 (polar), f(s) = NS(s/‖S‖_F) (Muon),
    P_ii = Σ_b (Uᵀ L_A⁻¹ A)_{bi} f_b (Vᵀ L_C⁻¹ C₁)_{bi},   ‖P_i‖² = Σ_b (Uᵀ L_A⁻¹ A)_{bi}² f_b²,

O(B²d) per sample. At `B ≥ d` the factor to reduce is `A` instead: with its QR
factorisation `A = Q_A R_Z Λ^{1/2}` (`R_Z` upper triangular with the Bartlett law,
`B` degrees of freedom, independent of the Haar `Q_A`), `Q_Aᵀ E` is again standard
Gaussian and independent of `R_Z`, so

    G Q ∝ K = Rᵀ [R diag(√D) − σF₁, −σT₂],   R = R_Z Λ^{1/2},

with `F₁` standard Gaussian (d×d) and `T₂` the Bartlett factor of the Wishart
`F₂F₂ᵀ` (m − d degrees of freedom; `F₂` itself when m − d < d): the rotation of the
last `m − d` columns does not touch the first `d`. With the SVD `K = U S Wᵀ`
(d × (d + min(d, m − d))), `P_ii = Σ_b U_ib f_b W_ib`, `‖P_i‖² = Σ_b U_ib² f_b²`: O(d³)
per draw, whatever `B` and `m`.

The expectation is an average over `samples` draws, antithetic in the noise
(`E → −E`, so the noise-only drift is exactly zero), drawn
afresh at every exact step from `fold_in(key(seed), k)`: the draws' error is then
independent from step to step and averages out along the trajectory (a fixed set of
256 draws reused at every step biased the curve by up to 3% at d = 32). The theory is
deterministic (same seed, same numbers; `jax.grad` goes through it). The ODE after
the hand-over uses one fixed set of `4·samples` draws (a smooth field). The
remaining error from the draws is measured by changing the seed
(`docs/theory/signsvd.md` §3b, §3c).

Regime: `d <= m`, Gaussian (or no) label noise, an uncompressed spectrum, `samples·B·d`
small enough to hold the draws (`_MAX_SAMPLE_ENTRIES`, B < d) or `samples·d³` small
enough for the SVDs (`_MAX_SQUARE_WORK`, B ≥ d: d ≤ 50 at the default 64 draws); Muon
without momentum. Elsewhere the deterministic equivalent is used. Time = iteration count `k`.
(The draws are processed in chunks of 32: see `SampledStep.__call__`.)
"""

from __future__ import annotations

from typing import ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .._noise import Gaussian, Noiseless
from ._base import AbstractRateTheory
from ._signsvd_common import leaf_opt, ns_map

__all__ = ["SampledStep", "SampledSpectralTheory", "sampled_applies", "sampled_theory",
           "default_samples", "SAMPLES", "SAMPLES_SQUARE"]

#: default number of batch draws per exact step (antithetic pairs): B < d / B ≥ d
SAMPLES = 256
SAMPLES_SQUARE = 64
# the draws `Z`, `E₁` hold `samples·B·d` float64 entries each
_MAX_SAMPLE_ENTRIES = 2**22
_CHUNK = 32   # draws per batched LAPACK call (see `SampledStep.__call__`)
# B ≥ d: a d×2d SVD per draw; `samples·d³` above this would make an exact step slow
_MAX_SQUARE_WORK = 2**23


class SampledStep(eqx.Module):
    """`E[P_ii]` and `E[‖P_i‖²]` at row energies `D`, averaged over batch draws."""

    sqrt_lam: jax.Array   # (d,)
    sigma: jax.Array
    m: int = eqx.field(static=True)
    batch: int = eqx.field(static=True)
    ns_steps: int = eqx.field(static=True)   # 0: polar factor (SignSVD)

    def draws(self, key, samples: int):
        """`samples` draws of `(Z, E₁, E₂E₂ᵀ)` (B < d) or `(R_Z, F₁, T₂)` (B ≥ d),
        antithetic in the noise."""
        half, B, d = samples // 2, self.batch, self.sqrt_lam.shape[0]
        kz, ke, kw = jax.random.split(key, 3)
        if B >= d:
            Rz = _bartlett(kz, half, B, d).mT           # upper: Z = Q_A R_Z
            F1 = _normal(ke, (half, d, d))
            w = self.m - d
            T2 = (_bartlett(kw, half, w, d) if w >= d else _normal(kw, (half, d, w)))
            return jnp.concatenate([Rz, Rz]), jnp.concatenate([F1, -F1]), \
                jnp.concatenate([T2, T2])
        Z = _normal(kz, (half, B, d))
        E1 = _normal(ke, (half, B, d))
        if self.m > d:
            E2 = _normal(kw, (half, B, self.m - d))
            W2 = E2 @ E2.mT
        else:
            W2 = jnp.zeros((half, B, B), jnp.float64)
        return jnp.concatenate([Z, Z]), jnp.concatenate([E1, -E1]), jnp.concatenate([W2, W2])

    def __call__(self, D, key, samples: int):
        # chunks of `_CHUNK` draws (`lax.map`), and within a chunk one draw at a time
        # with unbatched LAPACK calls: jaxlib's CPU kernels split a batch over the thread
        # pool, each call blocking a pool thread while it waits for its sub-tasks, and
        # two such calls running concurrently (two field evaluations, or two
        # factorisations of one draw) deadlocked on 2 cores (batched LU at 256–512
        # matrices of 8×8; two Cholesky factorisations of 32 matrices of 32×32)
        sums = jax.lax.map(lambda c: self._sums(D, jax.random.fold_in(key, c), _CHUNK),
                           jnp.arange(samples // _CHUNK, dtype=jnp.uint32))
        return jax.tree.map(lambda x: jnp.sum(x, axis=0) / samples, sums)

    def _f(self, s):
        """Singular values -> the update's: 1 (polar) or Newton–Schulz on `s/‖s‖`."""
        if self.ns_steps:
            return ns_map(s / jnp.sqrt(jnp.sum(s**2, axis=-1, keepdims=True)), self.ns_steps)
        return jnp.ones_like(s)

    def _sums(self, D, key, samples: int):
        # one draw at a time, unbatched LAPACK calls (see `__call__`)
        rootD = jnp.sqrt(jnp.clip(D, 0.0, None))
        one = self._square_draw if self.batch >= self.sqrt_lam.shape[0] else self._core_draw
        return jax.tree.map(lambda x: jnp.sum(x, axis=0),
                            jax.lax.map(lambda draw: one(rootD, *draw),
                                        self.draws(key, samples)))

    def _core_draw(self, rootD, Z, E1, W2):
        """B < d: `(P_ii, ‖P_i‖²)` of one draw through the B×B core."""
        A = Z * self.sqrt_lam
        C1 = A * rootD - self.sigma * E1
        LA = jnp.linalg.cholesky(A @ A.mT)
        LC = jnp.linalg.cholesky(C1 @ C1.mT + self.sigma**2 * W2)
        iLA, iLC = jnp.linalg.inv(LA), jnp.linalg.inv(LC)
        U, s, Vt = jnp.linalg.svd(LA.mT @ LC)
        left = (U.mT @ iLA) @ A           # (B, d): rows of (Q_A U)ᵀ
        right = (Vt @ iLC) @ C1           # (B, d): rows of (Q_C V)ᵀ, first d columns
        fl = left * self._f(s)[..., None]
        return jnp.sum(fl * right, axis=0), jnp.sum(fl**2, axis=0)

    def _square_draw(self, rootD, Rz, F1, T2):
        """B ≥ d: `(P_ii, ‖P_i‖²)` of one draw. With the QR factorisation A = Q_A R
        (R = R_Z Λ^{1/2}, R_Z Bartlett with B degrees of freedom), G Q ∝ Rᵀ [R diag √D −
        σF₁, −σT₂], F₁ = Q_Aᵀ E₁ standard Gaussian (d×d) and F₂ = Q_Aᵀ E₂ = T₂ Q₂ (T₂:
        Bartlett, m − d degrees of freedom); the rotation Q₂ of the last m − d columns
        does not touch the first d."""
        d = rootD.shape[0]
        R = Rz * self.sqrt_lam
        K = R.mT @ jnp.concatenate([R * rootD - self.sigma * F1, -self.sigma * T2], axis=-1)
        U, s, Wt = jnp.linalg.svd(K, full_matrices=False)
        fU = U * self._f(s)[None, :]                       # (d, b)
        return jnp.sum(fU * Wt[:, :d].mT, axis=1), jnp.sum(fU**2, axis=1)


def _normal(key, shape):
    # drawn in float32 (half the cost), computed in float64
    return jax.random.normal(key, shape, jnp.float32).astype(jnp.float64)


def _bartlett(key, n: int, dof: int, d: int):
    """`n` lower-triangular `T` (d×d) with `T Tᵀ ~ Wishart_d(dof, I)` (Bartlett:
    `T_ii² ~ χ²(dof − i)`, i = 0..d−1, `T_ij ~ N(0, 1)` below the diagonal); `Tᵀ` has the
    law of the R factor of a dof×d standard Gaussian matrix."""
    kc, kn = jax.random.split(key)
    a = (dof - jnp.arange(d, dtype=jnp.float64)) / 2
    diag = jnp.sqrt(2 * jax.random.gamma(kc, a, (n, d), jnp.float64))
    return jnp.tril(_normal(kn, (n, d, d)), -1) + diag[..., None] * jnp.eye(d)


class SampledSpectralTheory(AbstractRateTheory):
    """Row-energy map `D' = D − 2η √D E[P_ii] + η² E‖P_i‖²` with the batch expectation
    over batch draws (module docstring). State: `D` (modes); time: iterations `k`.

    `increment(k, D)` (the exact map, run for the first `exact_steps` iterations,
    `discrete_start = True`) draws `samples` fresh batches at every `k` (key
    `fold_in(key, k)`), so the draws' error averages out along the trajectory instead
    of accumulating; the ODE after the hand-over reads the same mean as a rate with
    one fixed set of `ode_samples` draws (a smooth field for the adaptive solver)."""

    step: SampledStep
    lam: jax.Array
    D0: jax.Array
    opt: object
    key: jax.Array
    samples: int = eqx.field(static=True)
    ode_samples: int = eqx.field(static=True)

    discrete_start: ClassVar[bool] = True

    def init_state(self):
        return self.D0

    def risk(self, D):
        return 0.5 * jnp.sum(self.lam * D)

    def _drift_noise(self, D, key, samples):
        pii, noise = self.step(D, key, samples)
        return jnp.sqrt(jnp.clip(D, 0.0, None)) * pii, noise

    def drift_noise(self, D):
        """`(drift, noise, residual)` per mode (the ODE's draws), as
        `SignSVDTheory.drift_noise`."""
        dr, no = self._drift_noise(D, self.key, self.ode_samples)
        return dr, no, jnp.zeros((), jnp.float64)

    def increment(self, k, D):
        key = jax.random.fold_in(self.key, jnp.asarray(k).astype(jnp.uint32) + 1)
        dr, no = self._drift_noise(D, key, self.samples)
        eta = self.lr(k, D)
        return -2 * eta * dr + eta**2 * no

    def _rates(self, k, D):
        pii, noise = self.step(D, self.key, self.ode_samples)
        root = jnp.sqrt(jnp.clip(D, 0.0, None))
        rho = jnp.where(root > 0, pii / jnp.where(root > 0, root, 1.0), 0.0)
        eta = self.lr(k, D)
        return 2 * eta * rho, eta**2 * noise

    def lr(self, k, D):
        return jnp.asarray(self.opt.lr_at(k), jnp.float64)


def default_samples(problem, opt) -> int:
    """Draws per exact step: `SAMPLES` (B < d) or `SAMPLES_SQUARE` (B ≥ d, where one
    draw costs a d×2d SVD and `P_ii` fluctuates less)."""
    return SAMPLES if int(opt.batch) < int(problem.d) else SAMPLES_SQUARE


def sampled_applies(problem, opt, samples: int | None = None) -> bool:
    """Whether the sampled one-step map applies (module docstring's regime)."""
    B, d = int(opt.batch), int(problem.d)
    samples = default_samples(problem, opt) if samples is None else int(samples)
    if problem.weights is not None or not d <= problem.m:
        return False
    if not isinstance(problem.noise, (Gaussian, Noiseless)):
        return False
    if float(getattr(opt, "momentum", 0.0)) != 0.0:
        return False
    if B >= d and samples * d**3 > _MAX_SQUARE_WORK:
        return False
    return samples * _per_draw(B, d) <= _MAX_SAMPLE_ENTRIES


def _per_draw(B: int, d: int) -> int:
    """Entries of one draw's largest factor: `Z`, `E₁` (B×d) or `K` (d × up to 2d)."""
    return B * d if B < d else 2 * d * d


def sampled_theory(opt, problem, ns_steps: int, *, samples: int | None = None,
                   seed: int = 0) -> SampledSpectralTheory:
    """The sampled one-step theory of SignSVD (`ns_steps=0`) or Muon on `problem`
    (`samples` draws per exact step, default `default_samples`; `4·samples` for the
    ODE's fixed draws)."""
    samples = default_samples(problem, opt) if samples is None else int(samples)
    if samples < _CHUNK or samples % _CHUNK:
        raise ValueError(f"`samples` must be a multiple of {_CHUNK} (>= {_CHUNK}), got "
                         f"{samples!r}")
    if not sampled_applies(problem, opt, samples):
        raise ValueError(
            "`one_step='sampled'` needs d <= m, Gaussian or no label noise, an "
            "uncompressed spectrum, no momentum, samples·batch·d <= "
            f"{_MAX_SAMPLE_ENTRIES} (batch < d) or samples·d³ <= {_MAX_SQUARE_WORK} "
            f"(batch >= d); got batch={opt.batch}, d={problem.d}, m={problem.m}, "
            f"noise {type(problem.noise).__name__}, samples={samples}")
    f64 = jnp.float64
    step = SampledStep(jnp.sqrt(jnp.asarray(problem.eigenvalues, f64)),
                       jnp.asarray(np.sqrt(problem.sigma2), f64), int(problem.m),
                       int(opt.batch), int(ns_steps))
    return SampledSpectralTheory(step, jnp.asarray(problem.eigenvalues, f64),
                                 jnp.asarray(problem.initial_energies, f64), leaf_opt(opt),
                                 jax.random.PRNGKey(int(seed)), samples,
                                 _ode_samples(samples, int(opt.batch), int(problem.d)))


def _ode_samples(samples: int, B: int, d: int) -> int:
    """`4·samples` draws for the ODE's fixed set, within the caps, whole chunks."""
    cap = _MAX_SAMPLE_ENTRIES // _per_draw(B, d)
    if B >= d:
        cap = min(cap, _MAX_SQUARE_WORK // d**3)
    return min(4 * samples, max(samples, cap // _CHUNK * _CHUNK))
