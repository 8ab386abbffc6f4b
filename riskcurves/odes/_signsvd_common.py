"""Shared pieces of the SignSVD, general-`S` and Muon row-energy ODEs.

- `projector_kappa`, `noise_mode`: the exact projector noise (`Σ_i noise_i = rank G`).
- `gamma`: the 2×2 leave-one-out coefficients `Γ` of the deterministic equivalent.
- `log_nodes`: the quadrature grid of the polar integral `(2/π)∫₀^∞ (t² + GGᵀ)⁻¹G dt`.
- `check_spectrum`, `check_matrix`: argument validation.
- `leaf_opt`: the optimizer config a theory holds; `η(k)` is read through its `lr_at`.
- `NS_COEFFS`, `ns_map`: Muon's Newton–Schulz polynomial on singular values.
"""

from __future__ import annotations

import equinox as eqx
import jax.numpy as jnp
import numpy as np

from ..optimizers import concrete_batch, numeric

__all__ = ["projector_kappa", "noise_mode", "gamma", "log_nodes", "check_spectrum",
           "check_matrix", "RESIDUAL_TOL", "leaf_opt", "NS_COEFFS", "ns_map"]

NS_COEFFS = (3.4445, -4.775, 2.0315)  # optax.contrib.muon's default quintic coefficients


def ns_map(x, ns_steps: int = 5, coeffs=NS_COEFFS):
    """`f(x)`: the scalar map of `ns_steps` Newton–Schulz steps on singular values
    (`x ↦ a x + b x³ + c x⁵`, applied elementwise; NumPy or JAX arrays)."""
    a, b, c = coeffs
    for _ in range(int(ns_steps)):
        x = a * x + b * x**3 + c * x**5
    return x

# Newton residual (max relative residual of the three scalars over the quadrature
# nodes) above which a fixed point counts as failed (`AbstractTheory.residual`).
RESIDUAL_TOL = 1e-5


def projector_kappa(lam, w, B: float) -> float:
    """`κ0 > 0` solving `Σ_j w_j λ_j/(λ_j + κ0) = B` (needs `B < #{λ_j > 0}`)."""
    lam, w = np.asarray(lam, np.float64), np.asarray(w, np.float64)
    npos = float(np.sum(w[lam > 0]))
    if not B < npos:
        raise ValueError(f"`batch`={B} must be < the number of nonzero eigenvalues ({npos:g})")
    lo, hi = np.log(lam[lam > 0].min() * 1e-12), np.log(lam.max() * 1e12 * max(npos, 1.0))
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        f = np.sum(w * lam / (lam + np.exp(mid)))
        lo, hi = (mid, hi) if f > B else (lo, mid)
    return float(np.exp(0.5 * (lo + hi)))


def noise_mode(lam, w, d_eff, m, B):
    """`("ones"|"projector"|"equivalent", fixed noise or None)` (exact regimes first)."""
    if B >= d_eff and m >= d_eff:
        return "ones", np.ones_like(lam)
    if B < d_eff and m >= B:
        k0 = projector_kappa(lam, w, B)
        return "projector", lam / (lam + k0)
    return "equivalent", None


def gamma(x, classes=None):
    """`(Γ11, Γ12, Γ22)`. `classes = (mult, p)`: sample-weight classes (`mult_j` samples of
    relative weight `p_j`, `Σ mult p = B`): `Γ = (1/B) Σ_j mult_j p_j [−p_j x22,
    1 + p_j x12, −p_j x11]/det_j`, `det_j = (1 + p_j x12)² − p_j² x11 x22` (Muon
    momentum, `riskcurves/odes/_muon.py`); `None`: equal weights (`p = 1`)."""
    x11, x12, x22 = x[0], x[1], x[2]
    if classes is None:
        det = (1 + x12) ** 2 - x11 * x22
        return -x22 / det, (1 + x12) / det, -x11 / det
    mult, p = classes
    det = (1 + p * x12) ** 2 - p**2 * x11 * x22
    q = mult * p / (det * jnp.sum(mult * p))
    return (jnp.sum(q * -p) * x22, jnp.sum(q * (1 + p * x12)), jnp.sum(q * -p) * x11)


def log_nodes(scale, n_nodes: int):
    """Gauss–Legendre nodes in `log t` on `[1e-5, 1e2]·scale`, descending `t`, and
    their weights for `∫ f(t) dt` (the polar-integral grid; `scale` ≈ `‖G‖`)."""
    xg, wg = np.polynomial.legendre.leggauss(n_nodes)
    lo, hi = jnp.log(scale * 1e-5), jnp.log(scale * 1e2)
    u = 0.5 * (hi - lo) * jnp.asarray(xg[::-1]) + 0.5 * (hi + lo)
    t = jnp.exp(u)
    return t, 0.5 * (hi - lo) * jnp.asarray(wg[::-1]) * t


def to_z(x):
    """`(log(−x11), x12, log x22)`: the continuation variable (`x11 < 0 < x22` on the
    physical branch; `x12` may cross 0)."""
    return jnp.stack([jnp.log(jnp.maximum(-x[0], 1e-300)), x[1],
                      jnp.log(jnp.maximum(x[2], 1e-300))])


def from_z(z):
    return jnp.stack([-jnp.exp(z[0]), z[1], jnp.exp(z[2])])


def check_spectrum(lam, D0, weights, m):
    """float64 `(λ, D0, w)` validated as 1-D of equal shape, and `m >= 1`."""
    lam = np.asarray(lam, np.float64)
    D0 = np.asarray(D0, np.float64)
    w = np.ones_like(lam) if weights is None else np.asarray(weights, np.float64)
    if not (lam.shape == D0.shape == w.shape) or lam.ndim != 1:
        raise ValueError(f"`lam`, `D0`, `weights` must be 1-D of equal shape, got "
                         f"{lam.shape}, {D0.shape}, {w.shape}")
    if not m >= 1:
        raise ValueError(f"`m` must be >= 1, got {m}")
    return lam, D0, w


def check_matrix(problem, opt):
    if not hasattr(problem, "m"):
        raise ValueError(f"{type(opt).__name__} needs a matrix problem (rc.MatrixProblem), "
                         f"got {type(problem).__name__}")
    concrete_batch(opt.batch, f"the {type(opt).__name__} theory (its fixed point, or the "
                   "shape of its batch draws)", "loop over the batch values")


def leaf_opt(opt):
    """The optimizer config with its numbers as float64 leaves: the schedule's through
    `numeric`, and every number field of the config itself (a constant `lr`, the
    batch size, ...) as a float64 array. A theory holds it and reads
    `η(k) = opt.lr_at(k)` (its batch size and counts live in the theory's own
    fields), so `eqx.tree_at(lambda t: t.opt.lr, theory, η)` and `jax.vmap` over `η`
    sweep the step size, and no number in the config triggers a recompilation."""
    opt = numeric(opt)
    names = [f for f, fld in opt.__dataclass_fields__.items()
             if not fld.metadata.get("static", False)
             and isinstance(getattr(opt, f), (int, float, np.integer, np.floating))
             and not isinstance(getattr(opt, f), (bool, np.bool_))]
    return eqx.tree_at(lambda o: [getattr(o, f) for f in names], opt,
                       [jnp.asarray(getattr(opt, f), jnp.float64) for f in names])
