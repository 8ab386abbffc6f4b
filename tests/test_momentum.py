"""SGD with heavy-ball / Nesterov momentum (optax semantics): recursion, ODE, stability.

Protocol: (a) the per-mode recursion equals an independent full-covariance
propagation to round-off; (b) the simulation mean matches it within Monte-Carlo
error (z-scores), and a recursion with a wrong noise term is detected;
(c) the default ODE (exact discrete start + modified-equation ODE) is within 3% of
the simulation mean over the whole curve `k >= 1`, and the plain ODE from `k = 0`
(no discrete start) is not; (d) the stability threshold. Numbers:
docs/theory/momentum.md.
"""

import math

import jax
import numpy as np
import pytest
from _momentum_ref import full_covariance_risk

import riskcurves as rc
from riskcurves.theory._momentum import (
    momentum_coefficients,
    momentum_kernel_norm,
    momentum_stability_threshold,
)

SIGMA = 0.3


def _z(sims, theory):
    m = sims.k >= 1
    return (sims.risk[m] - theory[m]) / sims.stderr[m]


def _opt(p, mu, B, nesterov, frac=0.5):
    thr = momentum_stability_threshold(p, mu, B, nesterov)
    return rc.SGD(frac * thr, B, momentum=mu, nesterov=nesterov)


# ---- (a) the per-mode recursion is exact -------------------------------------------
@pytest.mark.parametrize("nesterov", [False, True])
def test_recursion_equals_full_covariance(nesterov):
    """Rotated covariance (generic eigenvectors), B = 2: the per-mode 3x3 recursion
    equals the 2d x 2d second-moment propagation in the original basis."""
    p = rc.PowerLaw(12, 1.0, 0.5, rc.Gaussian(SIGMA), rotate=True, seed=3)
    opt = _opt(p, 0.9, 2, nesterov)
    n = 200
    rec = rc.momentum_recursion(p, opt, np.arange(n + 1))
    ref = full_covariance_risk(np.asarray(p.K), np.asarray(p.init_delta(np.float64)),
                               SIGMA**2, 2,
                               lambda k: momentum_coefficients(opt.lr, 0.9, nesterov), n)
    assert np.max(np.abs(rec.risk / ref - 1)) < 1e-10


# ---- (b) simulation vs the exact recursion -----------------------------------------
@pytest.mark.parametrize("nesterov", [False, True])
def test_simulation_matches_exact_recursion(nesterov):
    p = rc.PowerLaw(32, 1.0, 0.5, rc.Gaussian(SIGMA))
    mu, B = 0.9, 1
    opt = _opt(p, mu, B, nesterov)
    ks = rc.checkpoints(300, 14)
    n_runs = 1000
    rec = rc.momentum_recursion(p, opt, ks)
    sims = rc.simulate(p, opt, ks, n_runs=n_runs, seed=11, check_stability=False)
    z = _z(sims, rec.risk)
    msg = (f"d=32 mu={mu} B={B} nesterov={nesterov} lr={opt.lr:.4f} n_runs={n_runs}: "
           f"z={np.round(z, 2)}, max|z|={np.max(np.abs(z)):.2f} (tol 4.5), mean z={z.mean():.2f}")
    assert np.max(np.abs(z)) < 4.5, msg
    assert abs(z.mean()) < 2.5, msg
    # power: the same test detects a recursion without the K Σ K / B noise term
    K = np.diag(p.eigenvalues)
    coeffs = lambda k: momentum_coefficients(opt.lr, mu, nesterov)  # noqa: E731
    wrong = full_covariance_risk(K, np.sqrt(p.initial_energies), SIGMA**2, B, coeffs,
                                 int(ks[-1]), self_term=False)[ks]
    zw = np.max(np.abs(_z(sims, wrong)))
    assert zw > 6, f"a wrong recursion (no KΣK/B term) is not detected: max|z|={zw:.1f}"


# ---- (c) ODE vs simulation over the whole curve --------------------------------------
_KS = rc.checkpoints(3000, 20)
_TOL = 0.03


