"""The core is a transformable JAX function: no recompilation for new numbers or
horizons, `jax.vmap` sweeps equal one-by-one solves, `jax.grad` matches finite
differences, and a vmapped sweep reports divergence per element."""

import copy

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import riskcurves as rc
from riskcurves.odes import _solve, _topmodes
from riskcurves.simulate import _engine


def _vec_problem(d=64):
    return rc.PowerLaw(d, 1.2, 0.4, rc.Gaussian(0.1))


def _mat_problem(d=8):
    return rc.MatrixPowerLaw(d, 2 * d, 1.5, 0.5, rc.Gaussian(0.1), rotate=True)


# optimizer factory from a step size (vector problems)
_VECTOR = {
    "sgd": lambda lr: rc.SGD(lr, 2),
    "sgd_momentum": lambda lr: rc.SGD(lr, 2, momentum=0.5),
    "dana": lambda lr: rc.DANA(lr, g3=lr / 64, batch=2),
    "adagrad_norm": lambda lr: rc.AdaGradNorm(lr, 0.5, 2),
    "signsgd": lambda lr: rc.SignSGD(lr / 100, 2),
    "clipped_sgd": lambda lr: rc.ClippedSGD(lr, clip=0.5, batch=2),
    "line_search": lambda lr: rc.LineSearch(batch=2),  # no step size: horizons only
}
# matrix problems (rotated K: one theory for every step size)
_MATRIX = {
    "signsvd": lambda lr: rc.SignSVD(lr / 20, 4),
    "muon": lambda lr: rc.Muon(lr / 20, 4),
    "matrix_signsgd": lambda lr: rc.MatrixSignSGD(lr / 100, 4),
}
_ALL = {**_VECTOR, **_MATRIX}


def _problem_for(name, d):
    return _mat_problem(8) if name in _MATRIX else _vec_problem(d)


def _ode_cache():  # the ODE path and the top-mode hybrid's recursion
    return _solve._integrate_jit._cached._cache_size() + _topmodes._run._cached._cache_size()


def _sim_cache():
    return _engine._run_chunk._cached._cache_size()


@pytest.mark.parametrize("name", sorted(_ALL))
def test_ode_compiles_once_for_three_lrs_and_two_horizons(name):
    make, prob = _ALL[name], _problem_for(name, 64)
    lrs = (0.05,) if name == "line_search" else (0.05, 0.1, 0.2)  # line search: no lr
    # SignSVD and Muon: the fewest batch draws (the count is static; this checks leaves)
    opts = {"samples": 32} if name in ("signsvd", "muon") else {}
    rc.solve_ode(prob, make(lrs[0]), rc.checkpoints(200, 20), **opts)
    size = _ode_cache()
    for lr in lrs:
        for horizon in (200, 1500):  # 1500 > 1024 exact steps: the ODE path (momentum: 65 536)
            c = rc.solve_ode(prob, make(lr), rc.checkpoints(horizon, 20), **opts)
            assert c.ok, c.message
    assert _ode_cache() == size, f"{name}: the ODE recompiled ({size} -> {_ode_cache()})"


@pytest.mark.parametrize("name", sorted(_ALL))
def test_simulator_compiles_once_for_three_lrs_two_horizons_and_labels(name):
    make, prob = _ALL[name], _problem_for(name, 16)
    rc.simulate(prob, make(0.05), rc.checkpoints(50, 10), n_runs=4, chunk_size=4)
    size = _sim_cache()
    relabelled = copy.copy(prob)
    object.__setattr__(relabelled, "label", "another label")
    for lr in (0.05, 0.1, 0.2):
        for horizon in (50, 80):
            for p in (prob, relabelled):
                rc.simulate(p, make(lr), rc.checkpoints(horizon, 10), n_runs=4, chunk_size=4)
    assert _sim_cache() == size, f"{name}: the simulator recompiled ({size} -> {_sim_cache()})"


_SLOW = pytest.mark.slow  # the same check for the other optimizers (heavy on 2 cores)


@pytest.mark.parametrize("name", ["sgd", pytest.param("adagrad_norm", marks=_SLOW),
                                  pytest.param("signsgd", marks=_SLOW)])
