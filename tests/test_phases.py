"""SignSVD vs matrix SignSGD phases (docs/theory/phases.md): classification helpers,
the ODE phase at chosen (α, β) and the simulated ordering at the ODE-optimal step sizes.

Protocol (`_confirm`): both ODEs on a rotated (generic) `K`, each method's best constant
step size per horizon (envelope over a step-size grid, `compare_at_optimal_lr`); then
both methods are simulated at the distinct ODE-best step sizes of the kept horizons and
the simulated envelope (min over those step sizes per horizon) is compared.
"""

import json
import os

import jax.numpy as jnp
import numpy as np
import pytest

import riskcurves as rc
from riskcurves.odes._signsvd import _jit_dn, signsvd_theory
from riskcurves.odes._signsvd_common import projector_kappa
from riskcurves.studies import classify, compare_at_optimal_lr, fixed_power_law_nodes, flip_time
from riskcurves.studies._phases import _signsgd_theory
from riskcurves.theory import phases_asymptotics as asy


def _confirm(alpha, beta, d, B, k_max, n_runs, *, k_min=10, n_lr=6, n_fine=8, n_ck=9,
             seed=0, info=None):
    """`(k, ODE log ratio, simulated log ratio)` on the kept horizons; `info` (a dict)
    receives the step sizes used."""
    out = compare_at_optimal_lr(alpha, beta, d=d, batch=B, compressed=False, k_max=k_max,
                                n_lr=n_lr, n_fine=n_fine, n_checkpoints=n_ck, k_min=k_min)
    ks = out["k"]
    keep = ks >= k_min
    p = rc.MatrixPowerLaw(d, 2 * d, alpha, beta, rotate=True)
    ck = np.concatenate([[0], ks])
    env = {}
    for name, Opt in (("svd", rc.SignSVD), ("sgn", rc.MatrixSignSGD)):
        lrs = np.unique(out[name + "_lr"][keep])
        if info is not None:
            info[name + "_lrs"] = lrs.tolist()
        runs = [np.asarray(rc.simulate(p, Opt(float(lr), B), ck, n_runs=n_runs, seed=seed,
                                       check_stability=False, throw=False).risk)[1:]
                for lr in lrs]
        env[name] = np.where(np.isfinite(runs), runs, np.inf).min(0)
        if info is not None:  # simulated over ODE envelope, per method
            info[name + "_sim_over_ode"] = (env[name] / out[name])[keep]
    ode = np.log(out["svd"] / out["sgn"])[keep]
    sim = np.log(env["svd"] / env["sgn"])[keep]
    return ks[keep], ode, sim


def test_classify_and_flip_time():
    assert classify([-0.3, -0.2, -1.0]) == 1
    assert classify([0.3, 0.2, 0.01]) == -1
    assert classify([0.3, 0.2, -0.5, -1.0]) == 0
    assert classify([-1.0, -1.0, 2.0, -1.0, -1.0]) == 1  # one-horizon spike: no flip
    assert classify([-1.0, -1.0, -1.0, 2.0]) == 1  # also at the ends
    assert classify([0.04, -0.04]) == 1  # within ±tol: sign of the last value
    k = np.array([10.0, 100.0, 1000.0])
    assert flip_time(k, [-1.0, -2.0, -3.0]) is None
    assert abs(flip_time(k, [1.0, -1.0, -2.0]) - np.sqrt(1000.0)) < 1e-9
    assert abs(flip_time(k, [-1.0, 1.0, -1.0]) - np.sqrt(1e5)) < 1e-6  # the last change


def test_compare_bad_input():
    with pytest.raises(ValueError, match="signsgd_basis"):
        compare_at_optimal_lr(1.5, 0.5, d=20, signsgd_basis="eigen")
    with pytest.raises(ValueError, match="noise_ratio"):
        compare_at_optimal_lr(1.5, 0.5, d=20, sigma=0.1, noise_ratio=0.1)
    with pytest.raises(ValueError, match="n_lr"):
        compare_at_optimal_lr(1.5, 0.5, d=20, n_lr=2)


