"""Simulations sharded over several devices give the same numbers as on one device.

Runs a child process with `XLA_FLAGS=--xla_force_host_platform_device_count=4`
(set before jax is imported) that simulates on a 4-device mesh and on one device.
"""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np

_CHILD = textwrap.dedent("""
    import json, os, sys
    import jax
    import numpy as np
    import riskcurves as rc

    assert len(jax.devices()) == 4, jax.devices()
    p = rc.PowerLaw(24, 1.5, 0.5, rc.Gaussian(0.2))
    ks = np.array([0, 1, 3, 10, 30, 60])
    out = {}
    for name, opt in [("sgd", rc.SGD(0.4, batch=2)), ("signsgd", rc.SignSGD(0.01, batch=2))]:
        sharded = rc.simulate(p, opt, ks, n_runs=10, seed=5, keep_runs=True, chunk_size=8)
        single = rc.simulate(p, opt, ks, n_runs=10, seed=5, keep_runs=True, chunk_size=8,
                             devices=jax.devices()[:1])
        out[name] = [sharded.extras["runs"].tolist(), single.extras["runs"].tolist()]
    json.dump(out, sys.stdout)
""")


def test_sharded_equals_unsharded():
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4",
               JAX_PLATFORMS="cpu")
    res = subprocess.run([sys.executable, "-c", _CHILD], env=env, capture_output=True,
                         text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    out = json.loads(res.stdout.strip().splitlines()[-1])
    assert sorted(out) == ["sgd", "signsgd"], sorted(out)
    for name, (sharded, single) in out.items():
        a, b = np.asarray(sharded), np.asarray(single)
        assert a.shape == (10, 6) and np.all(np.isfinite(a))
        # identical, bit for bit (runs are independent; run i always uses key i)
        np.testing.assert_array_equal(a, b, err_msg=f"{name}: 4-device vs 1-device runs differ")


def test_default_is_unchanged_in_process():
    """In this process (one CPU device) `devices=None` equals an explicit one-device list."""
    import jax

    import riskcurves as rc

    p = rc.PowerLaw(16, 1.0, 0.5, rc.Gaussian(0.2))
    ks = np.array([0, 1, 5, 20])
    a = rc.simulate(p, rc.SGD(0.3, 2), ks, n_runs=5, seed=1, keep_runs=True, chunk_size=4)
    b = rc.simulate(p, rc.SGD(0.3, 2), ks, n_runs=5, seed=1, keep_runs=True, chunk_size=4,
                    devices=jax.devices()[:1])
    np.testing.assert_array_equal(a.extras["runs"], b.extras["runs"])


def test_rng_impl_reproducible_and_bad_value():
    import pytest

    import riskcurves as rc

    p = rc.PowerLaw(16, 1.0, 0.5, rc.Gaussian(0.2))
    ks = np.array([0, 2, 10])
    a = rc.simulate(p, rc.SGD(0.3, 2), ks, n_runs=3, seed=2, keep_runs=True, rng_impl="rbg")
    b = rc.simulate(p, rc.SGD(0.3, 2), ks, n_runs=3, seed=2, keep_runs=True, rng_impl="rbg")
    np.testing.assert_array_equal(a.extras["runs"], b.extras["runs"])
    with pytest.raises(ValueError, match="`rng_impl`"):
        rc.simulate(p, rc.SGD(0.3, 2), ks, n_runs=3, rng_impl="mersenne")
    with pytest.raises(ValueError, match="`devices`"):
        rc.simulate(p, rc.SGD(0.3, 2), ks, n_runs=3, devices=[])
