"""SignSVD / Muon / matrix SignSGD on matrix least squares
(docs/theory/setting.md §1.3, §7; docs/theory/signsvd_derivation.md).

Exact checks first (polar factor, Muon mapping, projector noise sums), then the
one-step deterministic equivalent against Monte Carlo, then trajectories (setting.md §9).
Measured numbers are in docs/theory/signsvd.md.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import riskcurves as rc
from riskcurves.odes._signsvd import signsvd_drift_noise, signsvd_theory
from riskcurves.simulate import transform_for
from riskcurves.simulate._spectral import newton_schulz, polar, polar_svd


# ---- Monte Carlo of one step (exact polar factor, float64) ---------------------
def mc_drift_noise(p, B, n, seed=1):
    """Per-mode `E(QΔᵀ)_ii`, its standard error, `E(QQᵀ)_ii`, its standard error."""
    lam = jnp.asarray(p.eigenvalues)
    Delta = jnp.asarray(p.delta0_eig)
    sig = p.sigma2**0.5
    d, m = Delta.shape

    # Reference in plain numpy (one sample at a time): jit(vmap) of batched float64
    # QR/eigh on CPU was seen to stall (load ~0) in some runs; numpy LAPACK does not.
    lam_np, Delta_np = np.asarray(lam), np.asarray(Delta)
    rng = np.random.default_rng(seed)
    dr, no = np.empty((n, d)), np.empty((n, d))
    for i in range(n):
        X = rng.standard_normal((B, d)) * np.sqrt(lam_np)
        R = X @ Delta_np - sig * rng.standard_normal((B, m))
        G = X.T @ R / B
        U, S, Vt = np.linalg.svd(G, full_matrices=False)
        keep = S > 1e-13 * S[0]  # hard edge (B = d): cond(G) can exceed 1e9
        Q = (U[:, keep]) @ Vt[keep]
        dr[i], no[i] = np.sum(Q * Delta_np, 1), np.sum(Q**2, 1)
    se = lambda a: np.asarray(a.std(0) / np.sqrt(n))  # noqa: E731
    return np.asarray(dr.mean(0)), se(dr), np.asarray(no.mean(0)), se(no)


# ---- problem -------------------------------------------------------------------
def test_matrix_problem_interface():
    p = rc.MatrixPowerLaw(16, 40, 1.5, 0.5, rc.Gaussian(0.2))
    assert p.d == 16 and p.m == 40 and p.noise.variance == pytest.approx(0.04)
    d0 = p.init_delta(jnp.float64)
    assert d0.shape == (16, 40)
    np.testing.assert_allclose(p.energies(d0), 16.0 ** 0 * np.arange(1, 17) ** -0.5, rtol=1e-12)
    assert float(p.excess_risk(d0)) == pytest.approx(p.initial_risk, rel=1e-12)
    S = p.row_overlap0
    assert np.max(np.abs(S - np.diag(np.diag(S)))) < 1e-12  # orthogonal rows
    X, E = p.sample(jax.random.PRNGKey(0), 5)
    assert X.shape == (5, 16) and E.shape == (5, 40)
    g = rc.MatrixPowerLaw(16, 8, 1.0, 1.0, rows="gaussian", rotate=True)
    np.testing.assert_allclose(g.energies(g.init_delta(jnp.float64)), np.arange(1, 17) ** -1.0,
                               rtol=1e-10)
    with pytest.raises(ValueError, match="rows"):
        rc.MatrixPowerLaw(16, 8, 1.0, 1.0)  # orthogonal rows need m >= d
    with pytest.raises(ValueError, match="`m`"):
        rc.MatrixProblem(np.ones(3), np.ones(3), m=0)


# ---- simulators: exact polar, Muon mapping -------------------------------------
def test_polar_and_muon_mapping():
    key = jax.random.PRNGKey(3)
    G = jax.random.normal(key, (24, 40)).at[:, :30].set(0.0)  # rank <= 10
    G = G.at[:, 30:].set(jax.random.normal(key, (24, 10)))
    Q = polar(G)
    np.testing.assert_allclose(Q, polar_svd(G, 1e-6), atol=1e-10)
    P = Q @ Q.T  # projector onto col(G), rank 10
    np.testing.assert_allclose(P @ P, P, atol=1e-10)
    assert np.trace(P) == pytest.approx(10.0, abs=1e-8)
    p = rc.MatrixPowerLaw(24, 40, 1.0, 1.0)
    delta = p.init_delta(jnp.float64)
    for mu, nesterov in ((0.0, True), (0.9, False), (0.9, True)):
        tx = transform_for(rc.Muon(0.03, 4, momentum=mu, nesterov=nesterov), p).tx
        st = tx.init(delta)
        G1, G2 = G, jax.random.normal(jax.random.PRNGKey(4), G.shape)
        u1, st = tx.update(G1, st, delta)
        u2, st = tx.update(G2, st, delta)
        np.testing.assert_allclose(u1, -0.03 * newton_schulz(G1), atol=1e-10)
        buf = mu * G1 + G2  # heavy-ball buffer: NS is scale invariant
        if nesterov:  # optax: μ M_2/(1 − μ³) + (1 − μ) G_2/(1 − μ²), M_2 = (1 − μ)(μG1 + G2)
            buf = mu * (1 - mu) * buf / (1 - mu**3) + (1 - mu) * G2 / (1 - mu**2)
        np.testing.assert_allclose(u2, -0.03 * newton_schulz(buf), atol=1e-8)
    tx = transform_for(rc.SignSVD(0.05, 16), p).tx  # low-rank path: rank G = 10 <= 16
    u, _ = tx.update(G, tx.init(delta), delta)
    np.testing.assert_allclose(u, -0.05 * Q, atol=1e-10)
    with pytest.raises(ValueError, match="matrix problem"):
        transform_for(rc.SignSVD(0.05, 4), rc.PowerLaw(8, 1.0, 1.0))


# ---- exact projector noise -------------------------------------------------------
@pytest.mark.parametrize("d,m,B", [(64, 128, 8), (64, 128, 256), (64, 32, 256), (64, 16, 32)])
def test_noise_sum_is_rank(d, m, B):
    rows = "orthogonal" if m >= d else "gaussian"
    p = rc.MatrixPowerLaw(d, m, 1.5, 0.5, rc.Gaussian(0.1), rows=rows)
    _, noise = signsvd_drift_noise(p, batch=B)
    assert np.all((noise >= 0) & (noise <= 1 + 1e-12))
    assert noise.sum() == pytest.approx(min(B, d, m), rel=1e-9), (d, m, B, noise.sum())


# ---- one step: deterministic equivalent vs Monte Carlo ---------------------------
# Tolerance on the drift, per mode: |theory − MC| <= tol·|MC| + 4·stderr(MC), on the
# top 10 modes and on all modes; noise per mode: |theory − MC| <= 0.03 + 4·stderr.
# Orthogonal rows (m = 2d) are the diagonal closure's home ground; m = d/2 (Gaussian
# rows, S = ΔΔᵀ not diagonal) is checked with the general-S equivalent (§5.1; the
# diagonal closure is off by up to 140% there, see tests/test_signsvd_general.py).
ONE_STEP_TOL = {  # (rows, B) -> (tol top-10 modes, tol all modes)
    ("orthogonal", 4): (0.08, 0.20),
    ("orthogonal", 32): (0.03, 0.08),
    ("orthogonal", 256): (0.03, 0.08),
    ("gaussian", 4): (0.10, 0.25),
    ("gaussian", 32): (0.05, 0.12),
    ("gaussian", 256): (0.05, 0.12),
}


def _one_step_case(d, m, B, sigma, n):
    rows = "orthogonal" if m >= d else "gaussian"
    p = rc.MatrixPowerLaw(d, m, 1.5, 0.5, rc.Gaussian(sigma) if sigma else None, rows=rows)
    dr, no = signsvd_drift_noise(p, batch=B,
                                 closure="diagonal" if rows == "orthogonal" else "general")
    mdr, mse, mno, nse = mc_drift_noise(p, B, n)
    tol_top, tol_all = ONE_STEP_TOL[(rows, B)]
    hard_edge = B == d and not sigma and rows == "orthogonal"
    if hard_edge:
        # Hard edge (square noiseless X̂ = XᵀX/B): the equivalent underestimates the
        # tail modes' drift, growing with d (measured 16% at d = 128, 29% at d = 256,
        # docs/theory/signsvd.md §2); the top modes stay exact. Stated, not hidden:
        tol_all = 0.35
    excess = (np.abs(dr - mdr) - 4 * mse) / np.abs(mdr)
    top, allm = float(excess[:10].max()), float(excess.max())
    msg = (f"d={d} m={m} B={B} sigma={sigma} n_mc={n}: drift rel. excess beyond 4se "
           f"top10 {top:.3f} (tol {tol_top}) all {allm:.3f} (tol {tol_all})")
    assert top <= tol_top and allm <= tol_all, msg
    nerr = float(np.max(np.abs(no - mno) - 4 * nse))
    # exact projector regimes, and the general-S equivalent for Gaussian rows
    assert nerr <= 0.03, f"{msg}; noise excess {nerr:.3f} (tol 0.03)"
    # = min(B, d, m) exactly; at the hard edge cond(G) can exceed 1e13 in float64, so
    # the Monte-Carlo rank is occasionally one short
    assert no.sum() == pytest.approx(mno.sum(), rel=1e-3 if hard_edge else 1e-6)


@pytest.mark.slow  # heavy on 2 cores (suite time); run with -m slow
def test_one_step_vs_monte_carlo():
    _one_step_case(128, 256, 32, 0.5, 300)


@pytest.mark.slow
@pytest.mark.parametrize("d", [128, 256])
@pytest.mark.parametrize("mfac", [0.5, 2.0])
@pytest.mark.parametrize("B", [4, 32, 256])
@pytest.mark.parametrize("sigma", [0.0, 0.5])
def test_one_step_grid(d, mfac, B, sigma):
    _one_step_case(d, int(mfac * d), B, sigma, 400)


# ---- limits ------------------------------------------------------------------------
def test_large_batch_whitening_and_batch_transition():
    """B → ∞: drift_i → √D_i. Noise dominated: drift_i/D_i ∝ √λ_i above κ0(B), ∝ λ_i below."""
    d = 200
    lam = np.arange(1, d + 1.0) ** -1.5
    D = np.arange(1, d + 1.0) ** -0.5
    big = signsvd_theory(rc.SignSVD(1.0, 10**7), lam, D, 2 * d)
    dr, _, _ = big.drift_noise(jnp.asarray(D))
    np.testing.assert_allclose(dr, np.sqrt(D), rtol=2e-3)
    from riskcurves.studies import local_drift_exponent

    e_small = local_drift_exponent(lam, D, 2 * d, 4, sigma2=100.0)
    e_large = local_drift_exponent(lam, D, 2 * d, 1024, sigma2=100.0)
    assert np.median(e_small) > 0.85, np.median(e_small)  # SGD-like: drift ∝ λ
    assert np.median(e_large[:20]) < 0.7, np.median(e_large[:20])  # √λ preconditioning


# ---- trajectories (setting.md §9) ------------------------------------------------------
def _traj_err(d, B, sigma, lr, steps, n_runs, alpha=1.5, isotropic=False, seed=0):
    if isotropic:
        noise = rc.Gaussian(sigma) if sigma else None
        p = rc.MatrixProblem(np.ones(d), np.full(d, 1.0 / d), 2 * d, noise)
    else:
        p = rc.MatrixPowerLaw(d, 2 * d, alpha, 0.5, rc.Gaussian(sigma) if sigma else None)
    opt = rc.SignSVD(lr, B)
    ks = rc.checkpoints(steps, 16)
    th = rc.solve_ode(p, opt, ks, rtol=1e-4)
    sim = rc.simulate(p, opt, ks, n_runs=n_runs, seed=seed)
    return rc.max_rel_err(th, sim, k_min=1)


@pytest.mark.slow  # heavy on 2 cores (suite time); run with -m slow
def test_trajectory_isotropic_shrinks_with_d():
    """Proportional regime (B = d/4, m = 2d, K = I, σ = 0.3, η = 0.3/√d): the
    equivalent is asymptotically exact; measured 3.1% (d=32) -> 0.7% (d=128), 8 runs."""
    e_small = _traj_err(32, 8, 0.3, 0.3 / np.sqrt(32), 200, 8, isotropic=True)
    e_large = _traj_err(128, 32, 0.3, 0.3 / np.sqrt(128), 200, 8, isotropic=True)
    msg = f"isotropic: max rel err d=32 {e_small:.4f}, d=128 {e_large:.4f} (tol 0.03 at d=128)"
    assert e_large <= 0.03 and e_large < e_small, msg


@pytest.mark.slow  # heavy on 2 cores (suite time); run with -m slow
def test_trajectory_power_law_noisy():
    """Small batch, power law, label noise: measured 1.9% (d=32) / 2.0% (d=128), 8 runs."""
    e = _traj_err(64, 8, 0.1, 0.03, 300, 8)
    assert e <= 0.06, f"d=64 m=128 B=8 sigma=0.1 lr=0.03: max rel err {e:.4f} (tol 0.06)"


@pytest.mark.slow
@pytest.mark.parametrize("d,B,lr,sigma,alpha,tol", [
    (128, 8, 0.02, 0.1, 1.5, 0.05),    # measured 2.5%
    (128, 32, 0.02, 0.1, 1.0, 0.05),   # measured 1.8%
    (64, 32, 0.02, 0.1, 1.5, 0.08),    # measured 4.8%
    (32, 64, 0.04, 0.1, 1.5, 0.30),    # B > d at small d: measured 19.5% (finite size)
])
def test_trajectory_grid(d, B, lr, sigma, alpha, tol):
    e = _traj_err(d, B, sigma, lr, 300, 8, alpha=alpha)
    assert e <= tol, f"d={d} B={B} sigma={sigma} alpha={alpha}: {e:.4f} (tol {tol})"


def test_matrix_signsgd_trajectory():
    """Measured (σ=0.1, B=8, 8 runs): diagonal K 36% (d=32) -> 4.8% (d=128);
    rotated K 14% (d=32) -> 6.7% (d=128)."""
    p = rc.MatrixPowerLaw(128, 256, 1.5, 0.5, rc.Gaussian(0.1), rotate=True)
    opt = rc.MatrixSignSGD(1e-3, 8)
    ks = rc.checkpoints(1000, 16)
    th = rc.solve_ode(p, opt, ks, rtol=1e-4)
    sim = rc.simulate(p, opt, ks, n_runs=8, seed=0)
    e = rc.max_rel_err(th, sim, k_min=1)
    assert e <= 0.12, f"matrix SignSGD rotated d=128 m=256 B=8 sigma=0.1: {e:.4f} (tol 0.12)"


def test_no_recompile_across_lr_and_batch():
    p = rc.MatrixPowerLaw(16, 32, 1.5, 0.5, rc.Gaussian(0.1))
    th1 = signsvd_theory(rc.SignSVD(0.01, 4), p.eigenvalues, p.initial_energies, p.m, sigma2=0.01)
    th2 = signsvd_theory(rc.SignSVD(0.02, 8), p.eigenvalues, p.initial_energies, p.m, sigma2=0.04)
    leaves = lambda t: [x for x in jax.tree.leaves(t) if not hasattr(x, "shape")]  # noqa: E731
    assert leaves(th1) == leaves(th2)  # only array leaves differ: one compilation
    assert optax is not None


@pytest.mark.slow
def test_cli_phase_diagram(tmp_path):
    from riskcurves.cli import main

    rc_ = main(["phase-diagram", "--d", "100", "--batch", "16", "--steps", "200", "--n-lr", "5",
                "--n-alpha", "2", "--n-beta", "2", "--out", str(tmp_path)])
    assert rc_ == 0
    pngs = list(tmp_path.glob("phase_diagram_d100_B16_*.png"))  # names encode the settings
    assert len(pngs) == 1 and pngs[0].with_suffix(".json").exists(), list(tmp_path.iterdir())


# ---- isotropic K: SignSGD and SignSVD are one ODE up to (η, k) constants ------------
def _iso_constants(p, B):
    """`(c, n_s, r, T)` from the two ODEs at `D(0)` (isotropic `K = λI`, see
    docs/theory/signsvd.md §7): per mode `dD/dk = −2η a D + η² n` with SignSGD
    `(a_g, n_g = m)`, SignSVD `(a_s = c a_g, n_s = min(B, d)/d)`. SignSVD at
    `η_s = r η_g`, `r = c m/n_s`, follows SignSGD at `η_g` sped up `T = c² m/n_s`
    times: `P_SVD(k) = P_SGN(T k)` whenever `c` is constant (noise dominated)."""
    from riskcurves.odes._matrix_signsgd import _matrix_signsgd_theory

    D0 = jnp.asarray(p.initial_energies)
    ths = signsvd_theory(rc.SignSVD(1.0, B), p.eigenvalues, p.initial_energies, p.m,
                         sigma2=p.sigma2)
    thg = _matrix_signsgd_theory(rc.MatrixSignSGD(1.0, B), p, transient="closure")
    a_s, n_s = ths._rates(0, D0)
    a_g, _ = thg._rates(0, D0)
    c = float(a_s[0] / a_g[0])
    n_s = float(n_s[0])
    return c, n_s, c * p.m / n_s, c**2 * p.m / n_s


@pytest.mark.slow  # heavy on 2 cores (suite time); run with -m slow
def test_isotropic_signsgd_signsvd_equal_up_to_constant():
    """K = I, d = 64, m = 128, B = 8, D_i(0) = 1, σ² = 6.4 (noise dominated:
    2P/(mσ²) <= 0.08), η_g = 0.004, 600 SignSGD steps (P falls to 0.30 P(0)).
    Measured: c = 0.0384, r = 39.4, T = 1.513 (B << d estimate π/2 (1 − B/8d)² =
    1.52); mapped ODE curves 0.36% (interpolation in log k); simulations (8 runs
    each) 3.2% (d = 32, B = 4: 6.1%)."""
    d, m, B, eta_g, n = 64, 128, 8, 0.004, 600
    p = rc.MatrixProblem(np.ones(d), np.ones(d), m, rc.Gaussian(6.4**0.5))
    c, n_s, r, T = _iso_constants(p, B)
    assert n_s == pytest.approx(B / d, rel=1e-12)
    # c must be constant along the trajectory (noise dominated): D from D(0) to D(0)/4
    c_late, *_ = _iso_constants(rc.MatrixProblem(np.ones(d), np.full(d, 0.25), m, p.noise), B)
    assert abs(c_late / c - 1) < 0.01, (c, c_late)
    ks_g = rc.checkpoints(n, 64)
    ks_s = np.unique(np.round(rc.checkpoints(int(n / T), 16)))
    ks_s = ks_s[ks_s >= 1]
    sgn, svd = rc.MatrixSignSGD(eta_g, B), rc.SignSVD(r * eta_g, B)

    def mapped(curve_g, curve_s):  # |P_SVD(k) − P_SGN(T k)| / P_SGN(T k), k >= 1
        Pg = np.interp(np.log(T * np.asarray(curve_s.k[1:], float)), np.log(ks_g[1:]),
                       np.log(np.asarray(curve_g.risk[1:])))
        return float(np.max(np.abs(np.asarray(curve_s.risk[1:]) / np.exp(Pg) - 1)))

    ode_g = rc.solve_ode(p, sgn, ks_g, rtol=1e-5, transient="closure")  # the closure ODE
    e_ode = mapped(ode_g, rc.solve_ode(p, svd, ks_s, rtol=1e-5))
    curve_ratio = ode_g.risk[-1] / ode_g.risk[0]
    e_sim = mapped(rc.simulate(p, sgn, ks_g, n_runs=8, seed=0),
                   rc.simulate(p, svd, ks_s, n_runs=8, seed=1))
    msg = (f"isotropic d={d} m={m} B={B} sigma2=6.4 eta_g={eta_g}: c={c:.4f} r={r:.2f} "
           f"T={T:.3f}; ODE mapped err {e_ode:.4f} (tol 0.01), sim mapped err {e_sim:.4f} "
           f"(tol 0.06, 8 runs each); P(n)/P(0) = {float(curve_ratio):.3f}")
    assert e_ode <= 0.01 and e_sim <= 0.06, msg
    print(msg)
