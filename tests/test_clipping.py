"""Clipped SGD (setting.md §4): coefficients, agreement with simulation, the paper's claims.

Problems have trace 1 (`λ ~ 1/d`), so the effective threshold is `c' = c` and
time scales as `k ~ d`. Agreement follows setting.md §9: simulation mean vs ODE, max
relative error over checkpoints `k >= 1` under a stated tolerance at `d` and
smaller at `4d`.
"""

from __future__ import annotations

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import riskcurves as rc
from riskcurves.theory import clip_coefficients

NOISES = {
    "gauss": lambda: rc.Gaussian(0.3),
    "t3": lambda: rc.StudentT.with_std(3, 0.3),
    "mix": lambda: rc.GaussianMixture(0.2, 3.0, 0.02),
}


def _problem(spectrum, d, noise):
    if spectrum == "flat":
        return rc.Flat(d, 1.0 / d, noise, initial_energy=1.0)
    return rc.TwoLevel(d, 1.6 / d, 0.4 / d, 0.5, noise, initial_energy=1.0)


def _two_nodes(problem):
    """The same spectrum as two weighted nodes (setting.md §8: exact for the ODE; every `d`
    then shares one compilation)."""
    lam, D0 = problem.eigenvalues, problem.initial_energies
    i = len(lam) // 2
    return rc.Problem([lam[0], lam[-1]], [D0[0], D0[-1]], problem.noise, weights=[i, len(lam) - i])


# ---- coefficients -----------------------------------------------------------------
def _mc_coefficients(rng, sample_noise, s2, c, B, n):
    """Monte-Carlo `(μ, ν, G)` of the batch-B limit (Stein form of the drift)."""
    z = rng.standard_normal((n, B)) * np.sqrt(s2)
    r = z - sample_noise((n, B))
    R = np.sqrt((r**2).sum(1))
    m = np.minimum(1.0, c * B / R)
    mu = z[:, 0] * r[:, 0] * m / s2
    nu = np.minimum(R**2, (c * B) ** 2) / B**2
    q = m**2 * (z * r).sum(1) ** 2 / B**2
    return [(x.mean(), x.std() / np.sqrt(n)) for x in (mu, nu, q)], nu.mean()


@pytest.mark.parametrize("noise,B,s2,c", [
    ("t3", 1, 0.2, 0.1), ("t3", 1, 0.05, 0.3), ("mix", 1, 0.1, 0.5),
    ("gauss", 4, 0.5, 0.4), ("gauss", 4, 0.05, 0.05),
])
def test_coefficients_match_monte_carlo(noise, B, s2, c):
    rng = np.random.default_rng(0)
    law = NOISES[noise]()
    if noise == "t3":
        sampler = lambda sh: law.scale * rng.standard_t(3, sh)  # noqa: E731
    elif noise == "mix":
        sampler = lambda sh: np.where(rng.random(sh) < law.p, law.outlier_sigma,  # noqa: E731
                                      law.sigma) * rng.standard_normal(sh)
    else:
        sampler = lambda sh: law.sigma * rng.standard_normal(sh)  # noqa: E731
    (mu, nu, q), nu_mc = _mc_coefficients(rng, sampler, s2, c, B, 200_000)
    th = [float(x) for x in clip_coefficients(law, s2, c, B)]
    q_th = s2 * th[1] + s2**2 * th[2]  # E[m²(Σ z r)²]/B² = s²ν + s⁴G
    for name, (m, se), t in (("mu", mu, th[0]), ("nu", nu, th[1]), ("G-moment", q, q_th)):
        assert abs(m - t) < 5 * se + 1e-12, f"{name}: theory {t:.5g}, MC {m:.5g} ± {se:.2g}"


def test_batch_formulas_reduce_to_batch1():
    from riskcurves.theory._clipping import _chi_batch
    g = rc.Gaussian(0.5)
    for s2 in (0.0, 0.3, 2.0):
        for c in (0.05, 0.5, 3.0):
            a = np.array([float(x) for x in clip_coefficients(g, s2, c, 1)])
            b = np.array([float(x) for x in _chi_batch(g, s2, c, 1)[:3]])
            b[0] = float(_chi_batch(g, s2, c, 1)[3])  # μ_1 = Pr(|r| < c')
            np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-14)


