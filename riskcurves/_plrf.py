"""Power-law random features (PLRF), arXiv 2405.15074 (Paquette, Paquette, Xiao, Pennington).

**Model (the paper's conventions).** Data `x ∈ R^v` with independent coordinates
`x_j = j^(−α) z_j`, `z ~ N(0, I_v)` (covariance `Λ = diag(j^(−2α))`), a Gaussian
embedding `W ∈ R^{v×d}` with entries `N(0, 1/d)` (drawn once, `seed`), features
`φ = Wᵀx ∈ R^d`, model `θ ∈ R^d`, target `y = ⟨x, b⟩ + ε` with `b_j = j^(−β)`,
per-sample loss `½ (⟨φ, θ⟩ − y)²`, `θ0 = 0`.

**It is a `Problem`.** Given `W`, `φ ~ N(0, K)` with `K = WᵀΛW` (`d × d`). With
`A = Λ^{1/2} W` and `c = Λ^{1/2} b` the target is `⟨z, c⟩`; its best linear
predictor from `φ = Aᵀz` is `θ* = K⁻¹ Aᵀ c` and the remainder
`⟨z, c⟩ − ⟨φ, θ*⟩ = ⟨z, (I − Π_A) c⟩` is Gaussian and *independent* of `φ`
(jointly Gaussian and uncorrelated). So PLRF is linear regression on `φ` with
label noise `ε_eff = ε + ⟨z, (I − Π_A)c⟩`: variance
`σ² + s_irr`, `s_irr = ‖(I − Π_A) c‖²` (Gaussian plus the law of `ε`). In the
eigenbasis `K = Σ μ_i u_i u_iᵀ`:

    D_i(0) = (u_iᵀθ*)² = (u_iᵀ Aᵀc)² / μ_i²,      μ_i D_i(0) = (v_iᵀ c)²

(`v_i` the left singular vectors of `A`), and the paper's loss
`½ E(⟨φ,θ⟩ − ⟨x,b⟩)² = P + ½ s_irr` is the population risk `R = P + ½ E[ε_eff²]`
of the library when `noise=None`. Every optimizer's ODE and the simulator run
on this problem unchanged (the simulator samples `φ` in the eigenbasis of `K`,
exactly equivalent in law); `PowerLawRFData` samples `x ∈ R^v` literally.

**Conversion to `PowerLaw`.** The data covariance alone is `PowerLaw`'s
`λ_j = j^(−2α)`, `D_j = b_j² = j^(−2β)`: `PowerLaw(alpha=2α, beta=2β)`. The
feature problem is *not* a power law at finite `d`: its top eigenvalues are
close to `j^(−2α)` and the bottom ones form a Marchenko–Pastur-type bulk.

**Deterministic equivalent** (`method="deterministic"`, any `d`, `v` up to
`inf` when `2α > 1`): `K` is the Gram matrix of `d` samples with population
covariance `Λ`, so its Stieltjes transform `m(z) = (1/d) tr (K − z)⁻¹` is
approximated by the solution with `Im m > 0` of (Silverstein)

    1 + m (z − (1/d) Σ_j λ_j / (1 + λ_j m)) = 0,          λ_j = j^(−2α),

the counting function by `N_<(x) = −(d/π) Im g(x + i0)` with
`g(z) = −z m − log m + (1/d) Σ_j log(1 + λ_j m) − 1` (`g' = −m`, principal
logarithms), and the target's spectral measure `Σ_i μ_i D_i(0) δ_{μ_i}` by the
anisotropic resolvent `cᵀ(AAᵀ − z)⁻¹c ≈ −(1/z) Σ_j c_j² / (1 + λ_j m)`; the atom
of that measure at `0` is `s_irr = Σ_j c_j² / (1 + λ_j m(0))`, `m(0)` the real
root of `(1/d) Σ_j λ_j m/(1 + λ_j m) = 1`. The spectrum is cut into rank bins
(every one of the top `n_top` modes alone, then `nodes_per_decade` log-spaced
rank bins down to the bottom edge, graded toward it); each bin's count, mean
eigenvalue and target energy are the contour integrals `(1/π) Im ∫ f(ζ) dζ`
along the upper half circle over the bin (Gauss–Legendre, the integrands are
analytic off the real axis), which gives a weighted-node `Problem` like
`riskcurves.compress` (cost independent of `d`). The sum over `j` is itself a
weighted-node quadrature (`power_law_nodes`, exact for `j ≤ j_exact`).
Validation numbers: `docs/theory/plrf.md`.
"""

