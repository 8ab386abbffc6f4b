"""Least-squares problems: spectra, targets, noise laws.

A `Problem` is high-dimensional linear regression with Gaussian data
`x ~ N(0, K)`, labels `y = xᵀθ* + ε` and per-sample loss `½ (xᵀθ − y)²`.
It is stored in the eigenbasis of `K = Σ λ_i u_i u_iᵀ`:

- `eigenvalues` `λ_i ≥ 0`;
- `initial_energies` `D_i(0) = (u_iᵀ(θ0 − θ*))²`;
- `noise`, the law of `ε` (see `riskcurves.problems.Gaussian` etc.);
- `eigenvectors`, the orthogonal matrix `U = [u_1 … u_d]`, or `None` when `K` is
  diagonal in the coordinate basis (this matters for coordinate-wise optimizers
  such as SignSGD, not for SGD);
- `weights` (multiplicities), `None` for a plain problem; compressed spectra
  (`riskcurves.compress`) carry weights and are solved but not simulated.

Excess risk `P = ½ ΔᵀKΔ = ½ Σ_i w_i λ_i D_i` with `Δ = θ − θ*`; population risk
`R = P + ½ E[ε²]`.

Deterministic target convention: the simulators start from
`Δ0 = U √D(0)` (all signs +), i.e. `θ0 = 0` and `|u_jᵀθ*| = √D_j(0)` exactly.
Every optimizer in the library is equivariant under `u_j → −u_j`, so the signs
do not matter.

Exponent conventions: `PowerLaw(alpha, beta)` has `λ_j = j^(−α)` and
`D_j(0) = j^(−β)`. Papers writing `λ_j = j^(−2α')` and target coefficients
`b_j = j^(−β')` (so `D_j = j^(−2β')`) map to `alpha = 2α'`, `beta = 2β'`; the
"source/capacity" convention `λ_j ~ j^(−a)`, `λ_j D_j ~ j^(−b)` maps to
`alpha = a`, `beta = b − a`.
"""

from __future__ import annotations

import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from ._noise import AbstractNoise, Gaussian, GaussianMixture, Noiseless, StudentT

__all__ = [
    "Problem",
    "PowerLaw",
    "Flat",
    "TwoLevel",
    "random_rotation",
    "AbstractNoise",
    "Gaussian",
    "StudentT",
    "GaussianMixture",
    "Noiseless",
]


def _as_vector(name: str, x) -> np.ndarray:
    a = np.asarray(x, dtype=np.float64)
    if a.ndim != 1 or a.size == 0:
        raise ValueError(f"`{name}` must be a non-empty 1-D array, got shape {a.shape}")
    if not np.all(np.isfinite(a)):
        raise ValueError(f"`{name}` must be finite")
    return a


def _check_dim(name: str, d) -> int:
    if isinstance(d, bool) or not isinstance(d, (int, np.integer)) and not (
        isinstance(d, float) and d.is_integer()
    ):
        raise ValueError(f"`{name}` must be an integer >= 1, got {d!r}")
    d = int(d)
    if d < 1:
        raise ValueError(f"`{name}` must be an integer >= 1, got {d}")
    return d


def gaussian_rows(key, batch: int, eigenvalues, eigenvectors=None, dtype=jnp.float32):
    """`(batch, d)` rows `x ~ N(0, K)`, `K = U diag(λ) Uᵀ` (`U = None`: diagonal)."""
    z = jax.random.normal(key, (batch, len(eigenvalues)), dtype)
    x = z * jnp.sqrt(jnp.asarray(eigenvalues)).astype(dtype)
    if eigenvectors is not None:
        x = x @ jnp.asarray(eigenvectors).T.astype(dtype)
    return x


def random_rotation(d: int, seed: int = 0) -> np.ndarray:
    """Haar-random `d × d` orthogonal matrix (QR of a Gaussian matrix, signs fixed)."""
    rng = np.random.default_rng(seed)
    q, r = np.linalg.qr(rng.standard_normal((d, d)))
    return q * np.sign(np.diag(r))


