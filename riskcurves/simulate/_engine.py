"""One simulation engine for every optimizer.

For each of `n_runs` independent runs (one PRNG key each) the engine iterates

    (X, ε) ~ problem.sample(key_k, B)          # X: (B, d) rows ~ N(0, K)
    r = X Δ − ε,  g = Xᵀ r / B                 # minibatch gradient of ½(xᵀθ − y)²
    updates, state = tx.update(g, state, Δ);  Δ ← Δ + updates

with `lax.scan` over iterations inside `jit(vmap(...))` over runs, recording the
exact excess risk `P = ½ ΔᵀKΔ` (float64) at the checkpoints. Runs are processed
in chunks of equal size (one compilation) so memory stays bounded; run `i` uses
key `split(PRNGKey(seed), n_runs)[i]`, so results do not depend on the chunking.

Devices: each chunk of runs is sharded over a 1-D mesh of `jax.devices()`
(`NamedSharding(Mesh(devices, ("runs",)), P("runs"))`), so one call uses one
CPU, one GPU or all local GPUs; runs are independent, so every device runs the
same per-run program and the numbers do not depend on the device count (see
`tests/test_sharding.py`). Multi-host: call `jax.distributed.initialize()` on
every process first and run the same script everywhere; the mesh then spans
all hosts' devices, the keys are placed with `jax.make_array_from_callback`
and the results gathered with `multihost_utils.process_allgather`.
The same code handles matrix problems (`Δ: (d, m)`, `ε: (B, m)`).
"""

from __future__ import annotations

import math
import time

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax

from .._curve import Curve, validate_checkpoints
from .._errors import DivergenceError
from ..theory import check_stable, stability_threshold
from ._registry import transform_for

__all__ = ["simulate", "simulate_runs"]

_MEM_BUDGET = 2**28  # bytes of per-step batch data held at once across a chunk (per device)
_RNG_IMPLS = ("threefry2x32", "rbg", "unsafe_rbg")


def _one_run(problem, optimizer, key, ks, n_steps, dtype, rng_impl=None):
    if rng_impl is not None:
        key = jax.random.wrap_key_data(key, impl=rng_impl)
    spec = transform_for(optimizer, problem)
    tx, observe = spec.tx, spec.observe
    B = optimizer.batch
    delta0 = problem.init_delta(dtype)
    state0 = tx.init(delta0)
    nck = ks.shape[0]

    def measure(delta, state, k):
        out = {"risk": problem.excess_risk(delta)}
        if observe is not None:
            out.update({n: jnp.asarray(v, jnp.float64) for n, v in
                        observe(state, delta, k).items()})
        return out

    template = jax.eval_shape(measure, delta0, state0, 0)
    out0 = jax.tree.map(lambda s: jnp.full((nck,), jnp.nan, jnp.float64), template)
    first = jax.tree.map(lambda o, v: o.at[0].set(v), out0, measure(delta0, state0, 0))
    out0 = jax.tree.map(lambda a, b: jnp.where(ks[0] == 0, a, b), first, out0)
    j0 = jnp.where(ks[0] == 0, 1, 0)

    def step(carry, k):
        delta, state, out, j = carry
        X, eps = problem.sample(jax.random.fold_in(key, k), B, dtype)
        r = X @ delta - eps
        g = (X.T @ r) / B
        updates, state = tx.update(g, state, delta)
        delta = optax.apply_updates(delta, updates)
        jc = jnp.minimum(j, nck - 1)
        hit = (ks[jc] == k + 1) & (j < nck)

        def write(o):
            m = measure(delta, state, k + 1)
            return jax.tree.map(lambda a, v: a.at[jc].set(v), o, m)

        out = jax.lax.cond(hit, write, lambda o: o, out)
        return (delta, state, out, j + hit.astype(j.dtype)), None

    (_, _, out, _), _ = jax.lax.scan(step, (delta0, state0, out0, j0),
                                     jnp.arange(n_steps, dtype=jnp.int32))
    return out


@eqx.filter_jit
def _run_chunk(problem, optimizer, keys, ks, n_steps, dtype, rng_impl=None):
    return jax.vmap(lambda key: _one_run(problem, optimizer, key, ks, n_steps, dtype,
                                         rng_impl))(keys)


