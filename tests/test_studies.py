"""Studies: vmapped sweeps, best-step-size search, tuned comparisons, schedule design
(jax.grad through the ODE, confirmed in simulation), curve-based compression."""

import numpy as np
import pytest

import riskcurves as rc


def test_sweep_equals_single_solves_and_reports_status():
    prob = rc.PowerLaw(300, 1.5, 0.5, rc.Gaussian(0.1))
    ks = rc.checkpoints(3000, 20)
    thr = rc.theory.stability_threshold(rc.SGD(1.0, 4), prob)
    lrs = np.array([0.1, 0.3, 0.6, 1.3]) * thr
    # the sweep is padded to 32 values; the vmapped program's roundoff differs from a
    # single solve's and the adaptive controller carries it at the level of rtol
    # (5.5e-6 at the default 1e-5), so compare at rtol 1e-7
    c = rc.studies.sweep(prob, lambda lr: rc.SGD(lr, 4), lrs, ks, rtol=1e-7)
    assert list(c.status) == ["ok", "ok", "ok", "diverged"], c.status
    for i in range(3):
        one = rc.solve_ode(prob, rc.SGD(float(lrs[i]), 4), ks, rtol=1e-7)
        np.testing.assert_allclose(c.risk[i], one.risk, rtol=1e-6)


def test_best_lr_matches_a_dense_search_on_the_exact_recursion():
    prob = rc.PowerLaw(200, 1.2, 0.3, rc.Gaussian(0.2))
    T = 2000
    thr = rc.theory.stability_threshold(rc.SGD(1.0, 2), prob)
    b = rc.studies.best_lr(prob, lambda lr: rc.SGD(lr, 2), np.array([0, T]),
                           np.geomspace(1e-3 * thr, 0.95 * thr, 12), refine=8)
    dense = np.geomspace(1e-2 * thr, 0.95 * thr, 200)
    risks = [rc.sgd_recursion(prob, rc.SGD(float(e), 2), [0, T]).risk[-1] for e in dense]
    i = int(np.argmin(risks))
    msg = (f"best_lr {b['lr'][-1]:.4g} (risk {b['risk'][-1]:.6g}) vs dense recursion "
           f"{dense[i]:.4g} (risk {risks[i]:.6g})")
    assert abs(b["risk"][-1] / risks[i] - 1) < 2e-3, msg
    assert abs(np.log(b["lr"][-1] / dense[i])) < 0.1, msg
    assert not b["edge"][-1]


@pytest.mark.slow  # heavy on 2 cores (suite time); run with -m slow
def test_tuned_comparison_signsgd_beats_sgd_on_diagonal_power_law():
    """Diagonal power law: SignSGD (√λ preconditioning) beats tuned SGD at a long
    horizon; both optima are interior minima of their ODE final risks."""
    p = rc.PowerLaw(256, 1.5, 0.5, rc.Gaussian(0.01))
    T = 2000
    out = rc.studies.tuned_comparison(p, T, n_lr=16, refine=6)
    msg = str(out)
    assert not out["sgd"]["edge"] and not out["signsgd"]["edge"], msg
    assert out["ratio"] < 0.8, msg
    for name, make in (("sgd", lambda lr: rc.SGD(lr, 1)),
                       ("signsgd", lambda lr: rc.SignSGD(lr, 1))):
        lr, risk = out[name]["lr"], out[name]["risk"]
        for f in (1.25, 0.8):
            other = rc.solve_ode(p, make(lr * f), [0, T]).risk[-1]
            assert other > risk * (1 - 1e-3), f"{name}: lr*{f} gives {other} < {risk}"


@pytest.mark.slow  # heavy on 2 cores (suite time); run with -m slow
def test_optimized_schedule_beats_best_constant_in_simulation():
    """Gradient-designed schedule (jax.grad through the ODE) beats the best constant
    step size at the horizon in the ODE, and the gain is confirmed by simulation."""
    prob = rc.PowerLaw(64, 1.5, 0.5, rc.Gaussian(0.1))
    T, B = 1000, 4
    out = rc.studies.optimize_schedule(prob, T, batch=B, steps=12, n_knots=5,
                                       learning_rate=0.2)
    assert out["gain"] > 1.2, f"ODE gain of the designed schedule {out['gain']:.3f} <= 1.2"
    ks = np.array([0, T])
    s_sched = rc.simulate(prob, rc.SGD(out["schedule"], B), ks, n_runs=256, seed=1)
    s_const = rc.simulate(prob, rc.SGD(out["constant_lr"], B), ks, n_runs=256, seed=2)
    diff = s_const.risk[-1] - s_sched.risk[-1]
    se = np.hypot(s_const.stderr[-1], s_sched.stderr[-1])
    msg = (f"simulated final risk: schedule {s_sched.risk[-1]:.4g} ± {s_sched.stderr[-1]:.2g}, "
           f"constant {s_const.risk[-1]:.4g} ± {s_const.stderr[-1]:.2g}; ODE "
           f"{out['risk']:.4g} vs {out['constant_risk']:.4g}")
    assert diff > 4 * se, msg
    for sim, ode in ((s_sched, out["risk"]), (s_const, out["constant_risk"])):
        assert abs(sim.risk[-1] / ode - 1) < max(0.03, 4 * sim.stderr[-1] / ode), msg


@pytest.mark.slow  # heavy on 2 cores (suite time); run with -m slow
def test_compress_on_curve():
    prob = rc.PowerLaw(20_000, 1.5, 0.5, rc.Gaussian(0.1))
    opt, ks = rc.SGD(0.5, 4), rc.checkpoints(10**5, 25)
    small = rc.studies.compress_on_curve(prob, opt, ks, rtol=1e-4)
    assert small.n_modes < 2000, small.n_modes
    full = rc.solve_ode(prob, opt, ks).risk
    err = np.max(np.abs(rc.solve_ode(small, opt, ks).risk / full - 1))
    assert err < 1e-3, f"compressed ({small.n_modes} nodes) vs full: {err:.2e}"
    with pytest.raises(ValueError, match="measure"):
        rc.compress(prob, measure=3)


def test_sweep_compiles_once_across_factories_noise_scales_and_sizes():
    """The compiled sweep is keyed by the theory's structure only: a new factory lambda,
    a new noise scale (SignSGD reads the noise law inside its field) and a grid size in
    the same padding bucket reuse it."""
    from riskcurves.odes import _solve

    ks = np.array([0, 300])
    cache = _solve._integrate_sweep._cached._cache_size
    rc.studies.sweep(rc.PowerLaw(100, 1.5, 0.5, rc.Gaussian(0.1)),
                     lambda lr: rc.SignSGD(lr, 1), np.geomspace(1e-3, 1e-2, 5), ks)
    size = cache()
    for sigma, n in ((0.2, 7), (0.3, 20)):
        c = rc.studies.sweep(rc.PowerLaw(100, 1.5, 0.5, rc.Gaussian(sigma)),
                             lambda lr: rc.SignSGD(lr, 1), np.geomspace(1e-3, 1e-2, n), ks)
        assert c.risk.shape == (n, 2) and all(s == "ok" for s in c.status)
    assert cache() == size, f"the sweep recompiled ({size} -> {cache()})"


def test_clip_comparison_attribute_access():
    c = rc.studies.ClipComparison(ratio=0.5)
    assert c.ratio == 0.5 and not hasattr(c, "missing")  # AttributeError, not KeyError