class Problem(eqx.Module):
    """A least-squares problem given by its spectrum (see module docstring).

    **Arguments:**

    - `eigenvalues`: `λ`, shape `(n,)`, all `>= 0`.
    - `initial_energies`: `D(0)`, shape `(n,)`, all `>= 0`.
    - `noise`: label-noise law (default `Noiseless()`).
    - `eigenvectors`: optional orthogonal `(n, n)` matrix `U`; `None` = diagonal `K`.
    - `weights`: optional multiplicities `w > 0` (compressed spectra only).
    - `label`: a short name for plots and reports.

    **Raises:** `ValueError` naming the argument for shape mismatch, negative or
    non-finite entries, or a non-orthogonal `eigenvectors`.
    """

    eigenvalues: np.ndarray
    initial_energies: np.ndarray
    noise: AbstractNoise
    eigenvectors: np.ndarray | None
    weights: np.ndarray | None
    label: str = eqx.field(static=True)

    def __init__(
        self,
        eigenvalues,
        initial_energies,
        noise: AbstractNoise | None = None,
        eigenvectors=None,
        weights=None,
        label: str = "problem",
    ):
        lam = _as_vector("eigenvalues", eigenvalues)
        d0 = _as_vector("initial_energies", initial_energies)
        if lam.shape != d0.shape:
            raise ValueError(
                f"`initial_energies` has shape {d0.shape} but `eigenvalues` has shape "
                f"{lam.shape}; they must match"
            )
        if np.any(lam < 0):
            raise ValueError(f"`eigenvalues` must be >= 0 (K is PSD), min is {lam.min():.3g}")
        if np.any(d0 < 0):
            raise ValueError("`initial_energies` must be >= 0 (they are squared projections)")
        if noise is None:
            noise = Noiseless()
        if not isinstance(noise, AbstractNoise):
            raise ValueError(f"`noise` must be a noise law (e.g. rc.Gaussian(0.1)), got {noise!r}")
        if eigenvectors is not None:
            U = np.asarray(eigenvectors, dtype=np.float64)
            if U.shape != (lam.size, lam.size):
                raise ValueError(
                    f"`eigenvectors` must have shape {(lam.size, lam.size)}, got {U.shape}"
                )
            if not np.allclose(U.T @ U, np.eye(lam.size), atol=1e-8):
                raise ValueError("`eigenvectors` must be an orthogonal matrix (UᵀU = I)")
            eigenvectors = U
        if weights is not None:
            weights = _as_vector("weights", weights)
            if weights.shape != lam.shape:
                raise ValueError(f"`weights` must have shape {lam.shape}, got {weights.shape}")
            if np.any(weights <= 0):
                raise ValueError("`weights` must be > 0")
            if eigenvectors is not None:
                raise ValueError("`weights` (a compressed spectrum) needs a diagonal K")
        self.eigenvalues = lam
        self.initial_energies = d0
        self.noise = noise
        self.eigenvectors = eigenvectors
        self.weights = weights
        self.label = str(label)

    # ---- constructors -------------------------------------------------------
    @classmethod
    def from_matrix(cls, K, theta_star, theta0=None, noise=None, label="matrix") -> Problem:
        """Problem from a full covariance `K` (PSD, symmetric) and target `θ*`.

        `θ0` defaults to zero. `D_i(0) = (u_iᵀ(θ0 − θ*))²` in the eigenbasis of `K`.
        """
        K = np.asarray(K, dtype=np.float64)
        if K.ndim != 2 or K.shape[0] != K.shape[1]:
            raise ValueError(f"`K` must be a square matrix, got shape {K.shape}")
        if not np.all(np.isfinite(K)):
            raise ValueError("`K` must be finite")
        if not np.allclose(K, K.T, rtol=1e-10, atol=1e-12 * max(1.0, np.abs(K).max())):
            raise ValueError("`K` must be symmetric")
        theta_star = np.asarray(theta_star, dtype=np.float64)
        if theta_star.shape != (K.shape[0],):
            raise ValueError(
                f"`theta_star` must have shape ({K.shape[0]},), got {theta_star.shape}"
            )
        theta0 = np.zeros_like(theta_star) if theta0 is None else np.asarray(theta0, np.float64)
        if theta0.shape != theta_star.shape:
            raise ValueError(f"`theta0` must have shape {theta_star.shape}, got {theta0.shape}")
        lam, U = np.linalg.eigh(0.5 * (K + K.T))
        tol = 1e-10 * max(1.0, abs(lam).max())
        if lam.min() < -tol:
            raise ValueError(
                f"`K` must be positive semi-definite, its smallest eigenvalue is {lam.min():.3g}"
            )
        order = np.argsort(lam)[::-1]
        lam, U = np.clip(lam[order], 0.0, None), U[:, order]
        if np.allclose(U, np.diag(np.diag(U)), atol=1e-12):  # already diagonal
            delta = theta0 - theta_star
            return cls(np.clip(np.diag(K), 0.0, None), delta**2, noise, None, None, label)
        delta = U.T @ (theta0 - theta_star)
        return cls(lam, delta**2, noise, U, None, label)

    def rotated(self, seed: int = 0) -> Problem:
        """The same spectrum rotated by a Haar-random orthogonal matrix."""
        if self.weights is not None:
            raise ValueError("a compressed problem cannot be rotated")
        U = random_rotation(self.d, seed)
        return Problem(self.eigenvalues, self.initial_energies, self.noise, U, None,
                       self.label + "-rotated")

    def with_noise(self, noise: AbstractNoise) -> Problem:
        return Problem(self.eigenvalues, self.initial_energies, noise, self.eigenvectors,
                       self.weights, self.label)

    # ---- derived quantities -------------------------------------------------
    @property
    def n_modes(self) -> int:
        return int(self.eigenvalues.shape[0])

    @property
    def d(self) -> int:
        """The dimension (sum of multiplicities for a compressed spectrum)."""
        if self.weights is None:
            return self.n_modes
        return int(round(float(np.sum(self.weights))))

    @property
    def mode_weights(self) -> np.ndarray:
        return np.ones(self.n_modes) if self.weights is None else np.asarray(self.weights)

    @property
    def is_diagonal(self) -> bool:
        return self.eigenvectors is None

    @property
    def trace(self) -> float:
        return float(np.sum(self.mode_weights * self.eigenvalues))

    @property
    def initial_risk(self) -> float:
        """Excess risk at initialisation `P(0) = ½ Σ w λ D(0)`."""
        return 0.5 * float(np.sum(self.mode_weights * self.eigenvalues * self.initial_energies))

    @property
    def noise_variance(self) -> float:
        return self.noise.variance

    @property
    def K(self) -> np.ndarray:
        """The dense covariance matrix `U diag(λ) Uᵀ`."""
        self._require_simulable()
        if self.eigenvectors is None:
            return np.diag(self.eigenvalues)
        U = self.eigenvectors
        return (U * self.eigenvalues) @ U.T

    def _require_simulable(self):
        if self.weights is not None:
            raise ValueError(
                "this problem has a compressed spectrum (weights); it can be solved with "
                "`solve_ode` but not simulated: simulate the uncompressed problem"
            )

    # ---- what the simulators use (plain update rules, coordinate basis) -----
    def init_delta(self, dtype=jnp.float32):
        """`Δ0 = θ0 − θ* = U √D(0)` in the coordinate basis."""
        self._require_simulable()
        coef = jnp.sqrt(jnp.asarray(self.initial_energies))
        if self.eigenvectors is not None:
            coef = jnp.asarray(self.eigenvectors) @ coef
        return coef.astype(dtype)

    def sample(self, key, batch: int, dtype=jnp.float32):
        """A batch `(X, ε)`: `X` has shape `(batch, d)`, rows `~ N(0, K)`; `ε ~ noise`."""
        kx, ke = jax.random.split(key)
        x = gaussian_rows(kx, batch, self.eigenvalues, self.eigenvectors, dtype)
        return x, self.noise.sample(ke, (batch,), dtype)

    def energies(self, delta):
        """Mode energies `D_i = (u_iᵀΔ)²` (float64)."""
        delta = jnp.asarray(delta, jnp.float64)
        if self.eigenvectors is not None:
            delta = jnp.asarray(self.eigenvectors).T @ delta
        return delta**2

    def excess_risk(self, delta):
        """`P = ½ ΔᵀKΔ`, accumulated in float64."""
        return 0.5 * jnp.sum(jnp.asarray(self.eigenvalues) * self.energies(delta))


