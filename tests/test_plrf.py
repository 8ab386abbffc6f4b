"""Power-law random features: exact finite-d problem, simulator equivalence, deterministic
equivalent (docs/theory/plrf.md)."""

import math

import numpy as np
import pytest

import riskcurves as rc
from riskcurves._plrf import _exact_parts, plrf_spectrum


def _opt(prob, frac=0.5, batch=4):
    thr = rc.theory.stability_threshold(rc.SGD(lr=1e-3, batch=batch), prob)
    return rc.SGD(lr=frac * thr, batch=batch)


def test_exact_problem_is_the_feature_regression():
    """θ*, D(0), s_irr from the eigendecomposition equal the direct least-squares solution."""
    v, d, a, b = 96, 24, 0.8, 0.6
    W, lam_x, bb, K, mu, U, D0, s_irr, ts = _exact_parts(v, d, a, b, 3)
    A = np.sqrt(lam_x)[:, None] * W
    c = np.sqrt(lam_x) * bb
    theta, *_ = np.linalg.lstsq(A, c, rcond=None)
    np.testing.assert_allclose(ts, theta, rtol=1e-8, atol=1e-12)
    np.testing.assert_allclose(s_irr, np.sum((A @ theta - c) ** 2), rtol=1e-8)
    np.testing.assert_allclose(D0, (U.T @ theta) ** 2, rtol=1e-8, atol=1e-20)
    p = rc.PowerLawRF(v, d, a, b, rc.Gaussian(0.1), seed=3)
    # population risk at θ0 = 0: ½ E⟨x, b⟩² + ½σ² = P(0) + ½ E[ε_eff²]
    np.testing.assert_allclose(p.initial_risk + 0.5 * p.noise_variance,
                               0.5 * (c @ c) + 0.5 * 0.01, rtol=1e-10)


def test_arguments():
    with pytest.raises(ValueError, match="`v` must be > d"):
        rc.PowerLawRF(16, 16, 1.0, 0.5)
    with pytest.raises(ValueError, match="`alpha`"):
        rc.PowerLawRF(64, 16, -1.0, 0.5)
    with pytest.raises(ValueError, match="`method`"):
        rc.PowerLawRF(64, 16, 1.0, 0.5, method="mc")
    with pytest.raises(ValueError, match="v=inf"):
        rc.PowerLawRF(math.inf, 16, 0.4, 0.5, method="deterministic")
    with pytest.raises(ValueError, match="finite integer"):
        rc.PowerLawRF(math.inf, 16, 1.0, 0.5)


@pytest.mark.slow  # 295 s measured at load 20 (helper report)
def test_data_sampling_matches_theory_and_feature_sampling():
    """SGD on literally sampled x ∈ R^v (features Wᵀx) vs the exact feature-space theory.

    The theory (exact recursion, then ODE) is exact in expectation given W, so the
    literal-data simulator and the feature-space simulator (eigenbasis sampling) must
    both agree with it within Monte-Carlo error over the whole curve: 4.5 standard
    errors (d = 64, v = 256, 128 runs, k ≤ 16d). Negative control: the same theory
    without the irreducible part of the noise fails that tolerance (measured 5.8 s.e.)."""
    d, a, b = 64, 1.0, 0.7
    prob = rc.PowerLawRF(4 * d, d, a, b, seed=1)
    raw = rc.PowerLawRFData(4 * d, d, a, b, seed=1)
    opt = _opt(prob)
    ks = rc.checkpoints(16 * d, 20)
    th = rc.solve_ode(prob, opt, ks)
    for p in (raw, prob):
        sim = rc.simulate(p, opt, ks, n_runs=128, seed=5, check_stability=False,
                          dtype=np.float64)
        z = np.abs(sim.risk - th.risk)[1:] / sim.stderr[1:]
        rel = rc.max_rel_err(th, sim)
        assert z.max() < 4.5, f"{p.label}: max |sim − theory| = {z.max():.2f} s.e., rel {rel:.3%}"
        if p is raw:
            bad = rc.solve_ode(prob.with_noise(rc.Noiseless()), opt, ks)
            zb = np.abs(sim.risk - bad.risk)[1:] / sim.stderr[1:]
            assert zb.max() > 4.5, f"noiseless feature model should fail: {zb.max():.1f} s.e."