@pytest.mark.slow
def test_simulated_ordering_small():
    """(Slow: 139 s wall / 60 s CPU measured on the loaded 2-core machine.)
    Noiseless, d = 32, m = 64, B = 16, 8 runs. (α, β) = (2, 0.5), k in [10, 100]:
    SignSVD-better phase (at every d in docs/theory/phases.md). (0.75, 2), k in
    [1, 100]: trade-off phase (SignSGD ahead at the first steps, SignSVD
    later; the flip moves to k ~ 10-300 at d = 1e4)."""
    k, ode, sim = _confirm(2.0, 0.5, 32, 16, 100, 8, n_lr=5, n_fine=5, n_ck=8)
    assert classify(ode) == 1, f"ODE phase at (2, 0.5): log ratios {np.round(ode, 2)}"
    assert np.max(sim) < -0.3, (f"(2, 0.5) d=32 B=16: simulated log(P_SVD/P_SGN) over k="
                                f"{k.tolist()}: {np.round(sim, 2)} (need all < -0.3)")
    k, ode, sim = _confirm(0.75, 2.0, 32, 16, 100, 8, k_min=1, n_lr=5, n_fine=5, n_ck=8)
    assert classify(ode) == 0, f"ODE phase at (0.75, 2): log ratios {np.round(ode, 2)}"
    assert sim[0] > 0.05 and sim[-1] < -0.1, (
        f"(0.75, 2) d=32 B=16: simulated log ratio over k={k.tolist()}: {np.round(sim, 2)} "
        f"(ODE {np.round(ode, 2)}); need > +0.05 at k={k[0]} and < -0.1 at k={k[-1]}")


@pytest.mark.slow
@pytest.mark.parametrize("alpha,beta,phase", [(1.5, 0.5, 1)])
def test_simulated_phase_d64(alpha, beta, phase):
    """d = 64, m = 128, B = 16, noiseless, 8 runs, k in [10, 1000]: the simulated
    envelope's phase equals the ODE's (and the large-d phase of docs/theory/phases.md).
    Not asserted: (0.75, 2) at d = 64, k >= 12, where the ODE ratio hovers at
    |log ratio| < 0.7 around 0 but simulation has SignSVD ahead by 0.7-2.5
    (docs/theory/phases.md §5: per-entry SNR of SignSGD too high at small d)."""
    k, ode, sim = _confirm(alpha, beta, 64, 16, 1000, 8, n_lr=8, n_fine=16, n_ck=12)
    msg = (f"({alpha}, {beta}) d=64 B=16 k={k.tolist()}: ODE {np.round(ode, 2)}, "
           f"sim {np.round(sim, 2)}, flip ODE {flip_time(k, ode)} sim {flip_time(k, sim)}")
    print(msg)
    assert classify(ode) == phase, msg
    assert classify(sim) == phase, msg


# ---- large-d asymptotics (docs/theory/phases.md §2) ------------------------------------

def test_fixed_nodes_same_size_every_d():
    for d in (10**3, 10**6, 10**9):
        lam, D0, w = fixed_power_law_nodes(d, 0.75, 1.0, 64)
        assert lam.shape == D0.shape == w.shape == (64,)
        assert abs(w.sum() - d) < 1e-6 * d
        tr = asy.power_law_trace(0.75, d)
        assert abs(np.sum(w * lam) / tr - 1) < 0.01, (d, np.sum(w * lam), tr)
    with pytest.raises(ValueError, match="n_nodes"):
        fixed_power_law_nodes(100, 1.0, 1.0, 10, 24)


