"""Matrix least squares (setting.md §1.3): the problem of SignSVD / Muon / matrix SignSGD.

Parameters `W ∈ R^{d×m}`, data `x ~ N(0, K)` in `R^d`, labels `y = W*ᵀx + ε ∈ R^m`
with `ε ~ N(0, σ² I_m)` (or noiseless), per-sample loss `½‖Wᵀx − y‖²`.
With `Δ = W − W*` and `K = Σ_i λ_i u_i u_iᵀ`:

- excess risk `P = ½ tr(ΔᵀKΔ) = ½ Σ_i λ_i D_i`;
- row energies `D_i = ‖u_iᵀΔ‖²` (energy of mode i, summed over the m outputs);
- population risk `R = P + ½ m σ²`.

Initial condition `W0 = 0`, so `Δ0 = −W*`. The target has row energies
`D_i(0)` (exactly) and one of two row geometries (`rows=`):

- `"orthogonal"`: `W* = diag(√D(0)) [I_d 0] R` with `R` a Haar-random `m × m`
  orthogonal matrix (rows mutually orthogonal; needs `m >= d`). Then
  `S = ΔΔᵀ` is diagonal at `k = 0` in the eigenbasis of `K`, the case the
  SignSVD ODE's diagonal closure is built on.
- `"gaussian"`: row `i` is `√D_i(0)` times an independent uniformly random unit
  vector of `R^m` (non-orthogonal rows, any `m`).

The random right rotation makes the entries of `Δ` look Gaussian, the regime
of the matrix SignSGD theory (SignSGD is not right-rotation invariant; SignSVD
and SGD are). `noise.variance` is the per-entry variance `σ²`.
"""

from __future__ import annotations

import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from ._noise import AbstractNoise, Gaussian, Noiseless
from .problems import _as_vector, _check_dim, gaussian_rows, random_rotation

__all__ = ["MatrixProblem", "MatrixPowerLaw"]

_ROWS = ("orthogonal", "gaussian")


def _target_rows(D0: np.ndarray, m: int, rows: str, seed: int) -> np.ndarray:
    d = D0.size
    rng = np.random.default_rng(seed)
    if rows == "orthogonal":
        if m < d:
            raise ValueError(f"`rows='orthogonal'` needs m >= d (got m={m}, d={d}); "
                             "use rows='gaussian'")
        R = random_rotation(m, seed)
        return np.sqrt(D0)[:, None] * R[:d]
    z = rng.standard_normal((d, m))
    z /= np.linalg.norm(z, axis=1, keepdims=True)
    return np.sqrt(D0)[:, None] * z