def _decile_errors(d, a, b, seeds):
    v = 4 * d
    sp = plrf_spectrum(v, d, a, b, ranks=np.arange(11) * d / 10)
    eig, en = [], []
    for s in seeds:
        *_, mu, U, D0, s_irr, _ = _exact_parts(v, d, a, b, s)
        eig.append([mu[q * d // 10:(q + 1) * d // 10].mean() for q in range(10)])
        en.append([(mu * D0)[q * d // 10:(q + 1) * d // 10].sum() for q in range(10)])
    eig, en = np.mean(eig, 0), np.mean(en, 0)
    return (np.abs(sp["eigenvalues"] / eig - 1), np.abs(sp["energies"] / en - 1), sp)


def test_deterministic_spectrum_deciles_d512():
    """Mean eigenvalue per decile of the spectrum: deterministic equivalent vs exact
    (2 draws of W). The top decile's mean is dominated by the top eigenvalue, which
    fluctuates by ~2/√d between draws: 4% there (measured 3.4%), 2% elsewhere (1.3%)."""
    e_eig, e_en, sp = _decile_errors(512, 1.0, 0.7, [0, 1])
    np.testing.assert_allclose(sp["counts"], 51.2, rtol=1e-4)
    assert e_eig[0] < 0.04, f"eigenvalue, top decile: rel err {e_eig[0]:.3%}"
    assert e_eig[1:].max() < 0.02, f"eigenvalue per decile: max rel err {e_eig[1:].max():.3%}"


@pytest.mark.slow
def test_deterministic_spectrum_deciles_d4096():
    """d = 4096, v = 4d: eigenvalues per decile within 2% (one W), target energy per
    decile within 2% on the top decile (it holds > 99% of the energy)."""
    e_eig, e_en, _ = _decile_errors(4096, 1.0, 0.7, [0])
    assert e_eig.max() < 0.02, f"eigenvalue per decile: max rel err {e_eig.max():.3%}"
    assert e_en[0] < 0.02, f"top-decile energy: rel err {e_en[0]:.3%}"


@pytest.mark.slow
def test_deterministic_equivalent_vs_W_average():
    """The deterministic-equivalent curve vs the exact curves averaged over 16 draws of W
    (each exact in expectation given W: the mean over W is what a simulation with a
    fresh W per run estimates). Loss `P + ½ s_irr`, d = 128, v = 512, k ≤ 100d: within
    4 standard errors of the W-average over the whole curve (measured: 8.9% max
    relative deviation, ≤ 2.6 s.e.)."""
    d, a, b = 128, 1.0, 0.7
    pd = rc.PowerLawRF(4 * d, d, a, b, method="deterministic")
    opt = _opt(pd)
    ks = rc.checkpoints(100 * d, 24)[1:]
    de = rc.solve_ode(pd, opt, ks).risk + 0.5 * pd.noise_variance
    curves = []
    for s in range(16):
        p = rc.PowerLawRF(4 * d, d, a, b, seed=100 + s)
        curves.append(rc.solve_ode(p, opt, ks).risk + 0.5 * p.noise_variance)
    curves = np.array(curves)
    z = np.abs(curves.mean(0) - de) / (curves.std(0, ddof=1) / 4)
    assert z.max() < 4, f"DE vs W-average: {z.max():.2f} s.e."
    # negative control: the data power law itself (PowerLaw(2α, 2β) on the first d
    # coordinates, i.e. features = data) is far off
    naive = rc.PowerLaw(d, 2 * a, 2 * b)
    nv = rc.solve_ode(naive, opt, ks).risk
    zn = np.abs(curves.mean(0) - nv) / (curves.std(0, ddof=1) / 4)
    assert zn.max() > 4, f"the naive power law should fail: {zn.max():.2f} s.e."


@pytest.mark.slow
def test_compression_converges():
    """Coarse vs default vs fine node sets of the deterministic equivalent (d = 4096, v = inf):
    the SGD loss curves agree to 1% (default vs fine) and the default has < 600 nodes."""
    d, a, b = 4096, 1.0, 0.7
    fine = rc.PowerLawRF(math.inf, d, a, b, method="deterministic", sub_ratio=1.02,
                         nodes_per_decade=48)
    default = rc.PowerLawRF(math.inf, d, a, b, method="deterministic")
    opt = _opt(fine, batch=1)
    ks = rc.checkpoints(10**6, 30)
    lf = rc.solve_ode(fine, opt, ks).risk + 0.5 * fine.noise_variance
    ld = rc.solve_ode(default, opt, ks).risk + 0.5 * default.noise_variance
    err = np.max(np.abs(ld / lf - 1))
    assert default.n_modes < 600
    assert err < 0.01, f"default vs fine nodes: {err:.3%}"


def _exact_vs_sim(d, n_runs, K):
    """PLRF α = 0.55, β = 0 (paper's convention: covariance j^-1.1, b_j = 1, so the
    target energy is spread over many modes), v = 4d, one W (seed 1), SGD B = 1 at half
    its threshold: the library's exact theory for this W vs the simulation."""
    p = rc.PowerLawRF(4 * d, d, 0.55, 0.0, seed=1)
    opt = _opt(p, batch=1)
    ks = rc.checkpoints(K, 24)
    th = rc.solve_ode(p, opt, ks)
    sim = rc.simulate(p, opt, ks, n_runs=n_runs, seed=5, check_stability=False)
    m = ks >= 1
    err = float(np.max(np.abs(sim.risk[m] / th.risk[m] - 1)))
    z = float(np.max(np.abs(sim.risk[m] - th.risk[m]) / sim.stderr[m]))
    se = float(np.max(sim.stderr[m] / sim.risk[m]))
    return err, z, se


@pytest.mark.slow
def test_exact_theory_vs_simulation_3pct():
    """The issue's "theory vs simulation within 3% over the whole curve at d <= 1024",
    read as: the theory of the sampled problem (`method="exact"`, the W the simulation
    uses) against the simulation mean, every checkpoint k >= 1 (excess risk P, not the
    loss, which would add the constant ½ s_irr and hide errors). d = 256, 2048 runs,
    k <= 2048: measured max gap 0.99%, max |z| 1.89, stderr/mean <= 0.70%
    (168 s on the loaded shared CPU). The deterministic equivalent is the W-average
    (`test_deterministic_equivalent_vs_W_average`, docs/theory/plrf.md)."""
    err, z, se = _exact_vs_sim(256, 2048, 2048)
    msg = f"d=256, 2048 runs: max rel err {err:.4f} (tol 0.03), max|z| {z:.2f}, se {se:.4f}"
    assert err < 0.03 and z < 4.5, msg


@pytest.mark.slow
def test_fixed_point_converges_on_steep_spectra():
    """α = 1.5, d = 1e5, v = ∞ (eigenvalues down to ~1e-15): the fixed point reaches
    round-off (measured 2.2e-16; before the final Newton iterations at the target z the
    continuation stopped at 9.6e-4 and the spectrum was refused). 42 s at load 20 on
    the shared 2 cores (slow: compile + 2 fixed-point grids)."""
    sp = plrf_spectrum(math.inf, 10**5, 1.5, 1.0, nodes_per_decade=6, sub_ratio=1.3, n_top=24,
                       pts_per_decade=30, n_arc=12, j_exact=512)
    assert sp["residual"] < 1e-12, sp["residual"]
    assert sp["count_error"] < 1e-4


@pytest.mark.slow
def test_deterministic_equivalent_within_3pct_of_W_average_d512():
    """The deterministic equivalent as a theory of PLRF averaged over W (a simulation
    that draws a fresh W per run): α = 0.55, β = 0, d = 512, v = 4d, SGD B = 4 at half
    its threshold, loss `P + ½ s_irr`, 24 checkpoints to k = 100d, 32 draws of W (each
    curve the exact theory of its W, itself checked against simulation above). Measured:
    max relative deviation 0.56% (1.9 s.e. of the W-average; single W up to 6.4% off);
    578 s at load ~20 on the shared CPU. Negative control: the data power law
    `PowerLaw(d, 2α, 2β)` (features = data) is 100% off."""
    d, a, b = 512, 0.55, 0.0
    pd = rc.PowerLawRF(4 * d, d, a, b, method="deterministic")
    opt = _opt(pd)
    ks = rc.checkpoints(100 * d, 24)[1:]
    de = rc.solve_ode(pd, opt, ks).risk + 0.5 * pd.noise_variance
    curves = np.array([rc.solve_ode(p, opt, ks).risk + 0.5 * p.noise_variance
                       for p in (rc.PowerLawRF(4 * d, d, a, b, seed=100 + s) for s in range(32))])
    mean = curves.mean(0)
    se = curves.std(0, ddof=1) / math.sqrt(len(curves))
    err = float(np.max(np.abs(mean / de - 1)))
    z = float(np.max(np.abs(mean - de) / se))
    assert err < 0.03 and z < 4.5, f"DE vs W-average: max rel {err:.4f} (tol 0.03), {z:.2f} s.e."
    naive = rc.solve_ode(rc.PowerLaw(d, 2 * a, 2 * b), opt, ks, check_stability=False).risk
    assert np.max(np.abs(naive / de - 1)) > 0.03