def test_projector_kappa_asymptotics():
    """κ0(B): α > 1 → ((π/α)/(B sin(π/α)))^α (O(1/B)); α < 1 → tr K/B − Σλ²/tr K."""
    for a, B, d, tol in ((2.0, 256, 10**9, 0.02), (2.0, 16, 10**9, 0.07),
                         (1.5, 16, 10**9, 0.05), (0.75, 16, 10**9, 0.01),
                         (0.5, 16, 10**9, 0.01)):
        lam, _, w = fixed_power_law_nodes(d, a, 1.0, 64)
        k_num = projector_kappa(lam, w, B)
        k_asy = asy.projector_kappa_asymptotic(a, B, d)
        assert abs(k_asy / k_num - 1) < tol, (a, B, k_num, k_asy)
    with pytest.raises(ValueError, match="d"):
        asy.projector_kappa_asymptotic(0.75, 16)


def _sgd_form_ratios(a, b, d=10**9, B=16):
    lam, D0, w = fixed_power_law_nodes(d, a, b, 64)
    m = 2 * d
    th = _signsgd_theory(lam, D0, w, m, B, 0.0, False)
    A, F = th._rates(0.0, jnp.asarray(D0))
    P, trK = 0.5 * np.sum(w * lam * D0), np.sum(w * lam)
    g = asy.sgd_equivalent_step("signsgd", 1.0, P, trK, B, d, m)
    iso = m * (1 - 2 / np.pi)  # isotropic part of the arcsine noise (η = 1)
    sgd_noise = g**2 * (lam**2 * D0 + 2 * P / B * lam)
    share = np.sum(w * lam * iso) / np.sum(w * lam * np.asarray(F))
    return np.asarray(A) / (2 * g * lam), (np.asarray(F) - iso) / sgd_noise, share, w


def test_signsgd_generic_is_normalised_sgd_at_large_d():
    """α < 1, d = 1e9: the generic-K SignSGD rates are SGD's at γ = η√(2/π)√(Bdm/(2P trK)):
    drift 2γλ_i (within 1%), noise γ²(λ_i²D_i + 2Pλ_i/B) (within 2%) plus the isotropic
    arcsine part η²m(1 − 2/π), whose share of dP/dk is (π/2−1)(tr K)²/(dΣλ²):
    < 1% at α = 0.75, 11% at α = 0.5 (decays as 1/log d). Negative control α = 1.5
    (per-entry SNR Bλ_1/tr K finite): drift off by > 50%."""
    for a, b, share_max in ((0.75, 1.0, 0.01), (0.5, 0.25, 0.13)):
        dr, no, share, w = _sgd_form_ratios(a, b)
        assert np.max(np.abs(dr - 1)) < 0.01, (a, b, dr)
        assert np.max(np.abs(no[w > 0] - 1)) < 0.02, (a, b, no)
        assert share < share_max, (a, b, share)
    dr, _, _, _ = _sgd_form_ratios(1.5, 1.0)
    assert np.max(np.abs(dr - 1)) > 0.5, dr


def test_signsvd_bulk_is_sgd_with_the_same_noise_constant():
    """α + β < 1, α < 1, d = 1e9, B = 16: SignSVD drift = B λ D/√(2P(tr K + Bλ)), noise
    λB/tr K on the bulk (≤ 4% / 1%): the same SGD form and noise constant 2/B as SignSGD.
    Negative control: β = 2 (residual effective rank 1.7 < B): the tail drift is > 3×
    the SGD form (the polar factor whitens the residual directions)."""
    B, d = 16, 10**9
    for b, lo, hi in ((0.25, 0.96, 1.04), (2.0, 3.0, np.inf)):
        lam, D0, w = fixed_power_law_nodes(d, 0.5, b, 64)
        th = signsvd_theory(rc.SignSVD(1.0, B), lam, D0, 2 * d, weights=w, n_nodes=24)
        dr, no, res = _jit_dn(th, th.D0)
        P, trK = 0.5 * np.sum(w * lam * D0), np.sum(w * lam)
        rho = np.asarray(dr) / D0
        pred = asy.sgd_equivalent_step("signsvd", 1.0, P, trK, B, lam=lam) * lam
        tail = (np.arange(lam.size) >= 30) & (w > 0)
        ratio = rho[tail] / pred[tail]
        assert float(res) < 1e-5
        assert lo < ratio.min() and ratio.max() < hi, (b, ratio)
        if b < 1:
            assert np.max(np.abs(np.asarray(no)[w > 0] * trK / (B * lam[w > 0]) - 1)) < 0.01