def _run_keys(seed: int, n_runs: int, rng_impl):
    """Per-run key data `(n_runs, …)` (uint32): run `i` gets `split(key(seed))[i]`."""
    if rng_impl is None:
        return np.asarray(jax.random.split(jax.random.PRNGKey(int(seed)), n_runs))
    keys = jax.random.split(jax.random.key(int(seed), impl=rng_impl), n_runs)
    return np.asarray(jax.random.key_data(keys))


def _mesh_devices(devices):
    if devices is None:
        return list(jax.devices())
    devices = list(devices)
    if not devices or not all(isinstance(d, jax.Device) for d in devices):
        raise ValueError(f"`devices` must be None or a non-empty list of jax devices, got "
                         f"{devices!r}")
    return devices


def _gather(x):
    if jax.process_count() > 1:  # multi-host: results live on every host's devices
        from jax.experimental import multihost_utils

        return np.asarray(multihost_utils.process_allgather(x, tiled=True))
    return np.asarray(x)


def _default_chunk(problem, optimizer, n_runs: int, dtype) -> int:
    d = int(np.prod(problem.init_delta(dtype).shape))
    per_run = 4 * (optimizer.batch + 4) * max(d, 1) * jnp.dtype(dtype).itemsize
    return max(1, min(n_runs, _MEM_BUDGET // per_run))


def simulate_runs(problem, optimizer, checkpoints, n_runs: int = 64, seed: int = 0, *,
                  chunk_size: int | None = None, dtype=jnp.float32, devices=None,
                  rng_impl: str | None = None) -> dict[str, np.ndarray]:
    """Per-run observables `{name: (n_runs, n_checkpoints)}` (see `simulate`)."""
    ks = validate_checkpoints(checkpoints)
    try:
        ok = not isinstance(n_runs, bool) and int(n_runs) == n_runs and n_runs >= 1
    except (TypeError, ValueError, OverflowError):
        ok = False
    if not ok:
        raise ValueError(f"`n_runs` must be an integer >= 1, got {n_runs!r}")
    n_runs = int(n_runs)
    if rng_impl is not None and rng_impl not in _RNG_IMPLS:
        raise ValueError(f"`rng_impl` must be None or one of {_RNG_IMPLS}, got {rng_impl!r}")
    devs = _mesh_devices(devices)
    n_dev = len(devs)
    keys = _run_keys(seed, n_runs, rng_impl)
    if chunk_size is None:   # memory budget per device; at most ~n_runs in all
        chunk = n_dev * _default_chunk(problem, optimizer, math.ceil(n_runs / n_dev), dtype)
    else:
        try:
            ok = (not isinstance(chunk_size, bool) and int(chunk_size) == chunk_size
                  and chunk_size >= 1)
        except (TypeError, ValueError, OverflowError):
            ok = False
        if not ok:
            raise ValueError(f"`chunk_size` must be an integer >= 1, got {chunk_size!r}")
        chunk = int(chunk_size)
    chunk = n_dev * math.ceil(chunk / n_dev)   # whole runs per device
    n_chunks = math.ceil(n_runs / chunk)
    pad = n_chunks * chunk - n_runs
    if pad:
        keys = np.concatenate([keys, np.repeat(keys[-1:], pad, axis=0)])
    ks_dev = jnp.asarray(ks, jnp.int32)
    sharding = None
    if n_dev > 1:
        from jax.sharding import Mesh, NamedSharding, PartitionSpec

        sharding = NamedSharding(Mesh(np.asarray(devs), ("runs",)), PartitionSpec("runs"))
    parts = []
    for c in range(n_chunks):
        kc = keys[c * chunk:(c + 1) * chunk]
        if sharding is None:
            kc = jax.device_put(kc, devs[0])
        else:
            kc = jax.make_array_from_callback(kc.shape, sharding, lambda idx, kc=kc: kc[idx])
        parts.append(_run_chunk(problem, optimizer, kc, ks_dev, int(ks[-1]), dtype, rng_impl))
    out = jax.tree.map(lambda *xs: np.concatenate([_gather(x) for x in xs])[:n_runs], *parts)
    return out


def simulate(problem, optimizer, checkpoints, n_runs: int = 64, seed: int = 0, *,
             chunk_size: int | None = None, dtype=jnp.float32, keep_runs: bool = False,
             check_stability: bool = True, throw: bool = True,
             label: str | None = None, devices=None, rng_impl: str | None = None) -> Curve:
    """Monte-Carlo risk curve: `n_runs` independent one-pass runs of `optimizer`.

    **Arguments:**

    - `problem`, `optimizer`, `checkpoints`: as for `solve_ode`.
    - `n_runs`: independent runs (vmapped); `seed`: base PRNG seed.
    - `chunk_size`: runs per compiled chunk (default: from a memory budget).
    - `dtype`: dtype of the iterates and data (default float32); the risk is
      always accumulated in float64.
    - `keep_runs`: also return the per-run curves in `extras["runs"]`.
    - `check_stability`: refuse step sizes above the theory's threshold.
    - `throw`: raise `DivergenceError` for a step size above the threshold or if
      runs blow up; `throw=False` returns `status="diverged"` instead (with NaN
      risk when the stability check refused the step size).
    - `devices`: devices to shard the runs over (default: all of `jax.devices()`);
      the numbers do not depend on it.
    - `rng_impl`: PRNG implementation, `None` (default: `PRNGKey`, threefry) or
      one of `"threefry2x32"`, `"rbg"`, `"unsafe_rbg"` (`jax.random.key(seed,
      impl=...)`; reproducible for a given impl, different numbers across impls).

    **Returns:** a `Curve` (`kind="simulation"`) with the mean risk, its standard
    error and median over runs, and recorded observables (e.g. `lr`) averaged.
    """
    ks = validate_checkpoints(checkpoints)
    if check_stability:
        try:
            check_stable(problem, optimizer, k_max=int(ks[-1]))
        except DivergenceError as e:
            if throw:
                raise
            return Curve(k=ks, risk=np.full(ks.shape, np.nan), kind="simulation",
                         label=label or f"{optimizer.name} sim", status="diverged",
                         message=str(e), meta={"problem": problem.label, "d": problem.d,
                                               **optimizer.describe()})
    t0 = time.perf_counter()
    out = simulate_runs(problem, optimizer, ks, n_runs, seed, chunk_size=chunk_size,
                        dtype=dtype, devices=devices, rng_impl=rng_impl)
    seconds = time.perf_counter() - t0
    runs = out.pop("risk")
    n = runs.shape[0]
    status, message = "ok", ""
    bad = ~np.isfinite(runs) | (runs > 1e30 * max(problem.initial_risk, 1.0))
    if np.any(bad):
        thr = stability_threshold(optimizer, problem)
        status = "diverged"
        message = (f"{int(np.any(bad, axis=1).sum())}/{n} runs of {optimizer.name} with "
                   f"lr={optimizer.lr!r} diverged (stability threshold from theory: {thr:.6g})")
        if throw:
            raise DivergenceError(message, lr=optimizer.lr, threshold=thr)
    with np.errstate(invalid="ignore", over="ignore"):
        mean = runs.mean(axis=0)
        stderr = runs.std(axis=0, ddof=1) / np.sqrt(n) if n > 1 else np.zeros_like(mean)
        median = np.median(runs, axis=0)
        extras = {name: v.mean(axis=0) for name, v in out.items()}
    if keep_runs:
        extras["runs"] = runs
    lr = extras.pop("lr", None)
    if lr is None:
        lr = np.asarray([float(optimizer.lr_at(float(k))) for k in ks])
    try:
        nv = float(problem.noise.variance)
    except ValueError:
        nv = float("inf")
    meta = {"problem": problem.label, "d": problem.d, **optimizer.describe(),
            "n_runs": n, "seed": int(seed), "seconds": seconds,
            "dtype": jnp.dtype(dtype).name}
    return Curve(k=ks, risk=mean, kind="simulation", label=label or f"{optimizer.name} sim",
                 stderr=stderr, median=median, lr=lr, extras=extras, status=status,
                 message=message, noise_variance=nv, meta=meta)
