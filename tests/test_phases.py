"""SignSVD vs matrix SignSGD phases (docs/theory/phases.md): classification helpers,
the ODE phase at chosen (α, β) and the simulated ordering at the ODE-optimal step sizes.

Protocol (`_confirm`): both ODEs on a rotated (generic) `K`, each method's best constant
step size per horizon (envelope over a step-size grid, `compare_at_optimal_lr`); then
both methods are simulated at the distinct ODE-best step sizes of the kept horizons and
the simulated envelope (min over those step sizes per horizon) is compared.
"""

import numpy as np
import pytest

import riskcurves as rc
from riskcurves.studies import classify, compare_at_optimal_lr, flip_time


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


def test_simulated_ordering_small():
    """Noiseless, d = 32, m = 64, B = 16, 8 runs. (α, β) = (2, 0.5), k in [10, 100]:
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