# ---- spectra ---------------------------------------------------------------
def PowerLaw(
    d: int,
    alpha: float,
    beta: float,
    noise: AbstractNoise | None = None,
    *,
    rotate: bool = False,
    seed: int = 0,
    compressed: bool | None = None,
    rtol: float = 1e-6,
) -> Problem:
    """Power-law problem: `λ_j = j^(−α)`, `D_j(0) = j^(−β)`, `j = 1..d`.

    `compressed=True` builds the weighted-node spectrum of `riskcurves.compress`
    directly from `(d, α, β)` (relative accuracy `rtol`; solvable, not
    simulable); it is the default for `d > 10**7` and for `d = float('inf')`
    (the continuum limit, needs `α > 1` and `α + β > 1`).

    The target is deterministic, `|u_jᵀθ*| = j^(−β/2)` with `θ0 = 0`. The initial
    risk `½ Σ j^(−α−β)` stays finite as `d → ∞` iff `α + β > 1`.
    `rotate=True` rotates the spectrum by a Haar-random orthogonal matrix (seed
    `seed`), giving a generic (non-diagonal) covariance.
    """
    big = isinstance(d, (int, float, np.integer)) and not isinstance(d, bool) and d > 10**7
    if compressed or (compressed is None and big):
        if rotate:
            raise ValueError("`rotate=True` needs an uncompressed problem (compressed=False)")
        from ._compress import power_law  # noqa: PLC0415 (circular import)

        return power_law(d, alpha, beta, noise, rtol=rtol)
    d = _check_dim("d", d)
    alpha, beta = float(alpha), float(beta)
    if not math.isfinite(alpha) or alpha < 0:
        raise ValueError(f"`alpha` must be finite and >= 0, got {alpha}")
    if not math.isfinite(beta):
        raise ValueError(f"`beta` must be finite, got {beta}")
    j = np.arange(1, d + 1, dtype=np.float64)
    p = Problem(j**-alpha, j**-beta, noise, label=f"powerlaw(d={d},a={alpha:g},b={beta:g})")
    return p.rotated(seed) if rotate else p


