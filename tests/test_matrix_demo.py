"""The demo's matrix cases (`riskcurves demo`: d = 128, m = 2d, α = 1.5, β = 0.5,
σ = 0.1, B = 8, k ≤ 400, checkpoints(400, 30)) against simulation, over the whole
curve k >= 1, with the uncorrected variant as negative control. Measured numbers:
docs/theory/matrix_signsgd.md §4, docs/theory/muon.md §4, docs/theory/signsvd.md §3."""

import numpy as np
import pytest

import riskcurves as rc

pytestmark = pytest.mark.slow


def _problem(d=128):
    return rc.MatrixPowerLaw(d, 2 * d, 1.5, 0.5, rc.Gaussian(0.1))


def _sim(p, opt, ks, n_runs):
    sim = rc.simulate(p, opt, ks, n_runs=n_runs, seed=0)
    se = float(np.max(sim.stderr[1:] / sim.risk[1:]))
    assert se < 0.01, f"MC standard error {se:.4f} must be < 1% for this check"
    return sim, se


def test_demo_matrix_signsgd_density_default():
    """Default (density recursion): measured 0.31% (64 runs, s.e. <= 0.19%); the
    row-energy closure ODE (`transient="closure"`): 6.9% — the negative control."""
    p, opt = _problem(), rc.MatrixSignSGD(1e-3, 8)
    ks = rc.checkpoints(400, 30)
    sim, se = _sim(p, opt, ks, 32)
    e = rc.max_rel_err(rc.solve_ode(p, opt, ks), sim)
    c = rc.max_rel_err(rc.solve_ode(p, opt, ks, transient="closure"), sim)
    assert e < 0.03, f"density (default) {e:.4f} (tol 0.03; closure {c:.4f}; s.e. {se:.4f})"
    assert c > 0.03, f"negative control: the closure ODE should fail 3%, got {c:.4f}"


@pytest.mark.parametrize("opt", [rc.SignSVD(0.02, batch=8), rc.Muon(0.02, batch=8)],
                         ids=["signsvd", "muon"])
def test_demo_signsvd_and_muon_sampled_step(opt):
    """Default (the closure's one-step mean over fresh batch draws, `_matrix_sampled`):
    measured 0.44% (SignSVD) and 0.85% (Muon) against 64 runs (s.e. <= 0.34%); the
    deterministic equivalent: 3.0% and 6.2% — the negative control."""
    p = _problem()
    ks = rc.checkpoints(400, 30)
    sim, se = _sim(p, opt, ks, 32)
    tol = max(0.015, 4 * se)
    e = rc.max_rel_err(rc.solve_ode(p, opt, ks, rtol=1e-4), sim)
    c = rc.max_rel_err(rc.solve_ode(p, opt, ks, rtol=1e-4, one_step="equivalent"), sim)
    assert e < tol, f"sampled (default) {e:.4f} (tol {tol:.4f}; equivalent {c:.4f})"
    assert c > tol, f"negative control: the equivalent should fail {tol:.4f}, got {c:.4f}"