def test_predicted_phase_and_exponents():
    assert asy.predicted_phase(1.5, 0.5) == 1
    assert asy.predicted_phase(0.75, 0.1) == 1
    assert asy.predicted_phase(0.75, 0.25) == 1  # α + β = 1: the α + β < 1 side
    assert asy.predicted_phase(0.75, 2.0) is None  # not derived
    assert asy.risk_exponent(1.5, 1.0) == pytest.approx(1.0)  # tail limited
    assert asy.optimal_lr_exponent(1.5, 1.0) == pytest.approx(-0.5)
    assert asy.optimal_lr_exponent(0.5, 2.0) == pytest.approx(-1.0)  # normalised limit
    with pytest.raises(ValueError, match="alpha"):
        asy.risk_exponent(0.0, 1.0)
    assert asy.residual_effective_rank(0.5, 2.0, 1e9) == pytest.approx(1.73, rel=0.02)
    assert asy.bulk_noise_constant(16) == pytest.approx(0.125)


# ---- simulated confirmations: one test per point, three points per phase ---------------
# The ODE phase at the simulated d (finite-d protocol `_confirm`, rotated K, m = 2d,
# B = 16, noiseless) against the simulated envelopes at the ODE-best step sizes.
# (The d = 1e6–1e9 phases of §3 cannot be simulated on CPU; at d = 64 the α < 1 cells
# carry O(B d^(α−1)) corrections, docs/theory/phases.md §5.)
_CONFIRM = [(2.0, 0.5), (1.5, 1.0), (2.5, 2.0),      # SignSVD phase (α > 1)
            (0.75, 2.0), (0.5, 2.0), (0.5, 3.0),     # trade-off (α < 1 < α + β, large β)
            (0.5, 0.25), (0.75, 0.1), (0.6, 0.3)]    # α < 1, α + β < 1


# where the ODE phase disagrees with simulation at d = 64, and why (measured 2026-11-29):
# α = 0.5, large β, B λ_1/tr K = 1.1 — matrix SignSGD's closure on rotated K
# under-predicts its tuned envelope 1.4–10× while SignSVD's ODE is within 0.97–1.85×
_CLOSURE_LIMITED = {(0.5, 2.0), (0.5, 3.0)}


@pytest.mark.slow
@pytest.mark.parametrize("alpha,beta", _CONFIRM)
def test_simulated_phase_matches_ode(alpha, beta):
    """d = 64, m = 128, B = 16, 8 runs, k in [10, 1000]: the simulated phase equals the
    ODE phase at the same d (7 of the 9 points; the recorded numbers are in
    docs/theory/phases.md §5). At the two points of `_CLOSURE_LIMITED` the phases differ
    (simulation / ODE: SignSVD / trade-off at (0.5, 2), trade-off / SignSGD at (0.5, 3));
    the test asserts the measured cause instead: the simulated SignSGD envelope is > 2×
    its ODE (median over the horizons; measured 4.5× and 6.2×) while SignSVD's is within
    1.5× (1.2×, 1.24×)."""
    info = {}
    k, ode, sim = _confirm(alpha, beta, 64, 16, 1000, 8, n_lr=6, n_fine=8, n_ck=10,
                           info=info)
    msg = (f"({alpha}, {beta}) d=64 B=16 k={k.tolist()}: ODE {np.round(ode, 2)}, "
           f"sim {np.round(sim, 2)}; sim/ODE envelopes SignSVD "
           f"{np.round(info['svd_sim_over_ode'], 2)}, SignSGD "
           f"{np.round(info['sgn_sim_over_ode'], 2)}")
    print(msg)
    if (alpha, beta) in _CLOSURE_LIMITED:
        assert np.median(info["sgn_sim_over_ode"]) > 2, msg
        assert np.median(info["svd_sim_over_ode"]) < 1.5, msg
    else:
        assert classify(sim, tol=0.1) == classify(ode, tol=0.1), msg


