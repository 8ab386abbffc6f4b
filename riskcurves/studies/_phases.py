"""SignSVD vs matrix SignSGD: batch transition and the (α, β) phase diagram.

- `local_drift_exponent`: the slope `d log(drift_i/D_i) / d log λ_i` of the
  SignSVD drift rate (1 = SGD-like `∝ λ_i`, ½ = `√λ_i` preconditioning, 0 =
  whitened). In the noise-dominated regime it is ≈ ½ for `λ_i ≫ κ0(B)` and ≈ 1
  for `λ_i ≪ κ0(B)` ("Phases of Muon": the batch transition).
- `compare_at_optimal_lr`: both methods' ODE risk curves on a power law, each at
  its own best constant step size *for each horizon k* (lower envelope over a
  log grid of step sizes, vmapped in one compiled solve).
- `phase_diagram`: on a grid of `(α, β)`, the sign of `log(P_SignSVD/P_SignSGD)`
  at each horizon: `+1` SignSVD better at every horizon, `−1` SignSGD better at
  every horizon, `0` the ordering flips over time (trade-off).

Large `d` uses compressed spectra (docs/theory/compression.md): nodes on a log grid in `j` with
integer multiplicities; both ODEs accept weights. Matrix SignSGD is taken on a
generic (rotated) `K` by default (`signsgd_basis="generic"`): SignSVD is rotation
invariant, SignSGD is not (on a diagonal `K` it preconditions by `√λ`).
Target rows are orthogonal with row energies `j^(−β)`, `m = m_ratio·d`.
"""

from __future__ import annotations

import functools

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from ..odes import integrate
from ..odes._matrix_signsgd import MatrixSignSGDTheory
from ..odes._signsvd import _jit_dn, signsvd_theory
from ..odes._signsvd_common import leaf_opt
from ..optimizers import MatrixSignSGD, SignSVD

__all__ = ["local_drift_exponent", "compressed_power_law", "compare_at_optimal_lr",
           "phase_diagram", "phase_grid", "classify", "flip_time"]


def local_drift_exponent(lam, D, m, batch, sigma2=0.0, weights=None, **options):
    """`d log ρ_i/d log λ_i` with `drift_i = ρ_i D_i` from the SignSVD equivalent."""
    th = signsvd_theory(SignSVD(1.0, batch), lam, D, m, sigma2=sigma2, weights=weights,
                        **options)
    dr, _, _ = _jit_dn(th, th.D0)
    rho = np.asarray(dr) / np.asarray(D)
    return np.gradient(np.log(rho), np.log(np.asarray(lam)))


def compressed_power_law(d: int, alpha: float, beta: float, n_nodes: int = 120):
    """`(λ, D0, w)`: `j = 1..d` grouped on a log grid (first 30 `j` kept exactly)."""
    if d < 2:
        raise ValueError(f"`d` must be >= 2, got {d}")
    n_exact = min(30, d)
    edges = np.unique(np.round(np.geomspace(n_exact + 1, d + 1, max(2, n_nodes - n_exact)))
                      .astype(np.int64))
    js, ws = list(range(1, n_exact + 1)), [1.0] * n_exact
    for a, b in zip(edges[:-1], edges[1:]):
        if b > a:
            js.append(np.exp(0.5 * (np.log(a) + np.log(b - 1))) if b - 1 > a else a)
            ws.append(float(b - a))
    j = np.asarray(js, np.float64)
    return j**-alpha, j**-beta, np.asarray(ws)


