"""The simulation engine: determinism, chunking, compilation cache, validation."""

import numpy as np
import pytest

import riskcurves as rc
from riskcurves.simulate import _engine

_KS = np.array([0, 1, 2, 5, 10, 20, 40])


def _case():
    p = rc.PowerLaw(16, 1.0, 0.5, rc.Gaussian(0.2))
    return p, rc.SGD(0.3, batch=2)


def test_same_seed_same_numbers_and_keep_runs():
    p, opt = _case()
    a = rc.simulate(p, opt, _KS, n_runs=6, seed=7, keep_runs=True)
    b = rc.simulate(p, opt, _KS, n_runs=6, seed=7, keep_runs=True)
    c = rc.simulate(p, opt, _KS, n_runs=6, seed=8, keep_runs=True)
    runs = a.extras["runs"]
    assert runs.shape == (6, len(_KS)), f"keep_runs shape {runs.shape}, want (6, {len(_KS)})"
    np.testing.assert_array_equal(runs, b.extras["runs"])
    np.testing.assert_array_equal(a.risk, b.risk)
    assert not np.array_equal(runs[:, 1:], c.extras["runs"][:, 1:]), "seed 8 == seed 7"
    # every run starts at P(0); statistics are those of the per-run curves
    assert np.allclose(runs[:, 0], p.initial_risk, rtol=1e-6)
    np.testing.assert_allclose(a.risk, runs.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(a.stderr, runs.std(axis=0, ddof=1) / np.sqrt(6), rtol=1e-12)
    np.testing.assert_allclose(a.median, np.median(runs, axis=0), rtol=1e-12)
    assert "runs" not in rc.simulate(p, opt, _KS, n_runs=6, seed=7).extras
    assert a.meta["n_runs"] == 6 and a.kind == "simulation" and a.ok


def test_chunking_does_not_change_numbers():
    p, opt = _case()
    whole = rc.simulate(p, opt, _KS, n_runs=6, seed=3, keep_runs=True, chunk_size=6)
    padded = rc.simulate(p, opt, _KS, n_runs=6, seed=3, keep_runs=True, chunk_size=4)
    np.testing.assert_array_equal(whole.extras["runs"], padded.extras["runs"])
    # a prefix of the runs is the same runs (run i uses key i)
    fewer = rc.simulate(p, opt, _KS, n_runs=4, seed=3, keep_runs=True, chunk_size=4)
    np.testing.assert_array_equal(whole.extras["runs"][:4], fewer.extras["runs"])


def test_second_call_does_not_recompile():
    p, opt = _case()
    rc.simulate(p, opt, _KS, n_runs=6, seed=0, chunk_size=6)
    size = _engine._run_chunk._cached._cache_size()
    # new seed and new spectrum values (same shapes, same static fields: noise law,
    # label, optimizer): no new compilation
    q = rc.Problem(p.eigenvalues * 0.5, p.initial_energies * 2.0, p.noise, label=p.label)
    rc.simulate(p, opt, _KS, n_runs=6, seed=1, chunk_size=6)
    rc.simulate(q, opt, _KS, n_runs=6, seed=2, chunk_size=6)
    assert _engine._run_chunk._cached._cache_size() == size, (
        f"the engine recompiled: cache grew from {size} to "
        f"{_engine._run_chunk._cached._cache_size()}")


@pytest.mark.parametrize("n_runs", [0, -2, 2.5, "ten", True], ids=str)
def test_bad_n_runs(n_runs):
    p, opt = _case()
    with pytest.raises(ValueError, match="`n_runs` must be an integer >= 1"):
        rc.simulate(p, opt, _KS, n_runs=n_runs)


def test_bad_chunk_size():
    p, opt = _case()
    with pytest.raises(ValueError, match="`chunk_size`"):
        rc.simulate(p, opt, _KS, n_runs=4, chunk_size=0)


# ---- simulate_tiered: more runs at early checkpoints ----------------------------------
def test_simulate_tiered_is_simulate_per_tier():
    """Each checkpoint is the mean of its own tier's runs: tier i is `simulate` on the
    tier's checkpoints with seed + i; one tier is `simulate` itself."""
    p = rc.PowerLaw(50, 1.5, 0.5, rc.Gaussian(0.1))
    opt = rc.SGD(0.2, batch=2)
    ks = rc.checkpoints(60, 12)
    tiers = [(4, 16), (20, 8), (None, 4)]
    c = rc.simulate_tiered(p, opt, ks, tiers, seed=3)
    assert c.ok and c.meta["tiers"] == [[4, 16], [20, 8], [None, 4]] and c.meta["n_runs"] == 4
    lo = -1
    for i, (b, n) in enumerate([(4, 16), (20, 8), (60, 4)]):
        sel = (ks > lo) & (ks <= b)
        lo = b
        ref = rc.simulate(p, opt, ks[sel], n_runs=n, seed=3 + i, chunk_size=4)  # one compile
        np.testing.assert_allclose(c.risk[sel], ref.risk, rtol=1e-12)
        np.testing.assert_allclose(c.stderr[sel], ref.stderr, rtol=1e-12)
        np.testing.assert_array_equal(c.extras["n_runs"][sel], n)
    one = rc.simulate_tiered(p, opt, ks, [(None, 4)], seed=3)
    np.testing.assert_allclose(one.risk, rc.simulate(p, opt, ks, n_runs=4, seed=3,
                                                     chunk_size=4).risk, rtol=1e-12)


@pytest.mark.parametrize("tiers, msg", [
    ([(20, 8), (10, 4)], "strictly increasing"),
    ([(20, 8)], "the last checkpoint"),
    ([(None, 1)], "n_runs >= 2"),
    ([("a", 8)], "list of \\(k_max, n_runs\\) pairs"),
])
def test_simulate_tiered_refuses_bad_tiers(tiers, msg):
    p = rc.PowerLaw(20, 1.0, 0.5)
    with pytest.raises(ValueError, match=msg):
        rc.simulate_tiered(p, rc.SGD(0.1), rc.checkpoints(30, 5), tiers)