# ---- the stored large-d plane (docs/theory/phases.json) and its CLI ---------------------
_JSON = os.path.join(os.path.dirname(__file__), "..", "docs", "theory", "phases.json")


def _stored_planes():
    with open(_JSON) as f:
        data = json.load(f)
    return {k: v for k, v in data.items() if k.startswith("plane")}


def test_stored_plane_is_stable_in_d_and_matches_the_derived_phases():
    """Every computed cell has the same phase over all horizons `J <= d/4` at every
    stored d (1e6, 1e9), equal to the derived one where derived (docs/theory/phases.md
    §2.4, `predicted_phase`); no best step size on a grid edge. The bulk phase (`J <= √d`, not
    derived) is the same at every d where computed (measured SignSGD at (0.5, 2),
    trade-off at (0.75, 2), tie for α + β <= 1, SignSVD for α > 1 and at (0.5, 1)), or a
    SignSVD lead at 1e6 that is a tie at 1e9 ((0.75, 1))."""
    planes = _stored_planes()
    assert "plane_B16" in planes
    for key, pl in planes.items():
        if key == "plane_B256":  # B ~ tr K corrections at 1e6: test_stored_plane_B256
            continue
        for i, a in enumerate(pl["alphas"]):
            for j, b in enumerate(pl["betas"]):
                bulk, full = set(), set()
                for d in pl["ds"]:
                    g = pl[str(d)]
                    if g["phase"][i][j] is None:
                        continue
                    pred = asy.predicted_phase(a, b)
                    if pred is not None:
                        assert g["phase"][i][j] == pred, (key, a, b, d)
                    full.add(g["phase"][i][j])
                    assert not g["edge"][i][j], (key, a, b, d)
                    bulk.add(2 if g["tie_bulk"][i][j] else g["phase_bulk"][i][j])
                # α < 1: a SignSVD bulk lead may shrink into the leading-order tie as d
                # grows (corrections ∝ d^(α−1); measured at (0.75, 1): −0.07…−0.13 at
                # 1e6, −0.01…−0.07 at 1e9)
                ok_bulk = len(bulk) <= 1 or (a < 1 and bulk == {1, 2})
                assert ok_bulk and len(full) <= 1, (key, a, b, bulk, full)


def test_cli_replots_the_stored_plane(tmp_path, capsys):
    from riskcurves.cli import main
    assert main(["phase-diagram", "--from-json", _JSON, "--out", str(tmp_path)]) == 0
    (png,) = list(tmp_path.glob("phase_diagram_*.png"))
    assert png.stat().st_size > 20_000
    out = capsys.readouterr().out
    assert "derived" in out and "Muon vs SignSGD" in out  # the stored plane holds Muon


@pytest.mark.slow
def test_cli_phase_plane_coarse_grid(tmp_path):
    """The default `riskcurves phase-diagram` (coarse grid at d = 1e6 and 1e9, B = 16):
    every cell's phase is the same at both d and equals the derived one where derived."""
    from riskcurves.cli import main
    assert main(["phase-diagram", "--out", str(tmp_path)]) == 0
    (js,) = list(tmp_path.glob("phase_diagram_*.json"))
    pl = json.loads(js.read_text())
    for i, a in enumerate(pl["alphas"]):
        for j, b in enumerate(pl["betas"]):
            phases = {pl[str(d)]["phase"][i][j] for d in pl["ds"]}
            assert len(phases) == 1, (a, b, phases)
            if asy.predicted_phase(a, b) is not None:
                assert phases == {asy.predicted_phase(a, b)}, (a, b, phases)