class MatrixProblem(eqx.Module):
    """Matrix least squares with Gaussian data (see module docstring).

    **Arguments:**

    - `eigenvalues`: `λ`, shape `(d,)`, `>= 0` (spectrum of `K`).
    - `initial_energies`: row energies `D_i(0) >= 0` of `Δ0 = −W*`, shape `(d,)`.
    - `m`: number of outputs (columns of `W`), `>= 1`.
    - `noise`: `Gaussian(σ)` (i.i.d. per output entry) or `Noiseless()`.
    - `rows`: `"orthogonal"` (needs `m >= d`) or `"gaussian"`.
    - `eigenvectors`: optional orthogonal `(d, d)` `U` (`None`: `K` diagonal).
    - `seed`: seed of the target's random right rotation / row directions.
    - `target`: optional explicit `Δ0` in the eigenbasis, shape `(d, m)`
      (overrides `initial_energies`/`rows`; see `from_matrix`).

    **Raises:** `ValueError` naming the argument for bad shapes or values.
    """

    eigenvalues: np.ndarray
    initial_energies: np.ndarray
    delta0_eig: np.ndarray
    noise: AbstractNoise
    eigenvectors: np.ndarray | None
    m: int = eqx.field(static=True)
    rows: str = eqx.field(static=True)
    label: str = eqx.field(static=True)

    def __init__(self, eigenvalues, initial_energies, m: int, noise=None,
                 rows: str = "orthogonal", eigenvectors=None, seed: int = 0,
                 target=None, label: str = "matrix-problem"):
        lam = _as_vector("eigenvalues", eigenvalues)
        m = _check_dim("m", m)
        if np.any(lam < 0):
            raise ValueError(f"`eigenvalues` must be >= 0 (K is PSD), min is {lam.min():.3g}")
        if noise is None:
            noise = Noiseless()
        if not isinstance(noise, (Gaussian, Noiseless)):
            raise ValueError(f"`noise` must be rc.Gaussian(sigma) or rc.Noiseless() for a "
                             f"matrix problem, got {noise!r}")
        if rows not in _ROWS:
            raise ValueError(f"`rows` must be one of {_ROWS}, got {rows!r}")
        if target is not None:
            t = np.asarray(target, np.float64)
            if t.shape != (lam.size, m):
                raise ValueError(f"`target` must have shape {(lam.size, m)}, got {t.shape}")
            delta0 = t
        else:
            d0 = _as_vector("initial_energies", initial_energies)
            if d0.shape != lam.shape:
                raise ValueError(f"`initial_energies` has shape {d0.shape} but `eigenvalues` "
                                 f"has shape {lam.shape}; they must match")
            if np.any(d0 < 0):
                raise ValueError("`initial_energies` must be >= 0")
            delta0 = -_target_rows(d0, m, rows, int(seed))
        if eigenvectors is not None:
            U = np.asarray(eigenvectors, np.float64)
            if U.shape != (lam.size, lam.size):
                raise ValueError(f"`eigenvectors` must have shape {(lam.size,) * 2}, "
                                 f"got {U.shape}")
            if not np.allclose(U.T @ U, np.eye(lam.size), atol=1e-8):
                raise ValueError("`eigenvectors` must be an orthogonal matrix (UᵀU = I)")
            eigenvectors = U
        self.eigenvalues = lam
        self.delta0_eig = delta0
        self.initial_energies = np.sum(delta0**2, axis=1)
        self.noise = noise
        self.eigenvectors = eigenvectors
        self.m = m
        self.rows = rows
        self.label = str(label)

    @classmethod
    def from_matrix(cls, K, W_star, W0=None, noise=None, label="matrix") -> MatrixProblem:
        """From a full covariance `K` (`d × d`, PSD) and target `W*` (`d × m`); `W0 = 0`."""
        K = np.asarray(K, np.float64)
        if K.ndim != 2 or K.shape[0] != K.shape[1] or not np.allclose(K, K.T):
            raise ValueError(f"`K` must be a symmetric square matrix, got shape {K.shape}")
        W_star = np.asarray(W_star, np.float64)
        if W_star.ndim != 2 or W_star.shape[0] != K.shape[0]:
            raise ValueError(f"`W_star` must have shape ({K.shape[0]}, m), got {W_star.shape}")
        W0 = np.zeros_like(W_star) if W0 is None else np.asarray(W0, np.float64)
        if W0.shape != W_star.shape:
            raise ValueError(f"`W0` must have shape {W_star.shape}, got {W0.shape}")
        lam, U = np.linalg.eigh(K)
        if lam.min() < -1e-10 * max(1.0, abs(lam).max()):
            raise ValueError(f"`K` must be PSD, smallest eigenvalue {lam.min():.3g}")
        order = np.argsort(lam)[::-1]
        lam, U = np.clip(lam[order], 0, None), U[:, order]
        rows = "gaussian"
        return cls(lam, None, W_star.shape[1], noise, rows, U, target=U.T @ (W0 - W_star),
                   label=label)

    def rotated(self, seed: int = 0) -> MatrixProblem:
        """The same problem with `K` rotated by a Haar-random orthogonal matrix."""
        U = random_rotation(self.d, seed)
        return MatrixProblem(self.eigenvalues, None, self.m, self.noise, self.rows, U,
                             target=self.delta0_eig, label=self.label + "-rotated")

    def with_noise(self, noise) -> MatrixProblem:
        return MatrixProblem(self.eigenvalues, None, self.m, noise, self.rows,
                             self.eigenvectors, target=self.delta0_eig, label=self.label)

    # ---- derived ------------------------------------------------------------
    @property
    def d(self) -> int:
        return int(self.eigenvalues.shape[0])

    @property
    def n_modes(self) -> int:
        return self.d

    @property
    def weights(self):
        return None

    @property
    def mode_weights(self) -> np.ndarray:
        return np.ones(self.d)

    @property
    def is_diagonal(self) -> bool:
        return self.eigenvectors is None

    @property
    def trace(self) -> float:
        return float(np.sum(self.eigenvalues))

    @property
    def sigma2(self) -> float:
        """Per-entry label-noise variance `σ²`."""
        return float(self.noise.variance)

    @property
    def noise_variance(self) -> float:
        return self.sigma2

    @property
    def initial_risk(self) -> float:
        return 0.5 * float(np.sum(self.eigenvalues * self.initial_energies))

    @property
    def K(self) -> np.ndarray:
        if self.eigenvectors is None:
            return np.diag(self.eigenvalues)
        U = self.eigenvectors
        return (U * self.eigenvalues) @ U.T

    @property
    def row_overlap0(self) -> np.ndarray:
        """`S(0) = Δ0Δ0ᵀ` in the eigenbasis of `K` (diagonal for orthogonal rows)."""
        return self.delta0_eig @ self.delta0_eig.T

    # ---- what the simulators use --------------------------------------------
    def init_delta(self, dtype=jnp.float32):
        """`Δ0 = U Δ0_eig`, shape `(d, m)`, in the coordinate basis."""
        delta = jnp.asarray(self.delta0_eig)
        if self.eigenvectors is not None:
            delta = jnp.asarray(self.eigenvectors) @ delta
        return delta.astype(dtype)

    def sample(self, key, batch: int, dtype=jnp.float32):
        """A batch `(X, E)`: `X` `(batch, d)` rows `~ N(0, K)`, `E` `(batch, m)` noise."""
        kx, ke = jax.random.split(key)
        x = gaussian_rows(kx, batch, self.eigenvalues, self.eigenvectors, dtype)
        return x, self.noise.sample(ke, (batch, self.m), dtype)

    def to_eigenbasis(self, delta):
        delta = jnp.asarray(delta, jnp.float64)
        if self.eigenvectors is not None:
            delta = jnp.asarray(self.eigenvectors).T @ delta
        return delta

    def energies(self, delta):
        """Row energies `D_i = ‖u_iᵀΔ‖²` (float64), shape `(d,)`."""
        return jnp.sum(self.to_eigenbasis(delta) ** 2, axis=-1)

    def excess_risk(self, delta):
        """`P = ½ tr(ΔᵀKΔ)`, accumulated in float64."""
        return 0.5 * jnp.sum(jnp.asarray(self.eigenvalues) * self.energies(delta))


def MatrixPowerLaw(d: int, m: int, alpha: float, beta: float, noise=None, *,
                   rows: str = "orthogonal", scale: float = 1.0, rotate: bool = False,
                   seed: int = 0) -> MatrixProblem:
    """Power-law matrix problem: `λ_j = j^(−α)`, row energies `D_j(0) = scale·j^(−β)`.

    `rotate=True` rotates `K` by a Haar-random orthogonal matrix (generic `K`).
    """
    d = _check_dim("d", d)
    alpha, beta = float(alpha), float(beta)
    if not math.isfinite(alpha) or alpha < 0:
        raise ValueError(f"`alpha` must be finite and >= 0, got {alpha}")
    if not math.isfinite(beta):
        raise ValueError(f"`beta` must be finite, got {beta}")
    if not scale > 0:
        raise ValueError(f"`scale` must be > 0, got {scale}")
    j = np.arange(1, d + 1, dtype=np.float64)
    p = MatrixProblem(j**-alpha, scale * j**-beta, m, noise, rows, seed=seed,
                      label=f"matrix-powerlaw(d={d},m={m},a={alpha:g},b={beta:g})")
    return p.rotated(seed + 1) if rotate else p
