"""Spectral optimizers on matrix problems: SignSVD (exact polar), Muon, matrix SignSGD.

All three act on the minibatch gradient `G = (1/B) Xᵀ(XΔ − E)` (`d × m`) formed by
the engine:

- SignSVD: `W ← W − η polar(G)` with `scale_by_polar()` below (exact thin SVD,
  nonzero singular values only).
- Muon: `optax.contrib.muon` with `nesterov=optimizer.nesterov`, `beta=momentum`,
  `ns_steps`, default quintic coefficients and Frobenius pre-scaling. optax
  multiplies the Newton–Schulz output by `√max(1, fan_out/fan_in) = √max(1, m/d)`
  (reduction axis 0 = d rows, output axis 1 = m columns); we pass
  `learning_rate = η/√max(1, m/d)` so that the update is exactly
  `W ← W − η NS(M)`. Its momentum is a bias-corrected EMA
  `M = (μ M + (1 − μ) G)/(1 − μ^k)`; NS is scale invariant (up to its `eps=1e-8`),
  so this equals the heavy-ball buffer `M ← μM + G`; with Nesterov optax feeds
  `μ M/(1 − μ^{k+1}) + (1 − μ) G/(1 − μ^k)` to NS. optax would send non-2-D
  parameters to AdamW: `Δ` is always 2-D here, so that branch is never used.
- Matrix SignSGD: `optax.sign_sgd(η)`.

References: Jordan et al., "Muon" (2024); "Phases of Muon" (arXiv 2605.09552).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax
import optax.contrib

from ..optimizers import MatrixSignSGD, Muon, SignSVD
from ._registry import SimSpec, register

__all__ = ["scale_by_polar", "polar", "polar_low_rank", "polar_svd", "newton_schulz",
           "NS_COEFFS"]


class ScaleByPolarState(NamedTuple):
    """`scale_by_polar` is stateless."""


def polar(G, rtol: float | None = None):
    """Exact polar factor `U Vᵀ` of `G` (`G = U S Vᵀ` thin SVD), keeping singular
    values `s > rtol·s_max` (default `rtol = 10·max(d, m)·eps(G.dtype)`: the
    numerically nonzero ones). `G = 0` gives `0`.

    Computed from the eigendecomposition of the smaller Gram matrix in float64,
    `GGᵀ = V diag(μ) Vᵀ`, `polar(G) = V diag(μ^(−1/2)) Vᵀ G` on `μ > (rtol s_max)²`
    (identical to the SVD formula to ~1e-15 when `s_min/s_max > 3e-7`; several
    times faster than `jnp.linalg.svd` on CPU under `vmap`). Singular values below
    `max(rtol, 3e-7)·s_max` count as zero.
    """
    dtype = G.dtype
    if rtol is None:
        rtol = 10 * max(G.shape) * float(jnp.finfo(dtype).eps)
    transpose = G.shape[0] > G.shape[1]
    A = (G.T if transpose else G).astype(jnp.float64)
    mu, V = jnp.linalg.eigh(A @ A.T)
    # the Gram matrix resolves singular values down to ~1e-7·s_max (float64 eigh)
    keep = mu > max(rtol**2, 1e-13) * mu[-1]
    inv = jnp.where(keep, 1.0 / jnp.sqrt(jnp.where(keep, mu, 1.0)), 0.0)
    Q = (V * inv) @ (V.T @ A)
    return (Q.T if transpose else Q).astype(dtype)


def polar_svd(G, rtol: float | None = None):
    """Reference polar factor from `jnp.linalg.svd` (same threshold as `polar`)."""
    U, s, Vt = jnp.linalg.svd(G, full_matrices=False)
    if rtol is None:
        rtol = 10 * max(G.shape) * float(jnp.finfo(G.dtype).eps)
    keep = (s > rtol * s[0]) & (s > 0)
    return (U * keep.astype(G.dtype)) @ Vt


def polar_low_rank(G, omega, rtol: float | None = None):
    """Exact `polar(G)` when `rank G <= r = omega.shape[1]` (e.g. `G = XᵀR/B`, `r = B`).

    Range finder without oversampling error: `col(G Ω) = col(G)` for a generic
    `Ω` (`m × r`) when `rank G <= r`, so with `G Ω = Q_Y R_Y` (thin QR),
    `G = Q_Y C`, `C = Q_Yᵀ G` (`r × m`) and `polar(G) = Q_Y polar(C)`. Cost
    `O(d m r)` instead of a `d × d` eigendecomposition.
    """
    dtype = G.dtype
    if rtol is None:
        rtol = 10 * max(G.shape) * float(jnp.finfo(dtype).eps)
    A = G.astype(jnp.float64)
    qy, _ = jnp.linalg.qr(A @ omega)
    return (qy @ polar(qy.T @ A, rtol)).astype(dtype)


def scale_by_polar(rtol: float | None = None, rank: int | None = None,
                   seed: int = 0) -> optax.GradientTransformation:
    """optax-style transformation `G ↦ polar(G) = U Vᵀ` (per 2-D leaf).

    `rank`: an upper bound on `rank G` known in advance (the batch size `B` when
    `B < min(d, m)`); then `polar_low_rank` with a fixed Gaussian `Ω` (seed `seed`)
    is used, exact and much cheaper. Chain with `optax.scale_by_learning_rate(η)`.
    """

    def init_fn(params):
        del params
        return ScaleByPolarState()

    def one(g):
        if rank is not None and rank < min(g.shape):
            omega = jax.random.normal(jax.random.PRNGKey(seed), (g.shape[1], rank),
                                      jnp.float64)
            return polar_low_rank(g, omega, rtol)
        return polar(g, rtol)

    def update_fn(updates, state, params=None):
        del params
        return jax.tree.map(one, updates), state

    return optax.GradientTransformation(init_fn, update_fn)


def _require_matrix(problem, name):
    if not hasattr(problem, "m"):
        raise ValueError(f"{name} needs a matrix problem (rc.MatrixProblem), got "
                         f"{type(problem).__name__}")


@register(SignSVD)
def _signsvd(optimizer: SignSVD, problem) -> SimSpec:
    _require_matrix(problem, "SignSVD")
    rank = optimizer.batch if optimizer.batch < min(problem.d, problem.m) else None
    return SimSpec(optax.chain(scale_by_polar(rank=rank),
                               optax.scale_by_learning_rate(optimizer.lr)))


@register(Muon)
def _muon(optimizer: Muon, problem) -> SimSpec:
    _require_matrix(problem, "Muon")
    width = float(max(1.0, problem.m / problem.d)) ** 0.5
    lr = optimizer.lr
    lr_optax = (lambda k: lr(k) / width) if callable(lr) else lr / width
    tx = optax.contrib.muon(lr_optax, ns_steps=optimizer.ns_steps, beta=optimizer.momentum,
                            nesterov=optimizer.nesterov)
    return SimSpec(tx)


@register(MatrixSignSGD)
def _matrix_signsgd(optimizer: MatrixSignSGD, problem) -> SimSpec:
    _require_matrix(problem, "MatrixSignSGD")
    return SimSpec(optax.sign_sgd(optimizer.lr))


NS_COEFFS = (3.4445, -4.775, 2.0315)  # optax.contrib.muon's default quintic coefficients
NS_EPS = 1e-8  # optax's Frobenius pre-scaling: X = G/(‖G‖_F + eps)


def newton_schulz(G, ns_steps: int = 5, coeffs=NS_COEFFS, eps: float = NS_EPS):
    """Newton–Schulz orthogonalisation of one matrix, as `optax.contrib.muon` does it.

    `X = G/(‖G‖_F + eps)` (transposed first when `G` has more rows than columns),
    then `ns_steps` times `X ← aX + (bA + cA²)X`, `A = XXᵀ`, `(a, b, c) = coeffs`.
    In exact arithmetic `NS(G) = U f(S/(‖G‖_F + eps)) Vᵀ`, `f = p∘…∘p`,
    `p(x) = ax + bx³ + cx⁵` (the spectral map used by the Muon ODE). Written here with
    public JAX only; `tests/test_signsvd.py` checks it against optax's Muon update.
    """
    if isinstance(ns_steps, bool) or int(ns_steps) != ns_steps or ns_steps < 1:
        raise ValueError(f"`ns_steps` must be an integer >= 1, got {ns_steps!r}")
    if G.ndim != 2:
        raise ValueError(f"`G` must be a matrix, got shape {G.shape}")
    transpose = G.shape[0] > G.shape[1]
    X = G.T if transpose else G
    X = X / (jnp.linalg.norm(X) + eps)
    a, b, c = (jnp.asarray(v, X.dtype) for v in coeffs)
    for _ in range(int(ns_steps)):
        A = X @ X.T
        X = a * X + (b * A + c * (A @ A)) @ X
    return X.T if transpose else X
