"""SignSGD: closed forms, the four effects, and theory-vs-simulation agreement
(docs/theory/setting.md §5, §9).

Agreement tests compare the simulated mean risk with the ODE at log-spaced
checkpoints: max relative error under a stated tolerance, and not larger at
4x the dimension (strictly smaller where the error is above Monte-Carlo
noise). Numbers go in the assertion messages.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.special import gamma

import riskcurves as rc
from riskcurves.odes import theory_for
from riskcurves.theory import (
    drift_rates,
    expected_sign,
    noise_forcing,
    reshaped_noise,
    sign_gain,
    sign_noise_coefficient,
)


# ---- closed forms -------------------------------------------------------------------
@pytest.mark.parametrize("B", [1, 2, 4, 32])
def test_sign_gain_gaussian_closed_form(B):
    """φ_B = √(2/π) E[χ_B]/√(2P+σ²) and χ_B = (B−1)/(2P+σ²) for Gaussian noise."""
    noise, s2 = rc.Gaussian(0.3), 0.5
    tau = s2 + 0.09
    exact = math.sqrt(2 / math.pi) * math.sqrt(2) * gamma((B + 1) / 2) / gamma(B / 2)
    assert abs(float(sign_gain(noise, s2, B)) * math.sqrt(tau) / exact - 1) < 1e-9
    assert abs(float(sign_noise_coefficient(noise, s2, B)) - (B - 1) / tau) < 1e-9
    if B == 1:  # reuses the noise-law expectation φ = 2√(2/π) p_r(0)
        t = rc.StudentT(3, 0.2)
        np.testing.assert_allclose(sign_gain(t, s2, 1), rc.theory.effective_sign_gain(t, s2))
    # large-B limit √(2/π)·√B/√(2P+σ²)
    if B == 32:
        lim = math.sqrt(2 / math.pi) * math.sqrt(B / tau)
        assert abs(float(sign_gain(noise, s2, B)) / lim - 1) < 0.01


def test_expected_sign_against_monte_carlo():
    """Exact E[sign(Σ_b z_b r_b)] (arcsin for B = 1, Gil-Pelaez for B > 1) vs 2e5 samples."""
    a = np.array([0.3, 0.9])
    assert np.allclose(expected_sign(rc.Noiseless(), a, 1 - a**2), (2 / np.pi) * np.arcsin(a))
    rng = np.random.default_rng(0)
    a, rest2, N = 0.4, 0.3, 200_000
    laws = {"Gaussian": lambda n, shp: n.sigma * rng.standard_normal(shp),
            "StudentT": lambda n, shp: n.scale * rng.standard_t(n.nu, shp),
            "GaussianMixture": lambda n, shp: np.where(rng.random(shp) < n.p, n.outlier_sigma,
                                                       n.sigma) * rng.standard_normal(shp)}
    for noise, B in [(rc.Gaussian(0.3), 4), (rc.StudentT(3, 0.3), 4), (rc.StudentT(3, 0.3), 1),
                     (rc.GaussianMixture(0.1, 2.0, 0.1), 2), (rc.Gaussian(0.3), 32)]:
        z = rng.standard_normal((N, B))
        eps = laws[noise.name](noise, (N, B))
        r = a * z + math.sqrt(rest2) * rng.standard_normal((N, B)) + eps
        mc = np.sign((z * r).sum(1))
        th = float(expected_sign(noise, a, rest2, B))
        se = mc.std() / math.sqrt(N)
        assert abs(mc.mean() - th) < 4 * se, (noise.name, B, mc.mean(), th, se)


def test_expected_sign_student_t_closed_form_at_large_batch():
    """One noise component: E[sign] = sign(a)·P(|T_B| < √B a/√R), T_B Student-t (closed
    form, O(B)). Checked against 2e5 samples in the saturating corner a² ≫ R at B = 256,
    where the Gil-Pelaez quadrature (the general mixture path, the negative control) is
    2.5% off, and against that quadrature to 1e-8 where it is accurate (B ≤ 16)."""
    from riskcurves.theory._signsgd import _student_sign

    class TwoEqual:  # the same law as one component, forced through Gil-Pelaez
        def scale_mixture(self):
            return np.array([0.5, 0.5]), np.array([0.0, 0.0])

    a, R, B = -0.055, 2.7e-4, 256
    closed = float(_student_sign(jnp.asarray(a), jnp.asarray(R), B))
    quad = float(expected_sign(TwoEqual(), a, R, B))
    rng, N = np.random.default_rng(0), 100_000
    z = rng.standard_normal((N, B))
    mc = np.sign((z * (a * z + math.sqrt(R) * rng.standard_normal((N, B)))).sum(1))
    se = max(mc.std(), 1 / math.sqrt(N)) / math.sqrt(N)
    assert abs(mc.mean() - closed) < 4 * se, (mc.mean(), closed, se)
    assert abs(mc.mean() - quad) > 10 * se  # negative control: the quadrature fails here
    g = np.random.default_rng(1)
    av, Rv = g.normal(size=500) * np.exp(g.uniform(-15, 2, 500)), np.exp(g.uniform(-20, 2, 500))
    for B in (2, 3, 4, 5, 16):
        np.testing.assert_allclose(_student_sign(jnp.asarray(av), jnp.asarray(Rv), B),
                                   expected_sign(TwoEqual(), av, Rv, B), rtol=0, atol=1e-8)


def test_sign_second_moment_is_reshaped_noise():
    """E[sign(g) sign(g)ᵀ] = K̃ = (2/π) arcsin(C) exactly at B = 1 (whatever Δ and noise);
    for B = 4 the off-diagonal excess is (2/π) χ_B q_i q_j, q = Dg^(−1/2) KΔ (to leading
    order: measured fitted slope 0.94 with per-coordinate correlations up to 0.33)."""
    d, N = 30, 40_000
    prob = rc.PowerLaw(d, 0.5, 0.0, rc.Gaussian(0.2), rotate=True, seed=3)
    K = prob.K
    Kt = reshaped_noise(K)
    assert np.allclose(np.diag(Kt), 1.0)
    delta = np.asarray(prob.init_delta(np.float64)) * 0.5
    key = jax.random.PRNGKey(0)
    off = ~np.eye(d, dtype=bool)
    for B in (1, 4):
        X, eps = prob.sample(key, N * B, np.float64)
        X, eps = np.asarray(X).reshape(N, B, d), np.asarray(eps).reshape(N, B)
        r = X @ delta - eps
        s = np.sign(np.einsum("nbd,nb->nd", X, r))
        M = s.T @ s / N
        excess = (M - Kt)[off]
        se = 1 / math.sqrt(N)
        if B == 1:
            assert np.max(np.abs(excess)) < 5 * se, np.max(np.abs(excess))
        else:
            Kd = K @ delta
            q = Kd / np.sqrt(np.diag(K))
            s2 = float(delta @ Kd)
            pred = ((2 / np.pi) * float(sign_noise_coefficient(prob.noise, s2, B))
                    * np.outer(q, q))[off]
            slope = float(excess @ pred / (pred @ pred))
            # the K̃ term alone would give slope 0; measured ≈ 1
            assert 0.85 < slope < 1.15, f"B=4 signal term: fitted slope {slope:.3f} (expect 1)"
            resid = np.mean((excess - pred) ** 2) ** 0.5
            rms = np.mean(excess**2) ** 0.5
            assert resid < 0.3 * rms, f"unexplained {resid:.4f} of rms excess {rms:.4f}"


# ---- the four effects: drift structure -----------------------------------------------
def _mc_mean_sign(prob, delta, N, B=1, seed=0):
    X, eps = prob.sample(jax.random.PRNGKey(seed), N * B, np.float64)
    d = delta.shape[0]
    X, eps = np.asarray(X).reshape(N, B, d), np.asarray(eps).reshape(N, B)
    r = X @ delta - eps
    return np.sign(np.einsum("nbd,nb->nd", X, r)).mean(0)


def test_drift_preconditioning_diagonal_vs_rotated():
    """Diagonal K: drift_i/Δ_i ∝ √λ_i (linear drift: exactly); rotated K: the drift is a
    scalar multiple of KΔ (no preconditioning: drift/Δ̂_j ∝ λ_j in the eigenbasis)."""
    d = 256
    lr = 1e-3
    diag = rc.PowerLaw(d, 1.0, 1.0, rc.Gaussian(0.3))
    th = theory_for(rc.SignSGD(lr), diag, drift="linear")
    delta = np.asarray(diag.init_delta(np.float64))
    ratio = np.asarray(th.expected_sign(delta)) / delta
    lam = diag.eigenvalues
    slope = np.polyfit(np.log(lam), np.log(ratio), 1)[0]
    assert abs(slope - 0.5) < 1e-10, f"diagonal: drift_i/Δ_i ∝ λ_i^{slope:.4f}, expected 0.5"
    # the exact (arcsin) drift deviates from √λ only on the top modes
    ex = np.asarray(theory_for(rc.SignSGD(lr), diag).expected_sign(delta)) / delta
    assert np.max(np.abs(ex[16:] / ratio[16:] - 1)) < 0.01

    rot = rc.PowerLaw(d, 0.5, 1.0, rc.Gaussian(0.3), rotate=True, seed=1)
    thr = theory_for(rc.SignSGD(lr), rot)
    delta = np.asarray(rot.init_delta(np.float64))
    K = rot.K
    v = np.asarray(thr.expected_sign(delta))
    Kd = K @ delta
    c = v @ Kd / (Kd @ Kd)
    resid = np.linalg.norm(v - c * Kd) / np.linalg.norm(v)
    tol = 0.1  # predicted ≈ relative spread of diag(K)^(-1/2) (0.032 here; measured 0.034)
    assert resid < tol, f"rotated: ‖drift − c·KΔ‖/‖drift‖ = {resid:.3f} (tol {tol})"
    U = rot.eigenvectors
    rat = (U.T @ v) / (U.T @ delta)
    slope = np.polyfit(np.log(rot.eigenvalues[:64]), np.log(rat[:64]), 1)[0]
    assert abs(slope - 1.0) < 0.1, f"rotated: drift/Δ̂_j ∝ λ_j^{slope:.3f}, expected 1"
    # the theory vector is the Monte-Carlo mean sign (20000 gradients)
    mc = _mc_mean_sign(rot, delta, 20_000)
    err = np.linalg.norm(mc - v) / np.linalg.norm(v)
    noise_floor = math.sqrt(d / 20_000) / np.linalg.norm(v)
    assert err < 1.5 * noise_floor + 0.03, f"rotated MC drift rel. err {err:.3f}"


def test_noise_compression_and_rates():
    """SignSGD's noise forcing is η² per coordinate whatever σ; SGD's grows with σ²."""
    for sigma in (0.0, 0.1, 10.0):
        p = rc.PowerLaw(64, 1.0, 0.5, rc.Gaussian(sigma))
        np.testing.assert_allclose(noise_forcing(p, rc.SignSGD(0.01), 0.1), 1e-4)
        f = noise_forcing(p, rc.SGD(0.01), 0.1)
        np.testing.assert_allclose(f, 1e-4 * p.eigenvalues * (0.2 + sigma**2))
    p = rc.PowerLaw(64, 1.0, 0.5, rc.Gaussian(0.1))
    lam, a = drift_rates(p, rc.SignSGD(0.01), 0.1)
    np.testing.assert_allclose(a / np.sqrt(lam), a[0])
    lam, a = drift_rates(p.rotated(0), rc.SignSGD(0.01), 0.1)
    np.testing.assert_allclose(a / lam, a[0] / lam[0])
    # rotated K: the K̄ basis of a diagonal K is √λ with n = √λ (reduces to the diagonal ODE)
    b = rc.theory.signsgd_basis(p)
    np.testing.assert_allclose(b.lam_bar, np.sqrt(p.eigenvalues))
    np.testing.assert_allclose(b.n, np.sqrt(p.eigenvalues))


def test_general_ode_reduces_to_diagonal():
    """The dense K̄-basis ODE on a diagonal K equals the diagonal ODE (linear drift)."""
    p = rc.PowerLaw(64, 1.0, 0.5, rc.Gaussian(0.1))
    ks = rc.checkpoints(500, 12)
    a = rc.solve_ode(p, rc.SignSGD(0.004), ks, drift="linear")
    b = rc.solve_ode(p, rc.SignSGD(0.004), ks, drift="linear", basis="general")
    np.testing.assert_allclose(a.risk, b.risk, rtol=1e-4)


def test_bad_options():
    p = rc.PowerLaw(16, 1.0, 0.5)
    with pytest.raises(ValueError, match="drift"):
        rc.solve_ode(p, rc.SignSGD(0.01), [0, 10], drift="cubic")
    with pytest.raises(ValueError, match="basis"):
        rc.solve_ode(p.rotated(0), rc.SignSGD(0.01), [0, 10], basis="diagonal")
    with pytest.raises(ValueError, match="batch"):
        sign_gain(rc.Gaussian(0.1), 0.1, 0)


# ---- agreement (setting.md §9) ----------------------------------------------------------------
def _err(prob, opt, steps, n_runs, seed=0, num=30, **options):
    ks = rc.checkpoints(steps, num)
    th = rc.solve_ode(prob, opt, ks, **options)
    sim = rc.simulate(prob, opt, ks, n_runs=n_runs, seed=seed)
    rel = np.abs(sim.risk[1:] - th.risk[1:]) / th.risk[1:]
    se = float(np.max(sim.stderr[1:] / th.risk[1:]))
    return float(rel.max()), se, th, sim


def _check_d(errs, tol, what):
    (d1, e1, s1), (d2, e2, s2) = errs
    msg = (f"{what}: max rel err {e1:.4f} (d={d1}, 2se {2 * s1:.4f}) -> {e2:.4f} "
           f"(d={d2}, 2se {2 * s2:.4f}), tol {tol}")
    assert e1 < tol and e2 < tol, msg
    # not larger at 4d (an error at the Monte-Carlo level cannot shrink further)
    assert e2 < e1 or e2 < 2.5 * s2, msg


def test_agreement_diagonal_powerlaw_gaussian():
    """Diagonal power law α = 1, β = 0.5, σ = 0.1, B = 1, η = 0.005, 2000 steps, 64 runs.
    Measured: 1.2% (d=256) and 1.3% (d=1024), both at the Monte-Carlo level (se ≈ 1.1–1.4%)."""
    errs = []
    for d in (256, 1024):
        e, se, _, _ = _err(rc.PowerLaw(d, 1.0, 0.5, rc.Gaussian(0.1)), rc.SignSGD(0.005),
                           2000, 64)
        errs.append((d, e, se))
    _check_d(errs, 0.04, "diagonal power law, Gaussian, B=1")


@pytest.mark.slow  # heavy on 2 cores (suite time); run with -m slow
def test_agreement_flat_converges_with_d():
    """Isotropic diagonal K, η = 0.3/d, 40d steps, 1024 runs: the finite-d error shrinks
    strictly with d (measured 2.8% d=16 -> 2.2% d=64 -> 0.6% d=256; se 1.4/0.7/0.35%)."""
    errs = []
    for d in (16, 64):
        p = rc.Flat(d, 1.0, rc.Gaussian(0.1))
        e, se, _, _ = _err(p, rc.SignSGD(0.3 / d), 40 * d, 1024, seed=1, num=25)
        errs.append((d, e, se))
    _check_d(errs, 0.05, "flat diagonal, B=1")
    assert errs[1][1] < errs[0][1], errs


def test_arcsin_drift_reduces_top_mode_error():
    """Diagonal power law α = 1.5, d = 256, 128 runs. While the top modes carry the risk
    (k <= 500) the linearised drift is off by ~9% and the exact arcsin drift by < 1%
    (measured: 0.9% vs 9.3%, se 1.2%); over all k the exact drift stays < 4.5% (measured
    3.1% at k = 911, near the floor where α > 1 runs are right-skewed, setting.md §9)."""
    prob = rc.PowerLaw(256, 1.5, 0.5, rc.Gaussian(0.1))
    opt = rc.SignSGD(0.005)
    ks = rc.checkpoints(2000, 30)
    sim = rc.simulate(prob, opt, ks, n_runs=128, seed=1)
    top = (ks >= 1) & (ks <= 500)
    out, out_all = {}, {}
    for drift in ("exact", "linear"):
        th = rc.solve_ode(prob, opt, ks, drift=drift)
        rel = np.abs(sim.risk - th.risk) / th.risk
        out[drift], out_all[drift] = float(rel[top].max()), float(rel[1:].max())
    se = float(np.max(sim.stderr[top] / sim.risk[top]))
    msg = (f"k<=500: max rel err exact {out['exact']:.4f}, linear {out['linear']:.4f} "
           f"(se {se:.4f}); all k: exact {out_all['exact']:.4f}")
    assert out["exact"] < 0.02, msg
    assert out["linear"] > 0.05, msg
    assert out["exact"] < out["linear"] / 4, msg
    assert out_all["exact"] < 0.045, msg


@pytest.mark.slow  # heavy on 2 cores (suite time); run with -m slow
def test_agreement_student_t():
    """Student-t noise (ν = 3), diagonal α = 1, d = 256, B = 1, 64 runs (measured 1.5%)."""
    e, se, _, _ = _err(rc.PowerLaw(256, 1.0, 0.5, rc.StudentT(3, 0.1)), rc.SignSGD(0.005),
                       2000, 64)
    assert e < 0.04, f"Student-t: max rel err {e:.4f} (2se {2 * se:.4f}), tol 0.04, d=256"


@pytest.mark.slow  # heavy on 2 cores (suite time); run with -m slow
def test_agreement_batch4_diagonal():
    """B = 4, diagonal α = 1, d = 256, 64 runs: exact drift 1.4%, linear φ_B drift 6.8%."""
    e, se, _, sim = _err(rc.PowerLaw(256, 1.0, 0.5, rc.Gaussian(0.1)), rc.SignSGD(0.005, 4),
                         2000, 64)
    assert e < 0.04, f"B=4: max rel err {e:.4f} (2se {2 * se:.4f}), tol 0.04, d=256"


@pytest.mark.slow  # heavy on 2 cores (suite time); run with -m slow
def test_agreement_rotated_powerlaw():
    """Rotated power law α = 1 (no preconditioning), B = 1, η = 0.002, 32 runs.
    Measured 2.0% (d=128, se 1.1%), 2.3% (d=512, se 1.4%): both at the MC level;
    d=256 -> 1024 gives 2.0% -> 1.4% (docs/theory/signsgd.md)."""
    errs = []
    for d in (128, 512):
        p = rc.PowerLaw(d, 1.0, 0.5, rc.Gaussian(0.1), rotate=True)
        e, se, _, _ = _err(p, rc.SignSGD(0.002), 2000, 32)
        errs.append((d, e, se))
    _check_d(errs, 0.04, "rotated power law, B=1")


# ---- heavier cases ----------------------------------------------------------------------
@pytest.mark.slow
def test_agreement_batch32_diagonal_slow():
    """B = 32: the linear drift is off by > 100% (saturated signs); exact drift ≈ 2.7%."""
    for d in (256, 1024):
        e, se, _, _ = _err(rc.PowerLaw(d, 1.0, 0.5, rc.Gaussian(0.1)), rc.SignSGD(0.005, 32),
                           2000, 32)
        assert e < 0.06, f"B=32 d={d}: max rel err {e:.4f} (2se {2 * se:.4f}), tol 0.06"


@pytest.mark.slow
def test_agreement_rotated_batch4_slow():
    errs = []
    for d in (256, 1024):
        p = rc.PowerLaw(d, 1.0, 0.5, rc.Gaussian(0.1), rotate=True)
        e, se, _, _ = _err(p, rc.SignSGD(0.002, 4), 2000, 32)
        errs.append((d, e, se))
    _check_d(errs, 0.05, "rotated power law, B=4")

