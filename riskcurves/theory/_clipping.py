"""Clipped SGD: drift/noise coefficients, the clipped-gain ratio, tuning.

Large-intrinsic-dimension limit (`tr K / λ_max → ∞`, see `docs/theory/clipping.md`):
`‖x‖² ≈ tr K`, so for batch 1 the clipped step is `x·h(r)` with
`h(r) = clamp(r, −c', c')`, `c' = c/√(tr K)`, `r = z − ε`, `z = xᵀΔ ~ N(0, s²)`,
`s² = 2P`. Per step, conditionally on `Δ` (Stein's lemma on `z`):

    E[u_iᵀ step]     = −η μ λ_i Δ_i,            μ = Pr(|r| < c')
    E[(u_iᵀ step)²]  = η² (λ_i ν + G λ_i² Δ_i²), ν = E[min(r², c'²)]
    G = 2 Σ_k w_k E_k[r² 1{|r| < c'}] / t_k²,   t_k² = s² + v_k

(`(w_k, v_k)` the Gaussian scale mixture of the noise; SGD limit `c' → ∞`:
`μ = 1`, `ν = 2P + σ²`, `G = 2`). Batch `B > 1` (the batch-mean gradient is
clipped; `‖g‖² ≈ tr K · Σ_b r_b² / B²`, i.e. the residual vector `r ∈ R^B` is
clipped at norm `C = c'B`): with `R = ‖r‖`,

    μ_B = Pr(R < C) + (1 − 1/B) E[(C/R) 1{R > C}]
    ν_B = E[min(R², C²)] / B²
    G_B = (E[R² min(R², C²)]/B² − E[r²] ν_B) / E[r²]²      (Gaussian noise)

in closed form through regularised incomplete gamma functions when
`R² / (2P + σ²) ~ χ²_B`, i.e. for Gaussian (single-component) noise only.
"""

from __future__ import annotations

import math
import warnings

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import erf, gammainc, gammaincc, gammaln

from ._noise_expectations import expected_clipped_square, mixture, prob_abs_residual_below

__all__ = [
    "median_abs_noise",
    "clip_coefficients",
    "prob_not_clipped",
    "clipped_gain",
    "clipped_gain_ratio",
    "best_threshold",
    "intrinsic_dimension",
    "check_intrinsic_dimension",
    "MIN_INTRINSIC_DIMENSION",
]

_TINY = 1e-300
MIN_INTRINSIC_DIMENSION = 50.0


# ---- coefficients of the ODE ----------------------------------------------------
def _finite_variance(noise):
    """`E[ε²]` (a float, an array when the noise scale is traced), `inf` if infinite."""
    try:
        v = noise.variance
    except ValueError:
        return math.inf
    return jnp.asarray(v, jnp.float64) if isinstance(v, jax.Array) else float(v)


def _single_component(noise) -> bool:
    w, _ = noise.scale_mixture()
    return np.size(w) == 1


def _check_batch_noise(noise, batch: int):
    # the noise law first: a traced `batch` (a sweep) is fine with one component
    if not _single_component(noise) and batch > 1:
        raise ValueError(
            f"clipped SGD theory with `batch`={batch} > 1 needs Gaussian (or no) label noise: "
            f"the law of the clipped batch norm Σ_b r_b² has no closed form for "
            f"{type(noise).__name__}; use batch=1 (exact for every noise law)"
        )


def _g_batch1(noise, s2, c):
    w, v = mixture(noise)
    t2 = jnp.maximum(jnp.asarray(s2)[..., None] + v, _TINY)
    u = jnp.asarray(c)[..., None] / jnp.sqrt(t2)
    e = erf(u / jnp.sqrt(2.0))
    pdf = jnp.exp(-0.5 * u**2) / jnp.sqrt(2 * jnp.pi)
    return 2 * jnp.sum(w * (e - 2 * u * pdf), axis=-1)