def Flat(d: int, eigenvalue: float = 1.0, noise: AbstractNoise | None = None,
         initial_energy: float | None = None) -> Problem:
    """Isotropic problem `K = λ I_d`, `D_i(0) = initial_energy` (default `1/d`)."""
    d = _check_dim("d", d)
    if not eigenvalue > 0:
        raise ValueError(f"`eigenvalue` must be > 0, got {eigenvalue}")
    e0 = 1.0 / d if initial_energy is None else float(initial_energy)
    return Problem(np.full(d, float(eigenvalue)), np.full(d, e0), noise, label=f"flat(d={d})")


def TwoLevel(d: int, high: float = 1.0, low: float = 0.01, frac_high: float = 0.5,
             noise: AbstractNoise | None = None, initial_energy: float | None = None) -> Problem:
    """Two-level spectrum: `round(frac_high·d)` eigenvalues `high`, the rest `low`.

    `D_i(0) = initial_energy` (default `1/d`) for every mode.
    """
    d = _check_dim("d", d)
    if not (high > 0 and low > 0):
        raise ValueError(f"`high` and `low` must be > 0, got {high}, {low}")
    if not 0 < frac_high < 1:
        raise ValueError(f"`frac_high` must be in (0, 1), got {frac_high}")
    nh = max(1, min(d - 1, int(round(frac_high * d))))
    lam = np.concatenate([np.full(nh, float(high)), np.full(d - nh, float(low))])
    e0 = 1.0 / d if initial_energy is None else float(initial_energy)
    return Problem(lam, np.full(d, e0), noise, label=f"twolevel(d={d},{high:g}/{low:g})")
from ._matrix_problem import MatrixPowerLaw, MatrixProblem  # noqa: E402,F401,I001