def _agreement(mu, B, nesterov, d=200, n_runs=2048, seed=3):
    """Bulk power law alpha = 0.8, beta = 0 (risk spread over many modes, so the
    Monte-Carlo error of the mean is small), sigma = 0.1, lr = half the threshold."""
    p = rc.PowerLaw(d, 0.8, 0.0, rc.Gaussian(0.1))
    opt = _opt(p, mu, B, nesterov)
    ode = rc.solve_ode(p, opt, _KS)
    sims = rc.simulate(p, opt, _KS, n_runs=n_runs, seed=seed, check_stability=False)
    return p, opt, ode, sims


_GRID = [(mu, B) for mu in (0.5, 0.9, 0.95) for B in (1, 4, 8)]


@pytest.mark.parametrize("nesterov", [False, True])
@pytest.mark.parametrize("mu,B", [pytest.param(*c, marks=pytest.mark.slow) for c in _GRID])
def test_ode_vs_simulation(mu, B, nesterov):
    """d = 200, 2048 runs, k <= 3000: the default ODE is within 3% of the simulation
    mean at every checkpoint k >= 1 and within 4.5 standard errors (it is within
    1.5e-5 of the exact recursion, so the gap is Monte-Carlo error: with 512 runs
    the max stderr/mean is 0.9-1.6% and the max gap 0.9-3.2%, docs/theory/momentum.md)."""
    p, opt, ode, sims = _agreement(mu, B, nesterov)
    err = rc.max_rel_err(ode, sims, k_min=1)
    z = _z(sims, ode.risk)
    msg = (f"mu={mu} B={B} nesterov={nesterov} lr={opt.lr:.4g}: max rel err {err:.4f} "
           f"(tol {_TOL}), max|z| {np.max(np.abs(z)):.2f}, max stderr/mean "
           f"{np.max(sims.stderr[1:] / sims.risk[1:]):.4f}")
    assert ode.status == "ok"
    assert err < _TOL, msg
    assert np.max(np.abs(z)) < 4.5, msg


def test_early_transient_and_negative_control():
    """Top-heavy power law (alpha = 1.5, beta = 0.5, d = 50), heavy ball mu = 0.9,
    B = 1, lr = 0.9 x threshold, k <= 500: the default solve is the exact mean (the
    recursion, checked against Monte Carlo above) to 1e-3 at rtol 1e-4; the same ODE
    from k = 0 (exact_steps=0) misses the oscillating transient of momentum (5.6%
    off the exact mean at k = 7) and fails the 3% tolerance. (Against Monte Carlo
    this needs > 1e5 runs at this alpha: the per-run spread is 2.7x the mean.)"""
    p = rc.PowerLaw(50, 1.5, 0.5, rc.Gaussian(0.1))
    opt = _opt(p, 0.9, 1, False, frac=0.9)
    ks = rc.checkpoints(500, 20)
    rec = rc.momentum_recursion(p, opt, ks).risk
    ode = rc.solve_ode(p, opt, ks, rtol=1e-4)
    plain = rc.solve_ode(p, opt, ks, exact_steps=0, rtol=1e-4)
    e_def = np.max(np.abs(ode.risk[1:] / rec[1:] - 1))
    e_plain = np.max(np.abs(plain.risk[1:] / rec[1:] - 1))
    assert e_def < 2e-3 and e_plain > _TOL, f"default {e_def:.2e}, plain from k=0 {e_plain:.4f}"


@pytest.mark.slow
def test_ode_matches_recursion_after_handover():
    """Past the exact discrete start the modified-equation ODE stays within 1e-4 of the
    exact recursion (the first-order field `increment` within 5e-3)."""
    p = rc.PowerLaw(60, 1.2, 0.3, rc.Gaussian(0.1))
    opt = _opt(p, 0.95, 4, False)
    ks = rc.checkpoints(3000, 20)
    rec = rc.momentum_recursion(p, opt, ks)
    e_mod = np.max(np.abs(rc.solve_ode(p, opt, ks, exact_steps=256).risk[1:] / rec.risk[1:] - 1))
    e_inc = np.max(np.abs(rc.solve_ode(p, opt, ks, exact_steps=256, field="increment").risk[1:]
                          / rec.risk[1:] - 1))
    assert e_mod < 1e-4 and e_inc < 5e-3, f"modified {e_mod:.2e}, increment {e_inc:.2e}"


