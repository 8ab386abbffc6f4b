"""Sweeps and best-step-size searches, each one compiled program (`jax.vmap`).

`sweep` maps `solve_ode` over an array of hyperparameter values with
`jax.vmap`: one compilation for the whole sweep, and a new set of values never
recompiles. `best_lr` finds, for every horizon, the best constant step size on a
log grid (one vmapped solve) refined by a parabola in `(log η, log P)`.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from .._curve import Curve, as_numpy, padded_checkpoints, validate_checkpoints
from ..odes import solve_ode_sweep

__all__ = ["sweep", "best_lr", "envelope"]


def sweep(problem, make_optimizer: Callable, values, checkpoints, **solve_options) -> Curve:
    """ODE risk curves for `make_optimizer(v)` at every `v` in `values`, vmapped.

    **Arguments:**

    - `problem`: the problem (the same for every value).
    - `make_optimizer`: `value -> optimizer config`, e.g. `lambda lr: rc.SGD(lr, 4)`;
      `value` may be a pytree of arrays (e.g. `(lr, clip)` pairs) with a leading
      sweep axis.
    - `values`: array (or pytree of arrays) of values, leading axis = sweep axis.
    - `checkpoints`: iteration counts.
    - `**solve_options`: passed to `solve_ode` (`throw` is always False: read
      `curve.status` per element).

    **Returns:** a `Curve` whose arrays have a leading sweep axis (`curve[i]`,
    `curve.unstack()`), numpy arrays.
    """
    ks = validate_checkpoints(checkpoints)
    for name in ("throw", "progress", "check_stability"):
        solve_options.pop(name, None)  # a sweep never throws: read `curve.status`
    vals = jax.tree.map(lambda v: jnp.asarray(v, jnp.float64), values)
    sizes = {int(v.shape[0]) if v.ndim else -1 for v in jax.tree.leaves(vals)}
    if len(sizes) != 1 or min(sizes) < 1:
        raise ValueError(f"`values` must be arrays with one common leading (sweep) axis "
                         f"of length >= 1, got leading sizes {sorted(sizes)}")
    # the theories are built outside the compiled program (vmapped over the values), so
    # its cache key is their structure: never the identity of `make_optimizer` or of
    # the problem (a new noise scale of the same shape does not recompile either); the
    # values run in chunks of one fixed width, so every grid size reuses one program
    n = ks.shape[0]
    c = as_numpy(solve_ode_sweep(problem, make_optimizer, vals, padded_checkpoints(ks),
                                 chunk="auto", **solve_options))
    cut = lambda a: a[:, ..., :n]  # noqa: E731 — drop the padding checkpoints
    return Curve(k=ks, risk=cut(c.risk), kind=c.kind, label=c.label, lr=cut(c.lr),
                 extras={k: cut(v) for k, v in c.extras.items()}, code=c.code,
                 noise_variance=c.noise_variance, meta=c.meta)


def envelope(risks, grid):
    """Lower envelope over a log grid of step sizes, per horizon.

    `risks` is `(n_grid, n_k)`. Returns `(risk, lr)` per horizon: the grid minimum,
    refined by a parabola through it and its neighbours in `(log η, log P)` (the
    vertex drop capped by the smaller rise to a neighbour, so a bad fit cannot
    invent a lower risk).
    """
    r = np.where(np.isfinite(risks) & (risks > 0), risks, np.inf)
    lr = np.log(r)
    x = np.log(np.asarray(grid, np.float64))
    i = np.argmin(lr, axis=0)
    cols = np.arange(lr.shape[1])
    out, best = np.exp(lr[i, cols]), x[i].copy()
    for k, j in enumerate(i):
        if 0 < j < len(x) - 1 and np.all(np.isfinite(lr[j - 1:j + 2, k])):
            (x0, x1, x2), (y0, y1, y2) = x[j - 1:j + 2], lr[j - 1:j + 2, k]
            # parabola through three points: curvature a, vertex xv
            a = ((y2 - y1) / (x2 - x1) - (y1 - y0) / (x1 - x0)) / (x2 - x0)
            if a > 0:
                slope = (y1 - y0) / (x1 - x0) - a * (x1 - x0)   # derivative at x0
                xv = x0 - slope / (2 * a)
                v = y0 + slope * (xv - x0) + a * (xv - x0) ** 2
                v = max(v, y1 - (min(y0, y2) - y1))
                if v < y1:
                    out[k], best[k] = np.exp(v), np.clip(xv, x0, x2)
    return out, np.exp(best)


def best_lr(problem, make_optimizer: Callable, checkpoints, lrs, *, refine: int = 8,
            **solve_options) -> dict:
    """Best constant step size for every horizon, from vmapped ODE solves.

    Solves `make_optimizer(η)` for every `η` in the log grid `lrs` (one compiled
    program), then (`refine > 0`) `refine` more step sizes log-spaced between the
    neighbours of the smallest and largest per-horizon optimum (same program, no
    recompilation when `refine == len(lrs)`; one more compile otherwise).

    **Returns:** `{"k", "risk", "lr", "grid", "risks", "edge"}`: per-horizon envelope
    risk and best step size, the grid, the `(n_grid, n_k)` risks, and `edge` (True
    where the optimum sits on the end of the grid: widen it).
    """
    ks = validate_checkpoints(checkpoints)
    g = np.sort(np.asarray(lrs, np.float64))
    if g.ndim != 1 or g.size < 3 or np.any(g <= 0):
        raise ValueError(f"`lrs` must be >= 3 step sizes > 0, got {lrs!r}")
    r = _risks(problem, make_optimizer, g, ks, solve_options)
    i = np.argmin(np.where(np.isfinite(r), r, np.inf), axis=0)
    if refine:
        lo, hi = g[max(int(i[ks > 0].min()) - 1, 0)], g[min(int(i.max()) + 1, g.size - 1)]
        gf = np.geomspace(lo, hi, int(refine) + 2)[1:-1]
        rf = _risks(problem, make_optimizer, gf, ks, solve_options)
        order = np.argsort(np.concatenate([g, gf]))
        g, r = np.concatenate([g, gf])[order], np.concatenate([r, rf])[order]
    risk, lr = envelope(r, g)
    ia = np.argmin(np.where(np.isfinite(r), r, np.inf), axis=0)
    edge = (ia == 0) | (ia == g.size - 1)
    return {"k": ks, "risk": risk, "lr": lr, "grid": g, "risks": r, "edge": edge}


def _risks(problem, make_optimizer, grid, ks, solve_options):
    c = sweep(problem, make_optimizer, grid, ks, **solve_options)
    r = np.array(c.risk, np.float64)
    r[np.asarray(c.code) != 0] = np.inf
    return r
