"""`solve_ode`: the one solve path shared by every optimizer's ODE."""

from __future__ import annotations

import time

import diffrax
import equinox as eqx
import jax.numpy as jnp
import numpy as np

from .._curve import Curve, validate_checkpoints
from .._errors import DivergenceError, SolverError
from ..theory import check_stable, stability_threshold
from ._base import theory_for
from ._solver import ETD2

__all__ = ["solve_ode", "solve_theory"]

_BLOWUP = 1e30


@eqx.filter_jit
def _integrate(theory, ts, rtol, atol, max_steps, progress_meter):
    y0 = theory.init_state()

    def save(t, y, args):
        # `lr` may be a Python float (e.g. the default `jnp.nan`): make both arrays
        return (jnp.asarray(theory.risk(y), jnp.float64),
                jnp.asarray(theory.lr(t, y), jnp.float64), theory.observables(t, y))

    controller = diffrax.ClipStepSizeController(
        diffrax.PIDController(rtol=rtol, atol=atol), step_ts=ts
    )
    sol = diffrax.diffeqsolve(
        diffrax.ODETerm(theory.vector_field),
        ETD2(theory.damping),
        t0=jnp.zeros((), ts.dtype),
        t1=ts[-1],
        dt0=None,
        y0=y0,
        saveat=diffrax.SaveAt(ts=ts, fn=save),
        stepsize_controller=controller,
        max_steps=max_steps,
        throw=False,
        progress_meter=progress_meter,
    )
    return sol.ys, sol.result, sol.stats["num_steps"]


def solve_theory(theory, checkpoints, *, rtol=1e-5, atol=1e-30, max_steps=100_000,
                 progress=False):
    """Integrate an `AbstractTheory` and return `(risk, lr, observables, info)`.

    Low-level entry (no stability check, no `Curve`); `solve_ode` is the public call.
    """
    ks = validate_checkpoints(checkpoints)
    ts = jnp.asarray(ks, jnp.float64)
    rec = theory.recursion(ks)
    if rec is not None:  # an exact recursion in k: one pass, no ODE solver
        risk, lr, obs = rec
        return (np.asarray(risk), np.asarray(lr), {k: np.asarray(v) for k, v in obs.items()},
                {"num_steps": int(ks[-1]), "result": "successful", "success": True})
    if ks[-1] == 0:  # nothing to integrate
        y0 = theory.init_state()
        obs = {k: np.asarray([v]) for k, v in theory.observables(0.0, y0).items()}
        return (np.asarray([theory.risk(y0)]), np.asarray([theory.lr(0.0, y0)]), obs,
                {"num_steps": 0, "result": "successful"})
    meter = diffrax.TqdmProgressMeter() if progress else diffrax.NoProgressMeter()
    (risk, lr, obs), result, nsteps = _integrate(
        theory, ts, jnp.asarray(rtol, jnp.float64), jnp.asarray(atol, jnp.float64),
        int(max_steps), meter
    )
    info = {"num_steps": int(nsteps), "result": str(result)}
    info["success"] = bool(result == diffrax.RESULTS.successful)
    return (np.asarray(risk), np.asarray(lr), {k: np.asarray(v) for k, v in obs.items()}, info)


def solve_ode(problem, optimizer, checkpoints, *, rtol: float = 1e-5, atol: float = 1e-30,
              max_steps: int = 100_000, progress: bool = False, throw: bool = True,
              check_stability: bool = True, label: str | None = None, **options) -> Curve:
    """Deterministic risk curve of `optimizer` on `problem` at `checkpoints`.

    Integrates the optimizer's ODE (see `riskcurves.odes`) in iteration time `k`
    with the exponential integrator `ETD2` and diffrax's PID step-size control,
    stepping exactly to each checkpoint. float64 throughout.

    **Arguments:**

    - `problem`: a `Problem` (or another problem type with a registered ODE).
    - `optimizer`: an optimizer config (`SGD`, `SignSGD`, …).
    - `checkpoints`: strictly increasing iteration counts `k >= 0`.
    - `rtol`, `atol`: tolerances of the step-size controller (per component).
    - `max_steps`: solver step budget.
    - `progress`: show a tqdm progress bar.
    - `throw`: raise on divergence / solver failure (else return `status`; a step
      size refused by the stability check gives `status="diverged"`, NaN risk).
    - `check_stability`: refuse step sizes above the theory's stability threshold.
    - `**options`: passed to the optimizer's ODE builder (see its docstring).

    **Returns:** a `Curve` with `kind="ode"`.

    **Raises:** `DivergenceError` (a `ValueError`) for a divergent step size,
    with the threshold from `riskcurves.theory`; `SolverError` if the solver fails.
    """
    ks = validate_checkpoints(checkpoints)
    if check_stability:
        try:
            check_stable(problem, optimizer, k_max=int(ks[-1]))
        except DivergenceError as e:
            if throw:
                raise
            return Curve(k=ks, risk=np.full(ks.shape, np.nan), kind="ode",
                         label=label or f"{optimizer.name} ODE", status="diverged",
                         message=str(e), noise_variance=_noise_var(problem),
                         meta={"problem": problem.label, "d": problem.d,
                               **optimizer.describe()})
    theory = theory_for(optimizer, problem, **options)
    t0 = time.perf_counter()
    risk, lr, obs, info = solve_theory(theory, ks, rtol=rtol, atol=atol, max_steps=max_steps,
                                       progress=progress)
    info["seconds"] = time.perf_counter() - t0
    status, message = "ok", ""
    p0 = max(float(problem.initial_risk), 1e-300)
    finite = np.isfinite(risk)
    blew_up = bool(np.any(np.abs(risk[finite]) > _BLOWUP * max(p0, 1.0)))
    failed = not info.get("success", True)
    if failed and not blew_up:
        # after a failure diffrax fills the remaining checkpoints with inf: that is a
        # divergence only if the step size is unstable, else a solver failure
        try:
            check_stable(problem, optimizer, k_max=int(ks[-1]))
        except DivergenceError:
            blew_up = True
    if blew_up or (not failed and not np.all(finite)):
        thr = stability_threshold(optimizer, problem)
        status = "diverged"
        message = (f"the risk diverges for {optimizer.name} with lr={optimizer.lr!r}"
                   f" (stability threshold from theory: {thr:.6g})")
        if throw:
            raise DivergenceError(message, lr=optimizer.lr, threshold=thr)
    elif failed:
        status = "solver_failed"
        message = (f"ODE solver failed ({info['result']}) after {info['num_steps']} steps; "
                   "increase max_steps or loosen rtol")
        if throw:
            raise SolverError(message)
    meta = {"problem": problem.label, "d": problem.d, **optimizer.describe(), "solver": info}
    return Curve(k=ks, risk=risk, kind="ode", label=label or f"{optimizer.name} ODE", lr=lr,
                 extras=obs, status=status, message=message,
                 noise_variance=_noise_var(problem), meta=meta)


def _noise_var(problem) -> float:
    try:
        return float(problem.noise.variance)
    except ValueError:
        return float("inf")