def test_vmap_sweep_equals_one_by_one_and_compiles_once(name):
    prob = rc.PowerLaw(2000, 1.5, 0.5, rc.Gaussian(0.1))
    ks = rc.checkpoints(10_000, 30)
    lrs = jnp.linspace(0.05, 0.5, 8)
    make = {"sgd": lambda lr: rc.SGD(lr, 4), "adagrad_norm": lambda lr: rc.AdaGradNorm(lr, 0.5, 4),
            "signsgd": lambda lr: rc.SignSGD(lr / 100, 4)}[name]
    f = jax.jit(jax.vmap(lambda lr: rc.solve_ode(prob, make(lr), ks, throw=False).risk))
    sweep = np.asarray(f(lrs))
    assert f._cache_size() == 1
    f(lrs * 0.9)
    assert f._cache_size() == 1, "a new set of step sizes recompiled the vmapped sweep"
    for i in (0, 3, 7):
        one = rc.solve_ode(prob, make(float(lrs[i])), ks).risk
        err = np.max(np.abs(sweep[i] / one - 1))
        assert err < 1e-6, f"lr={float(lrs[i]):.3f}: vmapped vs single solve differ by {err:.2e}"


@pytest.mark.parametrize("name", ["sgd", pytest.param("adagrad_norm", marks=_SLOW),
                                  pytest.param("signsgd", marks=_SLOW)])
def test_grad_of_final_risk_matches_finite_difference(name):
    make, prob = _VECTOR[name], rc.PowerLaw(500, 1.5, 0.5, rc.Gaussian(0.1))
    ks = rc.checkpoints(5000, 20)
    # rtol 1e-7: the finite difference must not see the step-size controller's jitter
    final = lambda lr: rc.solve_ode(prob, make(lr), ks, rtol=1e-7).risk[-1]  # noqa: E731
    lr0, h = 0.2, 1e-4
    g = float(jax.grad(final)(lr0))
    fd = (float(final(lr0 + h)) - float(final(lr0 - h))) / (2 * h)
    rel = abs(g - fd) / abs(fd)
    assert rel < 1e-3, f"{name}: d P(k_max)/d lr = {g:.6e}, central difference {fd:.6e} " \
                       f"(rel err {rel:.1e}, tol 1e-3)"


@pytest.mark.slow  # heavy on 2 cores (suite time); run with -m slow
def test_sweep_reports_divergence_per_element():
    prob = _vec_problem(200)
    thr = rc.theory.stability_threshold(rc.SGD(1.0, 2), prob)
    ks = rc.checkpoints(3000, 15)
    lrs = jnp.asarray([0.5 * thr, 0.9 * thr, 1.2 * thr])
    curve = jax.vmap(lambda lr: rc.solve_ode(prob, rc.SGD(lr, 2), ks, throw=False))(lrs)
    assert list(curve.status) == ["ok", "ok", "diverged"], curve.status
    assert curve.batch_shape == (3,) and not curve.ok
    first = curve[0]
    assert first.status == "ok" and first.risk.shape == ks.shape
    with pytest.raises(Exception, match="diverged"):
        jax.vmap(lambda lr: rc.solve_ode(prob, rc.SGD(lr, 2), ks).risk)(lrs).block_until_ready()


@pytest.mark.slow  # heavy on 2 cores (suite time); run with -m slow
def test_vmap_over_noise_scale_and_batch():
    prob = _vec_problem(100)
    ks = rc.checkpoints(2000, 15)
    sig = jnp.asarray([0.0, 0.1, 0.3])
    r = jax.vmap(lambda s: rc.solve_ode(prob.with_noise(rc.Gaussian(s)), rc.SGD(0.2, 2),
                                        ks).risk)(sig)
    for i, s in enumerate((0.0, 0.1, 0.3)):
        one = rc.solve_ode(prob.with_noise(rc.Gaussian(s)), rc.SGD(0.2, 2), ks).risk
        np.testing.assert_allclose(np.asarray(r[i]), one, rtol=1e-6)
    rb = jax.vmap(lambda b: rc.solve_ode(prob, rc.SGD(0.2, b), ks).risk)(jnp.asarray([1., 4.]))
    np.testing.assert_allclose(np.asarray(rb[1]), rc.solve_ode(prob, rc.SGD(0.2, 4), ks).risk,
                               rtol=1e-6)


