"""Expectations over the residual `r = z − ε`, `z ~ N(0, s²)` independent of `ε`.

Every noise law is a Gaussian scale mixture (`ε | k ~ N(0, v_k)` w.p. `w_k`), so
`r | k ~ N(0, s² + v_k)` and each expectation is a weighted sum of Gaussian
closed forms. `s² = 2P` when `z = xᵀΔ` with `x ~ N(0, K)`.
All functions are JAX-traceable in `s2` (the noise law is static).
"""

from __future__ import annotations

import jax.numpy as jnp
from jax.scipy.special import erf

__all__ = [
    "mixture",
    "residual_density_at_zero",
    "prob_abs_residual_below",
    "expected_clipped_square",
    "effective_sign_gain",
]

_TINY = 1e-300


def mixture(noise):
    """`(w, v)` of the law as float64 JAX arrays."""
    w, v = noise.scale_mixture()
    return jnp.asarray(w, jnp.float64), jnp.asarray(v, jnp.float64)


def residual_density_at_zero(noise, s2):
    """`p_r(0) = Σ_k w_k / √(2π(s² + v_k))`."""
    w, v = mixture(noise)
    t2 = jnp.maximum(jnp.asarray(s2)[..., None] + v, _TINY)
    return jnp.sum(w / jnp.sqrt(2 * jnp.pi * t2), axis=-1)


def effective_sign_gain(noise, s2):
    """`φ(P) = 2 √(2/π) p_r(0)`: SignSGD's effective learning-rate factor.

    Gaussian noise: `φ = (2/π)/√(2P + σ²)`.
    """
    return 2 * jnp.sqrt(2 / jnp.pi) * residual_density_at_zero(noise, s2)


def prob_abs_residual_below(noise, s2, c):
    """`μ = Pr(|r| < c) = Σ_k w_k erf(c/√(2(s² + v_k)))`."""
    w, v = mixture(noise)
    t = jnp.sqrt(jnp.maximum(jnp.asarray(s2)[..., None] + v, _TINY))
    return jnp.sum(w * erf(c / (jnp.sqrt(2.0) * t)), axis=-1)


def expected_clipped_square(noise, s2, c):
    """`ν = E[min(r², c²)]`.

    For `r ~ N(0, t²)`: `E[r² 1{|r|<c}] = t² (erf(c/(t√2)) − 2(c/t) φ(c/t))` with
    `φ` the standard normal density, plus `c² Pr(|r| ≥ c)`.
    """
    w, v = mixture(noise)
    t2 = jnp.maximum(jnp.asarray(s2)[..., None] + v, _TINY)
    t = jnp.sqrt(t2)
    u = c / t
    e = erf(u / jnp.sqrt(2.0))
    pdf = jnp.exp(-0.5 * u**2) / jnp.sqrt(2 * jnp.pi)
    inner = t2 * (e - 2 * u * pdf)
    return jnp.sum(w * (inner + c**2 * (1 - e)), axis=-1)