def _chi_batch(noise, s2, c, B: int):
    """`(μ_B, ν_B, G_B, Pr(R < C))` for single-component noise, `R = t χ_B`."""
    _, v = mixture(noise)
    t2 = jnp.maximum(jnp.asarray(s2) + v[0], _TINY)
    a = c * B / jnp.sqrt(t2)
    x = 0.5 * a**2
    h = 0.5 * B
    p_in = gammainc(h, x)
    mu = p_in
    if B > 1:
        ratio = jnp.exp(gammaln(0.5 * (B - 1)) - gammaln(h)) / jnp.sqrt(2.0)
        mu = mu + (1 - 1 / B) * a * ratio * gammaincc(0.5 * (B - 1), x)
    nu = t2 * (B * gammainc(h + 1, x) + a**2 * gammaincc(h, x)) / B**2
    g = (B * (B + 2) * gammainc(h + 2, x) + a**2 * B * gammaincc(h + 1, x)
         - B * gammainc(h + 1, x) - a**2 * gammaincc(h, x)) / B**2
    return mu, nu, g, p_in


def clip_coefficients(noise, s2, c, batch: int = 1):
    """`(μ, ν, G)` of the clipped-SGD ODE at `s² = 2P` and threshold `c' = c/√(tr K)`.

    `c = inf` gives the SGD limit `(1, (2P + σ²)/B, 1 + 1/B)`. JAX-traceable in
    `s2` and `c` (the noise law and `batch` are static). See the module docstring.
    For `batch > 1` with a non-Gaussian noise law only `c = inf` is available
    (finite `c` gives NaN; the ODE builder raises `ValueError` beforehand).
    """
    s2, c = jnp.broadcast_arrays(jnp.asarray(s2, jnp.float64), jnp.asarray(c, jnp.float64))
    inf = jnp.isinf(c)
    cs = jnp.where(inf, 1.0, c)
    if batch == 1:  # the scale-mixture sums run over a trailing axis
        mu = prob_abs_residual_below(noise, s2, cs[..., None])
        nu = expected_clipped_square(noise, s2, cs[..., None])
        g = _g_batch1(noise, s2, cs)
    elif _single_component(noise):
        mu, nu, g, _ = _chi_batch(noise, s2, cs, batch)
    else:  # only the SGD limit c = inf is available (the caller checks)
        mu = nu = g = jnp.full(jnp.broadcast_shapes(s2.shape, c.shape), jnp.nan)
    var = _finite_variance(noise)
    return (jnp.where(inf, 1.0, mu), jnp.where(inf, (s2 + var) / batch, nu),
            jnp.where(inf, 1.0 + 1.0 / batch, g))


def prob_not_clipped(noise, s2, c, batch: int = 1):
    """Probability that a step is not clipped, `Pr(‖g‖ < c)` (= μ for batch 1)."""
    _check_batch_noise(noise, batch)
    s2, c = jnp.broadcast_arrays(jnp.asarray(s2, jnp.float64), jnp.asarray(c, jnp.float64))
    cs = jnp.where(jnp.isinf(c), 1.0, c)
    if batch == 1:
        p = prob_abs_residual_below(noise, s2, cs[..., None])
    else:
        p = _chi_batch(noise, s2, cs, batch)[3]
    return jnp.where(jnp.isinf(c), 1.0, p)


# ---- clipped-gain ratio -----------------------------------------------------------
def clipped_gain(noise, risk, clip_eff, batch: int = 1):
    """Local gain `μ²/ν` of clipping at excess risk `P` (`= B/(2P + σ²)` for SGD).

    Maximising the one-step decrease `2ημλP − η²λ² ν (…)` over η gives a
    progress ∝ μ²/ν; this is finite even when the noise has infinite variance.
    Arguments broadcast (`risk`, `clip_eff` = `c' = c/√(tr K)`).
    """
    mu, nu, _ = clip_coefficients(noise, 2 * jnp.asarray(risk, jnp.float64), clip_eff, batch)
    return mu**2 / jnp.maximum(nu, _TINY)


def clipped_gain_ratio(noise, risk, clip_eff, batch: int = 1):
    """`CGR(P, c') = μ²(2P + σ²)/(B ν)`: clipping's best local progress over SGD's.

    Clipping can beat SGD at risk `P` only where `CGR > 1`. For Gaussian noise
    `CGR ≤ 1` (Cauchy–Schwarz after Stein: `μ = E[r h(r)]/E[r²]`). For noise of
    infinite variance SGD makes no progress (`2P + σ² = ∞`) and `CGR = ∞`:
    use `clipped_gain` (the absolute gain `μ²/ν`) instead.
    """
    var = _finite_variance(noise)
    P = jnp.asarray(risk, jnp.float64)
    return clipped_gain(noise, P, clip_eff, batch) * (2 * P + var) / batch


