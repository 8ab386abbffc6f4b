"""Tuned comparisons: each method at its own best hyperparameters for a horizon.

Every search is a vmapped ODE sweep (`riskcurves.studies.sweep`): one compiled
program per method and grid size, whatever the values.
"""

from __future__ import annotations

import math

import numpy as np

from ..optimizers import SGD, ClippedSGD, SignSGD, check_batch
from ..theory import median_abs_noise, stability_threshold
from ._sweep import best_lr, sweep

__all__ = ["tuned_comparison", "compare_clipped_sgd", "ClipComparison"]


def _check_horizon(horizon) -> int:
    try:
        ok = not isinstance(horizon, bool) and float(horizon).is_integer() and horizon >= 1
    except (TypeError, ValueError, OverflowError):
        ok = False
    if not ok:
        raise ValueError(f"`horizon` must be an integer >= 1, got {horizon!r}")
    return int(horizon)


def _best_final(problem, make, lo, hi, horizon, n_lr, refine, **options):
    ks = np.array([0, horizon])
    b = best_lr(problem, make, ks, np.geomspace(lo, hi, n_lr), refine=refine, **options)
    return float(b["lr"][-1]), float(b["risk"][-1]), bool(b["edge"][-1])


def tuned_comparison(problem, horizon: int, batch: int = 1, *, sgd_range=None,
                     sign_range=None, n_lr: int = 24, refine: int = 8,
                     **ode_options) -> dict:
    """SGD vs SignSGD, each at its best constant step size for a horizon.

    Minimises the final excess risk `P(horizon)` over a log grid of `n_lr` step
    sizes (plus `refine` more between the neighbours of the optimum, and a parabola
    in `(log η, log P)`) with vmapped ODE solves (`studies.best_lr`). Both ODEs are
    exact from `k = 1` for SGD (its exact recursion) and use the default SignSGD
    theory. Default ranges: SGD `[1e-4, 0.999]·η*` (its stability threshold);
    SignSGD `[1e-6, 1]·10√(2P0/d)`.

    **Returns:** `{"sgd": {"lr", "risk", "edge"}, "signsgd": {...}, "ratio"}` with
    `ratio = risk_signsgd / risk_sgd` (< 1: SignSGD wins) and `edge` True if the
    optimum sits on the end of its range.
    """
    horizon = _check_horizon(horizon)
    B = check_batch(batch)
    if sgd_range is None:
        thr = stability_threshold(SGD(1.0, B), problem)
        sgd_range = (1e-4 * thr, 0.999 * thr)
    if sign_range is None:
        s = 10 * math.sqrt(2 * problem.initial_risk / problem.d)
        sign_range = (1e-6 * s, s)
    out = {}
    for name, make, (lo, hi), opts in (
            ("sgd", lambda lr: SGD(lr, B), sgd_range, {}),
            ("signsgd", lambda lr: SignSGD(lr, B), sign_range, ode_options)):
        lr, risk, edge = _best_final(problem, make, lo, hi, horizon, n_lr, refine, **opts)
        out[name] = {"lr": lr, "risk": risk, "edge": edge}
    out["ratio"] = out["signsgd"]["risk"] / out["sgd"]["risk"]
    return out


class ClipComparison(dict):
    """Result of `compare_clipped_sgd` (a dict with attribute access).

    Keys: `horizon`, `sgd_lr`, `sgd_risk` (best constant-step SGD), `clip_lr`,
    `clip`, `clip_eff`, `clip_risk` (best clipped run), `ratio =
    clip_risk/sgd_risk`, and the searched grids `sgd_lrs`, `sgd_risks`,
    `clip_lrs`, `clips`, `clip_risks` (`(n_lr, n_clip)`).
    """

    def __getattr__(self, name):
        try:
            return self[name]
        except KeyError:  # hasattr / getattr with a default need AttributeError
            raise AttributeError(name) from None


