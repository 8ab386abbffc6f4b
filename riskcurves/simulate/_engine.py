"""One simulation engine for every optimizer.

For each of `n_runs` independent runs (one PRNG key each) the engine iterates

    (X, ε) ~ problem.sample(key_k, B)          # X: (B, d) rows ~ N(0, K)
    r = X Δ − ε,  g = Xᵀ r / B                 # minibatch gradient of ½(xᵀθ − y)²
    updates, state = tx.update(g, state, Δ);  Δ ← Δ + updates

inside `jit(vmap(...))` over runs (and over configs, for a sweep), recording the
exact excess risk `P = ½ ΔᵀKΔ` (float64) at the checkpoints: an outer loop over
checkpoints and an inner `lax.while_loop` of plain steps up to the next one (no
per-step branch). The checkpoints, every hyperparameter value and the problem's
arrays are traced, so a new step size, horizon or label never recompiles; only
shapes (batch, d, number of checkpoints and configs, chunk size) do. Runs are
processed in chunks of equal size sized from the device's free memory; run `i`
uses key `split(PRNGKey(seed), n_runs)[i]`, so results do not depend on the
chunking.

Sweeps: `simulate(problem, [opt_1, …, opt_n], …)` stacks the configs (same
type, batch and structure) and runs all `n × n_runs` runs as one compiled
program, returning one `Curve` per config.

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

import copy
import math
import os
import time

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax

from .._curve import Curve, padded_checkpoints, validate_checkpoints
from .._errors import DivergenceError
from ..optimizers import AbstractOptimizer, check_horizon, numeric, static_batch
from ..theory import check_stable, stability_threshold
from ._registry import transform_for

__all__ = ["simulate", "simulate_runs", "chunk_budget"]

_RNG_IMPLS = ("threefry2x32", "rbg", "unsafe_rbg")


def _one_run(problem, optimizer, batch, key, ks, dtype, rng_impl=None):
    if rng_impl is not None:
        key = jax.random.wrap_key_data(key, impl=rng_impl)
    # configs travel with a placeholder batch (so that a sweep stacks); restore it
    optimizer = eqx.tree_at(lambda o: o.batch, optimizer, batch)
    spec = transform_for(optimizer, problem)
    tx, observe = spec.tx, spec.observe
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

    def step(carry):
        delta, state, k = carry
        X, eps = problem.sample(jax.random.fold_in(key, k), batch, dtype)
        r = X @ delta - eps
        g = (X.T @ r) / batch
        updates, state = tx.update(g, state, delta)
        return optax.apply_updates(delta, updates), state, k + 1

    def segment(j, carry):
        delta, state, k, out = carry
        target = ks[j]
        delta, state, k = jax.lax.while_loop(lambda c: c[2] < target, step, (delta, state, k))
        m = measure(delta, state, k)
        out = jax.tree.map(lambda a, v: a.at[j].set(v), out, m)
        return delta, state, k, out

    carry = (delta0, state0, jnp.zeros((), jnp.int32), out0)
    return jax.lax.fori_loop(0, nck, segment, carry)[3]


@eqx.filter_jit
def _run_chunk(problem, optimizer, batch, keys, ks, dtype, rng_impl=None, sweep=False):
    runs = jax.vmap(lambda opt, key: _one_run(problem, opt, batch, key, ks, dtype, rng_impl),
                    in_axes=(None, 0))
    if sweep:
        return jax.vmap(runs, in_axes=(0, None))(optimizer, keys)
    return runs(optimizer, keys)


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


def chunk_budget(device=None) -> int:
    """Bytes of per-step working memory the engine may use on `device` at once.

    Accelerators: a quarter of the free device memory (`memory_stats()`); CPU:
    an eighth of the available host memory, at most 4 GiB (more runs at once do
    not run faster on a few cores).
    """
    device = device or jax.devices()[0]
    try:
        st = device.memory_stats() or {}
        free = st["bytes_limit"] - st.get("bytes_in_use", 0)
        if device.platform != "cpu" and free > 0:
            return int(free // 4)
    except (AttributeError, KeyError, TypeError, RuntimeError):
        pass
    try:
        avail = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        avail = 2**32
    return int(min(avail // 8, 2**32))


def _per_run_bytes(problem, batch: int, dtype) -> int:
    d = int(np.prod(problem.init_delta(dtype).shape))
    return 3 * (batch + 6) * max(d, 1) * jnp.dtype(dtype).itemsize


def _strip(problem):
    """The problem without its label (a label never reaches a jitted function)."""
    if getattr(problem, "label", "") == "":
        return problem
    p = copy.copy(problem)
    object.__setattr__(p, "label", "")
    return p


def _check_int(name, v, lo=1):
    try:
        ok = not isinstance(v, bool) and int(v) == v and v >= lo
    except (TypeError, ValueError, OverflowError):
        ok = False
    if not ok:
        raise ValueError(f"`{name}` must be an integer >= {lo}, got {v!r}")
    return int(v)


def _stack_configs(optimizers, dtype=jnp.float32):
    opts = list(optimizers)
    if not opts:
        raise ValueError("`optimizer` must be a config or a non-empty list of configs")
    for o in opts:
        if not isinstance(o, AbstractOptimizer):
            raise ValueError(
                "`optimizer` must be a riskcurves optimizer config (rc.SGD, rc.SignSGD, ...) "
                f"or a list of them, got {type(o).__name__}; optax transformations are "
                "built from the config")
    first = opts[0]
    batch = static_batch(first)
    nums = []
    for o in opts:
        if type(o) is not type(first) or static_batch(o) != batch:
            raise ValueError("a sweep's configs must share the optimizer type and the batch "
                             f"size; got {type(o).__name__}(batch={o.batch}) with "
                             f"{type(first).__name__}(batch={batch})")
        nums.append(eqx.tree_at(lambda t: t.batch, numeric(o, dtype), 0))
    if len({jax.tree.structure(n) for n in nums}) != 1:
        raise ValueError("a sweep's configs must have the same structure (e.g. all constant "
                         "step sizes, or all the same schedule type)")
    if len(nums) == 1:
        return nums[0], batch, False
    return jax.tree.map(lambda *xs: jnp.stack(xs), *nums), batch, True


def simulate_runs(problem, optimizer, checkpoints, n_runs: int = 64, seed: int = 0, *,
                  chunk_size: int | None = None, dtype=jnp.float32, devices=None,
                  rng_impl: str | None = None) -> dict[str, np.ndarray]:
    """Per-run observables `{name: (n_runs, n_checkpoints)}` (see `simulate`).

    For a list of configs (a sweep) the arrays are `(n_configs, n_runs, n_checkpoints)`.
    """
    ks = validate_checkpoints(checkpoints)
    n_runs = _check_int("n_runs", n_runs)
    if rng_impl is not None and rng_impl not in _RNG_IMPLS:
        raise ValueError(f"`rng_impl` must be None or one of {_RNG_IMPLS}, got {rng_impl!r}")
    opts = optimizer if isinstance(optimizer, (list, tuple)) else [optimizer]
    opt, batch, sweep = _stack_configs(opts, dtype)
    n_cfg = len(opts)
    devs = _mesh_devices(devices)
    n_dev = len(devs)
    keys = _run_keys(seed, n_runs, rng_impl)
    if chunk_size is None:   # memory budget per device; at most ~n_runs in all
        per = _per_run_bytes(problem, batch, dtype) * n_cfg
        chunk = n_dev * max(1, min(math.ceil(n_runs / n_dev), chunk_budget(devs[0]) // per))
    else:
        chunk = _check_int("chunk_size", chunk_size)
    chunk = n_dev * math.ceil(chunk / n_dev)   # whole runs per device
    n_chunks = math.ceil(n_runs / chunk)
    pad = n_chunks * chunk - n_runs
    if pad:
        keys = np.concatenate([keys, np.repeat(keys[-1:], pad, axis=0)])
    # 32-entry buckets: the checkpoint subsets of `simulate_tiered` share one compilation
    ks_dev = jnp.asarray(padded_checkpoints(ks, 32), jnp.int32)
    sharding = None
    if n_dev > 1:
        from jax.sharding import Mesh, NamedSharding, PartitionSpec

        sharding = NamedSharding(Mesh(np.asarray(devs), ("runs",)), PartitionSpec("runs"))
    prob = _strip(problem)
    parts = []
    for c in range(n_chunks):
        kc = keys[c * chunk:(c + 1) * chunk]
        if sharding is None:
            kc = jax.device_put(kc, devs[0])
        else:
            kc = jax.make_array_from_callback(kc.shape, sharding, lambda idx, kc=kc: kc[idx])
        parts.append(_run_chunk(prob, opt, batch, kc, ks_dev, dtype, rng_impl, sweep))
    axis = 1 if sweep else 0
    out = jax.tree.map(lambda *xs: np.concatenate([_gather(x) for x in xs], axis=axis), *parts)
    nk = ks.shape[0]
    return jax.tree.map(lambda a: a[:, :n_runs, :nk] if sweep else a[:n_runs, :nk], out)


def _check_noise(problem, optimizer):
    try:
        float(problem.noise.variance)
    except ValueError:
        spec = transform_for(optimizer, problem)
        if not spec.bounded:
            raise ValueError(
                f"`problem.noise` ({problem.noise!r}) has infinite variance: the mean risk "
                f"of {optimizer.name} is infinite (a sample mean would be meaningless). "
                "Use a bounded update (rc.ClippedSGD, rc.SignSGD) or a noise law with "
                "finite variance (e.g. StudentT with nu > 2)") from None
    except AttributeError:
        pass


def simulate(problem, optimizer, checkpoints, n_runs: int = 64, seed: int = 0, *,
             chunk_size: int | None = None, dtype=jnp.float32, keep_runs: bool = False,
             check_stability: bool = True, throw: bool = True,
             label: str | None = None, devices=None, rng_impl: str | None = None):
    """Monte-Carlo risk curve: `n_runs` independent one-pass runs of `optimizer`.

    **Arguments:**

    - `problem`, `checkpoints`: as for `solve_ode`.
    - `optimizer`: a config, or a list of configs of one type and batch size (a
      sweep: all `len(list) × n_runs` runs are one compiled program).
    - `n_runs`: independent runs (vmapped); `seed`: base PRNG seed (the same
      keys for every config of a sweep).
    - `chunk_size`: runs per compiled chunk (default: from the device's free memory,
      `chunk_budget`).
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
    error and median over runs, and recorded observables (e.g. `lr`) averaged;
    a list of `Curve`s for a list of configs.

    **Raises:** `ValueError` for invalid input (including a noise law with infinite
    variance for an update that is not bounded); `DivergenceError`.
    """
    ks = validate_checkpoints(checkpoints)
    n_runs = _check_int("n_runs", n_runs)
    sweep = isinstance(optimizer, (list, tuple))
    opts = list(optimizer) if sweep else [optimizer]
    _stack_configs(opts)  # validates types, batch and structure before any work
    curves = [None] * len(opts)
    todo = []
    for i, opt in enumerate(opts):
        _check_noise(problem, opt)
        check_horizon(opt, int(ks[-1]))
        if check_stability:
            try:
                check_stable(problem, opt, k_max=int(ks[-1]))
            except DivergenceError as e:
                if throw:
                    raise
                curves[i] = Curve(k=ks, risk=np.full(ks.shape, np.nan), kind="simulation",
                                  label=label or f"{opt.name} sim", status="diverged",
                                  message=str(e), meta=_meta(problem, opt))
                continue
        todo.append(i)
    if todo:
        t0 = time.perf_counter()
        run_opts = [opts[i] for i in todo]
        out = simulate_runs(problem, run_opts if len(run_opts) > 1 else run_opts[0], ks,
                            n_runs, seed, chunk_size=chunk_size, dtype=dtype,
                            devices=devices, rng_impl=rng_impl)
        seconds = time.perf_counter() - t0
        for j, i in enumerate(todo):
            one = jax.tree.map(lambda a: a[j], out) if len(run_opts) > 1 else out
            curves[i] = _summarise(problem, opts[i], ks, one, seed, seconds, dtype,
                                   keep_runs, throw, label)
    return curves if sweep else curves[0]


def _meta(problem, opt):
    return {"problem": problem.label, "d": problem.d, **opt.describe()}


def _summarise(problem, optimizer, ks, out, seed, seconds, dtype, keep_runs, throw, label):
    out = dict(out)
    runs = out.pop("risk")
    n = runs.shape[0]
    status, message = "ok", ""
    bad = ~np.isfinite(runs) | (runs > 1e30 * max(problem.initial_risk, 1.0))
    if np.any(bad):
        thr = stability_threshold(optimizer, problem)
        status = "diverged"
        lr = optimizer.lr if callable(optimizer.lr) else f"{float(optimizer.lr):.6g}"
        message = (f"{int(np.any(bad, axis=1).sum())}/{n} runs of {optimizer.name} with "
                   f"lr={lr} diverged (stability threshold from theory: {thr:.6g})")
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
        lr = np.asarray(jax.vmap(optimizer.lr_at)(jnp.asarray(ks, jnp.float64)))
    try:
        nv = float(problem.noise.variance)
    except ValueError:
        nv = float("inf")
    meta = {**_meta(problem, optimizer), "n_runs": n, "seed": int(seed), "seconds": seconds,
            "dtype": jnp.dtype(dtype).name}
    return Curve(k=ks, risk=mean, kind="simulation", label=label or f"{optimizer.name} sim",
                 stderr=stderr, median=median, lr=lr, extras=extras, status=status,
                 message=message, noise_variance=nv, meta=meta)


def simulate_tiered(problem, optimizer, checkpoints, tiers, seed: int = 0, *,
                    chunk_size: int | None = None, **kwargs):
    """Monte-Carlo risk curve with more runs where the risk fluctuates most.

    On power laws the run-to-run spread of the risk is largest in the first
    iterations (a few top modes hold the risk), where runs are cheap. `tiers`
    spends the runs there: `[(16, 4096), (128, 1024), (None, 256)]` simulates 4096
    runs up to k = 16 and reports the checkpoints `k <= 16` from them, 1024 runs
    up to k = 128 for the checkpoints `16 < k <= 128`, and 256 runs for the rest
    (`None`: the last checkpoint). Every checkpoint is the mean of its own tier's
    independent runs (tier `i` uses seed `seed + i`; a single tier is
    `simulate(..., n_runs, seed)`), so its standard error is that tier's.

    **Arguments:** as `simulate` (one config, not a sweep; `keep_runs` is not
    available), with `tiers` a list of `(k_max, n_runs)`, `k_max` strictly
    increasing (the last may be `None`) and covering the last checkpoint.

    **Returns:** a `Curve` whose `extras["n_runs"]` is the run count behind each
    checkpoint and `meta["tiers"]` the tiers used.
    """
    ks = validate_checkpoints(checkpoints)
    if isinstance(optimizer, (list, tuple)):
        raise ValueError("`optimizer`: simulate_tiered takes one config, not a sweep")
    if kwargs.get("keep_runs"):
        raise ValueError("`keep_runs` is not available with tiers (runs differ per tier)")
    try:
        tiers = [(None if k is None else int(k), int(n)) for k, n in tiers]
    except (TypeError, ValueError):
        raise ValueError(f"`tiers` must be a list of (k_max, n_runs) pairs, got {tiers!r}") \
            from None
    last = int(ks[-1])
    bounds = [last if k is None else k for k, _ in tiers]
    if (not tiers or any(b < 1 for b in bounds) or any(np.diff(bounds) <= 0)
            or bounds[-1] < last or any(n < 2 for _, n in tiers)):
        raise ValueError(f"`tiers` must be (k_max, n_runs) pairs with k_max >= 1 strictly "
                         f"increasing, the last >= the last checkpoint ({last}) or None, "
                         f"and n_runs >= 2; got {tiers!r}")
    runs = [n for _, n in tiers]
    if chunk_size is None:   # one chunk shape for every tier: one compilation
        _, batch, _ = _stack_configs([optimizer])
        per = _per_run_bytes(problem, batch, kwargs.get("dtype", jnp.float32))
        chunk_size = max(1, min(math.gcd(*runs), chunk_budget() // per))
    parts, lo = [], -1
    for i, (b, n) in enumerate(zip(bounds, runs)):
        sel = (ks > lo) & (ks <= b)
        lo = b
        if not np.any(sel):
            continue
        c = simulate(problem, optimizer, ks[sel], n_runs=n, seed=seed + i,
                     chunk_size=chunk_size, **kwargs)
        parts.append((sel, n, c))
        if not c.ok:
            break
    return _merge_tiers(ks, parts, tiers, kwargs.get("label"))


def _merge_tiers(ks, parts, tiers, label):
    nk = ks.shape[0]

    def cat(get):
        out = np.full(nk, np.nan)
        for sel, _, c in parts:
            v = get(c)
            if v is not None:
                out[sel] = np.broadcast_to(np.asarray(v, np.float64), (int(sel.sum()),))
        return out

    first, worst = parts[0][2], max((c for _, _, c in parts), key=lambda c: int(c.code))
    extras = {name: cat(lambda c, name=name: c.extras.get(name))
              for name in first.extras}
    extras["n_runs"] = cat(lambda c: np.full(c.k.shape, c.meta["n_runs"]))
    meta = {**first.meta, "n_runs": int(min(n for _, n in tiers)),
            "tiers": [[k, n] for k, n in tiers],
            "seconds": float(sum(c.meta.get("seconds", 0.0) for _, _, c in parts))}
    return Curve(k=ks, risk=cat(lambda c: c.risk), kind="simulation",
                 label=label or first.label, stderr=cat(lambda c: c.stderr),
                 median=cat(lambda c: c.median), lr=cat(lambda c: c.lr), extras=extras,
                 status=worst.status, message=worst.detail, noise_variance=first.noise_variance,
                 meta=meta)
