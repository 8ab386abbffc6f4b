"""Schedule design by gradient descent through the ODE (`jax.grad` of a risk curve).

`optimize_schedule` parameterises `log η` as piecewise linear in `log(1 + k)`
(`rc.PiecewiseLogLinear`) and minimises the final (or log-averaged) risk at a
horizon with Adam on the knot values, the gradient coming from `jax.grad`
through `solve_ode` (discrete start and adaptive ODE solve alike). The step
size is kept below the method's stability threshold `η*` by the
parameterisation `log η = log η* − softplus(u)`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax

from ..odes import solve_ode
from ..optimizers import SGD, PiecewiseLogLinear
from ..theory import stability_threshold
from ._compare import _check_horizon
from ._sweep import best_lr

__all__ = ["optimize_schedule", "schedule_risk"]


def _knots(horizon: int, n_knots: int) -> np.ndarray:
    k = np.unique(np.round(np.geomspace(1, horizon, n_knots - 1)))
    return np.concatenate([[0.0], k])


def schedule_risk(problem, make_optimizer, knots, log_lr, checkpoints, objective="final"):
    """Risk objective of a `PiecewiseLogLinear(knots, log_lr)` schedule (traceable).

    `objective="final"`: `log P(k_max)`; `"average"`: the mean of `log P` over the
    checkpoints `k >= 1` (a log-time average of the whole curve).
    """
    curve = solve_ode(problem, make_optimizer(PiecewiseLogLinear(knots, log_lr)), checkpoints,
                      throw=False, check_stability=False)
    logp = jnp.log(jnp.maximum(curve.risk, 1e-300))
    bad = curve.code != 0
    val = logp[-1] if objective == "final" else jnp.mean(logp[1:])
    return jnp.where(bad, jnp.inf, val)


def optimize_schedule(problem, horizon: int, *, batch: int = 1, make_optimizer=None,
                      n_knots: int = 6, steps: int = 60, learning_rate: float = 0.1,
                      objective: str = "final", n_checkpoints: int = 24,
                      progress=None) -> dict:
    """Design a step-size schedule for `horizon` iterations by gradient descent.

    **Arguments:**

    - `problem`: the problem.
    - `horizon`: the iteration count the schedule is designed for.
    - `batch`: the batch size (for the default SGD factory and the threshold).
    - `make_optimizer`: `schedule -> config` (default `lambda s: rc.SGD(s, batch)`).
    - `n_knots`: knots of `log η`, log-spaced in `1 + k` from 0 to `horizon`.
    - `steps`, `learning_rate`: Adam iterations and step on the knot parameters.
    - `objective`: `"final"` (risk at the horizon) or `"average"` (log-time
      average of the curve).
    - `progress`: optional `(step, value) -> None` callback.

    **Returns:** a dict with `schedule` (the `PiecewiseLogLinear`), `risk` (its
    final risk), `constant_lr` and `constant_risk` (the best constant step size
    for the same objective, from a vmapped sweep), `gain = constant_risk/risk`,
    `history` (objective per Adam step) and `checkpoints`.
    """
    horizon = _check_horizon(horizon)
    if objective not in ("final", "average"):
        raise ValueError(f"`objective` must be 'final' or 'average', got {objective!r}")
    make = make_optimizer or (lambda s: SGD(s, batch))
    ks = np.unique(np.concatenate([[0], np.round(np.geomspace(1, horizon, n_checkpoints))]))
    ks = ks.astype(np.int64)
    thr = stability_threshold(make(1.0), problem)
    cap = np.log(0.98 * thr) if np.isfinite(thr) else None
    # the best constant step size first (the schedule starts there)
    hi = 0.98 * thr if np.isfinite(thr) else 10.0
    b = best_lr(problem, lambda lr: make(lr), ks, np.geomspace(hi * 1e-4, hi, 16), refine=16)
    if objective == "final":
        c_lr, c_risk = float(b["lr"][-1]), float(b["risk"][-1])
    else:
        r = np.asarray(b["risks"])[:, 1:]
        j = int(np.argmin(np.mean(np.log(np.where(r > 0, r, np.inf)), axis=1)))
        c_lr, c_risk = float(b["grid"][j]), float(np.exp(np.mean(np.log(r[j]))))
    knots = jnp.asarray(_knots(horizon, n_knots))

    def to_log_lr(u):
        return cap - jax.nn.softplus(u) if cap is not None else u

    def from_log_lr(x):
        return np.log(np.expm1(cap - x)) if cap is not None else x

    u = jnp.full(knots.shape, from_log_lr(np.log(c_lr)))
    loss = jax.jit(jax.value_and_grad(
        lambda u: schedule_risk(problem, make, knots, to_log_lr(u), ks, objective)))
    opt = optax.adam(learning_rate)
    state = opt.init(u)
    history, best_u, best_v = [], u, np.inf
    for i in range(int(steps)):
        v, g = loss(u)
        v = float(v)
        history.append(v)
        if progress is not None:
            progress(i, v)
        if np.isfinite(v) and v < best_v:
            best_u, best_v = u, v
        if not np.all(np.isfinite(np.asarray(g))):
            break
        upd, state = opt.update(g, state, u)
        u = optax.apply_updates(u, upd)
    sched = PiecewiseLogLinear(np.asarray(knots), np.asarray(to_log_lr(best_u)))
    risk = float(np.exp(best_v))
    return {"schedule": sched, "risk": risk, "constant_lr": c_lr, "constant_risk": c_risk,
            "gain": c_risk / risk, "history": np.asarray(history), "checkpoints": ks,
            "objective": objective}