def test_no_clipping_limit_is_the_sgd_ode():
    prob = _two_nodes(_problem("two", 200, NOISES["t3"]()))
    ks = rc.checkpoints(800, 20)
    sgd = rc.solve_ode(prob, rc.SGD(0.8), ks)
    clip = rc.solve_ode(prob, rc.ClippedSGD(0.8, clip=1e6), ks)
    err = rc.max_rel_err(sgd, clip, k_min=0)
    assert err < 1e-4, f"clip=1e6 vs SGD ODE: max rel err {err:.2e} (tol 1e-4)"
    for B in (1, 4):  # coefficients: (μ, ν, G) -> (1, (2P + σ²)/B, 1 + 1/B)
        for law in (rc.Gaussian(0.3), NOISES["t3"]()):
            if B > 1 and not isinstance(law, rc.Gaussian):
                continue
            for c in (1e6, np.inf):
                got = [float(x) for x in clip_coefficients(law, 0.4, c, B)]
                np.testing.assert_allclose(got, [1, (0.4 + law.variance) / B, 1 + 1 / B],
                                           rtol=1e-5)


def test_simulator_clips_the_global_norm():
    from riskcurves.simulate._registry import transform_for

    spec = transform_for(rc.ClippedSGD(0.5, clip=2.0), None)
    g = jnp.array([3.0, 4.0])  # norm 5 > 2
    upd, state = spec.tx.update(g, spec.tx.init(g), g)
    np.testing.assert_allclose(np.asarray(upd), -0.5 * 2.0 * np.array([0.6, 0.8]), rtol=1e-6)
    assert float(spec.observe(state, g, 0)["clip_frac"]) == 1.0
    upd, state = spec.tx.update(g / 10, state, g)  # norm 0.5 < 2: plain SGD
    np.testing.assert_allclose(np.asarray(upd), -0.05 * np.array([3.0, 4.0]), rtol=1e-6)
    assert float(spec.observe(state, g, 0)["clip_frac"]) == 0.0
    assert isinstance(spec.tx, optax.GradientTransformation)


# ---- agreement (setting.md §9) ------------------------------------------------------------
# The simulation mean sits below the ODE by ≈ b/d at the noise floor (b ≈ 0.2 to 1.1
# for these cases, measured with 2^17/d runs: docs/theory/clipping.md), so the small
# size gets enough runs (n·d = 131072, s.e. ≈ 0.1–0.4%) to resolve the shrinkage.
# (spectrum, noise, clip c = c', lr, batch, (d, 4d), tol at d, tol at 4d)
AGREE = [
    pytest.param("two", "mix", 0.05, 3.0, 1, (64, 256), 0.025, 0.01,
                 id="twolevel-mixture-clips95%", marks=pytest.mark.slow),
    pytest.param("flat", "t3", 0.3, 1.0, 1, (64, 256), 0.04, 0.015, id="flat-t3-c0.3"),
    pytest.param("two", "gauss", 0.5, 1.0, 1, (64, 256), 0.04, 0.015, id="twolevel-gauss-c0.5",
                 marks=pytest.mark.slow),
    pytest.param("flat", "t3", 0.02, 4.0, 1, (32, 128), 0.015, 0.005, id="flat-t3-clips98%",
                 marks=pytest.mark.slow),
    pytest.param("two", "mix", 0.3, 1.0, 1, (64, 256), 0.04, 0.015, id="twolevel-mixture-c0.3",
                 marks=pytest.mark.slow),
    pytest.param("two", "t3", 0.3, 1.0, 1, (64, 256), 0.04, 0.015, id="twolevel-t3-c0.3",
                 marks=pytest.mark.slow),
    pytest.param("flat", "gauss", 0.3, 2.0, 4, (64, 256), 0.04, 0.02, id="flat-gauss-batch4",
                 marks=pytest.mark.slow),
]


