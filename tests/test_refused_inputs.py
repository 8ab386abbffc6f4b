"""Inputs that used to be accepted silently are refused with an error naming the
argument (one test per input)."""

import jax.numpy as jnp
import numpy as np
import optax
import pytest

import riskcurves as rc

_P = rc.PowerLaw(32, 1.0, 0.5, rc.Gaussian(0.1))
_KS = rc.checkpoints(200, 8)


def test_schedule_that_turns_negative():
    sched = lambda k: 0.1 - 1e-3 * k  # noqa: E731 — zero at k = 100, negative after
    for fn in (lambda: rc.solve_ode(_P, rc.SGD(sched, 2), _KS),
               lambda: rc.simulate(_P, rc.SGD(sched, 2), _KS, n_runs=2)):
        with pytest.raises(ValueError,
                           match=r"`lr` schedule must be finite and > 0.*η\(100\) = 0.0"):
            fn()


def test_schedule_returning_nan():
    sched = lambda k: jnp.where(k > 50, jnp.nan, 0.1)  # noqa: E731
    with pytest.raises(ValueError, match="`lr` schedule must be finite and > 0"):
        rc.solve_ode(_P, rc.SGD(sched, 2), _KS)


@pytest.mark.parametrize("rtol", [0.0, -1e-3, float("nan"), 2.0])
def test_bad_rtol(rtol):
    with pytest.raises(ValueError, match="`rtol`"):
        rc.solve_ode(_P, rc.SGD(0.1, 2), _KS, rtol=rtol)


def test_negative_atol_and_bad_step_counts():
    with pytest.raises(ValueError, match="`atol`"):
        rc.solve_ode(_P, rc.SGD(0.1, 2), _KS, atol=-1.0)
    with pytest.raises(ValueError, match="`max_steps`"):
        rc.solve_ode(_P, rc.SGD(0.1, 2), _KS, max_steps=0)
    with pytest.raises(ValueError, match="`exact_steps`"):
        rc.solve_ode(_P, rc.SGD(0.1, 2), _KS, exact_steps=-1)


def test_optax_transformation_instead_of_a_config():
    for fn in (lambda: rc.solve_ode(_P, optax.sgd(0.1), _KS),
               lambda: rc.simulate(_P, optax.sgd(0.1), _KS, n_runs=2)):
        with pytest.raises(ValueError, match="`optimizer` must be a riskcurves optimizer"):
            fn()


def test_infinite_variance_noise_in_simulate():
    cauchy = _P.with_noise(rc.StudentT(1.0, 0.1))
    with pytest.raises(ValueError, match="infinite variance"):
        rc.simulate(cauchy, rc.SGD(0.1, 2), _KS, n_runs=2)
    # a bounded update has a finite mean risk: allowed
    c = rc.simulate(cauchy, rc.SignSGD(1e-3, 1), _KS, n_runs=2)
    assert c.status == "ok" and np.all(np.isfinite(c.risk))


def test_unknown_solve_option():
    with pytest.raises(ValueError, match=r"unknown option\(s\) \['exact_ratez'\].*allowed"):
        rc.solve_ode(_P, rc.SGD(0.1, 2), _KS, exact_ratez=True)


def test_bad_config_numbers_name_the_argument():
    for kwargs, name in ((dict(lr=-0.1), "lr"), (dict(lr=0.1, batch=0), "batch"),
                         (dict(lr=0.1, momentum=1.0), "momentum")):
        with pytest.raises(ValueError, match=f"`{name}`"):
            rc.SGD(**kwargs)
    with pytest.raises(ValueError, match="`clip`"):
        rc.ClippedSGD(0.1, clip=0.0)
    with pytest.raises(ValueError, match="`b0`"):
        rc.AdaGradNorm(0.1, b0=float("inf"))
    with pytest.raises(ValueError, match="must be a scalar"):
        rc.SGD(lr=np.array([0.1, 0.2]))
    with pytest.raises(ValueError, match="warmup"):
        rc.WarmupStableDecay(1.0, 0.1, warmup=10, decay_start=5, horizon=100)
    with pytest.raises(ValueError, match="`knots`"):
        rc.PiecewiseLogLinear([0, 10, 5], [0.0, 0.0, 0.0])
