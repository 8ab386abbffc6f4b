"""Label-noise laws.

Every law here is symmetric with mean zero and is written as a *Gaussian scale
mixture*: `ε | k ~ N(0, v_k)` with probability `w_k`. This one representation
serves both sides of the library:

- simulation draws `ε` with `sample`;
- theory needs expectations over the residual `r = z − ε`, `z ~ N(0, s²)`
  independent of `ε`. Conditionally on the mixture component `r ~ N(0, s² + v_k)`,
  so every expectation is a finite sum of Gaussian closed forms
  (`theory.noise_expectations`). Gaussian, mixture and noiseless laws are exact
  mixtures; Student-t is an exact *continuous* mixture over the chi-square
  variable, discretised by Gauss–Legendre quadrature in `log V` (the
  quadrature error is below 1e-10 for the smooth expectations used here).

`pdf`, `cdf` and `variance` are the law's own closed forms (used for checks and
by users); `variance` raises for laws with infinite variance.
"""

from __future__ import annotations

import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["AbstractNoise", "Gaussian", "StudentT", "GaussianMixture", "Noiseless"]


def _check_positive(name: str, value, allow_zero: bool = False) -> float:
    if isinstance(value, jax.core.Tracer):  # inside jax.vmap / jax.grad: unchecked leaf
        return value
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"`{name}` must be a real number, got {value!r}") from None
    ok = v >= 0 if allow_zero else v > 0
    if not (ok and math.isfinite(v)):
        rng = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"`{name}` must be finite and {rng}, got {value!r}")
    return v


def _maybe_float(x):
    """A Python float for a concrete value, the array itself inside a transformation."""
    return x if isinstance(x, jax.core.Tracer) else float(x)


class AbstractNoise(eqx.Module):
    """A symmetric, zero-mean label-noise law written as a Gaussian scale mixture."""

    def scale_mixture(self) -> tuple[np.ndarray, np.ndarray]:
        """Return `(weights, variances)`: `ε | k ~ N(0, variances[k])` w.p. `weights[k]`."""
        raise NotImplementedError

    def sample(self, key, shape, dtype=jnp.float32):
        raise NotImplementedError

    def pdf(self, x):
        w, v = self.scale_mixture()
        x = jnp.asarray(x)[..., None]
        return jnp.sum(w * jnp.exp(-0.5 * x**2 / v) / jnp.sqrt(2 * jnp.pi * v), axis=-1)

    def cdf(self, x):
        w, v = self.scale_mixture()
        x = jnp.asarray(x)[..., None]
        return jnp.sum(w * jax.scipy.stats.norm.cdf(x / jnp.sqrt(v)), axis=-1)

    @property
    def variance(self) -> float:
        """`E[ε²]` (raises `ValueError` when it is infinite)."""
        w, v = self.scale_mixture()
        if isinstance(w, np.ndarray) and isinstance(v, np.ndarray):  # concrete parameters
            return float(np.sum(w * v))
        return _maybe_float(jnp.sum(jnp.asarray(w) * jnp.asarray(v)))

    @property
    def name(self) -> str:
        return type(self).__name__


class Noiseless(AbstractNoise):
    """No label noise: `ε = 0`."""

    def scale_mixture(self):
        return np.ones(1), np.zeros(1)

    def sample(self, key, shape, dtype=jnp.float32):
        return jnp.zeros(shape, dtype)

    def pdf(self, x):
        raise ValueError("Noiseless has no density (it is a point mass at 0)")

    def cdf(self, x):
        return jnp.where(jnp.asarray(x) >= 0, 1.0, 0.0)

    @property
    def variance(self) -> float:
        return 0.0


class Gaussian(AbstractNoise):
    """Gaussian noise `ε ~ N(0, σ²)`."""

    sigma: float

    def __init__(self, sigma: float = 0.1):
        self.sigma = _check_positive("sigma", sigma, allow_zero=True)

    def scale_mixture(self):
        if isinstance(self.sigma, (float, int)):
            return np.ones(1), np.array([self.sigma**2])
        return jnp.ones(1), jnp.reshape(jnp.asarray(self.sigma) ** 2, (1,))

    def sample(self, key, shape, dtype=jnp.float32):
        return self.sigma * jax.random.normal(key, shape, dtype)

    def pdf(self, x):
        if not isinstance(self.sigma, jax.core.Tracer) and float(self.sigma) == 0:
            raise ValueError("Gaussian(sigma=0) has no density; use Noiseless()")
        return jax.scipy.stats.norm.pdf(jnp.asarray(x), scale=self.sigma)

    def cdf(self, x):
        return jax.scipy.stats.norm.cdf(jnp.asarray(x), scale=jnp.maximum(self.sigma, 1e-300))

    @property
    def variance(self) -> float:
        return _maybe_float(jnp.asarray(self.sigma) ** 2) if not isinstance(
            self.sigma, float) else self.sigma**2