def test_simulator_sweep_is_one_program_and_matches_single_runs():
    prob = _vec_problem(16)
    ks = rc.checkpoints(60, 10)
    opts = [rc.SGD(lr, 2) for lr in (0.05, 0.1, 0.2, 0.3)]
    curves = rc.simulate(prob, opts, ks, n_runs=6, seed=1, chunk_size=6)
    size = _sim_cache()
    rc.simulate(prob, [rc.SGD(lr, 2) for lr in (0.06, 0.11, 0.21, 0.31)], ks, n_runs=6,
                seed=1, chunk_size=6)
    assert _sim_cache() == size, "a new sweep of step sizes recompiled"
    for opt, c in zip(opts, curves):
        single = rc.simulate(prob, opt, ks, n_runs=6, seed=1, chunk_size=6)
        np.testing.assert_allclose(c.risk, single.risk, rtol=1e-6)
        assert c.status == "ok"


def test_schedules_are_pytrees_and_differentiable():
    prob = _vec_problem(200)
    ks = rc.checkpoints(3000, 15)

    def final(lr0):
        return rc.solve_ode(prob, rc.SGD(rc.PowerDecay(lr0, 100.0, 0.5), 2), ks).risk[-1]

    g = float(jax.grad(final)(0.2))
    fd = (float(final(0.2 + 1e-4)) - float(final(0.2 - 1e-4))) / 2e-4
    assert abs(g / fd - 1) < 1e-3, (g, fd)
    sched = rc.PiecewiseLogLinear([0, 100, 3000], np.log([0.1, 0.2, 0.05]))
    c = rc.solve_ode(prob, rc.SGD(sched, 2), ks)
    np.testing.assert_allclose(c.lr, [float(sched(k)) for k in ks], rtol=1e-12)


def test_traced_batch_where_it_sets_a_shape_is_a_clear_error():
    """A vmap over `batch` works where the batch enters the ODE as a number (line
    search's mean field: a leaf, no static tracer) and is refused with a ValueError
    naming the way out where it sets a shape or selects a closed form (the top-mode
    hybrid's minibatch draws; clipped SGD's χ_B law; SignSVD's draws or fixed point)."""
    prob = rc.PowerLaw(60, 1.5, 0.5, rc.Gaussian(0.1))   # few dominant modes: hybrid
    ks = rc.checkpoints(50, 6)
    bs = jnp.asarray([1.0, 4.0])
    with pytest.raises(ValueError, match="`batch` is traced.*topmodes=0"):
        jax.vmap(lambda b: rc.solve_ode(prob, rc.LineSearch(batch=b), ks).risk)(bs)
    with pytest.raises(ValueError, match="`batch` is traced.*clipped-SGD"):
        jax.vmap(lambda b: rc.solve_ode(prob, rc.ClippedSGD(0.1, 1.0, batch=b), ks,
                                        topmodes=0).risk)(bs)
    mat = rc.MatrixPowerLaw(16, 32, 1.5, 0.5, rc.Gaussian(0.1))
    for one_step in ("auto", "equivalent"):
        with pytest.raises(ValueError, match="`batch` is traced.*SignSVD"):
            jax.vmap(lambda b: rc.solve_ode(mat, rc.SignSVD(0.02, batch=b), ks,
                                            one_step=one_step).risk)(bs)
    # matrix SignSGD: a traced batch takes the closure (the lattice needs a concrete one)
    r = jax.vmap(lambda b: rc.solve_ode(mat, rc.MatrixSignSGD(0.002, batch=b), ks).risk)(bs)
    np.testing.assert_allclose(np.asarray(r[1]), rc.solve_ode(
        mat, rc.MatrixSignSGD(0.002, batch=4), ks, transient="closure").risk, rtol=1e-6)
    r = jax.vmap(lambda b: rc.solve_ode(prob, rc.LineSearch(batch=b), ks,
                                        topmodes=0).risk)(bs)
    np.testing.assert_allclose(np.asarray(r[1]),
                               rc.solve_ode(prob, rc.LineSearch(batch=4), ks, topmodes=0).risk,
                               rtol=1e-6)
