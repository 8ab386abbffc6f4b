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

Large `d` uses compressed spectra (SPEC §8): nodes on a log grid in `j` with
integer multiplicities; both ODEs accept weights. Matrix SignSGD is taken on a
generic (rotated) `K` by default (`signsgd_basis="generic"`): SignSVD is rotation
invariant, SignSGD is not (on a diagonal `K` it preconditions by `√λ`).
Target rows are orthogonal with row energies `j^(−β)`, `m = m_ratio·d`.
"""

from __future__ import annotations

import functools

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["local_drift_exponent", "compressed_power_law", "compare_at_optimal_lr",
           "phase_diagram"]


def local_drift_exponent(lam, D, m, batch, sigma2=0.0, weights=None, **options):
    """`d log ρ_i/d log λ_i` with `drift_i = ρ_i D_i` from the SignSVD equivalent."""
    from ..odes._signsvd import _jit_dn, signsvd_theory
    from ..optimizers import SignSVD

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


@functools.partial(eqx.filter_jit)
def _solve_lrs(theory, etas, ts, rtol):
    from ..odes._solve import _integrate

    def one(eta):
        th = eqx.tree_at(lambda t: t.eta, theory, eta)
        (risk, _, _), result, _ = _integrate(th, ts, rtol, 1e-30, 20_000,
                                              _no_meter())
        return risk
    return jax.vmap(one)(etas)


def _no_meter():
    import diffrax
    return diffrax.NoProgressMeter()


def _signsgd_theory(lam, D0, w, m, B, sigma2, diagonal):
    from ..odes._matrix_signsgd import MatrixSignSGDTheory
    from ..optimizers import MatrixSignSGD
    f = lambda x: jnp.asarray(x, jnp.float64)  # noqa: E731
    th = MatrixSignSGDTheory(f(lam), f(w), f(D0), f(m), f(B), f(sigma2), MatrixSignSGD(1.0, B),
                             diagonal)
    return _EtaWrap(th, f(1.0))


class _EtaWrap(eqx.Module):
    """Matrix SignSGD theory with a traced constant step size `eta` (for vmapping)."""

    inner: eqx.Module
    eta: jax.Array

    def init_state(self):
        return self.inner.init_state()

    def risk(self, y):
        return self.inner.risk(y)

    def _scaled(self, k, y):
        a, f = self.inner._rates(k, y)  # computed at η = 1: a ∝ η, f ∝ η²
        return a * self.eta, f * self.eta**2

    def vector_field(self, k, y, args):
        a, f = self._scaled(k, y)
        return -a * y + f

    def damping(self, k, y, args):
        return self._scaled(k, y)[0]

    def lr(self, k, y):
        return self.eta

    def observables(self, k, y):
        return {}


def compare_at_optimal_lr(alpha, beta, d=10_000, batch=32, sigma=0.0, m_ratio=2.0,
                          k_max=10_000, n_lr=10, n_checkpoints=24, compressed=True,
                          signsgd_basis="generic", rtol=1e-3):
    """Best-over-step-size ODE risk of SignSVD and matrix SignSGD at each horizon.

    Returns a dict with `k`, `svd`, `sgn` (envelopes), `svd_lr`, `sgn_lr` (argmin
    step sizes per horizon) and the step-size grids.
    """
    from ..odes._signsvd import signsvd_theory
    from ..optimizers import SignSVD

    if signsgd_basis not in ("generic", "diagonal"):
        raise ValueError(f"`signsgd_basis` must be 'generic' or 'diagonal', got "
                         f"{signsgd_basis!r}")
    if compressed:
        lam, D0, w = compressed_power_law(d, alpha, beta)
    else:
        j = np.arange(1, d + 1.0)
        lam, D0, w = j**-alpha, j**-beta, np.ones(d)
    m = m_ratio * d
    ks = np.unique(np.round(np.geomspace(1, k_max, n_checkpoints)).astype(np.int64))
    ts = jnp.asarray(np.concatenate([[0], ks]), jnp.float64)
    P0 = 0.5 * np.sum(w * lam * D0)
    # step-size grids around each method's natural scale (risk halves in ~k_max^(1/2) steps)
    svd_scale = np.sqrt(2 * P0 / np.sum(w * lam))  # η such that one step moves √D ~ O(1)
    sgn_scale = svd_scale / np.sqrt(m)
    grid = np.geomspace(1e-3, 1.0, n_lr)
    th_svd = signsvd_theory(SignSVD(1.0, batch), lam, D0, m, sigma2=sigma**2, weights=w,
                            n_nodes=32)
    th_sgn = _signsgd_theory(lam, D0, w, m, batch, sigma**2, signsgd_basis == "diagonal")
    r_svd = np.asarray(_solve_lrs(th_svd, jnp.asarray(svd_scale * grid), ts, rtol))[:, 1:]
    r_sgn = np.asarray(_solve_lrs(th_sgn, jnp.asarray(sgn_scale * grid), ts, rtol))[:, 1:]
    env_svd, env_sgn = _envelope(r_svd, grid), _envelope(r_sgn, grid)
    r_svd = np.where(np.isfinite(r_svd), r_svd, np.inf)
    r_sgn = np.where(np.isfinite(r_sgn), r_sgn, np.inf)
    return {"k": ks, "svd": env_svd, "sgn": env_sgn,
            "svd_lr": svd_scale * grid[r_svd.argmin(0)],
            "sgn_lr": sgn_scale * grid[r_sgn.argmin(0)],
            "svd_grid": svd_scale * grid, "sgn_grid": sgn_scale * grid, "P0": P0}


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
            if c[0] > 0:
                out[k] = min(out[k], np.exp(c[2] - c[1] ** 2 / (4 * c[0])))
    return out


def phase_diagram(alphas, betas, k_min=10, **kwargs):
    """Phases on the `(α, β)` grid (see module docstring).

    Returns `(phase, log_ratio)`: `phase[i, j] ∈ {+1, 0, −1}` for `(alphas[i],
    betas[j])`, and `log_ratio[i, j]` = `log(P_SignSVD/P_SignSGD)` at the largest
    horizon (negative: SignSVD ahead). Horizons `k < k_min` are ignored.
    """
    phase = np.zeros((len(alphas), len(betas)), np.int64)
    final = np.zeros((len(alphas), len(betas)))
    for i, a in enumerate(alphas):
        for j, b in enumerate(betas):
            out = compare_at_optimal_lr(a, b, **kwargs)
            keep = out["k"] >= k_min
            lr_ = np.log(out["svd"][keep] / out["sgn"][keep])
            phase[i, j] = 1 if np.all(lr_ < 0) else (-1 if np.all(lr_ > 0) else 0)
            final[i, j] = lr_[-1]
    return phase, final
