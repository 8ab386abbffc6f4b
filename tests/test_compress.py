"""Spectral compression (setting.md §8): compressed vs full ODE, d -> inf, long horizons."""

import math
import time

import numpy as np
import pytest

import riskcurves as rc
from riskcurves._compress import power_law_nodes

_TOL = 1e-4  # issue 8: compressed vs full ODE, relative, at d = 1e5


def _maxrel(a, b):
    return float(np.max(np.abs(a / b - 1)))


def test_power_law_nodes_count_and_trace():
    lam, e0, w = power_law_nodes(10**5, 1.5, 0.5, level=1)
    assert abs(w.sum() - 1e5) < 1e-6 * 1e5, f"weights sum to {w.sum()}, want d=1e5"
    j = np.arange(1, 10**5 + 1, dtype=np.float64)
    for name, got, want in [("tr K", np.sum(w * lam), np.sum(j**-1.5)),
                            ("P(0)", 0.5 * np.sum(w * lam * e0), 0.5 * np.sum(j**-2.0))]:
        assert abs(got / want - 1) < 1e-7, f"{name}: {got} vs {want}"
    assert lam.size < 300


@pytest.mark.slow  # heavy on 2 cores (suite time); run with -m slow
def test_compressed_vs_full_sgd_d1e5():
    d = 10**5
    prob = rc.PowerLaw(d, 1.5, 0.5, rc.Gaussian(0.1))
    opt = rc.SGD(0.5, batch=4)
    ks = rc.checkpoints(10**4, 30)
    full = rc.solve_ode(prob, opt, ks, rtol=1e-6)
    for comp in [rc.PowerLaw(d, 1.5, 0.5, rc.Gaussian(0.1), compressed=True),
                 rc.compress(prob)]:
        assert comp.n_modes < d / 100, f"{comp.label}: {comp.n_modes} nodes"
        assert comp.d == d
        c = rc.solve_ode(comp, opt, ks, rtol=1e-7, max_steps=10**6)
        err = _maxrel(c.risk, full.risk)
        assert err < _TOL, (f"{comp.label} ({comp.n_modes} nodes) vs full d={d}: "
                            f"max rel err {err:.2e} >= {_TOL}")


@pytest.mark.filterwarnings("ignore::UserWarning")  # clipping: small tr K / λ_max note
@pytest.mark.parametrize("name", [pytest.param("signsgd", marks=pytest.mark.slow),
                                  pytest.param("clipped", marks=pytest.mark.slow), "adagrad"])
def test_compressed_vs_full_other_odes(name):
    """Every diagonal-K ODE that uses `problem.mode_weights` gets compression for free."""
    d = 1024
    prob = rc.PowerLaw(d, 1.5, 0.5, rc.Gaussian(0.1))
    opts = {"signsgd": lambda: rc.SignSGD(1e-3, batch=4),
            "clipped": lambda: rc.ClippedSGD(0.3, clip=1.0, batch=1),
            "adagrad": lambda: rc.AdaGradNorm(0.5, batch=4)}
    opt = opts[name]()
    ks = rc.checkpoints(1000, 20)
    full = rc.solve_ode(prob, opt, ks, rtol=1e-6, max_steps=10**6)
    comp = rc.PowerLaw(d, 1.5, 0.5, rc.Gaussian(0.1), compressed=True)
    c = rc.solve_ode(comp, opt, ks, rtol=1e-7, max_steps=10**6)
    err = _maxrel(c.risk, full.risk)
    assert err < _TOL, f"{name}: compressed ({comp.n_modes} nodes) vs full d={d}: {err:.2e}"


@pytest.mark.slow  # heavy on 2 cores (suite time); run with -m slow
def test_converges_as_d_to_inf():
    opt = rc.SGD(0.5, batch=4)
    ks = rc.checkpoints(10**5, 30)
    noise = rc.Gaussian(0.1)
    kw = dict(rtol=1e-6, max_steps=10**6)
    inf = rc.solve_ode(rc.PowerLaw(math.inf, 1.5, 0.5, noise), opt, ks, **kw)
    assert np.all(np.isfinite(inf.risk))
    errs = []
    for d in [10**3, 10**4, 10**5, 10**6]:
        c = rc.solve_ode(rc.PowerLaw(d, 1.5, 0.5, noise, compressed=True), opt, ks, **kw)
        errs.append(_maxrel(c.risk, inf.risk))
    assert all(b < a / 3 for a, b in zip(errs, errs[1:])), (
        f"max rel diff to d=inf for d=1e3..1e6: {errs} (must shrink > 3x per 10x d)")
    assert errs[-1] < 1e-3, errs


def test_huge_d_is_cheap_and_no_allocation():
    t0 = time.perf_counter()
    p = rc.PowerLaw(10**9, 1.5, 0.5, rc.Gaussian(0.1))
    assert time.perf_counter() - t0 < 2.0 and p.n_modes < 1000 and p.d == 10**9
    with pytest.raises(ValueError, match="simulated"):
        rc.simulate(p, rc.SGD(0.5, 4), [0, 1], n_runs=2)


def test_long_horizon_cost_is_logarithmic_with_noise():
    p = rc.PowerLaw(math.inf, 1.5, 0.5, rc.Gaussian(0.1))
    steps = {}
    for T in [10**4, 10**6, 10**8]:
        c = rc.solve_ode(p, rc.SGD(0.5, 4), rc.checkpoints(T, 40))
        assert c.ok and np.all(np.isfinite(c.risk))
        steps[T] = c.meta["solver"]["num_steps"]
    # steps(1e8) - steps(1e6) must not exceed steps(1e6) - steps(1e4) (log or better)
    assert steps[10**8] - steps[10**6] <= steps[10**6] - steps[10**4] + 200, steps


def test_no_nan_when_risk_underflows():
    p = rc.Flat(100, 0.01)                    # noiseless, exact decay ~ e^(-0.0097 k)
    opt = rc.SGD(0.9, batch=1)
    ks = rc.checkpoints(2 * 10**5, 30)
    c = rc.solve_ode(p, opt, ks)
    assert c.ok and np.all(np.isfinite(c.risk)) and np.all(c.risk >= 0), c.risk
    assert np.all(np.diff(c.risk) <= 0)
    assert c.risk[-1] < 1e-30 * c.risk[0], c.risk[-1]
    r = rc.sgd_recursion(p, opt, ks)         # exact recursion underflows to exactly 0
    assert np.all(np.isfinite(r.risk)) and r.risk[-1] < 1e-300


@pytest.mark.parametrize("bad", [
    dict(d=0), dict(d=2.5), dict(d=-math.inf), dict(rtol=0.0), dict(rtol=2.0),
    dict(d=math.inf, alpha=0.9), dict(d=math.inf, alpha=1.2, beta=-0.5),
    dict(horizon=0.5)], ids=str)
def test_bad_arguments(bad):
    args = dict(d=1000, alpha=1.5, beta=0.5, rtol=1e-6, horizon=1e9) | bad
    with pytest.raises(ValueError):
        rc.compress.power_law(args["d"], args["alpha"], args["beta"], rtol=args["rtol"],
                              horizon=args["horizon"])


def test_compress_rejects_rotated_and_exact_merge():
    with pytest.raises(ValueError, match="diagonal"):
        rc.compress(rc.PowerLaw(50, 1.5, 0.5, rotate=True))
    two = rc.compress(rc.TwoLevel(1000))
    assert two.n_modes == 2 and two.d == 1000
    np.testing.assert_allclose(two.initial_risk, rc.TwoLevel(1000).initial_risk, rtol=1e-12)
