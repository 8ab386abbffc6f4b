"""Spectral compression: a diagonal spectrum as a few hundred weighted nodes.

Every diagonal-K ODE of the library couples its modes only through a few
scalars (the risk `P = ½ Σ_i w_i λ_i D_i`, `b²`, …) and evolves each mode by
rules that depend on the mode only through `(λ_i, D_i(0))`. The risk is then a
sum over modes of a function that is smooth in the mode index, and the sum can
be replaced by a quadrature: nodes `n` with an eigenvalue `λ_n`, an initial
energy `D_n(0)` and a weight `w_n` (the number of modes the node stands for),
`P = ½ Σ_n w_n λ_n D_n`. The compressed problem is an ordinary `Problem` with
`weights`; `solve_ode` solves it at a cost of O(nodes) per step; it cannot be
simulated.

**Power laws** (`power_law`, `PowerLaw(..., compressed=True)`), `λ_j = j^(−α)`,
`D_j(0) = j^(−β)`, `j = 1..d`:

1. the top `m` modes `j = 1..m` are kept exactly (weight 1);
2. the remaining integer ranks are a midpoint sum,
   `Σ_{j=m+1}^{d} f(j) ≈ ∫_{m+½}^{d+½} f(x) dx` (error `f''/24` per mode,
   relative `~ p(p+1)/(24 m²)` for `f ~ x^(−p)`), split into bins of equal width
   in `u = ln x` (`bins_per_decade` per decade; for finite `d` the last bin is
   halved repeatedly towards `d` until it holds about one mode) with `q = 4`
   Gauss–Legendre nodes each: node `x_n`, `λ_n = x_n^(−α)`, `D_n(0) = x_n^(−β)`,
   `w_n = ω_n x_n`; below rank 4096 the bins hold whole integers and use
   discrete Gauss rules for the counting measure instead;
3. `d = inf` (continuum, needs `α > 1` so that `tr K < ∞`, and `α + β > 1` so
   that `P(0) < ∞`): bins up to `J = max(4m, (1e3·horizon)^(1/α))`, then the tail
   `[J, ∞)` in `v = (x/J)^(−α) ∈ (0, 1]`, where
   `λ D(0) dx = (J^(1−α−β)/α) v^γ dv`, `γ = (β − 1)/α > −1`: `q_tail`
   Gauss–Jacobi nodes for the weight `v^γ`, `w_n = ω_n (J/α) v_n^(−1/α−1−γ)`.
   Modes beyond `J` move little before `k·η ≈ horizon`, so their energy is a
   smooth (polynomial-like) function of `v` and the rule is accurate.

**General diagonal problems** (`compress(problem)`): modes with identical
`(λ, D(0))` are merged exactly (flat and two-level spectra become 1–2 nodes);
otherwise modes are sorted by `λ`, the top `m` and the bottom `m/4` kept exactly,
and the rest grouped into log-spaced rank bins with `q = 4` Gauss nodes each for
the discrete count measure in `ln λ` and matching energies (details in
`_group_nodes`).

**Error control.** The node count is not guessed: level `L` has
`m = 32·2^L` exact modes and `2·2^L` bins per decade (and `8·2^min(L,3)` tail
nodes for `d = inf`); the level is raised until two consecutive levels agree to
`rtol` (relative, max over the grid) on a `measure(problem)` array when one is
given (`riskcurves.studies.compress_on_curve` uses an optimizer's ODE risk
curve), or else on the two SGD response kernels that the risk is made of,
`K₁(c) = ½ Σ w λ D(0) e^(−cλ)` and `K₂(c) = Σ w λ² e^(−cλ)`, for `c` on a log
grid up to `horizon` (in units of `ηk`). The finer level is returned.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.special import roots_jacobi

from .problems import Problem

__all__ = ["compress", "power_law", "power_law_nodes"]

_M0 = 32           # exact top modes at level 0
_BPD = 2           # bins per decade at level 0
_Q = 4             # Gauss–Legendre nodes per bin
_Q_TAIL = 8        # Gauss–Jacobi nodes in the d = inf tail (level 0)
_MAX_LEVEL = 8
_N_DISC = 4096     # integer ranks below this use discrete Gauss rules
_EDGE = 10.0       # kernel check up to c·λ_min = _EDGE (finite d)


def _check_rtol(rtol) -> float:
    rtol = float(rtol)
    if not (math.isfinite(rtol) and 0 < rtol < 1):
        raise ValueError(f"`rtol` must be in (0, 1), got {rtol!r}")
    return rtol


def _check_horizon(horizon) -> float:
    horizon = float(horizon)
    if not (math.isfinite(horizon) and horizon >= 1):
        raise ValueError(f"`horizon` must be a finite number >= 1, got {horizon!r}")
    return horizon


def _dim_or_inf(d):
    if isinstance(d, float) and math.isinf(d) and d > 0:
        return math.inf
    if isinstance(d, bool) or not (isinstance(d, (int, np.integer))
                                   or (isinstance(d, float) and d.is_integer())):
        raise ValueError(f"`d` must be an integer >= 1 or float('inf'), got {d!r}")
    if int(d) < 1:
        raise ValueError(f"`d` must be an integer >= 1 or float('inf'), got {d!r}")
    return int(d)


# ---- power laws --------------------------------------------------------------
def _discrete_gauss(j0: int, j1: int, q: int):
    """`q`-point Gauss rule in `t = ln j` for the counting measure on `j0..j1`.

    Stieltjes procedure on the points, then Golub–Welsch; exact for
    `Σ_j P(ln j)` with `P` a polynomial of degree `< 2q`.
    """
    t = np.log(np.arange(j0, j1 + 1, dtype=np.float64))
    n = t.size
    if n <= q:
        return t, np.ones(n)
    a, b = np.zeros(q), np.zeros(q)
    p_prev, p = np.zeros(n), np.ones(n)
    nrm_prev = 1.0
    for k in range(q):
        nrm = p @ p
        a[k] = (t * p) @ p / nrm
        if k > 0:
            b[k] = nrm / nrm_prev
        p_next = (t - a[k]) * p - (b[k] * p_prev if k > 0 else 0.0)
        p_prev, p, nrm_prev = p, p_next, nrm
        s = np.sqrt(p_prev @ p_prev)   # rescale to avoid overflow; ratios unchanged
        p, p_prev, nrm_prev = p / s, p_prev / s, nrm_prev / s**2
    J = np.diag(a) + np.diag(np.sqrt(b[1:]), 1) + np.diag(np.sqrt(b[1:]), -1)
    nodes, vecs = np.linalg.eigh(J)
    return nodes, n * vecs[0] ** 2


def _rank_edges(lo: float, hi: float, bpd: int, grade: bool):
    """Bin edges in `x` on `[lo, hi]`: log-spaced, graded (halving) towards `hi`."""
    u0, u1 = math.log(lo), math.log(hi)
    nbins = max(1, math.ceil((u1 - u0) / math.log(10) * bpd))
    edges = list(np.linspace(u0, u1, nbins + 1))
    if grade:
        h = edges[-1] - edges[-2]
        last = edges.pop()
        while h > 1.0 / hi:          # down to about one mode
            h *= 0.5
            edges.append(last - h)
        edges.append(last)
        edges = sorted(edges)
    return np.exp(np.asarray(edges))


def power_law_nodes(d, alpha: float, beta: float, level: int = 0, horizon: float = 1e9):
    """Nodes `(λ, D0, w)` of the power-law quadrature at refinement `level`.

    See the module docstring. `d` is an int or `math.inf`.
    """
    m = _M0 * 2**level
    bpd = _BPD * 2**level
    ts, ws = [], []
    n_exact = m if d == math.inf else min(m, d)
    ts.append(np.log(np.arange(1, n_exact + 1, dtype=np.float64)))
    ws.append(np.ones(n_exact))
    if d == math.inf or d > n_exact:
        lo = n_exact + 0.5
        hi = max(4.0 * m, (1e3 * horizon) ** (1.0 / alpha)) if d == math.inf else d + 0.5
        edges = _rank_edges(lo, hi, bpd, grade=d != math.inf)
        # half-integer edges below _N_DISC: bins hold whole integers
        e_int = np.where(edges < _N_DISC, np.floor(edges) + 0.5, edges)
        e_int[0], e_int[-1] = lo, hi
        e_int = np.unique(e_int)
        gl_t, gl_w = np.polynomial.legendre.leggauss(_Q)
        for a, b in zip(e_int[:-1], e_int[1:]):
            if b <= _N_DISC:
                t, w = _discrete_gauss(int(a + 0.5), int(b - 0.5), _Q)
            else:
                ua, ub = math.log(a), math.log(b)
                t = 0.5 * (ua + ub) + 0.5 * (ub - ua) * gl_t
                w = 0.5 * (ub - ua) * gl_w * np.exp(t)
            ts.append(t)
            ws.append(w)
        if d == math.inf:
            J = hi
            gamma = (beta - 1.0) / alpha
            qt = _Q_TAIL * 2 ** min(level, 3)
            xs, wj = roots_jacobi(qt, 0.0, gamma)
            v = 0.5 * (1.0 + xs)
            om_v = wj * 2.0 ** (-gamma - 1.0)
            ts.append(np.log(J) - np.log(v) / alpha)
            ws.append(om_v * (J / alpha) * v ** (-1.0 / alpha - 1.0 - gamma))
    t = np.concatenate(ts)
    w = np.concatenate(ws)
    return np.exp(-alpha * t), np.exp(-beta * t), w


def power_law(d, alpha: float, beta: float, noise=None, *, rtol: float = 1e-6,
              horizon: float = 1e9, measure=None, level: int | None = None) -> Problem:
    """Compressed power law `λ_j = j^(−α)`, `D_j(0) = j^(−β)`, `j = 1..d`.

    Built from `(d, α, β)` directly: nothing of size `d` is allocated, so
    `d = 10**9` or `d = float('inf')` (continuum) cost a few hundred nodes.

    **Arguments:**

    - `d`: dimension, an integer `>= 1` or `float('inf')`.
    - `alpha`, `beta`: exponents (`d = inf` needs `alpha > 1` and `alpha + beta > 1`).
    - `noise`: label-noise law.
    - `rtol`: target relative accuracy of the risk curve (error control in the
      module docstring).
    - `horizon`: largest `η·k` the nodes must resolve (d = inf tail, kernel check).
    - `measure`: optional `problem -> array`; levels are compared on it instead
      of the SGD kernels (`riskcurves.studies.compress_on_curve` passes an
      optimizer's ODE risk curve).
    - `level`: force a refinement level (no error control).

    **Returns:** a `Problem` with `weights` summing to `d` (finite `d`; for `d = inf`
    the weights sum to a large finite number without meaning); the level is in
    `problem.label`.
    """
    d = _dim_or_inf(d)
    alpha, beta = float(alpha), float(beta)
    if not (math.isfinite(alpha) and alpha > 0):
        raise ValueError(f"`alpha` must be finite and > 0, got {alpha}")
    if not math.isfinite(beta):
        raise ValueError(f"`beta` must be finite, got {beta}")
    if d == math.inf and not (alpha > 1 and alpha + beta > 1):
        raise ValueError(
            f"d=inf needs alpha > 1 (finite trace of K) and alpha + beta > 1 (finite initial "
            f"risk); got alpha={alpha}, beta={beta}")
    rtol = _check_rtol(rtol)
    horizon = _check_horizon(horizon)
    tag = "inf" if d == math.inf else str(d)

    def build(L):
        lam, e0, w = power_law_nodes(d, alpha, beta, L, horizon)
        return Problem(lam, e0, noise, weights=w,
                       label=f"powerlaw(d={tag},a={alpha:g},b={beta:g},compressed L{L})")

    if level is not None:
        return build(int(level))
    return _refine(build, rtol, horizon, measure)


# ---- general diagonal problems ------------------------------------------------
def _merge_identical(lam, e0, w):
    pairs = np.stack([lam, e0], axis=1)
    uniq, inv = np.unique(pairs, axis=0, return_inverse=True)
    inv = np.asarray(inv).ravel()
    ww = np.bincount(inv, weights=w, minlength=uniq.shape[0])
    return uniq[:, 0], uniq[:, 1], ww


def _weighted_gauss(t, w, q):
    """`q`-point Gauss rule for the discrete measure `Σ w_i δ(t_i)` (Stieltjes + Golub–Welsch)."""
    n = t.size
    if n <= q:
        return t, w, np.eye(n)
    tc = t - t.mean()
    a, b = np.zeros(q), np.zeros(q)
    p_prev, p, nrm_prev = np.zeros(n), np.ones(n), 1.0
    for k in range(q):
        nrm = (w * p) @ p
        if nrm <= 0 or not np.isfinite(nrm):
            q = k
            break
        a[k] = (w * tc * p) @ p / nrm
        b[k] = nrm / nrm_prev if k > 0 else 0.0
        p_next = (tc - a[k]) * p - (b[k] * p_prev if k > 0 else 0.0)
        s = math.sqrt(nrm)
        p_prev, p, nrm_prev = p / s, p_next / s, nrm / s**2
    a, b = a[:q], b[:q]
    J = np.diag(a) + np.diag(np.sqrt(b[1:]), 1) + np.diag(np.sqrt(b[1:]), -1)
    nodes, vecs = np.linalg.eigh(J)
    weights = w.sum() * vecs[0] ** 2
    # Lagrange basis at the nodes, evaluated at the points: (q, n)
    ell = np.ones((q, n))
    for i in range(q):
        for k in range(q):
            if k != i:
                ell[i] *= (tc - nodes[k]) / (nodes[i] - nodes[k])
    return nodes + t.mean(), weights, ell


def _group_nodes(lam, e0, w, level: int):
    """Sorted (desc λ) modes -> exact top `m`, then log-rank bins with Gauss nodes in ln λ.

    In each bin: `_Q` Gauss nodes for the count measure `Σ w_i δ(ln λ_i)` (weights
    `w_n`), and energies `D_n(0) = e_n / w_n` from the interpolatory weights `e_n`
    of the energy measure `Σ w_i D_i(0) δ(ln λ_i)` at the same nodes; a bin whose
    `e_n` are not all positive (rough `D(0)`) falls back to `_Q` rank groups
    represented by their means (`tr K` and `P(0)` exact).
    """
    m = _M0 * 2**level
    bpd = _BPD * 2**level
    n = lam.size
    if n <= m:
        return lam, e0, w
    pos = lam > 0
    lam0 = (lam[~pos], e0[~pos], w[~pos])
    lam, e0, w = lam[pos], e0[pos], w[pos]
    n = lam.size
    mb = min(m // 4, n - m)                  # the smallest eigenvalues, exact too
    out = [(lam[:m], e0[:m], w[:m]), (lam[n - mb:], e0[n - mb:], w[n - mb:])]
    n -= mb
    if n > m:
        nb = max(1, math.ceil(math.log10(n / m) * bpd))
        edges = np.unique(np.round(np.geomspace(m, n, nb + 1)).astype(np.int64))
        for i0, i1 in zip(edges[:-1], edges[1:]):
            t, ww, ee = np.log(lam[i0:i1]), w[i0:i1], e0[i0:i1]
            nodes, wq, ell = _weighted_gauss(t, ww, _Q)
            eq = ell @ (ww * ee)
            if np.all(eq > 0) and np.all(wq > 0):
                out.append((np.exp(nodes), eq / wq, wq))
                continue
            g = np.array_split(np.arange(t.size), min(_Q, t.size))
            W = np.array([ww[s].sum() for s in g])
            L = np.array([(ww[s] * lam[i0:i1][s]).sum() for s in g]) / W
            E = np.array([(ww[s] * lam[i0:i1][s] * ee[s]).sum() for s in g]) / (W * L)
            out.append((L, E, W))
    if lam0[0].size:
        out.append((np.zeros(1), np.array([np.sum(lam0[2] * lam0[1]) / lam0[2].sum()]),
                    np.array([lam0[2].sum()])))
    return tuple(np.concatenate(x) for x in zip(*out))


def compress(problem: Problem, rtol: float = 1e-6, *, horizon: float = 1e9, measure=None,
             level: int | None = None) -> Problem:
    """A compressed copy of a diagonal `problem` (see the module docstring).

    **Arguments:**

    - `problem`: a `Problem` with diagonal `K` (`eigenvectors is None`).
    - `rtol`: target relative accuracy of the risk curve.
    - `horizon`: largest `η·k` resolved by the kernel check.
    - `measure`: optional `problem -> array` compared between levels instead of
      the SGD kernels (`riskcurves.studies.compress_on_curve` passes an
      optimizer's ODE risk curve).
    - `level`: force a refinement level (no error control).

    **Returns:** a `Problem` with `weights` summing to `problem.d`. Problems whose
    distinct `(λ, D(0))` pairs are few are compressed exactly.

    **Raises:** `ValueError` for a rotated (non-diagonal) problem.
    """
    if not isinstance(problem, Problem):
        raise ValueError(f"`problem` must be a riskcurves Problem, got {type(problem).__name__}")
    if not problem.is_diagonal:
        raise ValueError("`problem` must have a diagonal K (eigenvectors=None) to be compressed; "
                         "the rotation does not change the ODE of rotation-invariant optimizers, "
                         "so compress the unrotated problem")
    rtol = _check_rtol(rtol)
    horizon = _check_horizon(horizon)
    lam, e0, w = _merge_identical(np.asarray(problem.eigenvalues),
                                  np.asarray(problem.initial_energies),
                                  np.asarray(problem.mode_weights, dtype=np.float64))
    label = problem.label + "-compressed"
    if lam.size <= _M0:
        return Problem(lam, e0, problem.noise, weights=w, label=label + "(exact)")
    order = np.lexsort((-e0, -lam))
    lam, e0, w = lam[order], e0[order], w[order]

    def build(L):
        a, b, c = _group_nodes(lam, e0, w, L)
        return Problem(a, b, problem.noise, weights=c, label=f"{label} L{L}")

    if level is not None:
        return build(int(level))
    return _refine(build, rtol, horizon, measure, n_full=lam.size,
                   full=lambda: Problem(lam, e0, problem.noise, weights=w, label=label))


# ---- error control -----------------------------------------------------------
def _kernels(p: Problem, cs: np.ndarray) -> np.ndarray:
    lam, e0, w = p.eigenvalues, p.initial_energies, p.mode_weights
    E = np.exp(-np.outer(cs, lam))
    k1 = 0.5 * E @ (w * lam * e0)
    k2 = E @ (w * lam**2)
    return np.concatenate([k1, k2])


def _refine(build, rtol, horizon, measure_fn=None, n_full=None, full=None):
    if measure_fn is not None and not callable(measure_fn):
        raise ValueError(f"`measure` must be None or a callable problem -> array, got "
                         f"{measure_fn!r}")
    c_max = horizon
    lam_min = build(0).eigenvalues.min()
    if n_full is not None or lam_min > 0:   # finite d: up to c·λ_min = _EDGE
        c_max = min(horizon, _EDGE / max(lam_min, 1e-300)) if lam_min > 0 else horizon
    cs = np.concatenate([[0.0], np.logspace(-2, math.log10(max(c_max, 1.0)), 80)])

    def measure(p):
        if measure_fn is not None:
            return np.asarray(measure_fn(p), np.float64)
        return _kernels(p, cs)

    prev = build(0)
    mp = measure(prev)
    for L in range(1, _MAX_LEVEL + 1):
        cur = build(L)
        if n_full is not None and cur.n_modes >= n_full:
            return full()
        mc = measure(cur)
        den = np.maximum(np.abs(mc), 1e-300)
        ok = np.abs(mc) > 1e-280
        err = float(np.max(np.abs(mc - mp)[ok] / den[ok])) if np.any(ok) else 0.0
        if err < rtol:
            return cur
        prev, mp = cur, mc
    if full is not None:
        return full()
    raise ValueError(f"compression did not reach rtol={rtol:g} within {_MAX_LEVEL} levels; "
                     "loosen `rtol`")


compress.power_law = power_law  # `rc.compress.power_law(d, alpha, beta, ...)`
