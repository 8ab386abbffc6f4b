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

O(B²d) per sample. The expectation is an average over `samples` draws of `(Z, E₁, E₂E₂ᵀ)`,
antithetic in the noise (`E → −E`, so the noise-only drift is exactly zero), drawn
afresh at every exact step from `fold_in(key(seed), k)`: the draws' error is then
independent from step to step and averages out along the trajectory (a fixed set of
256 draws reused at every step biased the curve by up to 3% at d = 32). The theory is
deterministic (same seed, same numbers; `jax.grad` goes through it). The ODE after
the hand-over uses one fixed set of `4·samples` draws (a smooth field). The
remaining error from the draws is measured by changing the seed
(`docs/theory/signsvd.md` §3b).

Regime: `B < d <= m`, Gaussian (or no) label noise, an uncompressed spectrum with
`samples·B·d` small enough to hold the draws (`_MAX_SAMPLE_ENTRIES`); Muon without
momentum. Elsewhere the deterministic equivalent is used. Time = iteration count `k`.
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

__all__ = ["SampledStep", "SampledSpectralTheory", "sampled_applies", "sampled_theory",
           "SAMPLES"]

#: default number of batch draws per exact step (antithetic pairs)
SAMPLES = 256
# the draws `Z`, `E₁` hold `samples·B·d` float64 entries each
_MAX_SAMPLE_ENTRIES = 2**22
_CHUNK = 32   # draws per batched LAPACK call (see `SampledStep.__call__`)
_NS_COEFFS = (3.4445, -4.775, 2.0315)  # optax.contrib.muon's quintic (as `_muon.NS_COEFFS`)


class SampledStep(eqx.Module):
    """`E[P_ii]` and `E[‖P_i‖²]` at row energies `D`, averaged over batch draws."""

    sqrt_lam: jax.Array   # (d,)
    sigma: jax.Array
    m: int = eqx.field(static=True)
    batch: int = eqx.field(static=True)
    ns_steps: int = eqx.field(static=True)   # 0: polar factor (SignSVD)

    def draws(self, key, samples: int):
        """`samples` draws of `(Z, E₁, E₂E₂ᵀ)`, antithetic in the noise."""
        half, B, d = samples // 2, self.batch, self.sqrt_lam.shape[0]
        kz, ke, kw = jax.random.split(key, 3)
        # drawn in float32 (half the cost), computed in float64
        normal = lambda k, shape: jax.random.normal(k, shape, jnp.float32).astype(jnp.float64)  # noqa: E731
        Z = normal(kz, (half, B, d))
        E1 = normal(ke, (half, B, d))
        if self.m > d:
            E2 = normal(kw, (half, B, self.m - d))
            W2 = E2 @ jnp.swapaxes(E2, 1, 2)
        else:
            W2 = jnp.zeros((half, B, B), jnp.float64)
        return jnp.concatenate([Z, Z]), jnp.concatenate([E1, -E1]), jnp.concatenate([W2, W2])

    def __call__(self, D, key, samples: int):
        # chunks of `_CHUNK` draws, one after the other (`lax.map`): jaxlib's CPU LAPACK
        # kernels split a large batch over the thread pool, and two such calls running
        # concurrently inside a loop deadlocked on 2 cores (batched LU / triangular
        # solves at 256–512 matrices); small batches stay on one thread
        sums = jax.lax.map(lambda c: self._sums(D, jax.random.fold_in(key, c), _CHUNK),
                           jnp.arange(samples // _CHUNK, dtype=jnp.uint32))
        return jax.tree.map(lambda x: jnp.sum(x, axis=0) / samples, sums)

    def _sums(self, D, key, samples: int):
        Z, E1, W2 = self.draws(key, samples)
        A = Z * self.sqrt_lam
        C1 = A * jnp.sqrt(jnp.clip(D, 0.0, None)) - self.sigma * E1
        tr = lambda x: jnp.swapaxes(x, -1, -2)  # noqa: E731
        LA = jnp.linalg.cholesky(A @ tr(A))
        LC = jnp.linalg.cholesky(C1 @ tr(C1) + self.sigma**2 * W2)
        iLA, iLC = jnp.linalg.inv(LA), jnp.linalg.inv(LC)
        U, s, Vt = jnp.linalg.svd(tr(LA) @ LC)
        if self.ns_steps:
            x = s / jnp.sqrt(jnp.sum(s**2, axis=-1, keepdims=True))
            a, b, c = _NS_COEFFS
            for _ in range(self.ns_steps):
                x = a * x + b * x**3 + c * x**5
            f = x
        else:
            f = jnp.ones_like(s)
        left = (tr(U) @ iLA) @ A          # (S, B, d): rows of (Q_A U)ᵀ
        right = (Vt @ iLC) @ C1           # (S, B, d): rows of (Q_C V)ᵀ, first d columns
        fl = left * f[..., None]
        return jnp.sum(fl * right, axis=(0, 1)), jnp.sum(fl**2, axis=(0, 1))


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


def sampled_applies(problem, opt, samples: int = SAMPLES) -> bool:
    """Whether the sampled one-step map applies (module docstring's regime)."""
    B, d = int(opt.batch), int(problem.d)
    if problem.weights is not None or not (B < d <= problem.m):
        return False
    if not isinstance(problem.noise, (Gaussian, Noiseless)):
        return False
    if float(getattr(opt, "momentum", 0.0)) != 0.0:
        return False
    return int(samples) * B * d <= _MAX_SAMPLE_ENTRIES


def sampled_theory(opt, problem, ns_steps: int, *, samples: int = SAMPLES,
                   seed: int = 0) -> SampledSpectralTheory:
    """The sampled one-step theory of SignSVD (`ns_steps=0`) or Muon on `problem`
    (`samples` draws per exact step, `4·samples` for the ODE's fixed draws)."""
    from ._signsvd_common import leaf_opt

    samples = int(samples)
    if samples < _CHUNK or samples % _CHUNK:
        raise ValueError(f"`samples` must be a multiple of {_CHUNK} (>= {_CHUNK}), got "
                         f"{samples!r}")
    if not sampled_applies(problem, opt, samples):
        raise ValueError(
            "`one_step='sampled'` needs batch < d <= m, Gaussian or no label noise, an "
            "uncompressed spectrum, no momentum and samples·batch·d <= "
            f"{_MAX_SAMPLE_ENTRIES}; got batch={opt.batch}, d={problem.d}, m={problem.m}, "
            f"noise {type(problem.noise).__name__}, samples={samples}")
    f64 = jnp.float64
    step = SampledStep(jnp.sqrt(jnp.asarray(problem.eigenvalues, f64)),
                       jnp.asarray(np.sqrt(problem.sigma2), f64), int(problem.m),
                       int(opt.batch), int(ns_steps))
    return SampledSpectralTheory(step, jnp.asarray(problem.eigenvalues, f64),
                                 jnp.asarray(problem.initial_energies, f64), leaf_opt(opt),
                                 jax.random.PRNGKey(int(seed)), samples,
                                 _ode_samples(samples, int(opt.batch) * int(problem.d)))


def _ode_samples(samples: int, per: int) -> int:
    """`4·samples` draws for the ODE's fixed set, within the memory cap, whole chunks."""
    cap = max(_CHUNK, (_MAX_SAMPLE_ENTRIES // per) // _CHUNK * _CHUNK)
    return min(4 * samples, max(samples, cap))
