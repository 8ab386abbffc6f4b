"""The ETD2 exponential integrator and `solve_ode` against exact solutions."""

import math

import diffrax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import riskcurves as rc
from riskcurves.odes import ETD2, AbstractTheory, solve_theory


class _LinearDiagonal(AbstractTheory):
    """`dy/dk = −a ⊙ y + b`: ETD2 integrates it exactly (any step size)."""

    a: jax.Array
    b: jax.Array
    y0: jax.Array

    def init_state(self):
        return self.y0

    def vector_field(self, k, y, args):
        return -self.a * y + self.b

    def damping(self, k, y, args):
        return self.a

    def risk(self, y):
        return 0.5 * jnp.sum(y)

    def observables(self, k, y):
        return {"y": y}


def test_linear_diagonal_is_exact():
    a = jnp.asarray(np.logspace(-9, 2, 12))  # rates over 11 decades
    b = jnp.asarray(np.linspace(0.0, 1.0, 12))
    y0 = jnp.asarray(np.linspace(2.0, 0.5, 12))
    ks = np.array([0, 1, 7, 100, 10_000, 1_000_000])
    # a loose tolerance: the solver takes few, huge steps, yet must be exact
    risk, _, obs, info = solve_theory(_LinearDiagonal(a, b, y0), ks, rtol=1e-2)
    A, Bv, Y0 = (np.asarray(v)[None, :] for v in (a, b, y0))
    kk = ks[:, None].astype(float)
    exact = Bv / A + (Y0 - Bv / A) * np.exp(-A * kk)
    rel = np.max(np.abs(obs["y"] - exact) / np.abs(exact))
    # exact up to round-off amplified by the step: h·eps·|f| ~ 1e6 · 1e-16
    assert rel < 2e-9, f"ETD2 on a linear diagonal system: max rel err {rel:.2e} (want exact)"
    assert np.allclose(risk, 0.5 * exact.sum(axis=1), rtol=1e-12)
    assert info["num_steps"] < 60, f"{info['num_steps']} steps for an exactly solvable system"


def test_single_mode_noiseless_sgd():
    """d = 1, σ = 0: `D(k) = D0 exp(−(2ηλ − η²λ²(1 + 2/B)) k)` (P = ½λD feeds back)."""
    lam, D0, eta, B = 0.7, 2.0, 0.9, 3
    p = rc.Problem([lam], [D0], rc.Noiseless())
    ks = np.array([0, 1, 2, 5, 10, 20, 40])
    curve = rc.solve_ode(p, rc.SGD(eta, B), ks, rtol=1e-8, exact_steps=0, rates="plain")
    rate = 2 * eta * lam - eta**2 * lam**2 * (1 + 2 / B)
    exact = 0.5 * lam * D0 * np.exp(-rate * ks)
    rel = np.max(np.abs(curve.risk / exact - 1))
    assert rel < 1e-6, f"single mode: max rel err {rel:.2e} at rtol 1e-8 (rate {rate:.4f})"
    # the default (exact discrete start, then exact log-rates) is the discrete recursion
    # D(k) = D0 (1 − rate)^k, before and after the hand-over at k = exact_steps
    ks2 = np.array([0, 1, 2, 5, 10, 20, 40, 60])
    for ex, tol in ((1024, 1e-12),):
        disc = rc.solve_ode(p, rc.SGD(eta, B), ks2, rtol=1e-6, exact_steps=ex)
        exact_d = 0.5 * lam * D0 * (1 - rate) ** ks2
        rel = np.max(np.abs(disc.risk / exact_d - 1))
        assert rel < tol, f"exact_steps={ex}: max rel err {rel:.2e} vs (1 − rate)^k"


def _flat_case():
    d, lam, eta, B, sigma = 50, 0.02, 0.8, 2, 0.3
    p = rc.Flat(d, lam, rc.Gaussian(sigma), initial_energy=1.0)
    a = 2 * eta * lam - eta**2 * lam**2 * (1 + 1 / B)
    c = a - eta**2 * lam**2 * d / B
    p_inf = eta**2 * lam**2 * d * sigma**2 / (2 * B * c)
    exact = lambda k: p_inf + (p.initial_risk - p_inf) * np.exp(-c * np.asarray(k, float))
    return p, rc.SGD(eta, B), exact


