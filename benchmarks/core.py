"""Benchmarks of the transformable core (issue 12), measured side by side in one run.

    python3 benchmarks/core.py            # writes benchmarks/core_results.json
    python3 benchmarks/core.py --quick    # smaller sizes, core_results_quick.json

Sections (each prints a table row and goes into the JSON):

1. `vmap_sweep`: `jax.jit(jax.vmap(lambda lr: rc.solve_ode(PowerLaw(d), SGD(lr, 4), ks).risk))`
   over 32 step sizes vs one warm single solve (d = 10_000; quick: 2_000): compile
   count, max deviation from one-by-one solves, time ratio.
2. `tuned`: tuned comparisons (SignSGD vs SGD; clipped SGD vs SGD) with
   `rc.studies` (vmapped sweeps) vs the previous implementation (golden-section /
   per-call solves), run from a git worktree of `--legacy-rev` in a subprocess of
   this same run, on the same problems; outputs compared. Each comparison runs
   twice per process: cold (`sign`, `clip`: compilation included) and then on
   another noise scale and horizon (`sign_next`, `clip_next`: what the next study of
   a session costs).
3. `simulator`: `rc.simulate` (SGD, B = 4, float32) vs a minimal hand-written
   `jit(vmap(lax.scan))` with the same per-step work (sample `X ~ N(0, K)` and `ε`,
   `g = Xᵀ(XΔ − ε)/B`, `Δ -= ηg`, the exact risk at the checkpoints) at
   d ∈ {1e3, 1e4, 1e5}; warm times, ratio.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import textwrap
import time

import jax
import jax.numpy as jnp
import numpy as np

import riskcurves as rc

HERE = os.path.dirname(os.path.abspath(__file__))


def _t(fn):
    t0 = time.perf_counter()
    out = fn()
    jax.block_until_ready(out)
    return out, time.perf_counter() - t0


# ---- 1. vmapped sweep -----------------------------------------------------------------
def bench_vmap(d, n_lr=32):
    prob = rc.PowerLaw(d, 1.5, 0.5, rc.Gaussian(0.1))
    ks = rc.checkpoints(10_000)
    lrs = jnp.linspace(0.05, 0.5, n_lr)
    f = jax.jit(jax.vmap(lambda lr: rc.solve_ode(prob, rc.SGD(lr=lr, batch=4), ks).risk))
    _, first = _t(lambda: f(lrs))
    sweep, warm = _t(lambda: f(lrs * 0.999))
    single = lambda lr: rc.solve_ode(prob, rc.SGD(lr, 4), ks).risk  # noqa: E731
    single(0.2)
    _, one = _t(lambda: single(0.3))
    dev = max(float(np.max(np.abs(np.asarray(sweep[i]) / single(float(lrs[i] * 0.999)) - 1)))
              for i in (0, n_lr // 2, n_lr - 1))
    return {"d": d, "n_lr": n_lr, "compiles": int(f._cache_size()), "first_s": first,
            "sweep_warm_s": warm, "single_warm_s": one, "ratio": warm / one,
            "max_dev_vs_single": dev}


# ---- 2. tuned comparisons, new vs legacy -------------------------------------------------
SIGN_PROBLEM = "rc.PowerLaw(256, 1.5, 0.5, rc.Gaussian(0.01))"
CLIP_PROBLEM = "rc.Flat(400, 1 / 400, rc.StudentT.with_std(3, 0.3), initial_energy=1.0)"
# the next comparison of a session: another noise scale and horizon, same shapes
SIGN_PROBLEM_2 = "rc.PowerLaw(256, 1.5, 0.5, rc.Gaussian(0.02))"
CLIP_PROBLEM_2 = "rc.Flat(400, 1 / 400, rc.StudentT.with_std(3, 0.5), initial_energy=1.0)"
LEGACY = textwrap.dedent(f"""
    import json, time, riskcurves as rc
    PHASE, PHASE_ARGS = {{phase}}, {{phase_args}}
    from riskcurves.theory import tuned_comparison, compare_clipped_sgd
    out = {{}}
    p = {SIGN_PROBLEM}
    t = time.perf_counter(); r = tuned_comparison(p, 2000, iters=14)
    out["sign"] = {{"s": time.perf_counter() - t, "ratio": r["ratio"],
                   "sgd_lr": r["sgd"]["lr"], "sign_lr": r["signsgd"]["lr"]}}
    p2 = {SIGN_PROBLEM_2}
    t = time.perf_counter(); r = tuned_comparison(p2, 3000, iters=14)
    out["sign_next"] = {{"s": time.perf_counter() - t, "ratio": r["ratio"],
                        "sgd_lr": r["sgd"]["lr"], "sign_lr": r["signsgd"]["lr"]}}
    q = {CLIP_PROBLEM}
    t = time.perf_counter(); c = compare_clipped_sgd(q, 2000, n_lr=16, n_clip=10)
    out["clip"] = {{"s": time.perf_counter() - t, "ratio": c["ratio"],
                   "sgd_lr": c["sgd_lr"], "clip_lr": c["clip_lr"]}}
    q2 = {CLIP_PROBLEM_2}
    t = time.perf_counter(); c = compare_clipped_sgd(q2, 3000, n_lr=16, n_clip=10)
    out["clip_next"] = {{"s": time.perf_counter() - t, "ratio": c["ratio"],
                        "sgd_lr": c["sgd_lr"], "clip_lr": c["clip_lr"]}}
    if PHASE:
        from riskcurves.theory import phase_diagram
        t = time.perf_counter(); ph, lr = phase_diagram(**PHASE_ARGS)
        out["phase"] = {{"s": time.perf_counter() - t, "phase": ph.tolist(),
                        "final_log_ratio": lr.tolist()}}
    print("LEGACY" + json.dumps(out))