def test_tail_log_ratio_matches_the_stored_d1e4_grid():
    """α > 1: the late-horizon log ratio −p·½log(λ_1/κ0(B)) against the finite-d grid
    (d = 1e4, B = 16, k = 1e4; docs/theory/phases.md §7) for β ≤ 1: within 0.4
    (measured 0.08–0.38, always on the side of a larger advantage: the asymptotic κ0
    overestimates the exact root by 4–6% at B = 16); the negative control (κ0 → λ_1,
    no preconditioning: ratio 0) is off by > 0.7 everywhere."""
    with open(_JSON) as f:
        g = json.load(f)["grids"][0]
    assert g["d"] == 10_000 and g["batch"] == 16
    for i, a in enumerate(g["alphas"]):
        for j, b in enumerate(g["betas"]):
            if a > 1 and b <= 1:
                r = g["final_log_ratio"][i][j]
                pred = asy.tail_log_ratio(a, b, 16)
                assert abs(r - pred) < 0.4, (a, b, r, pred)
                assert abs(r) > 0.7, (a, b, r)


def test_step_ratio():
    """`step_ratio(k, a, b)`: steps b needs to reach a's tuned risk, over k. Power laws
    `a = k^-1`, `b = (k/3)^-1` give 3 wherever b reaches a's risk inside the horizons
    computed (NaN past them); a flat stretch in b (a tuned envelope cannot rise: the
    running minimum is used) and bad input."""
    from riskcurves.studies import step_ratio
    k = np.geomspace(1, 1e4, 9)
    r = step_ratio(k, k**-1.0, (k / 3) ** -1.0)
    np.testing.assert_allclose(r[:-1], 3.0, rtol=1e-12)
    assert np.isnan(r[-1])
    np.testing.assert_allclose(step_ratio(k, (k / 2) ** -0.5, k**-0.5)[1:], 0.5, rtol=1e-12)
    b = k**-1.0
    b[4] = 2 * b[3]  # a rise: treated as the previous level
    assert np.all(np.isfinite(step_ratio(k, k**-1.0, b)[:-1]))
    with pytest.raises(ValueError, match="increasing"):
        step_ratio(k[::-1], k, k)


def test_stored_muon_plane():
    """Muon (Newton–Schulz, no momentum) in the stored plane (docs/theory/phases.md §4):
    equal to SignSVD (|log P_Muon/P_SVD| <= 0.03 at every horizon for α < 1, <= 0.15 for
    α > 1; measured 0.01 and 0.10) where the residual is spread over many modes (β <= 1);
    behind SignSVD by more than e^0.3 somewhere where it is effectively low-rank (β = 2:
    Newton–Schulz leaves singular values below ≈ 2e-3 ‖M‖_F in its linear range; up to
    e^0.55 of it may be the grid resolution at the step-size cliff, §4); ahead of
    SignSGD at every horizon for α > 1, SignSGD ahead over the bulk at (0.5, 2) at every d;
    the Muon-vs-SignSGD phase is the same at every stored d where the residual is spread
    or α > 1 (at β = 2, α < 1 Muon's tuned envelope is irregular and (0.5, 2) turns from
    SignSGD (1e6) to a late flip (1e9), §4)."""
    pl = _stored_planes()["plane_B16"]
    seen = 0
    for i, a in enumerate(pl["alphas"]):
        for j, b in enumerate(pl["betas"]):
            phases = set()
            for d in pl["ds"]:
                g = pl[str(d)]
                if g.get("muon_env") is None or g["muon_env"][i][j] is None:
                    continue
                seen += 1
                mu, sv, sg = (np.asarray(g[k][i][j]) for k in ("muon_env", "svd_env",
                                                               "sgn_env"))
                rv, rs = np.log(mu / sv), np.log(mu / sg)
                if b <= 1:
                    assert np.abs(rv).max() <= (0.03 if a < 1 else 0.15), (a, b, d, rv)
                else:
                    assert rv.max() > 0.3, (a, b, d, rv)
                ph = int(classify(rs))
                if a > 1:
                    assert ph == 1, (a, b, d, rs)
                if (a, b) == (0.5, 2.0):
                    bulk = np.asarray(g["J"][i][j]) <= np.sqrt(d)
                    assert int(classify(rs[bulk])) == -1, (a, b, d, rs)
                if a > 1 or b <= 1:
                    phases.add(ph)
            assert len(phases) <= 1, (a, b, phases)
    assert seen >= 18