from __future__ import annotations

import functools
import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from ._noise import AbstractNoise, Gaussian, Noiseless
from .problems import Problem

__all__ = ["PowerLawRF", "PowerLawRFData", "plrf_embedding", "plrf_spectrum"]


# ---- argument checks ----------------------------------------------------------------
def _check_int(name, x, lo=1):
    if isinstance(x, bool) or not (isinstance(x, (int, np.integer))
                                   or (isinstance(x, float) and x.is_integer())):
        raise ValueError(f"`{name}` must be an integer >= {lo}, got {x!r}")
    if int(x) < lo:
        raise ValueError(f"`{name}` must be an integer >= {lo}, got {x!r}")
    return int(x)


def _check_args(v, d, alpha, beta, allow_inf_v):
    d = _check_int("d", d)
    if isinstance(v, float) and math.isinf(v) and v > 0:
        if not allow_inf_v:
            raise ValueError("`v` must be a finite integer for the exact problem "
                             "(v = inf needs method='deterministic')")
        v = math.inf
    else:
        v = _check_int("v", v)
    if not v > d:
        raise ValueError(f"`v` must be > d (more data dimensions than features), got v={v}, d={d}")
    alpha, beta = float(alpha), float(beta)
    if not (math.isfinite(alpha) and alpha > 0):
        raise ValueError(f"`alpha` must be finite and > 0, got {alpha}")
    if not math.isfinite(beta):
        raise ValueError(f"`beta` must be finite, got {beta}")
    if v == math.inf and not (2 * alpha > 1 and alpha + beta > 0.5):
        raise ValueError(f"v=inf needs 2*alpha > 1 (finite trace) and 2(alpha+beta) > 1 "
                         f"(finite target energy); got alpha={alpha}, beta={beta}")
    return v, d, alpha, beta


def _label_noise(noise, s_irr: float) -> AbstractNoise:
    """The law of `ε + N(0, s_irr)` (the label noise plus the irreducible part)."""
    if noise is None or isinstance(noise, Noiseless):
        return Gaussian(math.sqrt(max(s_irr, 0.0)))
    if isinstance(noise, Gaussian):
        return Gaussian(math.sqrt(float(noise.sigma) ** 2 + max(s_irr, 0.0)))
    if not isinstance(noise, AbstractNoise):
        raise ValueError(f"`noise` must be a noise law (e.g. rc.Gaussian(0.1)), got {noise!r}")
    return _PlusGaussian(noise, max(s_irr, 0.0))


class _PlusGaussian(AbstractNoise):
    """`ε + g`, `g ~ N(0, extra)` independent (a scale mixture with shifted variances)."""

    base: AbstractNoise
    extra: float

    def scale_mixture(self):
        w, v = self.base.scale_mixture()
        return w, v + self.extra

    def sample(self, key, shape, dtype=jnp.float32):
        k1, k2 = jax.random.split(key)
        return (self.base.sample(k1, shape, dtype)
                + math.sqrt(self.extra) * jax.random.normal(k2, shape, dtype))


# ---- the exact finite-d problem --------------------------------------------------------
def plrf_embedding(v: int, d: int, seed: int = 0) -> np.ndarray:
    """The embedding `W ∈ R^{v×d}`, entries `N(0, 1/d)` (numpy generator `seed`)."""
    v, d = _check_int("v", v), _check_int("d", d)
    return np.random.default_rng(seed).standard_normal((v, d)) / math.sqrt(d)


