"""Problems, noise laws and optimizer configs: validation and exact properties."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import integrate, stats

import riskcurves as rc
from riskcurves.theory import (
    expected_clipped_square,
    prob_abs_residual_below,
    residual_density_at_zero,
)


# ---- bad input: one test each, ValueError naming the argument ------------------
@pytest.mark.parametrize("lr", [-0.1, 0.0, float("nan"), float("inf")],
                         ids=["negative", "zero", "nan", "inf"])
def test_bad_lr(lr):
    with pytest.raises(ValueError, match="`lr`"):
        rc.SGD(lr=lr)


def test_bad_lr_type():
    with pytest.raises(ValueError, match="`lr`"):
        rc.SGD(lr="fast")


def test_non_psd_K():
    K = np.array([[1.0, 2.0], [2.0, 1.0]])  # eigenvalues 3, -1
    with pytest.raises(ValueError, match="`K` must be positive semi-definite"):
        rc.Problem.from_matrix(K, np.ones(2))


def test_non_symmetric_K():
    K = np.array([[1.0, 0.5], [0.0, 1.0]])
    with pytest.raises(ValueError, match="`K` must be symmetric"):
        rc.Problem.from_matrix(K, np.ones(2))


def test_shape_mismatch_energies():
    with pytest.raises(ValueError, match="`initial_energies`"):
        rc.Problem(np.ones(3), np.ones(2))


def test_shape_mismatch_theta_star():
    with pytest.raises(ValueError, match="`theta_star`"):
        rc.Problem.from_matrix(np.eye(3), np.ones(2))


def test_negative_eigenvalue():
    with pytest.raises(ValueError, match="`eigenvalues`"):
        rc.Problem(np.array([1.0, -0.5]), np.ones(2))


@pytest.mark.parametrize("batch", [0, -3], ids=["zero", "negative"])
def test_batch_below_one(batch):
    with pytest.raises(ValueError, match="`batch` must be an integer >= 1"):
        rc.SGD(lr=0.1, batch=batch)


@pytest.mark.parametrize("batch", [1.5, "eight", True, float("nan")],
                         ids=["fraction", "string", "bool", "nan"])
def test_batch_not_integer(batch):
    with pytest.raises(ValueError, match="`batch` must be an integer >= 1"):
        rc.SGD(lr=0.1, batch=batch)


@pytest.mark.parametrize("clip", [0.0, -1.0, float("nan")], ids=["zero", "negative", "nan"])
def test_bad_clip(clip):
    with pytest.raises(ValueError, match="`clip`"):
        rc.ClippedSGD(lr=0.1, clip=clip)


@pytest.mark.parametrize("nu", [1.5, 2.0])
def test_student_t_infinite_variance(nu):
    noise = rc.StudentT(nu, 1.0)
    with pytest.raises(ValueError, match="nu > 2"):
        noise.variance
    with pytest.raises(ValueError, match="`nu` must be > 2"):
        rc.StudentT.with_std(nu, 1.0)


@pytest.mark.parametrize("d", [0, -5, 2.5], ids=["zero", "negative", "fraction"])
def test_bad_dimension(d):
    with pytest.raises(ValueError, match="`d` must be an integer >= 1"):
        rc.PowerLaw(d, 1.5, 0.5)
    with pytest.raises(ValueError, match="`d` must be an integer >= 1"):
        rc.Flat(d)


@pytest.mark.parametrize("name,make", [
    ("sigma", lambda: rc.Gaussian(-1.0)),
    ("nu", lambda: rc.StudentT(0.0)),
    ("p", lambda: rc.GaussianMixture(0.1, 1.0, 1.5)),
    ("alpha", lambda: rc.PowerLaw(10, -1.0, 0.5)),
])
def test_bad_law_and_spectrum_parameters(name, make):
    with pytest.raises(ValueError, match=f"`{name}`"):
        make()


# ---- noise laws ------------------------------------------------------------------
_N_SAMPLES = 200_000


def _laws():
    return {
        "gaussian": (rc.Gaussian(0.5), stats.norm(scale=0.5), 3 * 0.5**4),
        "student5": (rc.StudentT(5.0, 0.7), stats.t(5.0, scale=0.7),
                     0.7**4 * 3 * 25 / (3 * 1)),  # E T^4 = 3ν²/((ν−2)(ν−4))
        "mixture": (rc.GaussianMixture(0.2, 3.0, 0.02), None,
                    3 * (0.98 * 0.2**4 + 0.02 * 3.0**4)),
    }


@pytest.mark.parametrize("name", ["gaussian", "student5", "mixture"])
def test_sample_moments_match_variance(name):
    noise, _, fourth = _laws()[name]
    x = np.asarray(noise.sample(jax.random.PRNGKey(3), (_N_SAMPLES,), jnp.float64))
    var = noise.variance
    se_var = math.sqrt((fourth - var**2) / _N_SAMPLES)
    z_var = (np.mean(x**2) - var) / se_var
    z_mean = np.mean(x) / math.sqrt(var / _N_SAMPLES)
    assert abs(z_var) < 5, (f"{name}: sample E[eps^2]={np.mean(x**2):.5g} vs variance "
                            f"{var:.5g}, z={z_var:.2f} (n={_N_SAMPLES})")
    assert abs(z_mean) < 5, f"{name}: sample mean {np.mean(x):.3g}, z={z_mean:.2f}"
    # the empirical CDF matches the law's cdf (binomial standard error)
    pts = np.array([-1.0, -0.3, 0.1, 0.5, 2.0]) * math.sqrt(var)
    emp = (x[:, None] <= pts).mean(axis=0)
    cdf = np.asarray(noise.cdf(pts))
    z = (emp - cdf) / np.sqrt(cdf * (1 - cdf) / _N_SAMPLES)
    assert np.max(np.abs(z)) < 5, f"{name}: ECDF vs cdf z-scores {np.round(z, 2)}"


@pytest.mark.parametrize("name", ["gaussian", "student5", "mixture"])
def test_pdf_cdf_match_scipy(name):
    noise, ref, _ = _laws()[name]
    if ref is None:  # mixture: weighted normals
        w, s = (0.98, 0.02), (0.2, 3.0)
        ref_pdf = lambda x: w[0] * stats.norm.pdf(x, scale=s[0]) + w[1] * stats.norm.pdf(
            x, scale=s[1])
        ref_cdf = lambda x: w[0] * stats.norm.cdf(x, scale=s[0]) + w[1] * stats.norm.cdf(
            x, scale=s[1])
    else:
        ref_pdf, ref_cdf = ref.pdf, ref.cdf
    x = np.linspace(-6, 6, 61)
    err_pdf = np.max(np.abs(np.asarray(noise.pdf(x)) - ref_pdf(x)))
    err_cdf = np.max(np.abs(np.asarray(noise.cdf(x)) - ref_cdf(x)))
    assert err_pdf < 1e-10, f"{name}: max |pdf - scipy| = {err_pdf:.2e}"
    assert err_cdf < 1e-10, f"{name}: max |cdf - scipy| = {err_cdf:.2e}"
    # the Gaussian scale-mixture representation reproduces the same law
    err_mix = np.max(np.abs(np.asarray(rc.AbstractNoise.pdf(noise, x)) - ref_pdf(x)))
    assert err_mix < 1e-9, f"{name}: scale-mixture pdf vs scipy {err_mix:.2e}"
    err_mix_cdf = np.max(np.abs(np.asarray(rc.AbstractNoise.cdf(noise, x)) - ref_cdf(x)))
    assert err_mix_cdf < 1e-9, f"{name}: scale-mixture cdf vs scipy {err_mix_cdf:.2e}"


def _shifted_gauss_clipped_square(m, s, c):
    """E[min(u², c²)] for u ~ N(m, s²), by direct Gaussian integrals (not a mixture)."""
    a, b = (-c - m) / s, (c - m) / s
    dPhi = stats.norm.cdf(b) - stats.norm.cdf(a)
    pa, pb = stats.norm.pdf(a), stats.norm.pdf(b)
    inner = m**2 * dPhi + 2 * m * s * (pa - pb) + s**2 * (dPhi + a * pa - b * pb)
    return inner + c**2 * (1 - dPhi)


@pytest.mark.parametrize("s2", [0.01, 0.5, 4.0])
def test_noise_expectations_vs_quadrature_student_t(s2):
    """Residual r = z − ε, z ~ N(0, s²), ε ~ 0.3·T_3: closed forms vs scipy quad."""
    noise = rc.StudentT(3.0, 0.3)
    pe = stats.t(3.0, scale=0.3).pdf
    s = math.sqrt(s2)
    quad = lambda f: integrate.quad(f, -np.inf, np.inf, epsabs=1e-13, epsrel=1e-11,
                                    limit=400)[0]
    # p_r(0) = ∫ p_z(e) p_ε(e) de
    ref_p0 = quad(lambda e: stats.norm.pdf(e, scale=s) * pe(e))
    got_p0 = float(residual_density_at_zero(noise, s2))
    assert abs(got_p0 - ref_p0) < 1e-6, f"p_r(0): {got_p0:.10f} vs quad {ref_p0:.10f}"
    for c in (0.1, 1.0):
        # Pr(|r| < c) = ∫ p_ε(e) [Φ((e + c)/s) − Φ((e − c)/s)] de
        ref_mu = quad(lambda e: pe(e) * (stats.norm.cdf((e + c) / s)
                                         - stats.norm.cdf((e - c) / s)))
        got_mu = float(prob_abs_residual_below(noise, s2, c))
        assert abs(got_mu - ref_mu) < 1e-6, f"mu(c={c}): {got_mu:.10f} vs quad {ref_mu:.10f}"
        # E[min(r², c²)] = ∫ p_ε(e) E[min((z − e)², c²)] de
        ref_nu = quad(lambda e: pe(e) * _shifted_gauss_clipped_square(-e, s, c))
        got_nu = float(expected_clipped_square(noise, s2, c))
        assert abs(got_nu - ref_nu) < 1e-6, f"nu(c={c}): {got_nu:.10f} vs quad {ref_nu:.10f}"


# ---- problems --------------------------------------------------------------------
def test_from_matrix_recovers_spectrum_and_energies():
    d = 12
    rng = np.random.default_rng(1)
    lam = np.sort(rng.uniform(0.1, 2.0, d))[::-1]
    U = rc.random_rotation(d, seed=5)
    K = (U * lam) @ U.T
    theta_star = rng.standard_normal(d)
    p = rc.Problem.from_matrix(K, theta_star)
    err_lam = np.max(np.abs(p.eigenvalues - lam))
    # D_i(0) = (u_iᵀ(θ0 − θ*))², θ0 = 0; eigenvectors are defined up to sign
    err_D = np.max(np.abs(p.initial_energies - (U.T @ theta_star) ** 2))
    assert err_lam < 1e-12, f"eigenvalues off by {err_lam:.2e}"
    assert err_D < 1e-10, f"initial energies off by {err_D:.2e}"
    P0 = 0.5 * theta_star @ K @ theta_star
    assert abs(p.initial_risk - P0) < 1e-12 * P0, f"P0 {p.initial_risk} vs {P0}"
    assert abs(float(p.excess_risk(p.init_delta(jnp.float64))) - P0) < 1e-10 * P0
    # a diagonal K stays diagonal (no eigenvectors) with D = θ*²
    q = rc.Problem.from_matrix(np.diag(lam), theta_star)
    assert q.is_diagonal
    assert np.allclose(q.initial_energies, theta_star**2, rtol=0, atol=1e-14)


def test_rotated_problem_keeps_spectrum():
    p = rc.PowerLaw(40, 1.2, 0.4, rc.Gaussian(0.1))
    q = p.rotated(seed=3)
    assert not q.is_diagonal
    np.testing.assert_array_equal(q.eigenvalues, p.eigenvalues)
    eig = np.sort(np.linalg.eigvalsh(q.K))[::-1]
    err = np.max(np.abs(eig - p.eigenvalues))
    assert err < 1e-12, f"eigenvalues of the rotated K differ by {err:.2e}"
    P0 = float(q.excess_risk(q.init_delta(jnp.float64)))
    assert abs(P0 - p.initial_risk) < 1e-12, f"rotated P0 {P0} vs {p.initial_risk}"
    D = np.asarray(q.energies(q.init_delta(jnp.float64)))
    assert np.max(np.abs(D - p.initial_energies)) < 1e-12
    # sampled rows have covariance K (relative Frobenius error ~ sqrt(d/n))
    X, _ = q.sample(jax.random.PRNGKey(0), 20_000, jnp.float64)
    emp = np.asarray(X.T @ X) / X.shape[0]
    rel = np.linalg.norm(emp - q.K) / np.linalg.norm(q.K)
    assert rel < 0.03, f"empirical covariance of samples off by {rel:.3f} (Frobenius)"


@pytest.mark.parametrize("alpha,beta", [(1.5, 0.5), (0.8, 1.0)])
def test_powerlaw_initial_risk(alpha, beta):
    d = 5000
    p = rc.PowerLaw(d, alpha, beta)
    j = np.arange(1, d + 1)
    expected = 0.5 * np.sum(j ** (-alpha - beta))
    assert abs(p.initial_risk - expected) < 1e-12 * expected
    assert p.eigenvalues[0] == 1.0 and abs(p.eigenvalues[-1] - d**-alpha) < 1e-15
    # α + β > 1: the d → ∞ limit is ½ ζ(α + β)
    from scipy.special import zeta
    tail = 0.5 * zeta(alpha + beta) - p.initial_risk
    bound = 0.5 * d ** (1 - alpha - beta) / (alpha + beta - 1)
    assert 0 < tail < bound, f"P0(d={d}) tail {tail:.3g} should be in (0, {bound:.3g})"