def best_threshold(noise, risk, *, batch: int = 1, c_min: float | None = None,
                   c_max: float | None = None, n_grid: int = 400):
    """The threshold `c'*(P)` maximising `CGR(P, c')`, and `CGR*(P)`, per risk level.

    Grid search over `log c'` in `[c_min, c_max]` (default: 1e-3 … 1e3 times
    `√(2P + m²)`, `m` the median of `|ε|`) refined by a parabola through the best
    three points. Returns `(c_star, cgr_star)` arrays shaped like `risk`;
    `c_star = inf` where no finite threshold beats no clipping (`CGR* = 1`), e.g.
    for Gaussian noise.
    """
    P = np.atleast_1d(np.asarray(risk, np.float64))
    if np.any(P < 0) or not np.all(np.isfinite(P)):
        raise ValueError("`risk` must be finite and >= 0")
    m = median_abs_noise(noise)
    scale = np.sqrt(2 * P + m**2 + _TINY)
    lo = np.full_like(P, 1e-3) * scale if c_min is None else np.full_like(P, c_min)
    hi = np.full_like(P, 1e3) * scale if c_max is None else np.full_like(P, c_max)
    if np.any(lo <= 0) or np.any(hi <= lo):
        raise ValueError(f"need 0 < c_min < c_max, got {c_min!r}, {c_max!r}")
    grid = np.exp(np.linspace(np.log(lo), np.log(hi), int(n_grid), axis=-1))  # (n, g)
    gain = np.asarray(jax.jit(lambda p, c: clipped_gain(noise, p, c, batch))(
        jnp.asarray(P[:, None]), jnp.asarray(grid)))
    j = np.clip(np.argmax(gain, axis=-1), 1, grid.shape[1] - 2)
    rows = np.arange(P.size)
    y0, y1, y2 = gain[rows, j - 1], gain[rows, j], gain[rows, j + 1]
    den = y0 - 2 * y1 + y2
    shift = np.where(den < 0, 0.5 * (y0 - y2) / np.where(den < 0, den, -1.0), 0.0)
    step = np.log(grid[rows, 1]) - np.log(grid[rows, 0])
    c_star = np.exp(np.log(grid[rows, j]) + np.clip(shift, -1, 1) * step)
    g_star = np.asarray(clipped_gain(noise, P, c_star, batch))
    var = _finite_variance(noise)
    sgd_gain = batch / (2 * P + var)
    no_clip = g_star <= sgd_gain * (1 + 1e-12)
    c_star = np.where(no_clip, np.inf, c_star)
    cgr = np.where(no_clip, 1.0, g_star * (2 * P + var) / batch)
    shape = np.shape(risk)
    return c_star.reshape(shape), cgr.reshape(shape)


def median_abs_noise(noise) -> float:
    """Median of `|ε|` (0 for noiseless): `Pr(|ε| < m) = ½` on a log grid, interpolated."""
    _, v = noise.scale_mixture()
    if np.all(np.asarray(v) == 0):
        return 0.0
    top = float(np.sqrt(np.max(v)))
    grid = np.geomspace(top * 1e-12, top * 10, 4000)
    cdf = np.asarray(prob_abs_residual_below(noise, 0.0, jnp.asarray(grid)[:, None]))
    return float(np.exp(np.interp(0.5, cdf, np.log(grid))))


# ---- intrinsic dimension ---------------------------------------------------------
def intrinsic_dimension(problem) -> float:
    """`tr K / λ_max`: the clipping theory is a limit in which this is large."""
    lam_max = float(np.max(problem.eigenvalues))
    return math.inf if lam_max <= 0 else problem.trace / lam_max


def check_intrinsic_dimension(problem, minimum: float = MIN_INTRINSIC_DIMENSION,
                              stacklevel: int = 3) -> float:
    """Warn (`UserWarning`) when `tr K / λ_max < minimum`; returns the ratio."""
    r = intrinsic_dimension(problem)
    if r < minimum:
        warnings.warn(
            f"clipped-SGD theory assumes a large intrinsic dimension tr K / λ_max, but "
            f"{problem.label} has {r:.3g} < {minimum:g}: ‖x‖² fluctuates around tr K and the "
            f"top modes correlate with it, so expect O(λ_max / tr K) errors "
            f"(see docs/theory/clipping.md)",
            UserWarning,
            stacklevel=stacklevel,
        )
    return r


# ---- best clipped run vs best SGD run --------------------------------------------