class GaussianMixture(AbstractNoise):
    """Symmetric two-component Gaussian mixture ("rare large outliers").

    `ε ~ (1 − p) N(0, σ²) + p N(0, σ_out²)`.
    """

    sigma: float
    outlier_sigma: float
    p: float

    def __init__(self, sigma: float = 0.1, outlier_sigma: float = 10.0, p: float = 0.01):
        self.sigma = _check_positive("sigma", sigma, allow_zero=True)
        self.outlier_sigma = _check_positive("outlier_sigma", outlier_sigma)
        if isinstance(p, jax.core.Tracer):
            self.p = p
            return
        p = float(p)
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"`p` (outlier probability) must be in [0, 1], got {p!r}")
        self.p = p

    def scale_mixture(self):
        if all(isinstance(x, (float, int)) for x in (self.p, self.sigma, self.outlier_sigma)):
            return (np.array([1 - self.p, self.p]),
                    np.array([self.sigma**2, self.outlier_sigma**2]))
        return (jnp.stack([1 - jnp.asarray(self.p), jnp.asarray(self.p)]),
                jnp.stack([jnp.asarray(self.sigma)**2, jnp.asarray(self.outlier_sigma)**2]))

    def sample(self, key, shape, dtype=jnp.float32):
        k1, k2 = jax.random.split(key)
        out = jax.random.bernoulli(k1, self.p, shape)
        scale = jnp.where(out, self.outlier_sigma, self.sigma).astype(dtype)
        return scale * jax.random.normal(k2, shape, dtype)


class StudentT(AbstractNoise):
    """Scaled Student-t noise `ε = scale · T_ν` (heavy tailed).

    Variance `scale² ν/(ν − 2)` exists only for `ν > 2`; `variance` raises a
    `ValueError` otherwise. Use `StudentT.with_std(nu, std)` to fix the variance.
    Scale mixture: `T_ν = N / sqrt(V/ν)` with `V ~ χ²_ν`, so
    `ε | V ~ N(0, scale² ν / V)`.
    """

    nu: float = eqx.field(static=True)
    scale: float
    n_quad: int = eqx.field(static=True, default=192)

    def __init__(self, nu: float = 3.0, scale: float = 0.1, n_quad: int = 192):
        self.nu = _check_positive("nu", nu)
        self.scale = _check_positive("scale", scale)
        self.n_quad = int(n_quad)

    @classmethod
    def with_std(cls, nu: float, std: float) -> StudentT:
        """Student-t with `ν > 2` scaled to standard deviation `std`."""
        nu = _check_positive("nu", nu)
        if nu <= 2:
            raise ValueError(f"`nu` must be > 2 for a finite standard deviation, got {nu}")
        return cls(nu, _check_positive("std", std) * math.sqrt((nu - 2) / nu))

    def scale_mixture(self):
        from scipy import stats  # JAX lacks the chi-square quantile function

        lo, hi = stats.chi2.ppf([1e-15, 1 - 1e-15], self.nu)
        ulo, uhi = math.log(max(lo, 1e-300)), math.log(hi)
        x, wq = np.polynomial.legendre.leggauss(self.n_quad)
        u = 0.5 * (uhi - ulo) * x + 0.5 * (uhi + ulo)
        V = np.exp(u)
        w = wq * 0.5 * (uhi - ulo) * stats.chi2.pdf(V, self.nu) * V
        w = w / w.sum()
        return w, self.scale**2 * self.nu / V

    def sample(self, key, shape, dtype=jnp.float32):
        return self.scale * jax.random.t(key, self.nu, shape, dtype)

    def pdf(self, x):
        return jax.scipy.stats.t.pdf(jnp.asarray(x), self.nu, scale=self.scale)

    def cdf(self, x):
        t = jnp.asarray(x) / self.scale
        ib = jax.scipy.special.betainc(self.nu / 2, 0.5, self.nu / (self.nu + t**2))
        return jnp.where(t < 0, 0.5 * ib, 1 - 0.5 * ib)

    @property
    def variance(self) -> float:
        if self.nu <= 2:
            raise ValueError(
                f"StudentT(nu={self.nu}) has infinite variance; this quantity needs nu > 2"
            )
        return self.scale**2 * self.nu / (self.nu - 2)