@pytest.mark.parametrize("spectrum,noise,clip,lr,B,dims,tol_small,tol_large", AGREE)
def test_agreement_and_convergence_in_d(spectrum, noise, clip, lr, B, dims, tol_small,
                                        tol_large):
    errs, msgs = [], []
    for d, tol in zip(dims, (tol_small, tol_large)):
        n_runs = 2**17 // d
        prob = _problem(spectrum, d, NOISES[noise]())
        opt = rc.ClippedSGD(lr, clip=clip, batch=B)
        ks = rc.checkpoints(4 * d, 20)
        with warnings.catch_warnings():  # d = 32 is below the intrinsic-dimension warning
            warnings.simplefilter("ignore", UserWarning)
            th = rc.solve_ode(_two_nodes(prob), opt, ks)
        sim = rc.simulate(prob, opt, ks, n_runs=n_runs, seed=1)
        err = rc.max_rel_err(th, sim, k_min=1)
        errs.append(err)
        se = float(np.max(sim.stderr[1:] / th.risk[1:]))
        msgs.append(f"d={d} n_runs={n_runs}: max rel err {err:.4f} (tol {tol}, s.e. {se:.4f}), "
                    f"clip fraction {th.extras['clip_frac'][1]:.2f}->"
                    f"{th.extras['clip_frac'][-1]:.2f}")
        assert err < tol, "; ".join(msgs)
        # the recorded clipping fraction (a Bernoulli per run) matches 1 − Pr(not clipped)
        m = ks >= 10
        cf_sim, cf_th = sim.extras["clip_frac"][m].mean(), th.extras["clip_frac"][m].mean()
        cf_se = np.sqrt(cf_th * (1 - cf_th) / n_runs / m.sum())
        assert abs(cf_sim - cf_th) < 5 * cf_se + 0.02, (
            f"d={d}: clip fraction sim {cf_sim:.3f} vs ODE {cf_th:.3f} (s.e. {cf_se:.3f})")
    assert errs[1] < errs[0], "error must shrink when d grows 4x: " + "; ".join(msgs)


# ---- the paper's claims ------------------------------------------------------------
@pytest.mark.parametrize("B", [1, 4])
def test_gaussian_noise_never_gains_from_clipping(B):
    P = np.logspace(-6, 3, 100)[:, None]
    c = np.logspace(-5, 4, 200)[None, :]
    cgr = np.asarray(jax.jit(lambda p, c: rc.theory.clipped_gain_ratio(
        rc.Gaussian(0.3), p, c, B))(P, c))
    assert np.all(np.isfinite(cgr))
    assert cgr.max() <= 1 + 1e-9, f"max CGR {cgr.max():.12f} > 1 for Gaussian noise (B={B})"
    assert cgr.max() > 0.999  # the sup (c' → ∞) is 1
    if B == 1:
        c_star, best = rc.theory.best_threshold(rc.Gaussian(0.3), P[::10, 0])
        assert np.all(np.isinf(c_star)) and np.all(best == 1.0)


@pytest.mark.parametrize("noise,low_risk_cgr", [("t3", 1.8), ("mix", 4.0)])
def test_heavy_tails_have_thresholds_with_gain(noise, low_risk_cgr):
    P = np.array([1e-4, 1e-2, 0.1, 10.0])
    c_star, best = rc.theory.best_threshold(NOISES[noise](), P)
    assert best[0] > low_risk_cgr, f"CGR*(P=1e-4) = {best[0]:.3f} <= {low_risk_cgr}"
    assert np.all(np.diff(best) <= 1e-9), f"CGR* should fall with the risk: {best}"
    assert np.all(np.isfinite(c_star[:3])) and np.all(best[:3] > 1.0)
    assert best[-1] < 1.01  # far above the noise level r is nearly Gaussian
    # a finite-variance heavy tail: CGR at the best threshold is the ratio of gains
    ratio = rc.theory.clipped_gain_ratio(NOISES[noise](), P[:3], c_star[:3])
    np.testing.assert_allclose(np.asarray(ratio), best[:3], rtol=1e-10)


def test_infinite_variance_noise():
    law = rc.StudentT(1.5, 0.3)
    assert np.isinf(float(rc.theory.clipped_gain_ratio(law, 0.01, 0.3)))
    g = float(rc.theory.clipped_gain(law, 0.01, 0.3))
    assert np.isfinite(g) and g > 0
    # the clipped ODE stays finite: μ, ν are finite for every c' < ∞, and P decreases
    th = rc.odes.theory_for(rc.ClippedSGD(1.0, clip=0.3), rc.Flat(100, 0.01, law, 1.0))
    D0 = th.init_state()
    dP = 0.5 * float(np.sum(np.asarray(th.lam * th.vector_field(0.0, D0, None))))
    assert np.isfinite(dP) and dP < 0


