"""riskcurves benchmarks (issues 3 and 8): ODE vs numpy Euler, compression, simulators.

    python3 benchmarks/run.py            # full suite (several minutes)
    python3 benchmarks/run.py --quick    # ~1-2 minute version

Prints a table and writes benchmarks/results.json (benchmarks/results_quick.json
for --quick). Problem: PowerLaw(d, alpha=1.5, beta=0.5, Gaussian(0.1)), SGD(lr=0.5, B=4).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

import riskcurves as rc

ALPHA, BETA, SIGMA, LR, BATCH = 1.5, 0.5, 0.1, 0.5, 4
TARGET = 1e-3  # equal-accuracy target, relative on the risk curve


def problem(d, compressed=None, rtol=1e-6):
    return rc.PowerLaw(d, ALPHA, BETA, rc.Gaussian(SIGMA), compressed=compressed, rtol=rtol)


def opt():
    return rc.SGD(LR, batch=BATCH)


def timed(fn, repeat=1):
    t0 = time.perf_counter()
    out = fn()
    first = time.perf_counter() - t0
    warm = math.inf
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        warm = min(warm, time.perf_counter() - t0)
    return out, first, warm


def reference(d, ks):
    """Reference curve: compressed spectrum (kernel error < 1e-8), ODE at rtol 1e-8."""
    return rc.solve_ode(problem(d, True, 1e-8), opt(), ks, rtol=1e-8, max_steps=4 * 10**6).risk


def relerr(a, b):
    return float(np.max(np.abs(np.asarray(a) / np.asarray(b) - 1)))


# ---- numpy forward Euler -------------------------------------------------------
def euler(d, h, n_steps, ks=None):
    """Plain numpy forward Euler on the SGD ODE, step h; risk at the checkpoints ks."""
    j = np.arange(1, d + 1, dtype=np.float64)
    lam, D = j**-ALPHA, j**-BETA
    a = 2 * LR * lam - LR**2 * lam**2 * (1 + 1 / BATCH)
    c = LR**2 / BATCH * lam
    s2 = SIGMA**2
    want = {} if ks is None else {int(round(k / h)): i for i, k in enumerate(ks)}
    out = np.full(len(ks) if ks is not None else 0, np.nan)
    if 0 in want:
        out[want[0]] = 0.5 * lam @ D
    for n in range(1, n_steps + 1):
        P = 0.5 * lam @ D
        D = D + h * (c * (2 * P + s2) - a * D)
        if n in want:
            out[want[n]] = 0.5 * lam @ D
    return out


def euler_step_time(d, budget_s=1.0):
    n = 200
    while True:
        t0 = time.perf_counter()
        euler(d, 1.0, n)
        dt = time.perf_counter() - t0
        if dt > budget_s or n >= 10**6:
            return dt / n, n
        n *= 4


def euler_required_h(T_probe):
    """Largest h = 2^-k for which Euler reaches TARGET on k <= T_probe (d = 1000).

    The Euler error is dominated by the early transient of the top modes
    (ηλ_1 = 0.5), which does not depend on d or on the horizon (checked at h=1).
    """
    d = 1000
    ks = rc.checkpoints(T_probe, 25)
    ref = reference(d, ks)
    errs = {}
    for k in range(0, 12):
        h = 2.0**-k
        errs[h] = relerr(euler(d, h, int(T_probe / h), ks)[1:], ref[1:])
        if errs[h] < TARGET:
            return h, errs
    return None, errs


# ---- sections ----------------------------------------------------------------
def bench_ode(ds, Ts, quick):
    rows = []
    h_req, h_errs = euler_required_h(1000 if quick else 2000)
    ks_h1 = rc.checkpoints(10**4, 30)
    err_h1 = relerr(euler(1000, 1.0, 10**4, ks_h1)[1:], reference(1000, ks_h1)[1:])
    info = {"euler_h_required": h_req, "euler_err_by_h": {str(k): v for k, v in h_errs.items()},
            "euler_err_h1_d1000_T1e4": err_h1}
    print(f"\nEuler step needed for {TARGET:g} relative accuracy: h = {h_req} "
          f"(errors by h: { {k: f'{v:.1e}' for k, v in h_errs.items()} }); "
          f"h=1 (= the exact recursion up to O(ηλ) terms) has error {err_h1:.2e}")
    hdr = (f"{'d':>9} {'T':>9} {'ode compile':>11} {'ode warm':>9} {'steps':>6} {'ode err':>8} "
           f"{'comp warm':>9} {'comp err':>8} {'euler s/step':>12} {'euler(h) s':>11} "
           f"{'ratio full':>10} {'ratio comp':>10}")
    print(hdr)
    for d in ds:
        t_step, n_meas = euler_step_time(d, 0.5 if quick else 1.0)
        for T in Ts:
            ks = rc.checkpoints(T, 40)
            ref = reference(d, ks)
            full, first, warm = timed(lambda: rc.solve_ode(problem(d, False), opt(), ks),
                                      repeat=1 if d >= 10**5 else 2)
            pc = problem(d, True)
            comp, cfirst, cwarm = timed(lambda: rc.solve_ode(pc, opt(), ks), repeat=3)
            e_full, e_comp = relerr(full.risk[1:], ref[1:]), relerr(comp.risk[1:], ref[1:])
            n_euler = int(T / h_req) if h_req else None
            t_euler = t_step * n_euler if n_euler else None
            row = dict(d=d, T=T, ode_compile_s=first - warm, ode_warm_s=warm,
                       ode_steps=full.meta["solver"]["num_steps"], ode_err=e_full,
                       comp_nodes=pc.n_modes, comp_compile_s=cfirst - cwarm,
                       comp_warm_s=cwarm, comp_err=e_comp, euler_s_per_step=t_step,
                       euler_steps_timed=n_meas, euler_steps_needed=n_euler,
                       euler_time_s_extrapolated=t_euler,
                       euler_h1_time_s_extrapolated=t_step * T,
                       ratio_full=t_euler / warm if t_euler else None,
                       ratio_compressed=t_euler / cwarm if t_euler else None)
            rows.append(row)
            print(f"{d:>9.0e} {T:>9.0e} {first - warm:>11.3f} {warm:>9.3f} "
                  f"{row['ode_steps']:>6} {e_full:>8.1e} {cwarm:>9.4f} {e_comp:>8.1e} "
                  f"{t_step:>12.2e} {t_euler or float('nan'):>11.3g} "
                  f"{row['ratio_full'] or float('nan'):>10.3g} "
                  f"{row['ratio_compressed'] or float('nan'):>10.3g}")
    print("  euler times are EXTRAPOLATED linearly: (seconds per step measured over "
          "`euler_steps_timed` steps at that d) x (T / h) steps")
    return info, rows


def bench_huge(Ts):
    rows = []
    for d in [10**9, math.inf]:
        t0 = time.perf_counter()
        p = problem(d)
        build = time.perf_counter() - t0
        for T in Ts:
            ks = rc.checkpoints(T, 40)
            c, first, warm = timed(lambda: rc.solve_ode(p, opt(), ks), repeat=3)
            rows.append(dict(d=str(d), T=T, nodes=p.n_modes, build_s=build,
                             compile_s=first - warm, warm_s=warm,
                             steps=c.meta["solver"]["num_steps"], final_risk=float(c.risk[-1])))
            print(f"compressed d={d:g} T={T:.0e}: {p.n_modes} nodes, build {build:.3f} s, "
                  f"compile {first - warm:.2f} s, warm {warm:.3f} s, "
                  f"{rows[-1]['steps']} steps")
    return rows


def bench_horizon(Ts):
    rows = []
    for name, noise in [("gaussian(0.1)", rc.Gaussian(SIGMA)), ("noiseless", None)]:
        p = rc.PowerLaw(math.inf, ALPHA, BETA, noise)
        for T in Ts:
            c = rc.solve_ode(p, opt(), rc.checkpoints(T, 40), max_steps=10**6, throw=False)
            rows.append(dict(noise=name, T=T, steps=c.meta["solver"]["num_steps"],
                             status=c.status))
        print(f"steps vs horizon ({name}, d=inf): "
              + ", ".join(f"{r['T']:.0e}: {r['steps']}" for r in rows if r["noise"] == name))
    return rows


def rng_rate(impl, n_runs, B, d, T):
    """Normals/s of `jax.random.normal` alone, generated like the engine does:
    `(B, d)` blocks from `fold_in(key, k)` in a `lax.scan`, vmapped over runs."""
    if True:
        keys = jax.random.split(jax.random.key(0, impl=impl), n_runs)

        def one(key):
            def body(c, k):
                z = jax.random.normal(jax.random.fold_in(key, k), (B, d), jnp.float32)
                return c + z.sum(), None   # consume the whole block
            return jax.lax.scan(body, jnp.float32(0), jnp.arange(T))[0]

        g = jax.jit(jax.vmap(one))
        g(keys).block_until_ready()
        t0 = time.perf_counter()
        g(keys).block_until_ready()
        return n_runs * T * B * d / (time.perf_counter() - t0)


def mem_bandwidth(n_bytes=2**28):
    a = np.ones(n_bytes // 8)
    b = np.empty_like(a)
    np.copyto(b, a)
    t0 = time.perf_counter()
    for _ in range(3):
        np.copyto(b, a)
    return 3 * 2 * n_bytes / (time.perf_counter() - t0)  # read + write


def bench_sim(quick):
    d, B = (1000, 4)
    n_runs, T = (16, 500) if quick else (64, 2000)
    p = rc.PowerLaw(d, ALPHA, BETA, rc.Gaussian(SIGMA))
    ks = rc.checkpoints(T, 20)
    rates = {}
    bw = mem_bandwidth()
    rows = []
    for impl in [None, "rbg", "unsafe_rbg"]:
        if impl is not None:   # the rbg keys are slow under vmap on CPU: a smaller run
            n_runs, T, ks = 8, 200, rc.checkpoints(200, 10)
        f = lambda: rc.simulate(p, opt(), ks, n_runs=n_runs, seed=0, rng_impl=impl)
        _, first, warm = timed(f, repeat=1)
        normals = n_runs * T * B * d
        rate = normals / warm
        ref_rate = rng_rate(impl or "threefry2x32", n_runs, B, d, T)
        rates[f"{impl or 'threefry2x32'}_normal_per_s"] = ref_rate
        bytes_per_normal = 4 * 3  # write X, read for X Δ and for Xᵀ r (float32)
        rows.append(dict(rng=impl or "threefry2x32 (default)", d=d, batch=B, n_runs=n_runs,
                         steps=T, compile_s=first - warm, warm_s=warm,
                         runs_d_steps_per_s=n_runs * d * T / warm, normals_per_s=rate,
                         frac_rng_limit=rate / ref_rate,
                         frac_mem_bandwidth=rate * bytes_per_normal / bw))
        r = rows[-1]
        print(f"simulate ({r['rng']}): d={d} B={B} runs={n_runs} steps={T}: warm {warm:.2f} s, "
              f"{r['runs_d_steps_per_s']:.3g} runs·d·steps/s, {rate:.3g} normals/s = "
              f"{r['frac_rng_limit']:.0%} of jax.random.normal alone, "
              f"{r['frac_mem_bandwidth']:.1%} of memory bandwidth")
    print("RNG alone (per s): " + ", ".join(f"{k} {v:.3g}" for k, v in rates.items())
          + f"; memory copy bandwidth {bw / 1e9:.2f} GB/s")
    return dict(rows=rows, rng_rates=rates, mem_bandwidth_bytes_per_s=bw)


def fit_exponent(x, y):
    x, y = np.log(np.asarray(x, float)), np.log(np.asarray(y, float))
    return float(np.polyfit(x, y, 1)[0]) if len(x) > 1 else None


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true", help="~1-2 minute version")
    ap.add_argument("--out", default=None, help="output JSON path")
    ap.add_argument("--sections", default="huge,horizon,simulate,ode",
                    help="comma-separated subset; a subset is merged into an existing JSON")
    args = ap.parse_args(argv)
    quick = args.quick
    ds = [10**3, 10**4] if quick else [10**3, 10**4, 10**5, 10**6]
    Ts = [10**5] if quick else [10**5, 10**6]
    res = {"quick": quick, "device": str(jax.devices()[0]), "n_devices": len(jax.devices()),
           "platform": platform.platform(), "cpu_count": os.cpu_count(),
           "load_avg_at_start": os.getloadavg(), "jax": jax.__version__,
           "note": "shared machine (other jobs running): timings are upper bounds",
           "command": " ".join([sys.executable] + sys.argv)}
    out = args.out or os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                   "results_quick.json" if quick else "results.json")

    secs = set(args.sections.split(","))
    if secs != {"huge", "horizon", "simulate", "ode"} and os.path.exists(out):
        with open(out) as f:
            res = json.load(f) | {k: v for k, v in res.items() if k not in ("command",)}
        res.setdefault("partial_reruns", []).append(" ".join(sys.argv))

    def save():
        with open(out, "w") as f:
            json.dump(res, f, indent=1, default=float)

    t0 = time.perf_counter()
    if "huge" in secs:
        res["huge"] = bench_huge([10**6] if quick else [10**6, 10**8])
        save()
    if "horizon" in secs:
        res["horizon"] = bench_horizon([10**4, 10**6] if quick else [10**4, 10**5, 10**6,
                                                                      10**7, 10**8])
        save()
    if "simulate" in secs:
        res["simulate"] = bench_sim(quick)
        save()
    if "ode" in secs:
        res["euler"], res["ode"] = bench_ode(ds, Ts, quick)
        save()
    for T in Ts:
        rows = [r for r in res["ode"] if r["T"] == T]
        res[f"exponent_d_full_T{T:.0e}"] = fit_exponent([r["d"] for r in rows],
                                                        [r["ode_warm_s"] for r in rows])
    noisy = [r for r in res["horizon"] if r["noise"] != "noiseless"]
    res["exponent_T_steps_noisy"] = fit_exponent([r["T"] for r in noisy],
                                                 [r["steps"] for r in noisy])
    print("\nfitted exponents: full-ODE warm time ~ d^"
          + ", ".join(f"{res[f'exponent_d_full_T{T:.0e}']:.2f} (T={T:.0e})" for T in Ts)
          + f"; solver steps ~ T^{res['exponent_T_steps_noisy']:.2f} (noisy, d=inf)")
    res["total_s"] = time.perf_counter() - t0
    res["load_avg_at_end"] = os.getloadavg()
    save()
    print(f"wrote {out} ({res['total_s']:.0f} s)")


if __name__ == "__main__":
    main()