def _solve_lrs(theory, etas, ts, rtol):
    """Risks `(len(etas), len(ts))` at constant step sizes `etas`.

    Solved in vmapped chunks of `_LR_CHUNK` step sizes (the last one padded by
    repeating its last step size): every grid size of the extension and refinement
    stages runs the same compiled program. On CPU a vmapped adaptive solve costs about
    the width times one solve, so narrow chunks lose nothing there."""
    etas = jnp.asarray(etas, jnp.float64)
    n = int(etas.shape[0])
    size = max(_LR_CHUNK, -(-n // _LR_CHUNK) * _LR_CHUNK)
    padded = jnp.concatenate([etas, jnp.full((size - n,), etas[-1])])
    out = [_solve_lrs_jit(theory, padded[i:i + _LR_CHUNK], ts, rtol)
           for i in range(0, size, _LR_CHUNK)]
    return jnp.concatenate(out)[:n]


_LR_CHUNK = 8


@functools.partial(eqx.filter_jit)
def _solve_lrs_jit(theory, etas, ts, rtol):
    def one(eta):
        th = eqx.tree_at(lambda t: t.opt.lr, theory, eta)
        risk, _, _, code, _ = integrate(th, ts, rtol, 1e-30, max_steps=20_000, exact_steps=0,
                                        progress_meter=diffrax.NoProgressMeter())
        return jnp.where(code == 0, risk, jnp.inf)
    return jax.vmap(one)(etas)


def _signsgd_theory(lam, D0, w, m, B, sigma2, diagonal):
    f = lambda x: jnp.asarray(x, jnp.float64)  # noqa: E731
    return MatrixSignSGDTheory(f(lam), f(w), f(D0), f(m), f(B), f(sigma2),
                               leaf_opt(MatrixSignSGD(1.0, B)), diagonal)


def signsgd_drift_rates(lam, D0, weights, m, batch, sigma2=0.0, diagonal=False):
    """Per-mode drift rates `a_i` of matrix SignSGD at unit step size (`dD_i/dk = −a_i D_i
    + …` at `η = 1`), at row energies `D0`, on a spectrum `lam` with multiplicities
    `weights` (compressed nodes, e.g. `fixed_power_law_nodes`). `diagonal`: the
    preconditioned (diagonal-K) form; default the generic-K form. Returns a numpy array.
    Used to read off the drift exponent `a_i ∝ λ_i` vs SGD (`docs/theory/phases.md`)."""
    th = _signsgd_theory(lam, D0, weights, m, int(batch), float(sigma2), bool(diagonal))
    a, _ = _jit_rates(th, jnp.asarray(D0, jnp.float64))
    return np.asarray(a)


@eqx.filter_jit
def _jit_rates(th, D):
    return th._rates(jnp.zeros((), jnp.float64), D)


def compare_at_optimal_lr(alpha, beta, d=10_000, batch=32, sigma=0.0, m_ratio=2.0,
                          k_max=10_000, n_lr=10, n_checkpoints=24, compressed=True,
                          signsgd_basis="generic", rtol=1e-3, *, noise_ratio=None,
                          lr_span=1e3, k_min=10, max_extend=4, n_nodes=120, n_fine=16):
    """Best-over-step-size ODE risk of SignSVD and matrix SignSGD at each horizon.

    Each method is solved on its own log grid of `n_lr` constant step sizes spanning
    `lr_span`, centred near its measured best step sizes (SignSVD `0.1 η_0`,
    `η_0 = √(2P_0/tr K)`; SignSGD `3·10⁻³ η_0/√m`). If the best step size of some horizon
    `k >= k_min` sits on a grid edge, the grid is extended by a further block of
    `n_lr` step sizes on that side (same log spacing, no recompilation), at most
    `max_extend` times per side. Then `n_fine` more step sizes, log-spaced between
    the coarse neighbours of the smallest and largest best step size, are solved:
    with few modes carrying the risk (large `β`) `P(k; η)` is far from a parabola in
    `log η` and a coarse grid gives staircase envelopes (spurious flips).
    `noise_ratio` = `ν` sets the label noise by `m σ² = ν · 2P_0` (total label-noise
    energy relative to the initial excess risk; comparable across `d`); it excludes
    `sigma`.

    Returns a dict with `k`, `svd`, `sgn` (envelopes), `svd_lr`, `sgn_lr` (argmin
    step sizes per horizon), the step-size grids, `P0`, `sigma` and `edge` (True if
    a best step size is still on a grid edge for some `k >= k_min`).
    """
    if signsgd_basis not in ("generic", "diagonal"):
        raise ValueError(f"`signsgd_basis` must be 'generic' or 'diagonal', got "
                         f"{signsgd_basis!r}")
    if not (int(n_lr) == n_lr and n_lr >= 3):
        raise ValueError(f"`n_lr` must be an integer >= 3, got {n_lr!r}")
    if not lr_span > 1:
        raise ValueError(f"`lr_span` must be > 1, got {lr_span!r}")
    if not (k_max >= 2 and d >= 2 and batch >= 1):
        raise ValueError(f"need `k_max` >= 2, `d` >= 2, `batch` >= 1; got {k_max}, {d}, "
                         f"{batch}")
    if noise_ratio is not None and (sigma != 0 or not noise_ratio >= 0):
        raise ValueError(f"`noise_ratio` must be >= 0 and excludes `sigma`, got "
                         f"noise_ratio={noise_ratio!r}, sigma={sigma!r}")
    if compressed:
        lam, D0, w = compressed_power_law(d, alpha, beta, n_nodes)
    else:
        j = np.arange(1, d + 1.0)
        lam, D0, w = j**-alpha, j**-beta, np.ones(d)
    m = m_ratio * d
    ks = np.unique(np.round(np.geomspace(1, k_max, n_checkpoints)).astype(np.int64))
    ts = jnp.asarray(np.concatenate([[0], ks]), jnp.float64)
    P0 = 0.5 * np.sum(w * lam * D0)
    if noise_ratio is not None:
        sigma = float(np.sqrt(noise_ratio * 2 * P0 / m))
    svd_scale = np.sqrt(2 * P0 / np.sum(w * lam))  # η such that one step moves √D ~ O(1)
    sgn_scale = svd_scale / np.sqrt(m)
    # measured best constant step sizes for k in [10, 3e4]: SignSVD 0.6–0.01 η_0,
    # SignSGD 1e-2–1e-4 η_0/√m (d = 1e4–1e5); the grids start there
    grid = np.geomspace(1 / np.sqrt(lr_span), np.sqrt(lr_span), n_lr)
    svd_scale, sgn_scale = 0.1 * svd_scale, 3e-3 * sgn_scale
    th_svd = signsvd_theory(SignSVD(1.0, batch), lam, D0, m, sigma2=sigma**2, weights=w,
                            n_nodes=32)
    th_sgn = _signsgd_theory(lam, D0, w, m, batch, sigma**2, signsgd_basis == "diagonal")
    keep = ks >= k_min
    out = {"k": ks, "P0": P0, "sigma": sigma, "edge": False}
    for name, th, scale in (("svd", th_svd, svd_scale), ("sgn", th_sgn, sgn_scale)):
        g, r = _solve_extended(th, scale * grid, ts, rtol, keep, max_extend)
        ia = r.argmin(0)[keep]
        out["edge"] |= bool(np.any(ia == 0) | np.any(ia == len(g) - 1))
        if n_fine:  # fine grid between the neighbours of the coarse best step sizes
            gf = np.geomspace(g[max(ia.min() - 1, 0)], g[min(ia.max() + 1, len(g) - 1)],
                              n_fine + 2)[1:-1]
            rf = np.asarray(_solve_lrs(th, jnp.asarray(gf), ts, rtol))[:, 1:]
            rf = np.where(np.isfinite(rf) & (rf > 0), rf, np.inf)
            _, idx = np.unique(np.round(np.log(np.concatenate([g, gf])), 9),
                               return_index=True)  # sorted, duplicates dropped
            g, r = np.concatenate([g, gf])[idx], np.concatenate([r, rf])[idx]
        out[name] = _envelope(r, g)
        out[name + "_lr"] = g[r.argmin(0)]
        out[name + "_grid"] = g
    return out


def _solve_extended(th, g, ts, rtol, keep, max_extend):
    """Risks `(n_grid, n_k)` on grid `g`, extended block-wise while the argmin over
    step sizes of a kept horizon is on an edge."""
    def solve(etas):
        r = np.asarray(_solve_lrs(th, jnp.asarray(etas), ts, rtol))[:, 1:]
        return np.where(np.isfinite(r) & (r > 0), r, np.inf)

    r = solve(g)
    q = (g[-1] / g[0]) ** (1 / (len(g) - 1))  # log spacing
    n = len(g)
    for _ in range(max_extend):
        ia = r.argmin(0)[keep]
        lo, hi = np.any(ia == 0), np.any(ia == len(g) - 1)
        if not (lo or hi):
            break
        if lo:
            gn = g[0] * q ** -np.arange(n, 0, -1.0)
            g, r = np.concatenate([gn, g]), np.concatenate([solve(gn), r])
        if hi:
            gn = g[-1] * q ** np.arange(1, n + 1.0)
            g, r = np.concatenate([g, gn]), np.concatenate([r, solve(gn)])
    return g, r


def _envelope(risks, grid):
    """Lower envelope over step sizes per horizon, refined by a parabola through the
    grid minimum and its neighbours in `(log η, log P)` (reduces grid artefacts that
    would otherwise show up as spurious ordering flips)."""
    lr = np.log(np.where(np.isfinite(risks) & (risks > 0), risks, np.inf))
    x = np.log(grid)
    i = np.argmin(lr, axis=0)
    out = np.exp(lr[i, np.arange(lr.shape[1])])
    for k, j in enumerate(i):
        if 0 < j < len(x) - 1 and np.all(np.isfinite(lr[j - 1:j + 2, k])):
            c = np.polyfit(x[j - 1:j + 2], lr[j - 1:j + 2, k], 2)
            if c[0] > 0:  # vertex drop capped by the smaller rise to a neighbour
                cap = min(lr[j - 1, k], lr[j + 1, k]) - lr[j, k]
                v = max(c[2] - c[1] ** 2 / (4 * c[0]), lr[j, k] - cap)
                out[k] = min(out[k], np.exp(v))
    return out


def classify(log_ratio, tol=0.05, median=3):
    """Phase of one `log(P_SignSVD/P_SignSGD)` curve over horizons: `+1` if it never
    exceeds `+tol` (SignSVD never worse beyond `tol`), `−1` if it never goes below
    `−tol`, else `0` (trade-off: the ordering flips). All within `±tol`: the sign of
    the last value. The curve is first smoothed by a running median over `median`
    horizons: a single horizon where one envelope is off (best step size
    between grid points) must not make a flip."""
    r = _running_median(np.asarray(log_ratio, np.float64), median)
    up, down = bool(np.any(r > tol)), bool(np.any(r < -tol))
    if up and down:
        return 0
    if up or down:
        return -1 if up else 1
    return 1 if r[-1] <= 0 else -1


def _running_median(r, n):
    """Running median over `n` horizons; at the ends, the median of the first/last `n`."""
    r = np.asarray(r, np.float64)
    if n <= 1 or r.size < n:
        return r
    h = n // 2
    return np.asarray([np.median(r[min(max(i - h, 0), r.size - n):][:n])
                       for i in range(r.size)])


def flip_time(k, log_ratio):
    """Horizon of the last sign change of `log_ratio` (log-interpolated in `k`): after
    it the ordering at the last horizon holds. `None` if the sign never changes."""
    k, r = np.asarray(k, np.float64), np.asarray(log_ratio)
    s = np.nonzero(np.sign(r[1:]) * np.sign(r[:-1]) < 0)[0]
    if s.size == 0:
        return None
    i = int(s[-1])
    f = r[i] / (r[i] - r[i + 1])
    return float(np.exp(np.log(k[i]) + f * (np.log(k[i + 1]) - np.log(k[i]))))


def phase_grid(alphas, betas, k_min=10, tol=0.05, progress=None, **kwargs):
    """Phase diagram with everything needed to reproduce and plot it (JSON-able).

    Runs `compare_at_optimal_lr(α, β, k_min=k_min, **kwargs)` on the grid and returns
    a dict: `alphas`, `betas`, `k` (kept horizons `>= k_min`), `phase[i][j]` (see
    `classify`), `final_log_ratio[i][j]`, `log_ratio[i][j]` (over `k`),
    `flip_k[i][j]` (`flip_time` for trade-off points, else `None`), `svd_lr`/`sgn_lr`
    (best step sizes at the last horizon), `edge` (a best step size stayed on a grid
    edge) and the settings.
    `progress(i, j, seconds)` is called after each point.
    """
    import time
    alphas, betas = [float(a) for a in alphas], [float(b) for b in betas]
    if not (alphas and betas):
        raise ValueError("`alphas` and `betas` must be non-empty")
    res = {key: [[None] * len(betas) for _ in alphas]
           for key in ("phase", "final_log_ratio", "log_ratio", "flip_k", "svd_lr",
                       "sgn_lr", "edge")}
    k = None
    for i, a in enumerate(alphas):
        for j, b in enumerate(betas):
            t0 = time.perf_counter()
            out = compare_at_optimal_lr(a, b, k_min=k_min, **kwargs)
            keep = out["k"] >= k_min
            k = out["k"][keep]
            lr_ = np.log(out["svd"][keep] / out["sgn"][keep])
            res["phase"][i][j] = classify(lr_, tol)
            res["final_log_ratio"][i][j] = float(lr_[-1])
            res["log_ratio"][i][j] = [float(x) for x in lr_]
            fk = flip_time(k, _running_median(lr_, 3))
            res["flip_k"][i][j] = fk if res["phase"][i][j] == 0 else None
            res["svd_lr"][i][j] = float(out["svd_lr"][-1])
            res["sgn_lr"][i][j] = float(out["sgn_lr"][-1])
            res["edge"][i][j] = bool(out["edge"])
            if progress is not None:
                progress(i, j, time.perf_counter() - t0)
    res.update(alphas=alphas, betas=betas, k=[int(x) for x in k], k_min=k_min, tol=tol,
               settings={key: v for key, v in kwargs.items()
                         if isinstance(v, (int, float, str, bool, type(None)))})
    return res


def phase_diagram(alphas, betas, k_min=10, **kwargs):
    """Phases on the `(α, β)` grid (see module docstring and `phase_grid`).

    Returns `(phase, log_ratio)`: `phase[i, j] ∈ {+1, 0, −1}` for `(alphas[i],
    betas[j])`, and `log_ratio[i, j]` = `log(P_SignSVD/P_SignSGD)` at the largest
    horizon (negative: SignSVD ahead). Horizons `k < k_min` are ignored.
    """
    g = phase_grid(alphas, betas, k_min=k_min, **kwargs)
    return np.asarray(g["phase"], np.int64), np.asarray(g["final_log_ratio"])


# --------------------------------------------------------------------------------------
# Large-d phase plane with horizons tied to d (docs/theory/phases.md §2–§3)
# --------------------------------------------------------------------------------------

def fixed_power_law_nodes(d: int, alpha: float, beta: float, n_nodes: int = 64,
                          n_exact: int = 24):
    """`(λ, D0, w)` with exactly `n_nodes` entries for every `d` (so one compiled solve
    serves every `(α, β, d)`): `j = 1..n_exact` exact, the rest grouped on a log grid
    in `j` with integer counts (node at the geometric mid-point of its group); unused
    trailing nodes get weight 0. `Σ w = d` exactly."""
    if not (d >= 2 and n_nodes > n_exact >= 1):
        raise ValueError(f"need `d` >= 2 and `n_nodes` > `n_exact` >= 1, got d={d}, "
                         f"n_nodes={n_nodes}, n_exact={n_exact}")
    n_ex = min(n_exact, d)
    js, ws = list(np.arange(1.0, n_ex + 1)), [1.0] * n_ex
    if d > n_ex:
        edges = np.unique(np.round(np.geomspace(n_ex + 1, d + 1, n_nodes - n_ex + 1))
                          .astype(np.int64))
        for a, b in zip(edges[:-1], edges[1:]):
            js.append(float(np.sqrt(a * (b - 1.0))) if b - 1 > a else float(a))
            ws.append(float(b - a))
    pad = n_nodes - len(js)
    j = np.asarray(js + [float(d)] * pad, np.float64)
    w = np.asarray(ws + [0.0] * pad, np.float64)
    return j**-alpha, j**-beta, w


def _envelope_on_grid(th, lrs, ts, rtol, keep, max_extend=3, n_refine=1):
    """Grid (extended at edges), then `n_refine` halvings of the log spacing around
    every horizon's best step size (new step sizes merged into the grid), then the
    capped-parabola envelope."""
    g, r = _solve_extended(th, np.asarray(lrs, np.float64), ts, rtol, keep, max_extend)
    q = (g[-1] / g[0]) ** (1 / (len(g) - 1))
    for _ in range(n_refine):
        q = np.sqrt(q)
        best = np.unique(g[r.argmin(0)[keep]])
        new = np.setdiff1d(np.round(np.log(np.concatenate([best / q, best * q])), 9),
                           np.round(np.log(g), 9))
        if new.size:
            gn = np.exp(new)
            rn = np.asarray(_solve_lrs(th, jnp.asarray(gn), ts, rtol))[:, 1:]
            rn = np.where(np.isfinite(rn) & (rn > 0), rn, np.inf)
            idx = np.argsort(np.concatenate([g, gn]))
            g, r = np.concatenate([g, gn])[idx], np.concatenate([r, rn])[idx]
    ia = r.argmin(0)[keep]
    edge = bool(np.any(ia == 0) | np.any(ia == len(g) - 1))
    return _envelope(r, g), g[r.argmin(0)], edge, r, g


def phase_point(alpha, beta, d, batch, *, J_max=None, n_k=17, lrs_per_decade=3,
                n_nodes=64, rtol=1e-3, p_drop=1e12, m_ratio=2.0, quad_nodes=24, n_refine=2,
                methods=("svd", "sgn"), muon=None, sigma=0.0):
    """Both methods' tuned envelopes at the d-scaled horizons `k_J = tr K J^α/B`.

    `J` (number of modes SGD at its noise-limited step would have learned) runs over
    `n_k` log-spaced values in `[1, J_max]`, `J_max = min(d/4, J_p)` where `J_p` is the
    mode at which the tail risk `½ Σ_{j>J} λ_j D_j` has dropped by `p_drop` (bounds the
    range of optimal step sizes). Each method is solved once on a log grid of constant
    step sizes (`lrs_per_decade`) spanning its predicted optimal range `∝ √P_tail(J)`
    ±1 decade, extended while a best step size sits on an edge; per horizon the envelope
    is the grid minimum refined by a capped parabola (`_envelope`). `methods` may add
    `"muon"` (Newton–Schulz Muon without momentum, `muon` = options of `muon_theory`;
    55–275 s per point at d = 1e6 with all three methods on 2 idle cores,
    docs/theory/phases.md §4).

    Returns a dict: `J`, `k`, `d`, `trK`, `P0`, `<method>` envelopes, `<method>_lr`,
    `edge`, `log_ratio` (`log P_svd/P_sgn`), `phase` (`classify` over all horizons),
    `flip_J`, `phase_bulk` (`classify` over the bulk horizons `J <= √d`) and `tie_bulk`
    (`|log ratio| <= 0.05` at every bulk horizon: the two are equal there).
    """
    from ..theory._phases_asymptotics import mode_horizon
    if not (alpha > 0 and d >= 16 and batch >= 1 and n_k >= 3):
        raise ValueError(f"need alpha > 0, d >= 16, batch >= 1, n_k >= 3; got {alpha}, "
                         f"{d}, {batch}, {n_k}")
    lam, D0, w = fixed_power_law_nodes(int(d), alpha, beta, n_nodes)
    m = m_ratio * d
    trK = float(np.sum(w * lam))
    P0 = 0.5 * float(np.sum(w * lam * D0))
    order = np.argsort(-lam)
    tail = P0 - np.cumsum((0.5 * w * lam * D0)[order])  # risk beyond the first nodes
    jcum = np.cumsum(w[order])
    Jp = jcum[np.searchsorted(-tail, -P0 / p_drop)] if np.any(tail < P0 / p_drop) else d
    J_max = float(min(d / 4, Jp) if J_max is None else J_max)
    J = np.geomspace(1.0, max(J_max, 10.0), n_k)
    ks = np.unique(np.maximum(1.0, np.round(mode_horizon(J, alpha, d, batch))))
    J = (ks * batch / trK) ** (1 / alpha)
    ts = jnp.asarray(np.concatenate([[0.0], ks]), jnp.float64)
    Pt = np.interp(np.log(np.maximum(J, 1.0)), np.log(jcum), np.maximum(tail, 1e-300))
    Pt = np.maximum(Pt, P0 / p_drop)
    keep = np.ones(ks.shape, bool)
    out = {"J": J, "k": ks, "d": d, "batch": batch, "trK": trK, "P0": P0, "edge": False,
           "alpha": alpha, "beta": beta}
    builders = {"svd": lambda: signsvd_theory(SignSVD(1.0, batch), lam, D0, m,
                                              sigma2=sigma**2, weights=w,
                                              n_nodes=quad_nodes),
                "sgn": lambda: _signsgd_theory(lam, D0, w, m, batch, sigma**2, False)}
    if "muon" in methods:
        builders["muon"] = lambda: _muon_theory(lam, D0, w, m, batch, sigma**2, muon or {})
    # measured optimal η: SignSVD ≈ 0.1·√(2P/tr K), SignSGD ≈ 3e-3·√(2P/tr K)/√m;
    # Muon's NS map is ≈ polar: same as SignSVD
    scale = {"svd": 0.1, "sgn": 3e-3 / np.sqrt(m), "muon": 0.1}
    for name in methods:
        th = builders[name]()
        c = scale[name] * np.sqrt(2 * Pt / trK)
        lo, hi = np.log10(c.min()) - 1.0, np.log10(c.max()) + 1.0
        lrs = np.logspace(lo, hi, int(np.ceil((hi - lo) * lrs_per_decade)) + 1)
        env, best, edge, _, _ = _envelope_on_grid(th, lrs, ts, rtol, keep,
                                                  n_refine=n_refine)
        out[name], out[name + "_lr"] = env, best
        out["edge"] |= edge
    if "svd" in methods and "sgn" in methods:
        r = np.log(out["svd"] / out["sgn"])
        out["log_ratio"] = r
        out["phase"] = classify(r)
        fj = flip_time(J, _running_median(r, 3))
        out["flip_J"] = fj if out["phase"] == 0 else None
        bulk = J <= np.sqrt(d)  # J → ∞ but J/d → 0: horizons that stay in the bulk
        out["phase_bulk"] = classify(r[bulk])
        out["tie_bulk"] = bool(np.all(np.abs(_running_median(r[bulk], 3)) <= 0.05))
    return out


def _muon_theory(lam, D0, w, m, batch, sigma2, options):
    """Muon (Newton–Schulz, no momentum); its constant step size is the leaf `opt.lr`."""
    from ..odes._muon import muon_theory
    from ..optimizers import Muon
    return muon_theory(Muon(1.0, batch, momentum=0.0), lam, D0, m, sigma2=sigma2, weights=w,
                       **options)


_CELL_KEYS = ("phase", "phase_bulk", "tie_bulk", "final_log_ratio", "min_log_ratio",
              "max_log_ratio", "log_ratio", "J", "flip_J", "edge", "seconds", "svd_env",
              "sgn_env", "svd_lr", "sgn_lr", "muon_env", "muon_lr")


def _ratio_summary(r, J, d):
    """Phase over all horizons and over the bulk `J <= √d`, bulk tie, and the range of
    the 3-point running median of a log ratio `r` over the horizons `J`."""
    rm = _running_median(r, 3)
    bulk = J <= np.sqrt(float(d))
    return rm, {"phase": int(classify(r)), "phase_bulk": int(classify(r[bulk])),
                "tie_bulk": bool(np.all(np.abs(_running_median(r[bulk], 3)) <= 0.05)),
                "final_log_ratio": float(rm[-1]), "min_log_ratio": float(rm.min()),
                "max_log_ratio": float(rm.max())}


def plane_cell(o):
    """JSON-able summary of one `phase_point` output (one cell of `phase_plane`)."""
    r = np.asarray(o["log_ratio"])
    J = np.asarray(o["J"])
    rm, cell = _ratio_summary(r, J, o["d"])
    cell.update({"log_ratio": [float(x) for x in r], "J": [float(x) for x in J],
                 "edge": bool(o["edge"])})
    fj = flip_time(J, rm)
    cell["flip_J"] = fj if cell["phase"] == 0 else None
    for name in ("svd", "sgn", "muon"):
        if name in o:
            cell[name + "_env"] = [float(x) for x in o[name]]
            cell[name + "_lr"] = [float(x) for x in o[name + "_lr"]]
    return cell


def step_ratio(k, env_a, env_b):
    """Steps method b needs to match method a's tuned risk, per horizon, as a ratio.

    `env_a`, `env_b` are tuned envelopes (best constant step size per horizon) at the
    horizons `k` (increasing). For each `k_i`, `k_b(P)` is read off b's envelope at the
    risk `P = env_a(k_i)` (log-log interpolation of its running minimum: a tuned
    envelope cannot rise with the horizon) and the result is `k_b / k_i`: `> 1` where a
    is ahead, by that factor in steps (= samples, at equal batch). NaN where b does not
    reach `P` within `[k_0, k_-1]`.
    """
    k = np.asarray(k, float)
    a = np.asarray(env_a, float)
    b = np.minimum.accumulate(np.asarray(env_b, float))
    if not (k.ndim == 1 and k.shape == a.shape == b.shape and k.size >= 2
            and np.all(np.diff(k) > 0) and np.all(k > 0) and np.all(a > 0)
            and np.all(b > 0)):
        raise ValueError("`k`, `env_a`, `env_b` must be positive 1-d arrays of one length "
                         "(>= 2), `k` increasing")
    # np.interp needs increasing x: interpolate log k over -log P_b (ties keep the first)
    x, idx = np.unique(-np.log(b), return_index=True)
    y = np.log(k)[idx]
    t = -np.log(a)
    out = np.exp(np.interp(t, x, y)) / k
    out[(t < x[0]) | (t > x[-1])] = np.nan
    return out


def compare_in_plane(plane, a="muon", b="sgn"):
    """Method `a` against method `b` in a `phase_plane` output (any two of `"svd"`,
    `"sgn"`, `"muon"` whose envelopes it holds), per stored `d` (string key).

    Per cell: `phase` (`classify` of `log P_a/P_b` over all horizons: +1 a better,
    −1 b better, 0 trade-off), `phase_bulk` (horizons `J <= √d`), `tie_bulk`
    (`|log P_a/P_b| <= 0.05` on every bulk horizon), `final_log_ratio`,
    `min_log_ratio`, `max_log_ratio` (of the 3-point running median), and
    `step_ratio`: the median over the horizons of `step_ratio(k, P_a, P_b)` (steps b
    needs to match a's tuned risk, over k; `> 1`: a ahead by that factor in steps,
    i.e. samples at equal batch). Cells without both envelopes: None.
    """
    out = {}
    for d in plane["ds"]:
        g = plane[str(d)]
        shape = (len(plane["alphas"]), len(plane["betas"]))
        cmp = {key: [[None] * shape[1] for _ in range(shape[0])]
               for key in ("phase", "phase_bulk", "tie_bulk", "final_log_ratio",
                           "min_log_ratio", "max_log_ratio", "step_ratio")}
        for i, alpha in enumerate(plane["alphas"]):
            for j in range(shape[1]):
                ea, eb = (g[k][i][j] if g.get(k) else None for k in (a + "_env", b + "_env"))
                if ea is None or eb is None:
                    continue
                ea, eb, J = np.asarray(ea), np.asarray(eb), np.asarray(g["J"][i][j])
                _, summary = _ratio_summary(np.log(ea / eb), J, d)
                for key, v in summary.items():
                    cmp[key][i][j] = v
                sr = step_ratio(J**alpha, ea, eb)  # k ∝ J^α at fixed (d, B)
                cmp["step_ratio"][i][j] = (float(np.nanmedian(sr))
                                           if np.any(np.isfinite(sr)) else None)
        out[str(d)] = cmp
    return out


def phase_plane(alphas, betas, ds, batch, *, progress=None, **kwargs):
    """`phase_point` over the `(α, β)` grid at each `d` in `ds` (JSON-able dict).

    Keys: `alphas`, `betas`, `ds`, `batch`, and per `d` (string key) the grids
    `phase[i][j]`, `final_log_ratio`, `min_log_ratio`, `max_log_ratio`, `log_ratio`
    (over `J`), `J`, `flip_J`, `edge`, `seconds`, `<method>_env` and `<method>_lr`
    (tuned envelopes and best step sizes over `J`). `progress(d, i, j, seconds)` after
    each point."""
    import time

    from ..theory._phases_asymptotics import predicted_phase
    alphas, betas = [float(a) for a in alphas], [float(b) for b in betas]
    ds = [int(d) for d in ds]
    if not (alphas and betas and ds):
        raise ValueError("`alphas`, `betas` and `ds` must be non-empty")
    res = {"alphas": alphas, "betas": betas, "ds": ds, "batch": int(batch),
           "predicted": [[predicted_phase(a, b) for b in betas] for a in alphas],
           "settings": {k: v for k, v in kwargs.items()
                        if isinstance(v, (int, float, str, bool, type(None)))}}
    for d in ds:
        g = {key: [[None] * len(betas) for _ in alphas] for key in _CELL_KEYS}
        for i, a in enumerate(alphas):
            for j, b in enumerate(betas):
                t0 = time.perf_counter()
                cell = plane_cell(phase_point(a, b, d, batch, **kwargs))
                cell["seconds"] = time.perf_counter() - t0
                for key in _CELL_KEYS:
                    g[key][i][j] = cell.get(key)
                if progress is not None:
                    progress(d, i, j, cell["seconds"])
        res[str(d)] = g
    return res