def compare_clipped_sgd(problem, horizon: int, *, batch: int = 1, lrs=None, clips=None,
                        n_lr: int = 24, n_clip: int = 16, refine: bool = True,
                        rtol: float = 1e-4) -> ClipComparison:
    """Best clipped-SGD run vs best constant-step SGD run at `horizon` iterations (ODE).

    Both are tuned on their ODEs with vmapped sweeps: SGD over the step sizes
    `lrs`, clipped SGD over the grid `lrs × clips` (`clips` are thresholds `c` on
    ‖g‖), then (`refine=True`, default grids only) once more on a finer grid
    between the neighbours of each optimum. Default grids (`n_lr`, `n_clip`
    points, log-spaced): SGD `η ∈ η*·[1e-3, 0.95]` (η* its stability threshold),
    clipped `η ∈ η*·[1e-3, 30]` (clipping shrinks the effective step),
    `c' ∈ m·[0.03, 30]` (m the median of |ε|, or √(2P0) if noiseless),
    `c = c'√(tr K)`. Noise of infinite variance: `sgd_risk = inf`.

    **Returns:** a `ClipComparison`.
    """
    horizon = _check_horizon(horizon)
    batch = check_batch(batch)
    ks = np.array([0, horizon])
    sq = math.sqrt(problem.trace)
    eta_s = stability_threshold(SGD(1.0, batch), problem)
    try:
        var = float(problem.noise.variance)
    except ValueError:
        var = math.inf
    m = median_abs_noise(problem.noise) or math.sqrt(2 * problem.initial_risk)
    sgd_lrs = (eta_s * np.logspace(-3, np.log10(0.95), n_lr) if lrs is None
               else np.asarray(lrs, float))
    c_lrs = eta_s * np.logspace(-3, np.log10(30), n_lr) if lrs is None else sgd_lrs
    cs = (m * np.logspace(np.log10(0.03), np.log10(30), n_clip) * sq if clips is None
          else np.asarray(clips, float))
    if np.any(sgd_lrs <= 0) or np.any(cs <= 0):
        raise ValueError("`lrs` and `clips` must be > 0")

    def final(c):
        r = np.array(c.risk[..., -1], np.float64)
        r[np.asarray(c.code) != 0] = np.inf
        return r

    def run_sgd(etas):
        return final(sweep(problem, lambda lr: SGD(lr, batch), etas, ks, rtol=rtol))

    def run_clip(etas, cvals):
        return final(sweep(problem, lambda v: ClippedSGD(v[0], v[1], batch),
                           (np.asarray(etas), np.asarray(cvals)), ks, rtol=rtol))

    if math.isfinite(var):
        sgd_r = run_sgd(sgd_lrs)
        i = int(np.argmin(sgd_r))
        if refine and lrs is None:
            lo, hi = sgd_lrs[max(i - 1, 0)], min(sgd_lrs[min(i + 1, len(sgd_lrs) - 1)],
                                                 0.95 * eta_s)
            fine = np.geomspace(lo, hi, 9)
            fr = run_sgd(fine)
            if np.min(fr) < sgd_r[i]:
                sgd_lrs, sgd_r = np.concatenate([sgd_lrs, fine]), np.concatenate([sgd_r, fr])
                i = int(np.argmin(sgd_r))
        sgd_best = (float(sgd_lrs[i]), float(sgd_r[i]))
    else:
        sgd_r = np.full_like(sgd_lrs, np.inf)
        sgd_best = (math.nan, math.inf)
    E, C = np.meshgrid(c_lrs, cs, indexing="ij")
    table = run_clip(E.ravel(), C.ravel()).reshape(E.shape)
    a, b = np.unravel_index(int(np.argmin(table)), table.shape)
    best = (float(E[a, b]), float(C[a, b]), float(table[a, b]))
    if refine and lrs is None and clips is None:
        ef = np.geomspace(c_lrs[max(a - 1, 0)], c_lrs[min(a + 1, len(c_lrs) - 1)], 5)
        cf = np.geomspace(cs[max(b - 1, 0)], cs[min(b + 1, len(cs) - 1)], 5)
        E2, C2 = np.meshgrid(ef, cf, indexing="ij")
        t2 = run_clip(E2.ravel(), C2.ravel())
        j = int(np.argmin(t2))
        if t2[j] < best[2]:
            best = (float(E2.ravel()[j]), float(C2.ravel()[j]), float(t2[j]))
    return ClipComparison(
        horizon=horizon, sgd_lr=sgd_best[0], sgd_risk=sgd_best[1], clip_lr=best[0],
        clip=best[1], clip_eff=best[1] / sq, clip_risk=best[2],
        ratio=best[2] / sgd_best[1], sgd_lrs=sgd_lrs, sgd_risks=sgd_r, clip_lrs=c_lrs,
        clips=cs, clip_risks=table,
    )