def test_compare_in_plane_muon_vs_signsgd():
    """`compare_in_plane` on the stored plane: Muon's phase against SignSGD per cell, and
    the samples it saves (median SignSGD steps per Muon step for equal tuned risk):
    > 2 for α > 1 (measured 3.1–4.3 at d = 1e6), > 1 for α < 1 with β <= 1 (1.06–1.35),
    < 1 at (0.5, 2) (0.57: SignSGD ahead); SignSVD against itself is a tie."""
    from riskcurves.studies import compare_in_plane
    pl = _stored_planes()["plane_B16"]
    c = compare_in_plane(pl, "muon", "sgn")["1000000"]
    for i, a in enumerate(pl["alphas"]):
        for j, b in enumerate(pl["betas"]):
            s = c["step_ratio"][i][j]
            if a > 1:
                assert c["phase"][i][j] == 1 and s > 2, (a, b, s)
            elif b <= 1:
                assert c["phase"][i][j] == 1 and s > 1, (a, b, s)
    i, j = pl["alphas"].index(0.5), pl["betas"].index(2.0)
    assert c["phase_bulk"][i][j] == -1 and c["step_ratio"][i][j] < 1
    same = compare_in_plane(pl, "svd", "svd")["1000000"]
    assert all(t for row in same["tie_bulk"] for t in row if t is not None)
    np.testing.assert_allclose([x for row in same["step_ratio"] for x in row if x], 1.0)


def test_stored_plane_B256_has_all_three_phases_stable_in_d():
    """B = 256 (docs/theory/phases.md §3): one cell per phase with the same phase at
    d = 1e6 and 1e9 — SignSVD at (1.5, 0.25), (1.5, 1), (0.5, 0.25); **SignSGD at every
    horizon at (0.5, 2)** (log P_SVD/P_SGN between +2 and +3.7); a trade-off at (1.5, 2),
    where SignSGD's lead is small (< 0.2) and confined to the first k <= 5 steps, after
    which SignSVD leads (the derived α > 1 phase, §2.4, holds past them). (0.5, 1) is
    SignSVD at 1e9 and a trade-off at 1e6 (B λ_1/tr K = 0.13 there, 0.004 at 1e9), its
    early SignSGD lead shrinking with d. No best step size on a grid edge."""
    pl = _stored_planes()["plane_B256"]
    assert pl["batch"] == 256 and pl["ds"] == [10**6, 10**9]
    idx = {(a, b): (i, j) for i, a in enumerate(pl["alphas"]) for j, b in enumerate(pl["betas"])}
    ph = {d: pl[str(d)]["phase"] for d in pl["ds"]}
    for d in pl["ds"]:
        g = pl[str(d)]
        assert not any(e for row in g["edge"] for e in row), d
        for cell in ((1.5, 0.25), (1.5, 1.0), (0.5, 0.25)):
            i, j = idx[cell]
            assert g["phase"][i][j] == 1 == asy.predicted_phase(*cell), (d, cell)
        i, j = idx[(0.5, 2.0)]
        assert g["phase"][i][j] == -1 and g["min_log_ratio"][i][j] > 2, d
        i, j = idx[(1.5, 2.0)]
        r, J = np.asarray(g["log_ratio"][i][j]), np.asarray(g["J"][i][j])
        lam, D0, w = fixed_power_law_nodes(d, 1.5, 2.0, 64)
        k = float(np.sum(w * lam)) * J**1.5 / 256
        assert g["phase"][i][j] == 0 and r.max() < 0.2 and np.all(k[r > 0] <= 5), (d, r, k)
        assert classify(r[k > 5]) == 1
    i, j = idx[(0.5, 1.0)]
    assert ph[10**9][i][j] == 1 and ph[10**6][i][j] == 0
    lead = [pl[str(d)]["max_log_ratio"][i][j] for d in pl["ds"]]
    assert lead[1] < lead[0], lead