def _exact_parts(v, d, alpha, beta, seed):
    W = plrf_embedding(v, d, seed)
    j = np.arange(1, v + 1, dtype=np.float64)
    lam_x, b = j ** (-2 * alpha), j ** (-beta)
    A = W * np.sqrt(lam_x)[:, None]
    c = np.sqrt(lam_x) * b
    K = A.T @ A
    mu, U = np.linalg.eigh(K)
    order = np.argsort(mu)[::-1]
    mu, U = np.clip(mu[order], 0.0, None), U[:, order]
    if mu[-1] <= 0:
        raise ValueError("the feature covariance K = WᵀΛW is singular at this (v, d, alpha); "
                         "increase v/d or decrease alpha")
    proj = U.T @ (A.T @ c)                   # u_iᵀ Aᵀc
    D0 = proj**2 / mu**2
    s_irr = float(max(c @ c - np.sum(proj**2 / mu), 0.0))
    theta_star = U @ (proj / mu)
    return W, lam_x, b, K, mu, U, D0, s_irr, theta_star


def PowerLawRF(v, d: int, alpha: float, beta: float, noise: AbstractNoise | None = None, *,
               seed: int = 0, method: str = "exact", **options) -> Problem:
    """Power-law random features as a feature-space `Problem` (module docstring).

    **Arguments:**

    - `v`: data dimension (integer `> d`; `float('inf')` with `method="deterministic"`
      and `2α > 1`).
    - `d`: number of features (model parameters).
    - `alpha`, `beta`: the paper's exponents, data covariance `j^(−2α)`, target
      `b_j = j^(−β)` (`PowerLaw(alpha=2α, beta=2β)` is the data problem itself).
    - `noise`: label noise `ε` (default none); the problem's noise is `ε` plus the
      irreducible Gaussian part of variance `s_irr`.
    - `seed`: the seed of the embedding `W` (exact method).
    - `method`: `"exact"` (eigendecomposition of `K = WᵀΛW`, `d ≲ 4096`,
      simulable) or `"deterministic"` (the deterministic equivalent as weighted
      nodes, any `d`, solvable only).
    - `**options`: resolution of the deterministic equivalent (`n_top`,
      `nodes_per_decade`, `j_exact`, `sub_ratio`, … of `plrf_spectrum`).

    **Returns:** a `Problem`; `problem.noise.variance = σ² + s_irr`.
    """
    if method not in ("exact", "deterministic"):
        raise ValueError(f"`method` must be 'exact' or 'deterministic', got {method!r}")
    v, d, alpha, beta = _check_args(v, d, alpha, beta, method == "deterministic")
    tag = "inf" if v == math.inf else str(v)
    if method == "exact":
        if options:
            raise ValueError(f"options {sorted(options)} apply to method='deterministic' only")
        *_, mu, U, D0, s_irr, _ = _exact_parts(v, d, alpha, beta, seed)
        return Problem(mu, D0, _label_noise(noise, s_irr), eigenvectors=U,
                       label=f"plrf(v={tag},d={d},a={alpha:g},b={beta:g},seed={seed})")
    spec = plrf_spectrum(v, d, alpha, beta, **options)
    lam, w, e = spec["nodes"]
    keep = (w > 1e-12 * d) & (lam > 0)
    return Problem(lam[keep], e[keep] / (w[keep] * lam[keep]), _label_noise(noise, spec["s_irr"]),
                   weights=w[keep],
                   label=f"plrf(v={tag},d={d},a={alpha:g},b={beta:g},deterministic)")


