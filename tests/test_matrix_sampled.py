"""SignSVD and Muon at a small batch: the closure's one-step mean over fixed batch draws
(`odes._matrix_sampled`, the default for batch < d <= m) against the simulated step,
with the deterministic equivalent as the negative control. Whole-curve numbers:
docs/theory/signsvd.md §3b (the slow demo test in test_matrix_demo.py)."""

import equinox as eqx
import jax
import numpy as np
import pytest

import riskcurves as rc
from riskcurves.odes._base import build_theory
from riskcurves.odes._matrix_sampled import SampledSpectralTheory


def _problem(d=128):
    return rc.MatrixPowerLaw(d, 2 * d, 1.5, 0.5, rc.Gaussian(0.1))


@eqx.filter_jit
def _risk_after_one_step(th):
    y0 = th.init_state()
    return th.risk(y0), th.risk(jax.tree.map(lambda a, b: a + b, y0, th.increment(0.0, y0)))


@pytest.mark.parametrize("opt", [rc.SignSVD(0.02, batch=8), rc.Muon(0.02, batch=8)],
                         ids=["signsvd", "muon"])
def test_one_step_decrease_vs_simulation(opt):
    """The first step's risk decrease P(0) − E P(1) (d = 32, m = 64, α = 1.5, β = 0.5,
    σ = 0.1, B = 8; 4096 simulated steps): the sampled map (8192 draws) within
    max(1%, 4 s.e.); the deterministic equivalent (the old default) misses it. Measured:
    sampled −0.02% / −0.26% (SignSVD, two seeds), −0.58% / −0.19% (Muon); equivalent
    −1.6% (SignSVD), −4.0% (Muon); s.e. 0.10% / 0.19%. (The theories' own one-step
    maps, `increment`, without the solver around them.)"""
    p = _problem(32)
    sim = rc.simulate(p, opt, np.array([0, 1]), n_runs=4096, seed=0)
    drop_sim, se = sim.risk[0] - sim.risk[1], sim.stderr[1]
    tol = max(0.01, 4 * se / drop_sim)
    errs = {}
    for one_step, kw in (("auto", {"samples": 8192}), ("equivalent", {})):
        # 8192 draws: the default 256 per step average out along a trajectory, but a
        # single step carries their quadrature error (~2% for Muon)
        th = build_theory(opt, p, one_step=one_step, **kw)
        p0, p1 = _risk_after_one_step(th)
        errs[one_step] = abs(drop_sim / float(p0 - p1) - 1)
        if one_step == "auto":   # same seed, same numbers
            assert isinstance(th, SampledSpectralTheory)
            assert float(_risk_after_one_step(build_theory(opt, p, **kw))[1]) == float(p1)
    assert errs["auto"] < tol, f"sampled one step off by {errs['auto']:.4f} (tol {tol:.4f})"
    assert errs["equivalent"] > tol, (
        f"negative control: the equivalent's step should miss {tol:.4f}, got "
        f"{errs['equivalent']:.4f}")


def test_sampled_is_the_default_only_where_it_applies():
    p = _problem(32)
    assert isinstance(build_theory(rc.SignSVD(0.02, batch=8), p), SampledSpectralTheory)
    assert isinstance(build_theory(rc.Muon(0.02, batch=8), p), SampledSpectralTheory)
    assert isinstance(build_theory(rc.SignSVD(0.02, batch=64), p), SampledSpectralTheory)
    big = _problem(64)   # batch >= d: a d×2d SVD per draw, only up to d = 50
    for opt, prob in [(rc.SignSVD(0.02, batch=64), big),
                      (rc.Muon(0.02, batch=8, momentum=0.9), p),  # momentum
                      ]:
        assert not isinstance(build_theory(opt, prob), SampledSpectralTheory)
    with pytest.raises(ValueError, match="one_step='sampled'` needs d <= m"):
        build_theory(rc.SignSVD(0.02, batch=64), big, one_step="sampled")
    with pytest.raises(ValueError, match="`one_step` must be one of"):
        build_theory(rc.SignSVD(0.02, batch=8), p, one_step="exact")
    with pytest.raises(ValueError, match="`samples` must be a multiple of 32"):
        build_theory(rc.SignSVD(0.02, batch=8), p, one_step="sampled", samples=3)