# ---- (d) stability --------------------------------------------------------------------
def test_threshold_reduces_to_sgd_at_zero_momentum():
    p = rc.PowerLaw(50, 1.0, 0.5, rc.Gaussian(0.1))
    for B in (1, 4):
        thr0 = momentum_stability_threshold(p, 0.0, B)
        sgd = rc.theory.stability_threshold(rc.SGD(1.0, B), p)
        assert abs(thr0 / sgd - 1) < 1e-9
        assert abs(momentum_kernel_norm(p, 0.5 * sgd, 0.0, B)
                   - rc.theory.sgd_kernel_norm(p, 0.5 * sgd, B)) < 1e-12


@pytest.mark.parametrize("nesterov", [False, True])
def test_threshold_separates_convergence_from_divergence(nesterov):
    """The exact recursion converges to a finite floor at 0.97 x threshold and blows
    up at 1.03 x threshold."""
    p = rc.PowerLaw(40, 1.0, 0.5, rc.Gaussian(0.1))
    mu = 0.9
    thr = momentum_stability_threshold(p, mu, 1, nesterov)
    assert thr < rc.theory.stability_threshold(rc.SGD(1.0, 1), p)
    ks = [0, 20000, 40000]
    below = rc.momentum_recursion(p, rc.SGD(0.97 * thr, 1, mu, nesterov), ks).risk
    above = rc.momentum_recursion(p, rc.SGD(1.03 * thr, 1, mu, nesterov), ks).risk
    assert abs(below[2] / below[1] - 1) < 1e-3, below
    assert not (above[2] < 10 * above[1]), above
    assert math.isfinite(thr) and thr > 0


@pytest.mark.slow
def test_momentum_is_a_traced_leaf():
    """jax.grad of the final risk with respect to the momentum, without recompiling."""
    p = rc.PowerLaw(30, 1.0, 0.5, rc.Gaussian(0.1))
    ks = rc.checkpoints(1200, 10)  # through the discrete start and into the ODE

    def final(mu):
        return rc.solve_ode(p, rc.SGD(0.02, 4, momentum=mu), ks, exact_steps=256).risk[-1]

    g = jax.grad(final)(0.5)
    h = 1e-4
    fd = (final(0.5 + h) - final(0.5 - h)) / (2 * h)
    assert abs(float(g) / fd - 1) < 1e-3, (float(g), fd)


@pytest.mark.slow
def test_long_horizon_compressed():
    """d = 1e6 compressed, k up to 1e6: the block ODE stays stable and cheap."""
    p = rc.PowerLaw(10**6, 1.5, 0.5, rc.Gaussian(0.1), compressed=True)
    opt = _opt(p, 0.9, 4, False)  # 332 nodes; measured: 4055 steps (B = 1: 7508)
    ks = rc.checkpoints(10**6, 30)
    ode = rc.solve_ode(p, opt, ks)
    assert ode.status == "ok"
    assert np.all(np.isfinite(ode.risk)) and np.all(np.diff(ode.risk[ks >= 100]) <= 1e-12)
    assert ode.meta["solver"]["num_steps"] < 6000


@pytest.mark.slow
def test_ode_vs_simulation_error_shrinks_with_d():
    """Heavy ball μ = 0.9, B = 4, 256 runs, bulk power law, d = 64 -> 1024: the
    simulation's standard error and the ODE–simulation gap shrink (measured: gap
    8.0% -> 1.0%, stderr/mean 3.0% -> 0.73%, max |z| 2.7 -> 1.9; 6 min at load ~17)."""
    out = {}
    for d in (64, 1024):
        p, opt, ode, sims = _agreement(0.9, 4, False, d=d, n_runs=256)
        m = sims.k >= 1
        out[d] = (rc.max_rel_err(ode, sims, k_min=1), float(np.max(sims.stderr[m] / sims.risk[m])),
                  float(np.max(np.abs(_z(sims, ode.risk)))))
    msg = f"(gap, stderr/mean, max|z|) by d: {out}"
    assert out[1024][0] < out[64][0] and out[1024][1] < 0.5 * out[64][1], msg
    assert out[1024][0] < _TOL and out[1024][2] < 4.5, msg
