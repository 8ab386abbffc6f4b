"""Compression checked on an optimizer's own risk curve."""

from __future__ import annotations

from .._compress import compress, power_law
from ..odes import solve_ode

__all__ = ["compress_on_curve"]


def compress_on_curve(problem, optimizer, checkpoints, rtol: float = 1e-6, *,
                      horizon: float = 1e9, **solve_options):
    """A compressed `problem` whose `optimizer` ODE risk curve at `checkpoints` agrees
    between two consecutive refinement levels to `rtol` (see `rc.compress`).

    `problem` is a diagonal `Problem`, or a tuple `(d, alpha, beta, noise)` for a
    power law built without allocating `d` modes (`rc.compress.power_law`).
    """
    def measure(p):
        return solve_ode(p, optimizer, checkpoints, rtol=min(1e-6, rtol * 1e-2),
                         check_stability=False, **solve_options).risk

    if isinstance(problem, tuple):
        d, alpha, beta, *noise = problem
        return power_law(d, alpha, beta, noise[0] if noise else None, rtol=rtol,
                         horizon=horizon, measure=measure)
    return compress(problem, rtol, horizon=horizon, measure=measure)