@pytest.mark.slow
def test_sampled_quadrature_spread_and_determinism():
    """Same seed, same numbers; another draw of the batches moves the curve by far less
    than the equivalent's bias (measured on the d = 32 problem: < 0.5%)."""
    p, opt = _problem(32), rc.Muon(0.02, batch=8)
    ks = rc.checkpoints(200, 12)
    a = rc.solve_ode(p, opt, ks)
    b = rc.solve_ode(p, opt, ks)
    c = rc.solve_ode(p, opt, ks, sample_seed=1)
    np.testing.assert_array_equal(a.risk, b.risk)
    assert a.ok and c.ok
    assert np.max(np.abs(c.risk[1:] / a.risk[1:] - 1)) < 0.005


def test_muon_batch_at_least_d_vs_simulation():
    """B ≥ d (d = 32, m = 64, α = 1.5, β = 0.5, σ = 0.1, B = 64, η = 0.02): Muon's sampled
    map with its d×d reduction (`SampledStep._sums_square`, the default at B ≥ d)
    follows 128 simulated runs within 2.5% over k ≤ 128; the pole-sum equivalent misses
    (measured: sampled 1.4%, equivalent 5.1%, MC s.e. ≤ 0.6%; to k = 400: 1.8% / 1.3%
    for sample_seed 0 / 1 against 5.1%, docs/theory/signsvd.md §3c)."""
    p, opt = _problem(32), rc.Muon(0.02, batch=64)
    ks = rc.checkpoints(128, 16)
    sim = rc.simulate(p, opt, ks, n_runs=128, seed=0)
    assert isinstance(build_theory(opt, p), SampledSpectralTheory)
    tol = max(0.025, 4 * float(np.max(sim.stderr[1:] / sim.risk[1:])))
    errs = {}
    for one_step in ("auto", "equivalent"):
        c = rc.solve_ode(p, opt, ks, one_step=one_step)
        assert c.ok, c.message
        errs[one_step] = float(np.max(np.abs(sim.risk[1:] / c.risk[1:] - 1)))
    assert errs["auto"] < tol, f"sampled B >= d off by {errs['auto']:.4f} (tol {tol:.4f})"
    assert errs["equivalent"] > tol, (
        f"negative control: the equivalent should miss {tol:.4f}, got {errs['equivalent']:.4f}")


@pytest.mark.slow
def test_signsvd_batch_at_least_d_shrinks_with_d():
    """SignSVD at B = 2d (m = 2d, α = 1.5, β = 0.5, σ = 0.1, η = 0.06, k ≤ 400,
    `checkpoints(400, 30)`, 256 runs): the sampled map is exact for one step, so what
    remains is the closure's finite-d error, which shrinks with d (measured: 3.8% /
    2.8% / 1.6% at d = 16 / 32 / 48, the equivalent 5.4% / 3.2% / 2.1%); within 2% at
    d = 48 (docs/theory/signsvd.md §3c)."""
    ks = rc.checkpoints(400, 30)
    errs = []
    for d in (16, 32, 48):
        p, opt = _problem(d), rc.SignSVD(0.06, batch=2 * d)
        sim = rc.simulate(p, opt, ks, n_runs=256, seed=0)
        c = rc.solve_ode(p, opt, ks)
        assert c.ok, c.message
        errs.append(float(np.max(np.abs(sim.risk[1:] / c.risk[1:] - 1))))
    assert errs[0] > errs[1] > errs[2], errs
    assert errs[2] < 0.02, errs