def test_flat_spectrum_closed_form_and_rtol():
    """Flat spectrum: `dP/dk = −c P + η²λ²dσ²/(2B)` with `c = 2ηλ − η²λ²(1 + 1/B + d/B)`."""
    p, opt, exact = _flat_case()
    ks = rc.checkpoints(2000, 25)
    errs, steps = [], []
    for rtol in (1e-3, 1e-4, 1e-5, 1e-6):
        curve = rc.solve_ode(p, opt, ks, rtol=rtol, exact_steps=0, rates="plain")
        errs.append(np.max(np.abs(curve.risk / exact(ks) - 1)))
        steps.append(curve.meta["solver"]["num_steps"])
    msg = f"rtol 1e-3..1e-6: max rel err {np.array(errs)}, steps {steps}"
    assert all(e < 30 * r for e, r in zip(errs, (1e-3, 1e-4, 1e-5, 1e-6))), msg
    assert errs[-1] < 1e-5, msg
    assert all(e2 < e1 for e1, e2 in zip(errs, errs[1:])), msg
    assert all(s2 > s1 for s1, s2 in zip(steps, steps[1:])), msg


def test_convergence_order_two():
    """Fixed steps on the flat-spectrum SGD ODE: log-log slope of error vs h ≈ 2."""
    p, opt, exact = _flat_case()
    th = rc.odes.theory_for(opt, p, rates="plain")
    T = 200.0

    @jax.jit
    def final_risk(dt):
        sol = diffrax.diffeqsolve(
            diffrax.ODETerm(th.vector_field), ETD2(th.damping), 0.0, T, dt, th.init_state(),
            stepsize_controller=diffrax.ConstantStepSize(), saveat=diffrax.SaveAt(t1=True),
            max_steps=256,
        )
        return th.risk(sol.ys[0])

    ns = np.array([4, 8, 16, 32, 64])
    errs = np.array([abs(float(final_risk(T / n)) / exact(T) - 1) for n in ns])
    slope = -np.polyfit(np.log(ns), np.log(errs), 1)[0]
    assert 1.85 < slope < 2.15, f"observed order {slope:.3f} (errors {errs})"


def test_stiff_power_law_long_horizon():
    """d = 2000, λ from 1 down to 1e-9, horizon 1e6 iterations: few steps, accurate."""
    d = 2000
    alpha = 9 / math.log10(d)  # λ_min = d^(−α) = 1e-9
    p = rc.PowerLaw(d, alpha, 0.0, rc.Gaussian(0.1))
    assert abs(p.eigenvalues[-1] / 1e-9 - 1) < 1e-9
    opt = rc.SGD(0.5, 4)
    ks = rc.checkpoints(10**6, 40)
    fast = rc.solve_ode(p, opt, ks, rtol=1e-4)
    ref = rc.solve_ode(p, opt, ks, rtol=1e-6)
    n_fast = fast.meta["solver"]["num_steps"]
    n_ref = ref.meta["solver"]["num_steps"]
    err = np.max(np.abs(fast.risk / ref.risk - 1))
    # an explicit scheme would need ~ 2ηλ_max·k_max = 1e6 steps here
    assert n_fast < 1500, f"rtol 1e-4: {n_fast} steps over 1e6 iterations (want < 1500)"
    assert n_ref < 30_000, f"rtol 1e-6: {n_ref} steps over 1e6 iterations (want < 30000)"
    assert err < 2e-3, f"rtol 1e-4 vs 1e-6 reference: max rel err {err:.2e} ({n_fast} steps)"


def test_one_call_equals_separate_calls_and_t0():
    p, opt, exact = _flat_case()
    ks = rc.checkpoints(2000, 25)  # same shape as above: no new compilation
    together = rc.solve_ode(p, opt, ks, rtol=1e-7)
    for i in (12, 18, len(ks) - 1):
        k = int(ks[i])
        # a separate call ending at k, with other (evenly spaced) checkpoints of the
        # same count (same compiled solve)
        alone = rc.solve_ode(p, opt, np.round(np.linspace(0, k, len(ks))), rtol=1e-7)
        assert abs(alone.risk[0] / p.initial_risk - 1) < 1e-14
        rel = abs(alone.risk[-1] / together.risk[i] - 1)
        assert rel < 2e-6, f"k={k}: separate call differs by {rel:.2e} (rtol 1e-7)"
    assert abs(together.risk[0] / p.initial_risk - 1) < 1e-14, "t = 0 must give P(0)"
    only0 = rc.solve_ode(p, opt, [0])
    assert only0.risk.shape == (1,) and abs(only0.risk[0] / p.initial_risk - 1) < 1e-14


@pytest.mark.parametrize("ks", [[5, 3], [0, 1.5], [-1, 2], []],
                         ids=["decreasing", "fractional", "negative", "empty"])
def test_bad_checkpoints(ks):
    with pytest.raises(ValueError, match="`checkpoints`"):
        rc.solve_ode(rc.Flat(4), rc.SGD(0.1), ks)


def test_solver_failure_is_not_reported_as_divergence():
    """Too few steps: `SolverError` (not `DivergenceError`), or `status="solver_failed"`."""
    p, opt, _ = _flat_case()
    ks = rc.checkpoints(2000, 25)
    with pytest.raises(rc.SolverError, match="max_steps"):
        rc.solve_ode(p, opt, ks, max_steps=8, exact_steps=0)
    curve = rc.solve_ode(p, opt, ks, max_steps=8, exact_steps=0, throw=False)
    assert curve.status == "max_steps_reached", (curve.status, curve.message)
    assert "max_steps" in curve.message