class PowerLawRFData(eqx.Module):
    """PLRF sampled literally: `x ∈ R^v`, features `φ = Wᵀx` (a simulator-only problem).

    Same arguments as `PowerLawRF(method="exact")`. It has what the simulator
    engine uses (`init_delta`, `sample`, `excess_risk`, `noise`, `initial_risk`),
    with `Δ0 = −θ*` in the feature coordinates and the effective noise
    `ε_eff = y − ⟨φ, θ*⟩` computed from the drawn `x`: simulating it checks the
    equivalence in law with `PowerLawRF` (tests/test_plrf.py).
    """

    W: np.ndarray
    data_eigenvalues: np.ndarray
    target: np.ndarray
    theta_star: np.ndarray
    K: np.ndarray
    eigenvalues: np.ndarray
    label_noise: AbstractNoise
    noise: AbstractNoise
    label: str = eqx.field(static=True)

    def __init__(self, v, d, alpha, beta, noise=None, *, seed: int = 0):
        v, d, alpha, beta = _check_args(v, d, alpha, beta, False)
        W, lam_x, b, K, mu, U, D0, s_irr, ts = _exact_parts(v, d, alpha, beta, seed)
        self.W, self.data_eigenvalues, self.target, self.theta_star, self.K = W, lam_x, b, ts, K
        self.eigenvalues = mu
        self.label_noise = Noiseless() if noise is None else noise
        self.noise = _label_noise(noise, s_irr)
        self.label = f"plrf-data(v={v},d={d},a={alpha:g},b={beta:g},seed={seed})"

    @property
    def d(self) -> int:
        return int(self.W.shape[1])

    @property
    def mode_weights(self) -> np.ndarray:
        return np.ones(self.d)

    @property
    def initial_risk(self) -> float:
        return 0.5 * float(self.theta_star @ self.K @ self.theta_star)

    def init_delta(self, dtype=jnp.float32):
        return -jnp.asarray(self.theta_star).astype(dtype)

    def sample(self, key, batch: int, dtype=jnp.float32):
        """`(Φ, ε_eff)`: `Φ = X W` with rows `x ~ N(0, Λ)`, `ε_eff = ⟨x,b⟩ + ε − Φθ*`."""
        kx, ke = jax.random.split(key)
        x = jax.random.normal(kx, (batch, self.W.shape[0]), dtype)
        x = x * jnp.sqrt(jnp.asarray(self.data_eigenvalues)).astype(dtype)
        phi = x @ jnp.asarray(self.W).astype(dtype)
        y = (x @ jnp.asarray(self.target).astype(dtype)
             + self.label_noise.sample(ke, (batch,), dtype))
        return phi, y - phi @ jnp.asarray(self.theta_star).astype(dtype)

    def excess_risk(self, delta):
        delta = jnp.asarray(delta, jnp.float64)
        return 0.5 * delta @ (jnp.asarray(self.K) @ delta)


# ---- the deterministic equivalent ----------------------------------------------------
def _j_nodes(v, d, alpha, beta, j_exact, m_max, bins_per_decade: int = 8, q: int = 4):
    """Weighted nodes `(λ_j, c_j², w_j)` of the sums over `j = 1..v` (`λ = j^(−2α)`,
    `c² = j^(−2α−2β)`): exact for `j ≤ j_exact`, then Gauss–Legendre bins in `ln j`
    (midpoint rule for the integer sum) up to `v` or, for `v = inf`, up to the rank
    `X` where `λ_X m_max = 1e-8`, beyond which one node carries `Σ λ` and `Σ λ²`."""
    J = int(min(v, j_exact))
    j = np.arange(1, J + 1, dtype=np.float64)
    lam, c2, w = [j ** (-2 * alpha)], [j ** (-2 * alpha - 2 * beta)], [np.ones(J)]
    if v > J:
        hi = v + 0.5 if v != math.inf else max(10.0 * J, (1e8 * m_max) ** (1 / (2 * alpha)))
        lo = J + 0.5
        nb = max(1, int(math.ceil(math.log10(hi / lo) * bins_per_decade)))
        e = np.geomspace(lo, hi, nb + 1)
        gt, gw = np.polynomial.legendre.leggauss(q)
        ua, ub = np.log(e[:-1])[:, None], np.log(e[1:])[:, None]
        u = 0.5 * (ua + ub) + 0.5 * (ub - ua) * gt[None, :]
        x = np.exp(u).ravel()
        lam.append(x ** (-2 * alpha))
        c2.append(x ** (-2 * alpha - 2 * beta))
        w.append((0.5 * (ub - ua) * gw[None, :] * np.exp(u)).ravel())
        if v == math.inf:   # ∫_hi^∞ x^(−p) dx = hi^(1−p)/(p − 1)
            s1 = hi ** (1 - 2 * alpha) / (2 * alpha - 1)
            s2 = hi ** (1 - 4 * alpha) / (4 * alpha - 1)
            sc = hi ** (1 - 2 * alpha - 2 * beta) / (2 * alpha + 2 * beta - 1)
            lt = s2 / s1
            lam.append(np.array([lt]))
            w.append(np.array([s1 / lt]))
            c2.append(np.array([sc * lt / s1]))
    return np.concatenate(lam), np.concatenate(c2), np.concatenate(w)