""")
# a small SignSVD-vs-SignSGD phase diagram (2 x 2 points), same arguments on both sides
PHASE_ARGS = dict(alphas=[0.75, 1.5], betas=[0.5, 1.5], d=2000, batch=16, k_max=3000, n_lr=8,
                  n_checkpoints=16, noise_ratio=0.1)


def bench_tuned(legacy_rev, phase=True):
    res = {}
    p = eval(SIGN_PROBLEM)
    r, s = _t(lambda: rc.studies.tuned_comparison(p, 2000, n_lr=16, refine=6))
    res["sign"] = {"s": s, "ratio": r["ratio"], "sgd_lr": r["sgd"]["lr"],
                   "sign_lr": r["signsgd"]["lr"]}
    p2 = eval(SIGN_PROBLEM_2)
    r, s = _t(lambda: rc.studies.tuned_comparison(p2, 3000, n_lr=16, refine=6))
    res["sign_next"] = {"s": s, "ratio": r["ratio"], "sgd_lr": r["sgd"]["lr"],
                        "sign_lr": r["signsgd"]["lr"]}
    for key, prob, T in (("clip", CLIP_PROBLEM, 2000), ("clip_next", CLIP_PROBLEM_2, 3000)):
        q = eval(prob)
        c, s = _t(lambda q=q, T=T: rc.studies.compare_clipped_sgd(q, T, n_lr=16, n_clip=10))
        res[key] = {"s": s, "ratio": c["ratio"], "sgd_lr": c["sgd_lr"], "clip_lr": c["clip_lr"]}
    if phase:
        (ph, lr), s = _t(lambda: rc.studies.phase_diagram(**PHASE_ARGS))
        res["phase"] = {"s": s, "phase": ph.tolist(), "final_log_ratio": lr.tolist()}
    out = {"new": res}
    if legacy_rev:
        root = os.path.dirname(HERE)
        with tempfile.TemporaryDirectory() as tmp:
            wt = os.path.join(tmp, "legacy")
            subprocess.run(["git", "-C", root, "worktree", "add", "-q", "--detach", wt,
                            legacy_rev], check=True)
            try:
                env = {**os.environ, "PYTHONPATH": wt}
                code = LEGACY.replace("{phase}", repr(phase)).replace("{phase_args}",
                                                                      repr(PHASE_ARGS))
                p = subprocess.run([sys.executable, "-c", code], env=env, cwd=tmp,
                                   capture_output=True, text=True, timeout=3600)
                line = [x for x in p.stdout.splitlines() if x.startswith("LEGACY")]
                out["legacy"] = json.loads(line[0][6:]) if line else {"error": p.stderr[-2000:]}
            finally:
                subprocess.run(["git", "-C", root, "worktree", "remove", "--force", wt])
        if "sign" in out["legacy"]:
            out["speedup"] = {k: out["legacy"][k]["s"] / res[k]["s"] for k in res
                              if k in out["legacy"]}
    return out


# ---- 3. simulator vs a hand-written scan -------------------------------------------------
def _minimal(prob, lr, B, ks, n_runs, dtype=jnp.float32):
    lam = jnp.asarray(prob.eigenvalues, dtype)
    sq = jnp.sqrt(lam)
    delta0 = jnp.sqrt(jnp.asarray(prob.initial_energies, dtype))
    sigma = float(prob.noise.sigma)
    T = int(ks[-1])
    kss = jnp.asarray(ks)

    def one(key):
        def step(delta, k):
            kk = jax.random.fold_in(key, k)
            k1, k2 = jax.random.split(kk)
            X = jax.random.normal(k1, (B, lam.size), dtype) * sq
            eps = sigma * jax.random.normal(k2, (B,), dtype)
            g = X.T @ (X @ delta - eps) / B
            delta = delta - lr * g
            return delta, 0.5 * jnp.sum(lam * delta.astype(jnp.float64) ** 2)

        _, risks = jax.lax.scan(step, delta0, jnp.arange(T))
        return risks[kss[1:] - 1]

    keys = jax.random.split(jax.random.PRNGKey(0), n_runs)
    return jax.jit(jax.vmap(one)), keys


def bench_sim(ds, n_runs, T):
    rows = []
    for d in ds:
        prob = rc.PowerLaw(d, 1.5, 0.5, rc.Gaussian(0.1))
        ks = np.unique(np.round(np.geomspace(1, T, 20)).astype(np.int64))
        ks = np.concatenate([[0], ks])
        opt = rc.SGD(0.5, 4)
        rc.simulate(prob, opt, ks, n_runs=n_runs, chunk_size=n_runs)
        _, t_rc = _t(lambda: rc.simulate(prob, rc.SGD(0.49, 4), ks, n_runs=n_runs,
                                         chunk_size=n_runs, seed=1).risk)
        f, keys = _minimal(prob, 0.5, 4, ks, n_runs)
        f(keys)
        _, t_min = _t(lambda: f(keys))
        rows.append({"d": d, "n_runs": n_runs, "steps": T, "rc_s": t_rc, "minimal_s": t_min,
                     "ratio": t_rc / t_min})
    return rows


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smaller sizes")
    ap.add_argument("--legacy-rev", default="990faef",
                    help="git revision of the previous implementation ('' to skip)")
    ap.add_argument("--skip", default="", help="comma-separated sections to skip")
    a = ap.parse_args(argv)
    skip = set(filter(None, a.skip.split(",")))
    out = {"device": str(jax.devices()[0]), "platform": platform.platform(),
           "loadavg": os.getloadavg(), "command": " ".join(sys.argv), "quick": a.quick}
    if "vmap" not in skip:
        r = bench_vmap(2_000 if a.quick else 10_000)
        out["vmap_sweep"] = r
        print(f"vmap sweep d={r['d']} {r['n_lr']} lrs: {r['compiles']} compile(s), "
              f"sweep {r['sweep_warm_s']:.3f}s vs one solve {r['single_warm_s']:.3f}s "
              f"(ratio {r['ratio']:.1f}), max dev {r['max_dev_vs_single']:.1e}", flush=True)
    if "tuned" not in skip:
        r = bench_tuned(a.legacy_rev)
        out["tuned"] = r
        for k in r["new"]:
            leg = r.get("legacy", {}).get(k, {})
            val = (lambda x: f"ratio {x['ratio']:.4f}" if "ratio" in x  # noqa: E731
                   else f"phases {x['phase']}")
            print(f"{k}: new {r['new'][k]['s']:.1f}s {val(r['new'][k])}"
                  + (f" | legacy {leg['s']:.1f}s {val(leg)} | speedup "
                     f"{leg['s'] / r['new'][k]['s']:.1f}x" if leg else ""), flush=True)
    if "sim" not in skip:
        ds = [1000, 10_000] if a.quick else [1000, 10_000, 100_000]
        rows = bench_sim(ds, 16 if a.quick else 32, 200 if a.quick else 500)
        out["simulator"] = rows
        for r in rows:
            print(f"simulator d={r['d']}: rc.simulate {r['rc_s']:.3f}s vs minimal scan "
                  f"{r['minimal_s']:.3f}s (ratio {r['ratio']:.2f})", flush=True)
    path = os.path.join(HERE, "core_results_quick.json" if a.quick else "core_results.json")
    with open(path, "w") as f:
        json.dump(out, f, indent=1, default=float)
    print("wrote", path)


if __name__ == "__main__":
    main()