def _claim_problem(noise, d=200):
    return rc.Flat(d, 1.0 / d, noise, initial_energy=1.0)


HORIZON = 2000


@pytest.fixture(scope="module")
def tuned_t3():
    """Best clipped vs best SGD run (ODE-tuned) under Student-t(3) noise, flat d = 200."""
    prob = _claim_problem(rc.StudentT(3, 0.3))
    return prob, rc.studies.compare_clipped_sgd(prob, HORIZON, n_lr=16, n_clip=10)


def test_theory_tuned_clipping_vs_sgd(tuned_t3):
    _, t3 = tuned_t3
    assert t3.ratio < 0.9, (f"Student-t(3): best clipped {t3.clip_risk:.4g} vs best SGD "
                            f"{t3.sgd_risk:.4g} (ratio {t3.ratio:.3f}, need < 0.9)")
    g = rc.studies.compare_clipped_sgd(_claim_problem(rc.Gaussian(0.3)), HORIZON, n_lr=16,
                                      n_clip=10)
    assert g.ratio > 0.999, f"Gaussian: clipping beat SGD in theory (ratio {g.ratio:.4f})"


def test_simulation_tuned_clipping_beats_sgd(tuned_t3):
    """ODE-tuned clipped run vs SGD at 0.6x, 1x, 1.6x its ODE-best step (equal iterations)."""
    horizon, n_runs = HORIZON, 64
    prob, cmp = tuned_t3
    ks = np.array([0, horizon])
    clip = rc.simulate(prob, rc.ClippedSGD(cmp.clip_lr, clip=cmp.clip), ks, n_runs, seed=3)
    sgds = [rc.simulate(prob, rc.SGD(f * cmp.sgd_lr), ks, n_runs, seed=3) for f in (0.6, 1, 1.6)]
    best = min(sgds, key=lambda s: s.risk[-1])
    se = np.hypot(clip.stderr[-1], best.stderr[-1])
    msg = (f"d={prob.d}, {n_runs} runs, k={horizon}: clipped {clip.risk[-1]:.4g} ± "
           f"{clip.stderr[-1]:.2g} (ODE {cmp.clip_risk:.4g}) vs best SGD {best.risk[-1]:.4g} ± "
           f"{best.stderr[-1]:.2g} (ODE {cmp.sgd_risk:.4g})")
    assert clip.risk[-1] + 3 * se < best.risk[-1], msg


# ---- validity and errors -------------------------------------------------------------
def test_warns_on_small_intrinsic_dimension():
    prob = rc.PowerLaw(1000, 1.5, 0.5, rc.Gaussian(0.1))
    assert rc.theory.intrinsic_dimension(prob) < 3
    with pytest.warns(UserWarning, match="intrinsic dimension"):
        rc.odes.theory_for(rc.ClippedSGD(0.2, clip=1.0), prob, topmodes=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        # the default there is the top-mode hybrid, which needs no large tr K / λ_max
        th = rc.odes.theory_for(rc.ClippedSGD(0.2, clip=1.0), prob)
        assert isinstance(th, rc.odes.ClippedSGDTopModes)
        rc.odes.theory_for(rc.ClippedSGD(0.2, clip=1.0), _problem("flat", 100, rc.Gaussian(0.3)))
        rc.odes.theory_for(rc.ClippedSGD(0.2, clip=1.0), rc.PowerLaw(1000, 0.5, 1.0))


def test_bad_input():
    prob = _problem("flat", 100, rc.StudentT(3, 0.3))
    with pytest.raises(ValueError, match="batch"):
        rc.solve_ode(prob, rc.ClippedSGD(0.5, clip=0.3, batch=4), rc.checkpoints(10, 5))
    with pytest.raises(ValueError, match="clip"):
        rc.ClippedSGD(0.5, clip=-1.0)
    with pytest.raises(ValueError, match="risk"):
        rc.theory.best_threshold(rc.Gaussian(0.3), [-1.0])
    with pytest.raises(ValueError, match="horizon"):
        rc.studies.compare_clipped_sgd(prob, 0)