def _newton(m, z, lam, wd):
    den = 1.0 + lam[None, :] * m[:, None]
    s1 = jnp.sum(wd * lam / den, axis=1)
    s2 = jnp.sum(wd * lam**2 / den**2, axis=1)
    f = 1.0 + m * (z - s1)
    mn = m - f / (z - s1 + m * s2)
    return jnp.where(jnp.imag(mn) > 0, mn, jnp.real(mn) + 0.1j * jnp.imag(m))


def _sums(m, z, lam, wd, c2w):
    den = 1.0 + lam[None, :] * m[:, None]
    s1 = jnp.sum(wd * lam / den, axis=1)
    # relative to the size of the terms (roundoff when |m| ~ 1/x is huge)
    resid = jnp.abs(1.0 + m * (z - s1)) / (1.0 + jnp.abs(m) * (jnp.abs(z) + jnp.abs(s1)))
    logs = jnp.sum(wd * jnp.log(den), axis=1)
    return resid, logs, jnp.sum(c2w / den, axis=1)


@functools.partial(jax.jit, static_argnames=("n_cont", "newton", "polish"))
def _solve_arcs(z, lam, wd, c2w, y_top, n_cont: int = 20, newton: int = 2, polish: int = 8):
    """`m(z)` (`Im m > 0`) by continuation from `Im z + y_top` down to `Im z`, in chunks,
    then `polish` Newton iterations at `z` itself (the continuation's last steps leave
    a relative residual up to ~1e-3 near the bottom edge of steep spectra, e.g. α = 1.5,
    d = 1e5; Newton then converges quadratically to round-off).

    Returns `(m, residual, (1/d) Σ w log(1 + λm), Σ w c²/(1 + λm))`.
    """
    fac = jnp.concatenate([jnp.exp(jnp.linspace(0.0, -46.0, n_cont)), jnp.zeros(1)])

    def one(zc):
        x, y = jnp.real(zc), jnp.imag(zc)

        def cont(m, f):
            zz = x + 1j * (y + y_top * f)
            for _ in range(newton):
                m = _newton(m, zz, lam, wd)
            return m, None

        m, _ = jax.lax.scan(cont, -1.0 / (x + 1j * (y + y_top)), fac)
        m = jax.lax.fori_loop(0, polish, lambda _, m: _newton(m, zc, lam, wd), m)
        return (m, *_sums(m, zc, lam, wd, c2w))

    n = z.shape[0]
    chunk = 64
    pad = (-n) % chunk
    zp = jnp.concatenate([z, jnp.full((pad,), z[-1])]).reshape(-1, chunk)
    out = jax.lax.map(one, zp)
    return tuple(a.reshape(-1)[:n] for a in out)


def _m_at_zero(lam, w, d):
    """Real root `m0 > 0` of `(1/d) Σ w λ m/(1 + λ m) = 1` (bisection in log m)."""
    lo, hi = -60.0, 60.0
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        m = math.exp(mid)
        if np.sum(w * lam * m / (1 + lam * m)) / d < 1:
            lo = mid
        else:
            hi = mid
    return math.exp(0.5 * (lo + hi))


