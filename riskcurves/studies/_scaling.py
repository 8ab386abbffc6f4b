"""Compute-optimal scaling laws on power-law random features (arXiv 2405.15074).

Flops `f = d·k·B` (model size × iterations × batch). For each `d` on a log grid,
one ODE solve of the deterministic-equivalent `PowerLawRF` to the largest horizon
gives the loss `L(d, k) = P(d, k) + ½ E[ε_eff²]` (the paper's loss: excess risk plus
the irreducible part) at every `k`; the compute-optimal frontier is

    L*(f) = min_d L(d, f/(d B)),      d*(f) = argmin_d,

and the exponents `L* ~ f^(−η)`, `d* ~ f^(ξ)` are least-squares slopes in log-log
over the flops where the minimiser is interior to the `d` grid. `paper_exponents`
gives the paper's formulas for the phases with `2α > 1` (its α, β: data
covariance `j^(−2α)`, target `b_j = j^(−β)`), measured against in
`docs/theory/scaling_laws.md`. Optimizer factories: `sgd_at_fraction`,
`sgdm_at_fraction` (heavy ball / Nesterov) and `dana_at_fraction` (DANA, arXiv
2505.16098); `dana_exponents` and `loss_exponent` compare their loss-curve
exponents (SGD-M keeps SGD's, DANA-decaying outscales it).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import numpy as np

from .._curve import checkpoints as _checkpoints
from .._plrf import PowerLawRF
from ..odes import solve_ode
from ..optimizers import DANA, SGD
from ..problems import Problem
from ..theory import stability_threshold
from ..theory._momentum import momentum_stability_threshold

__all__ = ["ScalingLaw", "compute_optimal", "paper_exponents", "sgd_at_fraction", "plrf_phase",
           "sgdm_at_fraction", "dana_at_fraction", "loss_exponent", "dana_exponents"]


def plrf_phase(alpha: float, beta: float) -> str:
    """The phase of arXiv 2405.15074 for SGD at `(α, β)` (paper's convention; 2α > 1 only
    resolves Ia, II, III; below the high-dimensional line it returns "IV/Ib/Ic")."""
    if 2 * alpha <= 1:
        return "IV/Ib/Ic"
    if 2 * beta < 1:
        return "Ia"
    return "II" if beta < alpha else "III"


def paper_exponents(alpha: float, beta: float) -> dict:
    """`{"phase", "loss", "d"}`: `L* ~ f^(−loss)`, `d* ~ f^(d)` (arXiv 2405.15074).

    With `F_pp(r) ~ r^(−(2α+2β−1)/(2α))`, `F_ac(r) ~ d^(−1) r^(−1+1/(2α))` (`2β > 1`),
    `F_0(d) ~ d^(−2α+max(0, 1−2β))` and the SGD noise `K_pp(r) ~ r^(−2+1/(2α))`,
    `r = f/d`: Ia balances `F_pp` and `F_0`, II `F_pp` and `F_ac`, III `F_ac` and `K_pp`.
    """
    ph = plrf_phase(alpha, beta)
    if ph == "Ia":
        return {"phase": ph, "loss": (2 * alpha + 2 * beta - 1) / (2 * alpha + 1),
                "d": 1 / (2 * alpha + 1)}
    if ph == "II":
        return {"phase": ph, "loss": (2 * alpha + 2 * beta - 1) / (2 * (alpha + beta)),
                "d": beta / (alpha + beta)}
    if ph == "III":
        return {"phase": ph, "loss": 1 - 1 / (4 * alpha), "d": 0.5}
    raise ValueError(f"`alpha` must be > 1/2 for the paper's formulas here, got {alpha}")


def sgd_at_fraction(fraction: float = 0.5, batch: int = 1) -> Callable:
    """Optimizer factory: SGD at `fraction` of its stability threshold on each problem."""
    if not 0 < fraction < 1:
        raise ValueError(f"`fraction` must be in (0, 1), got {fraction}")

    def make(problem):
        thr = stability_threshold(SGD(lr=1e-6, batch=batch), problem)
        return SGD(lr=fraction * thr, batch=batch)

    return make


def sgdm_at_fraction(fraction: float = 0.5, momentum: float = 0.9, batch: int = 1,
                     nesterov: bool = False) -> Callable:
    """Optimizer factory: SGD with momentum `μ` (optax heavy ball or Nesterov) at
    `fraction` of its own stability threshold (`theory.momentum_stability_threshold`,
    about `(1 − μ)` times SGD's)."""
    if not 0 < fraction < 1:
        raise ValueError(f"`fraction` must be in (0, 1), got {fraction}")
    if not 0 <= momentum < 1:
        raise ValueError(f"`momentum` must be in [0, 1), got {momentum}")

    def make(problem):
        thr = momentum_stability_threshold(problem, momentum, batch, nesterov)
        return SGD(lr=fraction * thr, batch=batch, momentum=momentum, nesterov=nesterov)

    return make


def dana_at_fraction(alpha: float, variant: str = "decaying", fraction: float = 0.5,
                     g3_ratio: float = 0.5, delta: float = 8.0, batch: int = 1) -> Callable:
    """Optimizer factory: DANA (arXiv 2505.16098) on PLRF of data exponent `alpha`
    (the paper's: covariance `j^(−2α)`).

    `γ2 = fraction ×` SGD's stability threshold; DANA-decaying: `κ = 1/(2α)`,
    `g3 = g3_ratio·γ2`; DANA-constant: `κ = 0`, `g3 = g3_ratio·γ2/d` (the `1/d`
    scaling that keeps it stable, `theory.dana_divergence_time`). `δ = delta`.
    """
    if not 0 < fraction < 1:
        raise ValueError(f"`fraction` must be in (0, 1), got {fraction}")
    if variant not in ("decaying", "constant"):
        raise ValueError(f"`variant` must be 'decaying' or 'constant', got {variant!r}")
    if not (math.isfinite(alpha) and alpha > 0):
        raise ValueError(f"`alpha` must be finite and > 0, got {alpha}")

    def make(problem):
        lr = fraction * stability_threshold(SGD(lr=1e-6, batch=batch), problem)
        if variant == "decaying":
            return DANA(lr, g3_ratio * lr, batch=batch, delta=delta, kappa=1 / (2 * alpha))
        return DANA(lr, g3_ratio * lr / problem.d, batch=batch, delta=delta, kappa=0.0)

    return make


def dana_exponents(alpha: float, beta: float) -> dict:
    """Loss-curve exponents `P(k) ~ k^(−σ)` in the population-limited regime
    (`1 ≪ k`, before the model size `d` saturates the curve) on PLRF(α, β), `2α > 1`:

    - SGD and SGD with momentum (constant `μ`): `σ = (2α + 2β − 1)/(2α)` (the
      paper's `F_pp`; momentum only rescales the step, `η → η/(1 − μ)`);
    - DANA-decaying (`κ = 1/(2α)`): the buffer averages the last `~k/δ` gradients,
      so the effective step is `γ2 + γ3(k)·k/(δ + 1) ~ k^(1 − κ)` and the effective
      time `τ(k) ~ k^(2 − κ)`: `σ_DANA = (2 − 1/(2α))·σ_SGD` (docs/theory/scaling_laws.md;
      asymptotic, reached slowly: measured local slopes there).
    """
    if not 2 * alpha > 1:
        raise ValueError(f"`alpha` must be > 1/2, got {alpha}")
    s = (2 * alpha + 2 * beta - 1) / (2 * alpha)
    return {"sgd": s, "sgdm": s, "dana-decaying": (2 - 1 / (2 * alpha)) * s}


def loss_exponent(ks, loss, k_range) -> float:
    """Least-squares slope `σ` of `log loss = −σ log k + c` over `k_lo <= k <= k_hi`
    (`k_range = (k_lo, k_hi)`, at least 3 checkpoints inside)."""
    ks, loss = np.asarray(ks, np.float64), np.asarray(loss, np.float64)
    lo, hi = k_range
    sel = (ks >= lo) & (ks <= hi) & np.isfinite(loss) & (loss > 0)
    if sel.sum() < 3:
        raise ValueError(f"`k_range` {k_range} holds {int(sel.sum())} checkpoints (need >= 3)")
    return -_fit(ks[sel], loss[sel])


class ScalingLaw(NamedTuple):
    """Result of `compute_optimal` (numpy arrays; exponents are positive numbers)."""

    ds: np.ndarray          # model sizes
    ks: np.ndarray          # iteration checkpoints
    loss: np.ndarray        # (len(ds), len(ks)) loss L(d, k)
    flops: np.ndarray       # the f grid
    frontier: np.ndarray    # L*(f)
    d_opt: np.ndarray       # d*(f) (on the grid, refined by a parabola in log d)
    fit_range: tuple        # (f_lo, f_hi) used for the fits
    loss_exponent: float    # η in L* ~ f^(−η)
    d_exponent: float       # ξ in d* ~ f^ξ
    batch: int


def _pad(p: Problem, n: int) -> Problem:
    """`p` with `n` nodes: extra nodes of weight 1e-300 and zero energy (no effect)."""
    k = n - p.n_modes
    if k <= 0:
        return p
    lam = np.concatenate([p.eigenvalues, np.full(k, p.eigenvalues.min() * 1e-3)])
    return Problem(lam, np.concatenate([p.initial_energies, np.zeros(k)]), p.noise,
                   weights=np.concatenate([p.mode_weights, np.full(k, 1e-300)]), label=p.label)


def _fit(x, y):
    return float(np.polyfit(np.log(x), np.log(y), 1)[0])


def compute_optimal(alpha: float, beta: float, ds, *, optimizer: Callable | None = None,
                    batch: int = 1, v_ratio: float | None = None, horizon: float = 1e12,
                    n_flops: int = 60,
                    plrf_options: dict | None = None) -> ScalingLaw:
    """Compute-optimal frontier of `optimizer` on PLRF(α, β) over model sizes `ds`.

    **Arguments:**

    - `alpha`, `beta`: the paper's exponents (`PowerLawRF`).
    - `ds`: increasing model sizes (integers; deterministic equivalent, compressed).
    - `optimizer`: factory `problem -> optimizer config` (default
      `sgd_at_fraction(0.5, batch)`); any optimizer with an ODE works.
    - `batch`: batch size `B` in `f = d·k·B` (the factory's optimizer must use it).
    - `v_ratio`: `v = v_ratio·d`; `None` means `v = inf` (needs `2α > 1`).
    - `horizon`: largest flops `f`; `n_flops`: points of the `f` grid.
    - `plrf_options`: passed to `PowerLawRF(..., method="deterministic")`.

    **Returns:** a `ScalingLaw`. The fits use the flops whose minimiser `d*` lies
    strictly inside the grid (one grid point from each end).

    **Raises:** `ValueError` for fewer than 3 sizes or no interior minimiser.
    """
    ds = np.asarray(sorted(int(d) for d in ds))
    if ds.size < 3:
        raise ValueError(f"`ds` needs at least 3 model sizes, got {ds.size}")
    make = optimizer or sgd_at_fraction(0.5, batch)
    opts = dict(plrf_options or {})
    kmax = int(horizon / (ds[0] * batch))
    ks = _checkpoints(max(kmax, 2), 200)
    loss = np.full((ds.size, ks.size), np.nan)
    probs = [PowerLawRF(math.inf if v_ratio is None else int(round(v_ratio * d)), int(d),
                        alpha, beta, method="deterministic", **opts) for d in ds]
    n_max = 64 * math.ceil(max(p.n_modes for p in probs) / 64)
    for i, d in enumerate(ds):
        prob = _pad(probs[i], n_max)     # one node count: the ODE compiles once
        opt = make(prob)
        kd = ks[ks <= max(horizon / (d * batch), 2)]
        c = solve_ode(prob, opt, kd, throw=False, check_stability=False)
        loss[i, :kd.size] = np.asarray(c.risk) + 0.5 * prob.noise_variance
    f_lo = ds[-1] * batch * 1.0
    flops = np.geomspace(f_lo, horizon, n_flops)
    logk = np.log(np.maximum(ks, 0.5))
    table = np.full((ds.size, flops.size), np.inf)
    for i, d in enumerate(ds):
        k = flops / (d * batch)
        ok = np.isfinite(loss[i])
        table[i] = np.exp(np.interp(np.log(k), logk[ok], np.log(loss[i][ok]),
                                    right=np.inf))
    j = np.argmin(table, axis=0)
    frontier = table[j, np.arange(flops.size)]
    # refine d* by a parabola through the three grid points around the minimum (log-log)
    ld = np.log(ds)
    d_opt = ds[j].astype(float)
    inner = (j > 0) & (j < ds.size - 1)
    for n in np.nonzero(inner)[0]:
        y = np.log(table[j[n] - 1:j[n] + 2, n])
        x = ld[j[n] - 1:j[n] + 2]
        a2, a1, _ = np.polyfit(x, y, 2)
        if a2 > 0:
            d_opt[n] = math.exp(min(max(-a1 / (2 * a2), x[0]), x[2]))
            frontier[n] = math.exp(np.polyval([a2, a1, _], math.log(d_opt[n])))
    sel = inner & np.isfinite(frontier)
    if sel.sum() < 3:
        raise ValueError("the minimiser d*(f) is not inside the `ds` grid for at least 3 flops "
                         "values: widen `ds` or change `horizon`")
    fr = (float(flops[sel].min()), float(flops[sel].max()))
    target = frontier[sel]
    return ScalingLaw(ds=ds, ks=ks, loss=loss, flops=flops, frontier=frontier, d_opt=d_opt,
                      fit_range=fr, loss_exponent=-_fit(flops[sel], target),
                      d_exponent=_fit(flops[sel], d_opt[sel]), batch=int(batch))