def test_noiseless_tail_to_1e9_iterations_with_defaults():
    """Noiseless `PowerLaw(1000, 1.5, 0.5)`, `SGD(0.5, 4)`: every mode ends in the
    exponential tail `e^{-ρk}` (`k ≳ 1/(ηλ_min) ≈ 6e4`). Default settings reach
    `k = 1e9` (16 565 steps, 4 of them after `k = 1e7`); the tail follows the exact
    recursion; negative control: ETD2 without the tail integrating factor exhausts a
    25 000-step budget before `k = 1e7`."""
    p = rc.PowerLaw(1000, 1.5, 0.5, rc.Gaussian(0.0))
    opt = rc.SGD(0.5, 4)
    c = rc.solve_ode(p, opt, rc.checkpoints(1e9, 40))
    assert c.status == "ok", c.message
    n_steps = c.meta["solver"]["num_steps"]
    assert n_steps < 20_000, f"{n_steps} ODE steps to k = 1e9"
    assert np.all(np.diff(c.risk) <= 0) and c.risk[-1] < 1e-250
    ks = rc.checkpoints(4e5, 30)
    ode = rc.solve_ode(p, opt, ks)
    rec = rc.sgd_recursion(p, opt, ks)
    err = np.max(np.abs(ode.risk[1:] / rec.risk[1:] - 1))
    assert rec.risk[-1] < 1e-9 * rec.risk[0]
    assert err < 5e-3, f"ODE vs exact recursion down to P = {rec.risk[-1]:.1e}: {err:.2e}"
    th = rc.odes.theory_for(opt, p)
    ts = jnp.asarray(rc.checkpoints(1e7, 20), jnp.float64)
    sols = [diffrax.diffeqsolve(
        diffrax.ODETerm(th.vector_field), ETD2(th.damping, risk), 0.0, ts[-1], None,
        th.init_state(), saveat=diffrax.SaveAt(ts=ts),
        stepsize_controller=diffrax.PIDController(rtol=1e-5, atol=1e-30),
        max_steps=25_000, throw=False) for risk in (th.risk, None)]
    assert sols[0].result == diffrax.RESULTS.successful
    assert sols[1].result == diffrax.RESULTS.max_steps_reached, \
        "negative control: plain ETD2 should not reach k = 1e7 in 25 000 steps"


def test_ratio_observable_holds_below_atol_and_risk_does_not_collapse():
    """Noiseless line search on a two-level spectrum (1 and 1/2, d = 2000, B = 4): the
    oracle step `ΔᵀK²Δ / ((1 + 1/B)ΔᵀK³Δ + …)` is scale-free, so it must hold its limit
    while the risk decays exponentially through `atol` = 1e-30 to 1e-264. The solver
    integrates the state as `e^l u` (`ETD2(rescale=(rtol, atol))`), so neither the step nor the
    risk depends on how small the state is. Negative control: the same ETD2 on the
    state itself (no rescaling) loses the risk below `atol` (exactly 0 at P ≈ 1e-51)
    and the step with it (reads 0)."""
    p = rc.TwoLevel(2000, 1.0, 0.5, 0.5)
    ks = rc.checkpoints(4e5, 30)
    c = rc.solve_ode(p, rc.LineSearch(batch=4), ks, topmodes=0)
    assert c.status == "ok", c.message
    tail = ks >= 2e4
    assert np.all(c.risk[tail] > 0) and c.risk[-1] < 1e-250
    lim = c.lr[np.searchsorted(ks, 2e4)]
    assert np.max(np.abs(c.lr[tail] / lim - 1)) < 1e-6, c.lr[tail]
    rate = -np.diff(np.log(c.risk[tail])) / np.diff(ks[tail])  # one exponential: constant
    assert np.max(np.abs(rate[2:] / rate[-1] - 1)) < 5e-3, rate
    th = rc.odes.theory_for(rc.LineSearch(batch=4), p, topmodes=0)
    ts = jnp.asarray(ks, jnp.float64)
    sol = diffrax.diffeqsolve(
        diffrax.ODETerm(th.vector_field), ETD2(th.damping, th.risk), 0.0, ts[-1], None,
        th.init_state(), saveat=diffrax.SaveAt(ts=ts, fn=lambda t, y, a: (th.risk(y),
                                                                         th.lr(t, y))),
        stepsize_controller=diffrax.PIDController(rtol=1e-5, atol=1e-30),
        max_steps=100_000, throw=False)
    risk0, lr0 = (np.asarray(x) for x in sol.ys)
    assert np.any(risk0[tail] == 0) and np.any(lr0[tail] == 0), "negative control"