def plrf_spectrum(v, d: int, alpha: float, beta: float, *, n_top: int = 64,
                  nodes_per_decade: int = 24, j_exact: int | None = None, ranks=None,
                  n_arc: int = 16, sub_ratio: float = 1.05, pts_per_decade: int = 100,
                  check: float = 1e-6) -> dict:
    """Deterministic-equivalent spectrum of `K = WᵀΛW` and the target's projections.

    **Arguments:** `v, d, alpha, beta` as `PowerLawRF`; `n_top`: modes resolved
    one by one; `nodes_per_decade`: rank bins per decade below them (graded toward
    the bottom edge); `j_exact`: the sums over `j ≤ j_exact` are exact, the rest
    a power-law quadrature; `ranks`: explicit increasing rank cuts in `[0, d]`
    (overrides the two previous); `n_arc`: Gauss–Legendre points per contour;
    `sub_ratio`: largest `hi/lo` of a sub-arc (the nodes); `pts_per_decade`: grid of
    the counting function used to place the cuts.

    **Returns:** a dict of numpy arrays over the bins, `counts` (eigenvalues per bin,
    summing to `d`), `eigenvalues` (mean eigenvalue in the bin), `energies`
    (`Σ μ_i D_i(0)` in the bin), `cuts` (the bin edges in eigenvalue), `nodes`
    (`(eigenvalue, count, energy)` of the sub-arcs, the problem's weighted nodes), and the
    floats `s_irr` (irreducible `‖(I − Π_A)c‖²`), `residual` (largest fixed-point
    residual) and `count_error` (`|Σ counts − d|/d`).

    **Raises:** `ValueError` if the fixed point did not converge (residual above
    `check`) or the bins do not add up to `d` eigenvalues.
    """
    v, d, alpha, beta = _check_args(v, d, alpha, beta, True)
    if j_exact is None:
        j_exact = max(256, 4 * int(math.sqrt(d)))
    lam, _, w = _j_nodes(v, d, alpha, beta, int(j_exact), 1.0)
    m0 = _m_at_zero(lam, w, d)
    x_bot = 0.5 / (d * m0)        # below the smallest eigenvalue: (1/d) Σ 1/μ_i = m(0)
    lam, c2, w = _j_nodes(v, d, alpha, beta, int(j_exact), 2.0 / x_bot)
    m0 = _m_at_zero(lam, w, d)
    lam_j, wd_j = jnp.asarray(lam), jnp.asarray(w / d)
    tr = float(np.sum(w * lam)) / d
    s_irr = float(np.sum(w * c2 / (1 + lam * m0)))
    x_top = 2.0 * (lam.max() + tr) * (1 + 4 / math.sqrt(d))
    # counting function on a log grid (z = x(1 + 1e-10 i): the Lorentz tails of the
    # smoothing shift the count by about d·1e-10/π)
    npts = int(math.ceil(math.log10(x_top / x_bot) * pts_per_decade))
    xs = np.geomspace(x_top, x_bot, npts)
    zs = jnp.asarray(xs * (1 + 1e-10j))
    m, _, logs, _ = _solve_arcs(zs, lam_j, wd_j, jnp.zeros_like(lam_j), 1e3 * x_top)
    g = -zs * m - jnp.log(m) + logs - 1.0
    n_above = np.maximum.accumulate(np.asarray(d + d / math.pi * jnp.imag(g)))
    n_above = n_above + 1e-9 * np.arange(npts)   # strictly increasing for interpolation
    if ranks is None:
        top = np.arange(0, min(n_top, d - 1) + 1, dtype=np.float64)
        r0 = max(top[-1], 1.0)
        nb = max(1, int(math.ceil(math.log10(max(d / r0, 1.0)) * nodes_per_decade)))
        mid = np.geomspace(r0, d, nb + 1)[1:-1]
        grade = d - (d - r0) * 0.5 ** np.arange(1, 40)
        grade = grade[d - grade >= 0.5]
        ranks = np.unique(np.concatenate([top, mid, grade, [d - 0.5]]))
    ranks = np.asarray(ranks, np.float64)
    if np.any(np.diff(ranks) <= 0) or ranks[0] < 0 or ranks[-1] > d:
        raise ValueError("`ranks` must be strictly increasing in [0, d]")
    # the cut eigenvalue of rank r: where the (decreasing) smoothed count crosses r
    def x_at(r):
        return np.interp(r, n_above, np.log(xs))

    xr = np.exp(0.5 * (x_at(ranks - 0.25) + x_at(ranks + 0.25)))  # a gap between spikes
    cuts = np.unique(np.concatenate([[x_top], xr[(ranks > 0) & (ranks < d)], [x_bot]]))[::-1]
    # each bin as sub-arcs with hi/lo <= sub_ratio (the integrands vary on the scale of x;
    # the sub-arcs are also the nodes: they resolve the spread of each isolated top eigenvalue)
    nsub = np.maximum(1, np.ceil(np.log(cuts[:-1] / cuts[1:]) / math.log(sub_ratio))).astype(int)
    owner = np.repeat(np.arange(nsub.size), nsub)
    frac = np.concatenate([np.arange(n) / n for n in nsub])
    hi = cuts[:-1][owner] * (cuts[1:][owner] / cuts[:-1][owner]) ** frac
    lo = cuts[:-1][owner] * (cuts[1:][owner] / cuts[:-1][owner]) ** (frac + 1.0 / nsub[owner])
    # contour integrals over the upper half circles
    t, wt = np.polynomial.legendre.leggauss(n_arc)
    th = 0.5 * math.pi * (t + 1)
    cen, rad = 0.5 * (hi + lo), 0.5 * (hi - lo)
    zeta = cen[:, None] + rad[:, None] * np.exp(1j * th[None, :])
    dz = 1j * rad[:, None] * np.exp(1j * th[None, :]) * (0.5 * math.pi * wt)[None, :]
    mz, res, _, sc = _solve_arcs(jnp.asarray(zeta.ravel()), lam_j, wd_j, jnp.asarray(w * c2),
                                 1e3 * x_top)
    mz = np.asarray(mz).reshape(zeta.shape)
    sc = np.asarray(sc).reshape(zeta.shape)
    res = float(np.max(np.asarray(res)))
    hz = (s_irr - sc) / zeta          # cᵀ(AAᵀ − ζ)⁻¹c without its atom at 0

    def integ(f):  # ∫_lo^hi Im f(x + i0) dx / π = −Im ∫_0^π f(ζ(θ)) ζ'(θ) dθ / π, per sub-arc
        return -np.sum(f * dz, axis=1).imag / math.pi

    sub_counts = d * integ(mz)
    sub_x = d * integ(zeta * mz)
    sub_e = integ(hz)
    count_error = abs(float(np.sum(sub_counts)) - d) / d
    if not (res < check):
        raise ValueError(f"the deterministic-equivalent fixed point did not converge "
                         f"(relative residual {res:.3g} > {check:g})")
    if count_error > 1e-4:
        raise ValueError(f"the deterministic-equivalent bins hold {np.sum(sub_counts):.6g} "
                         f"eigenvalues instead of d = {d} (relative error {count_error:.2g})")

    def agg(a):
        return np.bincount(owner, a, minlength=nsub.size)

    counts = np.clip(agg(sub_counts), 0.0, None)
    sub_counts = np.clip(sub_counts, 0.0, None)
    return {"counts": counts, "eigenvalues": agg(sub_x) / np.maximum(counts, 1e-300),
            "energies": np.clip(agg(sub_e), 0.0, None), "cuts": cuts, "s_irr": s_irr,
            "residual": res, "count_error": count_error,
            "nodes": (sub_x / np.maximum(sub_counts, 1e-300), sub_counts,
                      np.clip(sub_e, 0.0, None))}
