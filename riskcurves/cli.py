"""The `riskcurves` command.

    riskcurves demo [--out DIR] [--d 1000] [--n-runs 32] [--steps N] [--only CASE ...]
    riskcurves compare --optimizer sgd --d 1000 --alpha 1.5 --beta 0.5 --lr 0.2 --batch 4
    riskcurves threshold --optimizer sgd --d 1000 --alpha 1.5 --beta 0.5 --batch 4
    riskcurves phase-diagram --d 10000 --batch 16 [--from-json docs/theory/phases.json]

Every option has help text and shows its default (`riskcurves SUBCOMMAND --help`).
Bad input is reported as one line `riskcurves: error: --option VALUE: ...` with exit
status 2, before any solve or simulation starts. Progress bars (tqdm) are drawn on
standard error when it is a terminal, and nothing is drawn otherwise.
Optimizers register themselves in `OPTIMIZERS` (for `compare`) and in
`DEMO_CASES` (for `demo`): one entry each.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from .plotting import describe_noise, run_title

__all__ = ["main", "OPTIMIZERS", "DEMO_CASES", "DemoCase"]

_MATRIX_OPTIMIZERS_NAMES = ("signsvd", "muon", "matrix_signsgd")


# ---- registries ---------------------------------------------------------------
def _sgd(a):
    import riskcurves as rc
    return rc.SGD(lr=a.lr if a.lr is not None else 0.2, batch=a.batch)


def _signsgd(a):
    import riskcurves as rc
    return rc.SignSGD(lr=a.lr if a.lr is not None else 2e-3, batch=a.batch)


def _clipped(a):
    import riskcurves as rc
    return rc.ClippedSGD(lr=a.lr if a.lr is not None else 0.2,
                         clip=a.clip if a.clip is not None else 1.0, batch=a.batch)


def _adagrad(a):
    import riskcurves as rc
    return rc.AdaGradNorm(lr=a.lr if a.lr is not None else 0.5,
                          b0=a.b0 if a.b0 is not None else 0.5, batch=a.batch)


def _linesearch(a):
    import riskcurves as rc
    return rc.LineSearch(batch=a.batch)


# name -> builder(args) -> optimizer config. An optimizer appears here once its
# ODE and simulator are both registered.
OPTIMIZERS: dict[str, Callable] = {
    "signsvd": lambda a: _matrix_opt(a, "SignSVD", 0.02),
    "muon": lambda a: _matrix_opt(a, "Muon", 0.02),
    "matrix_signsgd": lambda a: _matrix_opt(a, "MatrixSignSGD", 1e-3),
    "sgd": _sgd,
    "signsgd": _signsgd,
    "adagrad_norm": _adagrad,
    "line_search": _linesearch,
    "clipped_sgd": _clipped,
    "clipping": _clipped,  # alias
}


@dataclass(frozen=True)
class DemoCase:
    """One row of `riskcurves demo`: a problem, an optimizer, a horizon."""

    name: str
    build: Callable  # (d: int) -> (problem, optimizer)
    steps: int = 2000
    ode_options: dict | None = None
    # simulated runs: (k_max, n_runs) tiers (`rc.simulate_tiered`), more runs at the early
    # checkpoints where a few top modes make the risk fluctuate most; sized so that the
    # Monte-Carlo standard error is below 1% of the mean at every k >= 1 (measured at
    # d = 1000, seed 0: docs/getting-started.md)
    runs: tuple = ((None, 32),)


def _demo_problem(d):
    import riskcurves as rc
    return rc.PowerLaw(d=d, alpha=1.5, beta=0.5, noise=rc.Gaussian(0.1))


DEMO_CASES: list[DemoCase] = [
    DemoCase("signsvd", lambda d: _signsvd_demo(d), steps=400, ode_options={"rtol": 1e-4},
             runs=((None, 32),)),
    # Muon (5 Newton–Schulz steps, no momentum) against its theory (the one-step mean over
    # batch draws with the exact singular values, docs/theory/signsvd.md §3b)
    DemoCase("muon", lambda d: _signsvd_demo(d, "muon"), steps=400, ode_options={"rtol": 1e-4},
             runs=((None, 16),)),
    DemoCase("matrix_signsgd", lambda d: _signsvd_demo(d, "matrix_signsgd"), steps=400,
             runs=((None, 16),)),
    DemoCase("sgd", lambda d: (_demo_problem(d), _sgd_default()),
             runs=((16, 1024), (128, 384), (None, 192))),
    DemoCase("signsgd", lambda d: (_demo_problem(d), _signsgd_default()), runs=((None, 256),)),
    DemoCase("adagrad_norm", lambda d: (_demo_problem(d), _adagrad_default()),
             ode_options={"exact_rates": True}, runs=((16, 640), (128, 320), (None, 192))),
    DemoCase("line_search", lambda d: (_demo_problem(d), _linesearch_default()),
             runs=((6, 4096), (40, 640), (128, 256), (None, 128))),
    # clipping theory needs a large intrinsic dimension tr K / λ_max (the α = 1.5 power
    # law has ≈ 2.6): flat spectrum (tr K / λ_max = d), Student-t(3) noise, c' = c = 0.3
    DemoCase("clipping", lambda d: (_clipping_demo_problem(d), _clipped_default()), steps=4000,
             runs=((None, 64),)),
]


def _signsgd_default():
    import riskcurves as rc
    return rc.SignSGD(lr=5e-3, batch=1)  # exact (arcsin) drift: ~2% at d=1000, 32 runs


def _clipping_demo_problem(d):
    import riskcurves as rc
    return rc.Flat(d, 1.0 / d, rc.StudentT.with_std(3, 0.3), initial_energy=1.0)


def _clipped_default():
    import riskcurves as rc
    return rc.ClippedSGD(lr=1.0, clip=0.3)


def _sgd_default():
    import riskcurves as rc
    return rc.SGD(lr=0.2, batch=4)


def _adagrad_default():
    import riskcurves as rc
    return rc.AdaGradNorm(lr=0.5, b0=1.0, batch=4)


def _linesearch_default():
    import riskcurves as rc
    return rc.LineSearch(batch=4)


# ---- argument parsing ----------------------------------------------------------
_NOISE_ARITY = {"gaussian": (1, "gaussian:SIGMA (e.g. gaussian:0.1)"),
                "studentt": (2, "studentt:NU,SCALE (e.g. studentt:3,0.1)"),
                "mixture": (3, "mixture:SIGMA,OUTLIER_SIGMA,P (e.g. mixture:0.1,10,0.01)")}
_NOISE_ALIASES = {"student": "studentt", "t": "studentt", "noiseless": "none"}


def _noise_from_string(s: str):
    """`--noise` value -> noise law; every parameter must be given (no hidden defaults)."""
    import riskcurves as rc
    name, _, rest = s.partition(":")
    name = _NOISE_ALIASES.get(name.lower(), name.lower())
    if name == "none":
        if rest:
            raise ValueError(f"--noise {s!r}: `none` takes no parameter")
        return rc.Noiseless()
    if name not in _NOISE_ARITY:
        raise ValueError(f"--noise must be one of none, gaussian:SIGMA, studentt:NU,SCALE, "
                         f"mixture:SIGMA,OUTLIER_SIGMA,P; got {s!r}")
    n, form = _NOISE_ARITY[name]
    try:
        vals = [float(v) for v in rest.split(",")] if rest else []
    except ValueError:
        vals = None
    if vals is None or len(vals) != n:
        raise ValueError(f"--noise must be one of none, gaussian:SIGMA, studentt:NU,SCALE, "
                         f"mixture:SIGMA,OUTLIER_SIGMA,P; {name} needs {n} number"
                         f"{'s' if n > 1 else ''}: {form}; got {s!r}")
    law = {"gaussian": rc.Gaussian, "studentt": rc.StudentT, "mixture": rc.GaussianMixture}
    try:
        return law[name](*vals)
    except (TypeError, ValueError) as e:
        raise ValueError(f"--noise {s!r}: {e}") from None


# constructor argument named in a library error -> the CLI option the user typed
_ARG_OPTION = {"lr": "--lr", "batch": "--batch", "clip": "--clip", "b0": "--b0", "d": "--d",
               "m": "--m", "alpha": "--alpha", "beta": "--beta", "n_max": "--steps",
               "n_runs": "--n-runs", "seed": "--seed"}


def _option_error(e: ValueError, a) -> ValueError:
    """Prefix a library error with the option (and value) the user typed."""
    msg = str(e)
    m = re.search(r"`(\w+)`", msg)
    if msg.startswith("--") or not m or m.group(1) not in _ARG_OPTION:
        return e
    opt = _ARG_OPTION[m.group(1)]
    val = getattr(a, opt[2:].replace("-", "_"), None)
    return ValueError(f"{opt} {val}: {msg}")


def _problem_from_args(a):
    import riskcurves as rc
    noise = _noise_from_string(a.noise)
    try:
        if getattr(a, "optimizer", None) in _MATRIX_OPTIMIZERS:
            return _matrix_problem_from_args(a, noise)
        if a.spectrum == "powerlaw":
            return rc.PowerLaw(a.d, a.alpha, a.beta, noise, rotate=a.rotate, seed=a.seed)
        if a.spectrum == "flat":
            p = rc.Flat(a.d, 1.0 / a.d, noise, initial_energy=1.0)
        else:
            p = rc.TwoLevel(a.d, 1.0 / a.d * 10, 1.0 / a.d * 0.1, 0.5, noise,
                            initial_energy=1.0)
        return p.rotated(a.seed) if a.rotate else p
    except ValueError as e:
        raise _option_error(e, a) from None


def _add_problem_args(p):
    p.add_argument("--d", type=int, default=1000,
                   help="dimension of the parameter vector (rows of W for matrix optimizers)")
    p.add_argument("--spectrum", choices=["powerlaw", "flat", "twolevel"], default="powerlaw",
                   help="eigenvalues of K: powerlaw λ_j = j^-alpha; flat λ = 1/d; twolevel "
                        "half at 10/d, half at 0.1/d (flat and twolevel start at D_j = 1)")
    p.add_argument("--alpha", type=float, default=1.5,
                   help="power-law exponent of the eigenvalues, λ_j = j^-alpha")
    p.add_argument("--beta", type=float, default=0.5,
                   help="power-law exponent of the initial mode energies, D_j(0) = j^-beta")
    p.add_argument("--noise", default="gaussian:0.1",
                   help="label-noise law: none | gaussian:SIGMA | studentt:NU,SCALE | "
                        "mixture:SIGMA,OUTLIER_SIGMA,P (every number required)")
    p.add_argument("--rotate", action="store_true",
                   help="rotate K by a Haar-random orthogonal matrix (generic, non-diagonal K)")
    p.add_argument("--seed", type=int, default=0,
                   help="seed of the rotation and of the simulation's random numbers")
    p.add_argument("--m", type=int, default=None,
                   help="outputs of a matrix problem (signsvd, muon, matrix_signsgd); "
                        "default: 2d")


_DEFAULT_LR = {"sgd": 0.2, "signsgd": 2e-3, "clipped_sgd": 0.2, "adagrad_norm": 0.5,
               "signsvd": 0.02, "muon": 0.02, "matrix_signsgd": 1e-3}


def _add_optimizer_args(p, with_hyperparameters=True):
    p.add_argument("--optimizer", default="sgd", metavar="NAME",
                   help="one of: " + ", ".join(OPTIMIZERS))
    p.add_argument("--batch", type=int, default=1, help="minibatch size B")
    if not with_hyperparameters:  # `threshold` computes the step size: no --lr
        p.set_defaults(lr=None, clip=None, b0=None)
        return
    p.add_argument("--lr", type=float, default=None,
                   help="constant step size η; default per optimizer: "
                        + ", ".join(f"{k} {v:g}" for k, v in _DEFAULT_LR.items())
                        + " (line_search chooses its own)")
    p.add_argument("--clip", type=float, default=None,
                   help="clipping threshold c on ‖g‖ (clipped_sgd only); default 1.0")
    p.add_argument("--b0", type=float, default=None,
                   help="initial accumulator b_0 (adagrad_norm only); default 0.5")


# options that only some optimizers / spectra read: given elsewhere, they are refused
_ONLY_FOR = {"--clip": ("clipped_sgd", "clipping"), "--b0": ("adagrad_norm",),
             "--m": _MATRIX_OPTIMIZERS_NAMES}


def _check_applicable(a):
    """Refuse an option the chosen optimizer or spectrum would ignore."""
    given = getattr(a, "given", set())
    for opt, users in _ONLY_FOR.items():
        if opt in given and a.optimizer not in users:
            raise ValueError(f"{opt} applies to --optimizer {' / '.join(users)} only; "
                             f"got --optimizer {a.optimizer}")
    if "--lr" in given and a.optimizer == "line_search":
        raise ValueError("--lr does not apply to --optimizer line_search (the oracle sets "
                         "the step size)")
    for opt in ("--alpha", "--beta"):
        if opt in given and getattr(a, "spectrum", "powerlaw") != "powerlaw":
            raise ValueError(f"{opt} applies to --spectrum powerlaw only; got --spectrum "
                             f"{a.spectrum}")


def _optimizer_from_args(a):
    if a.optimizer not in OPTIMIZERS:
        raise ValueError(f"--optimizer must be one of {', '.join(OPTIMIZERS)}; got {a.optimizer!r}")
    _check_applicable(a)
    try:
        return OPTIMIZERS[a.optimizer](a)
    except ValueError as e:
        raise _option_error(e, a) from None


def _check_int(option: str, value, lo: int):
    """Cheap validation before any solve: `option` must be an integer >= lo."""
    if value is None or int(value) != value or value < lo:
        raise ValueError(f"{option} must be an integer >= {lo}, got {value}")


# ---- progress ------------------------------------------------------------------
def _tty() -> bool:
    """Progress bars only on a terminal (standard error)."""
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


@contextlib.contextmanager
def _working(desc: str):
    """An elapsed-time bar for a call without its own progress hook (e.g. `simulate`).

    tqdm with `disable=None`: drawn on standard error only when it is a terminal.
    """
    from tqdm import tqdm

    bar = tqdm(total=None, desc=desc, disable=None, leave=False,
               bar_format="{desc}: {elapsed} elapsed")
    if bar.disable:
        yield
        return
    stop = threading.Event()

    def tick():
        while not stop.wait(0.5):
            bar.refresh()

    t = threading.Thread(target=tick, daemon=True)
    t.start()
    try:
        yield
    finally:
        stop.set()
        t.join()
        bar.close()


# ---- commands ------------------------------------------------------------------
def _compare_one(problem, opt, steps, n_runs, seed, ode_options=None, name=""):
    """Theory vs simulation; `n_runs` an int or `(k_max, n_runs)` tiers."""
    import riskcurves as rc
    ks = rc.checkpoints(steps, 30)
    tag = f"[{name}] " if name else ""
    t0 = time.perf_counter()
    th = rc.solve_ode(problem, opt, ks, progress=_tty(), **(ode_options or {}))
    t_ode = time.perf_counter() - t0
    t0 = time.perf_counter()
    tiers = [(None, n_runs)] if isinstance(n_runs, int) else _fit_tiers(n_runs, int(ks[-1]))
    with _working(f"{tag}simulating {_runs_text(tiers)} runs x {steps} steps"):
        if len(tiers) == 1:
            sims = rc.simulate(problem, opt, ks, n_runs=tiers[0][1], seed=seed)
        else:
            sims = rc.simulate_tiered(problem, opt, ks, tiers, seed=seed)
    t_sim = time.perf_counter() - t0
    row = {
        "optimizer": opt.describe(),
        "problem": problem.label,
        "d": int(problem.d),
        "noise": describe_noise(problem.noise),
        "steps": int(steps),
        "n_runs": int(min(n for _, n in tiers)),   # runs behind the last checkpoints
        "runs_tiers": [[k, int(n)] for k, n in tiers],
        "max_rel_err": rc.max_rel_err(th, sims, k_min=1),
        "max_rel_err_k10": rc.max_rel_err(th, sims, k_min=10),
        # the largest Monte-Carlo standard error of the simulated mean, relative (k >= 1):
        # a max rel err of a few times this is the simulation's own noise
        "max_rel_stderr": _max_rel_stderr(sims),
        "final_risk_ode": float(th.risk[-1]),
        "final_risk_sim": float(sims.risk[-1]),
        "final_stderr_sim": float(sims.stderr[-1]),
        "ode_seconds": t_ode,
        "sim_seconds": t_sim,
        "ode_steps": th.meta["solver"]["num_steps"],
    }
    if hasattr(problem, "m"):
        row["m"] = int(problem.m)
    return th, sims, row


def _fit_tiers(tiers, last: int) -> list:
    """`(k_max, n_runs)` tiers cut at the horizon `last` (the tier reaching it ends them)."""
    out = []
    for k, n in tiers:
        if k is None or k >= last:
            return out + [(None, n)]
        out.append((k, n))
    return out


def _runs_text(tiers) -> str:
    """`(k_max, n_runs)` tiers as the table shows them: `1024/384/192` (early to late)."""
    return "/".join(str(int(n)) for _, n in tiers)


def _max_rel_stderr(sims) -> float:
    k, p, se = np.asarray(sims.k), np.asarray(sims.risk), np.asarray(sims.stderr)
    keep = (k >= 1) & (p > 0)
    return float(np.max(se[keep] / p[keep])) if np.any(keep) else float("nan")


def _print_table(rows):
    runs = [_runs_text(r.get("runs_tiers", [[None, r["n_runs"]]])) for r in rows]
    w = max([6] + [len(t) + 2 for t in runs])
    hdr = (f"{'case':<16}{'d':>6}{'runs':>{w}}{'steps':>7}{'max rel err':>13}"
           f"{'(k>=10)':>9}{'MC s.e.':>9}{'P_ode(end)':>12}{'P_sim(end)':>12}{'ode s':>8}"
           f"{'sim s':>8}")
    print(hdr)
    print("-" * len(hdr))
    for r, nr in zip(rows, runs):
        print(f"{r['case']:<16}{r['d']:>6}{nr:>{w}}{r['steps']:>7}"
              f"{r['max_rel_err']:>13.4f}{r['max_rel_err_k10']:>9.4f}{r['max_rel_stderr']:>9.4f}"
              f"{r['final_risk_ode']:>12.4e}{r['final_risk_sim']:>12.4e}"
              f"{r['ode_seconds']:>8.2f}{r['sim_seconds']:>8.2f}")
    print("max rel err: max over checkpoints k >= 1 (resp. k >= 10) of |P_sim/P_ode - 1|; "
          "MC s.e.: the largest relative standard error of the simulated mean (k >= 1), "
          "the simulation's own noise (more runs: --n-runs); runs a/b/c: more runs at early "
          "checkpoints (demo.json: runs_tiers)")


def _demo_layout(n: int) -> tuple[int, int]:
    """Rows and columns with no empty panel when possible (8 cases: 2 x 4)."""
    for ncol in (4, 3, 5, 2):
        if n % ncol == 0 and n // ncol <= ncol:
            return n // ncol, ncol
    ncol = min(4, n)
    return -(-n // ncol), ncol


def _cmd_demo(a):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    import riskcurves as rc
    _check_int("--d", a.d, 2)
    if a.n_runs is not None:
        _check_int("--n-runs", a.n_runs, 2)
    if a.steps is not None:
        _check_int("--steps", a.steps, 1)
    unknown = [c for c in (a.only or []) if c not in {k.name for k in DEMO_CASES}]
    cases = [c for c in DEMO_CASES if not a.only or c.name in a.only]
    if unknown or not cases:
        raise ValueError(f"--only {' '.join(unknown or a.only or [])}: no such demo case; "
                         f"cases are {', '.join(c.name for c in DEMO_CASES)}")
    built = [(case, *case.build(a.d)) for case in cases]  # validates before any solve
    os.makedirs(a.out, exist_ok=True)
    nrow, ncol = _demo_layout(len(cases))
    fig, axes = plt.subplots(nrow, ncol, figsize=(4.6 * ncol, 4.0 * nrow), squeeze=False)
    rows = []
    for ax, (case, problem, opt) in zip(axes.flat, built):
        steps = a.steps or case.steps
        runs = a.n_runs if a.n_runs is not None else case.runs
        th, sims, row = _compare_one(problem, opt, steps, runs, a.seed, case.ode_options,
                                     name=case.name)
        row["case"] = case.name
        rows.append(row)
        title = run_title(problem, opt)
        if not title.startswith(case.name + " "):
            title = f"[{case.name}] {title}"
        rc.plot_compare(th, sims, ax=ax, title=title, error=row["max_rel_err"], legend=False)
        print(f"[{case.name}] max rel err {row['max_rel_err']:.4f} "
              f"(ode {row['ode_seconds']:.2f}s, sim {row['sim_seconds']:.2f}s)", flush=True)
    for ax in list(axes.flat)[len(cases):]:
        fig.delaxes(ax)
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch
    handles = [Line2D([], [], color="C0", lw=1.8, label="theory (ODE / exact recursion)"),
               Line2D([], [], color="C1", marker="o", ls="", ms=4,
                      label=(f"simulation: mean of {a.n_runs} runs (seed {a.seed})"
                             if a.n_runs is not None else f"simulation: mean over runs (seed "
                             f"{a.seed}; runs per case in the table)")),
               Patch(color="C1", alpha=0.25, label="± 2 standard errors of that mean")]
    fig.suptitle("riskcurves demo: theory vs simulation, excess risk P(k); panel titles: "
                 "optimizer and hyperparameters / problem and noise law", fontsize=11)
    fig.legend(handles=handles, loc="lower center", ncol=3, fontsize=9, frameon=False)
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    fig_path = os.path.join(a.out, "demo.png")
    fig.savefig(fig_path, dpi=110)
    plt.close(fig)
    report = {"d_requested": a.d, "n_runs": a.n_runs or "per case (runs_tiers)", "seed": a.seed,
              "note": "each case records its own d (matrix cases cap d at 128), m, noise law "
                      "and optimizer hyperparameters",
              "cases": rows}
    json_path = os.path.join(a.out, "demo.json")
    with open(json_path, "w") as f:
        json.dump(report, f, indent=2, default=str)
    print()
    _print_table(rows)
    print(f"\nfigure: {fig_path}\nreport: {json_path}")
    return 0


def _slug(x) -> str:
    return f"{x:g}".replace("+", "") if isinstance(x, float) else str(x)


def compare_stem(a, problem, opt) -> str:
    """File stem of `compare`'s outputs: every parameter that changes the result."""
    parts = [f"compare_{a.optimizer}", a.spectrum if a.optimizer not in _MATRIX_OPTIMIZERS
             else "matrix", f"d{a.d}"]
    if hasattr(problem, "m"):
        parts.append(f"m{problem.m}")
    if a.spectrum == "powerlaw":
        parts += [f"a{_slug(a.alpha)}", f"b{_slug(a.beta)}"]
    parts.append(a.noise.lower().replace(":", "").replace(",", "-") or "none")
    if a.rotate:
        parts.append("rot")
    d = opt.describe()
    for key, short in (("lr", "lr"), ("clip", "c"), ("b0", "b0")):
        if key in d and isinstance(d[key], (int, float)):
            parts.append(f"{short}{_slug(float(d[key]))}")
    parts += [f"B{opt.batch}", f"k{a.steps}", f"n{a.n_runs}", f"s{a.seed}"]
    return re.sub(r"[^A-Za-z0-9_.-]", "", "_".join(parts))


def _cmd_compare(a):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    import riskcurves as rc
    _check_int("--steps", a.steps, 1)
    _check_int("--n-runs", a.n_runs, 2)
    problem = _problem_from_args(a)
    opt = _optimizer_from_args(a)
    try:
        rc.theory.check_stable(problem, opt, k_max=a.steps)
    except rc.DivergenceError as e:  # before any solve
        raise ValueError(f"--lr {float(opt.lr):g}: {e}") from None
    th, sims, row = _compare_one(problem, opt, a.steps, a.n_runs, a.seed, name=a.optimizer)
    row["case"] = a.optimizer
    _print_table([row])
    os.makedirs(a.out, exist_ok=True)
    _, ax = plt.subplots(figsize=(6.4, 4.4))
    rc.plot_compare(th, sims, ax=ax, title=run_title(problem, opt), error=row["max_rel_err"])
    stem = compare_stem(a, problem, opt)
    path = os.path.join(a.out, stem + ".png")
    ax.figure.tight_layout()
    ax.figure.savefig(path, dpi=110)
    plt.close(ax.figure)
    json_path = os.path.join(a.out, stem + ".json")
    with open(json_path, "w") as f:
        json.dump({"row": row, "ode": th.to_dict(), "sim": sims.to_dict()}, f, default=str)
    print(f"figure: {path}\nreport: {json_path}")
    return 0


_NO_THRESHOLD = {
    "signsgd": "its step η·sign(g) has a fixed size, so the iterates cannot blow up",
    "clipped_sgd": "its step η·clip_c(g) is at most ηc long, so the iterates cannot blow up",
    "clipping": "its step η·clip_c(g) is at most ηc long, so the iterates cannot blow up",
    "adagrad_norm": "its step η/b_k shrinks as b_k grows with the gradients",
    "line_search": "it has no step size to choose; the oracle sets η_k at every step",
    "signsvd": "its step η·polar(G) has unit singular values, so the iterates cannot blow up",
    "muon": "its step is an approximate polar factor of bounded size",
    "matrix_signsgd": "its step η·sign(G) has a fixed size, so the iterates cannot blow up",
}


def _cmd_threshold(a):
    import riskcurves as rc
    problem = _problem_from_args(a)
    opt = _optimizer_from_args(a)
    thr = rc.theory.stability_threshold(opt, problem)
    if not np.isfinite(thr):
        why = _NO_THRESHOLD.get(a.optimizer, "no constant step size makes its risk diverge")
        print(f"{a.optimizer} has no step-size stability threshold ({why}); "
              f"no constant lr makes its risk diverge.")
        return 0
    print(f"stability threshold for {a.optimizer} (batch {opt.batch}) on {problem.label}, "
          f"noise {describe_noise(problem.noise)}: lr < {thr:.6g}")
    return 0


class _Formatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows `(default: X)` after every option that has a default to show."""

    def _get_help_string(self, action):
        h = action.help or ""
        if action.default is None or action.default is False or "default" in h or \
                action.default == argparse.SUPPRESS:
            return h
        if isinstance(action.default, (list, tuple)):  # as typed on the command line
            return f"{h} (default: {' '.join(str(x) for x in action.default)})"
        return super()._get_help_string(action)


class _Parser(argparse.ArgumentParser):
    """argparse, but usage errors are one line `riskcurves: error: ...` (exit 2)."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", _Formatter)
        super().__init__(*args, **kwargs)

    def error(self, message):
        print(f"riskcurves: error: {message}", file=sys.stderr)
        raise SystemExit(2)

# ---- matrix problems (SignSVD / Muon / matrix SignSGD) -------------------------------
_MATRIX_OPTIMIZERS = _MATRIX_OPTIMIZERS_NAMES


def _matrix_opt(a, cls, default_lr):
    import riskcurves as rc
    return getattr(rc, cls)(lr=a.lr if a.lr is not None else default_lr, batch=a.batch)


def _matrix_problem_from_args(a, noise):
    import riskcurves as rc
    if not isinstance(noise, (rc.Gaussian, rc.Noiseless)):
        raise ValueError("--noise must be none or gaussian:SIGMA for a matrix problem")
    if a.spectrum != "powerlaw":
        raise ValueError("--spectrum must be powerlaw for a matrix problem")
    m = 2 * a.d if a.m is None else a.m
    rows = "orthogonal" if m >= a.d else "gaussian"
    return rc.MatrixPowerLaw(a.d, m, a.alpha, a.beta, noise, rows=rows, rotate=a.rotate,
                             seed=a.seed)


def _signsvd_demo(d, which: str = "signsvd"):
    """Matrix demos: d capped at 128 (one SVD-type polar per step and run), m = 2d, B = 8."""
    import riskcurves as rc
    d = min(int(d), 128)
    problem = rc.MatrixPowerLaw(d, 2 * d, 1.5, 0.5, rc.Gaussian(0.1))
    if which == "muon":
        return problem, rc.Muon(0.02, batch=8)
    if which == "matrix_signsgd":
        return problem, rc.MatrixSignSGD(MATRIX_SIGNSGD_DEMO_LR, batch=8)
    return problem, rc.SignSVD(0.02, batch=8)


MATRIX_SIGNSGD_DEMO_LR = 1e-3


def _cmd_phase_diagram(a):
    """Compute (or, with --from-json, reload) the large-d phase plane; write PNG + JSON.

    Default: `studies.phase_plane` on the coarse grid at d = 1e6 and 1e9 (horizons
    k = tr K J^α/B, J ≤ d/4, each method at its best constant step size per horizon),
    drawn by `plotting.plot_phase_plane` with the derived boundaries and inset curves.
    `--d` (one dimension, fixed horizons k ≤ --steps) runs the finite-d protocol of
    `studies.phase_grid` instead."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from riskcurves.plotting import plot_phase_plane
    from riskcurves.studies import compare_in_plane, phase_grid, phase_plane
    t0 = time.perf_counter()
    plane = None
    if a.from_json:
        try:
            with open(a.from_json) as f:
                data = json.load(f)
        except (OSError, json.JSONDecodeError) as e:
            raise ValueError(f"--from-json: cannot read {a.from_json!r}: {e}") from None
        planes = {k: v for k, v in data.items() if k.startswith("plane")} \
            if isinstance(data, dict) else {}
        if isinstance(data, dict) and "ds" in data:
            planes = {"plane": data}
        if planes:
            key = a.plane if a.plane in planes else sorted(planes)[0]
            plane = planes[key]
        else:
            grids = data["grids"] if isinstance(data, dict) and "grids" in data else [data]
            if not all(isinstance(g, dict) and "phase" in g for g in grids):
                raise ValueError(f"--from-json: {a.from_json!r} holds no phase grid")
    else:
        plane_mode = a.d is None
        coarse = plane_mode and a.alphas is None and a.betas is None and a.n_alpha is None
        alphas = _phase_axis("alpha", [0.5, 1.5] if coarse else a.alphas, a.alpha_min,
                             a.alpha_max, a.n_alpha or 3)
        betas = _phase_axis("beta", [0.25, 2.0] if coarse else a.betas, a.beta_min,
                            a.beta_max, a.n_beta or 3)
        for name, v, lo in (("--batch", a.batch, 1), ("--n-lr", a.n_lr, 3),
                            ("--k-min", a.k_min, 1), ("--n-fine", a.n_fine, 0),
                            ("--n-checkpoints", a.n_checkpoints, 3), ("--n-refine", a.n_refine, 0)):
            if v < lo:
                raise ValueError(f"{name} must be >= {lo}, got {v}")
        from tqdm import tqdm
        if plane_mode:
            ds = [int(x) for x in a.ds]
            if min(ds) < 16:
                raise ValueError(f"--ds must be >= 16, got {ds}")
            with tqdm(total=len(alphas) * len(betas) * len(ds), desc="phase plane",
                      unit="point", disable=None) as bar:
                def progress(d, i, j, sec):
                    bar.update(1)
                    bar.write(f"d={d:.0e} alpha={alphas[i]:g} beta={betas[j]:g}: {sec:.1f} s")

                methods = ("svd", "sgn", "muon") if a.muon else ("svd", "sgn")
                plane = phase_plane(alphas, betas, ds, a.batch, n_k=a.n_checkpoints,
                                    n_refine=a.n_refine, methods=methods, progress=progress)
            plane["seconds"] = time.perf_counter() - t0
        else:
            if a.d < 2:
                raise ValueError(f"--d must be >= 2, got {a.d}")
            if not a.steps > a.k_min:
                raise ValueError(f"--steps must be > --k-min ({a.k_min}), got {a.steps}")
            if not (a.sigma >= 0 and a.noise_ratio >= 0):
                raise ValueError(f"--sigma and --noise-ratio must be >= 0, got {a.sigma}, "
                                 f"{a.noise_ratio}")
            if a.sigma > 0 and a.noise_ratio > 0:
                raise ValueError("give at most one of --sigma and --noise-ratio")
            with tqdm(total=len(alphas) * len(betas), desc="phase grid", unit="point",
                      disable=None) as bar:
                def progress(i, j, sec):
                    bar.update(1)
                    bar.write(f"alpha={alphas[i]:g} beta={betas[j]:g}: {sec:.1f} s")

                g = phase_grid(
                    alphas, betas, d=a.d, batch=a.batch, sigma=a.sigma, k_max=a.steps,
                    n_lr=a.n_lr, noise_ratio=a.noise_ratio or None, k_min=a.k_min,
                    n_checkpoints=a.n_checkpoints, n_fine=a.n_fine, lr_span=1e4,
                    n_nodes=80, progress=progress)
            g.update(d=a.d, batch=a.batch, sigma=a.sigma, noise_ratio=a.noise_ratio,
                     seconds=time.perf_counter() - t0)
            grids = [g]
    os.makedirs(a.out, exist_ok=True)
    if plane is not None:
        fig = plot_phase_plane(plane)
        stem = "phase_diagram_" + "_".join(f"d{int(d)}_B{plane['batch']}_r0_s0"
                                           for d in plane["ds"])
        path = os.path.join(a.out, stem + ".png")
        fig.savefig(path, dpi=120)
        plt.close(fig)
        with open(os.path.join(a.out, stem + ".json"), "w") as f:
            json.dump(plane, f)
        for d in plane["ds"]:
            print(f"d={int(d)} B={plane['batch']}: phase (rows alpha {plane['alphas']}, cols "
                  f"beta {plane['betas']}; +1 SignSVD better, -1 SignSGD better, 0 trade-off):")
            print(np.asarray(plane[str(d)]["phase"]))
        print("derived (d -> inf):")
        print(np.asarray(plane["predicted"]))
        if any(x is not None for d in plane["ds"]
               for row in (plane[str(d)].get("muon_env") or []) for x in row):
            for d, c in compare_in_plane(plane, "muon", "sgn").items():
                print(f"d={int(d)}: Muon vs SignSGD (+1 Muon better, -1 SignSGD better, 0 "
                      "trade-off) and the median number of SignSGD steps per Muon step for "
                      "equal risk:")
                print(np.asarray(c["phase"], dtype=object))
                print(np.asarray([[None if x is None else round(x, 2) for x in row]
                                  for row in c["step_ratio"]], dtype=object))
        print(f"figure: {path}")
        return 0
    n = len(grids)
    fig, axes = plt.subplots(1, n, figsize=(5.2 * n, 4.4), squeeze=False)
    for ax, g in zip(axes[0], grids):
        _plot_phase(ax, g)
    fig.tight_layout()
    stem = "phase_diagram_" + "_".join(
        f"d{g.get('d')}_B{g.get('batch')}_r{_slug(float(g.get('noise_ratio') or 0))}"
        f"_s{_slug(float(g.get('sigma') or 0))}" for g in grids)
    path = os.path.join(a.out, stem + ".png")
    fig.savefig(path, dpi=110)
    plt.close(fig)
    with open(os.path.join(a.out, stem + ".json"), "w") as f:
        json.dump(grids[0] if n == 1 else {"grids": grids}, f)
    for g in grids:
        print(f"d={g.get('d')} B={g.get('batch')} noise_ratio={g.get('noise_ratio', 0)}: "
              "phase (rows alpha, cols beta; +1 SignSVD better, -1 SignSGD better, "
              "0 trade-off):")
        print(np.asarray(g["phase"]))
    print(f"figure: {path}")
    return 0


def _phase_axis(name, values, lo, hi, n):
    if values is not None:
        vals = np.asarray(values, np.float64)
    else:
        if n < 1:
            raise ValueError(f"--n-{name} must be >= 1, got {n}")
        vals = np.linspace(lo, hi, n)
    if not np.all(np.isfinite(vals)) or (name == "alpha" and np.any(vals <= 0)):
        raise ValueError(f"--{name}s must be finite{' and > 0' if name == 'alpha' else ''},"
                         f" got {vals.tolist()}")
    return vals


_PHASE_STYLE = {1: ("#4c72b0", "SignSVD better"), -1: ("#dd8452", "SignSGD better"),
                0: ("#8c8c8c", "trade-off (ordering flips)")}


def _plot_phase(ax, g):
    """Phase map: cell colour = phase (legend), text = log(P_SignSVD/P_SignSGD) at the
    last horizon (and the flip horizon k* for trade-off cells)."""
    from matplotlib.colors import ListedColormap
    from matplotlib.patches import Patch

    alphas, betas = np.asarray(g["alphas"]), np.asarray(g["betas"])
    phase = np.asarray(g["phase"])
    cmap = ListedColormap([_PHASE_STYLE[v][0] for v in (-1, 0, 1)])
    ax.pcolormesh(np.arange(len(betas)), np.arange(len(alphas)), phase, cmap=cmap,
                  vmin=-1.5, vmax=1.5, shading="nearest")
    for i in range(len(alphas)):
        for j in range(len(betas)):
            txt = f"{g['final_log_ratio'][i][j]:+.2f}"
            fk = g.get("flip_k", [[None] * len(betas)] * len(alphas))[i][j]
            if phase[i, j] == 0 and fk is not None:
                txt += f"\nk*={fk:.0f}"
            ax.text(j, i, txt, ha="center", va="center", fontsize=7, color="white")
    ax.set_xticks(range(len(betas)), [f"{b:g}" for b in betas])
    ax.set_yticks(range(len(alphas)), [f"{x:g}" for x in alphas])
    ax.set_xlabel("β (target row energies D_j(0) = j^-β)")
    ax.set_ylabel("α (eigenvalues λ_j = j^-α)")
    nr = g.get("noise_ratio") or 0
    noise = f", mσ²/2P0={nr:g}" if nr else (f", σ={g['sigma']:g}" if g.get("sigma") else "")
    ax.set_title(f"SignSVD vs SignSGD (generic K), d={g.get('d')}, B={g.get('batch')}"
                 f"{noise}\nk in [{g['k'][0]}, {g['k'][-1]}]; text: log(P_SVD/P_SGN) at "
                 "k_max", fontsize=8)
    ax.legend(handles=[Patch(color=c, label=lab) for c, lab in _PHASE_STYLE.values()],
              fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=3)


def _add_phase_parser(sub):
    q = sub.add_parser("phase-diagram", help="SignSVD vs SignSGD phases in (alpha, beta)",
                       description="SignSVD vs matrix SignSGD (generic K) at their best "
                                   "constant step sizes per horizon, on power laws "
                                   "λ_j = j^-alpha, D_j(0) = j^-beta (compressed spectra). "
                                   "Default: the large-d plane at --ds with horizons "
                                   "k = tr K J^alpha/B, J <= d/4 (docs/theory/phases.md); "
                                   "--d: the finite-d protocol (k <= --steps). "
                                   "Writes phase_diagram_<parameters>.png and .json.")
    q.add_argument("--ds", type=float, nargs="+", default=[1e6, 1e9],
                   help="dimensions of the large-d plane (compressed spectra)")
    q.add_argument("--d", type=int, default=None,
                   help="one dimension: the finite-d protocol with horizons k <= --steps "
                        "(default: the large-d plane at --ds)")
    q.add_argument("--batch", type=int, default=16, help="minibatch size B")
    q.add_argument("--muon", action="store_true",
                   help="also Muon (Newton-Schulz, no momentum) in the plane, compared with "
                        "SignSGD (about 1.5x the time; docs/theory/phases.md section 4)")
    q.add_argument("--n-refine", type=int, default=2,
                   help="halvings of the step-size grid around each horizon's best")
    q.add_argument("--sigma", type=float, default=0.0,
                   help="(--d) label-noise standard deviation σ (excludes --noise-ratio)")
    q.add_argument("--noise-ratio", type=float, default=0.0,
                   help="(--d) label noise set by m σ² = ratio · 2 P0 (excludes --sigma)")
    q.add_argument("--steps", type=int, default=10_000, help="(--d) largest horizon k_max")
    q.add_argument("--k-min", type=int, default=10, help="(--d) ignore horizons below this")
    q.add_argument("--n-checkpoints", type=int, default=17,
                   help="log-spaced horizons where the two are compared")
    q.add_argument("--n-lr", type=int, default=8, help="(--d) coarse step sizes per method")
    q.add_argument("--n-fine", type=int, default=24,
                   help="(--d) fine step sizes around the best coarse one (0: coarse only)")
    q.add_argument("--alphas", type=float, nargs="+", default=None,
                   help="explicit alpha grid (overrides --alpha-min/--alpha-max/--n-alpha)")
    q.add_argument("--betas", type=float, nargs="+", default=None,
                   help="explicit beta grid (overrides --beta-min/--beta-max/--n-beta)")
    q.add_argument("--alpha-min", type=float, default=0.5, help="smallest alpha of the grid")
    q.add_argument("--alpha-max", type=float, default=2.0, help="largest alpha of the grid")
    q.add_argument("--n-alpha", type=int, default=None,
                   help="alpha grid points (default 3; without --alphas/--n-alpha the "
                        "plane runs the coarse grid alpha in {0.5, 1.5}, beta in {0.25, 2})")
    q.add_argument("--beta-min", type=float, default=0.25, help="smallest beta of the grid")
    q.add_argument("--beta-max", type=float, default=2.0, help="largest beta of the grid")
    q.add_argument("--n-beta", type=int, default=None, help="beta grid points (default 3)")
    q.add_argument("--from-json", default=None, metavar="PATH",
                   help="replot a saved plane or grid, e.g. docs/theory/phases.json")
    q.add_argument("--plane", default="plane_B16",
                   help="with --from-json: which stored plane (plane_B16, plane_B256)")
    q.add_argument("--out", default="riskcurves-out", help="output folder")
    q.set_defaults(fn=_cmd_phase_diagram)


_COARSE_PLRF = dict(nodes_per_decade=6, sub_ratio=1.3, n_top=24, pts_per_decade=30, n_arc=12,
                    j_exact=512)


def _cmd_scaling_law(a):
    """Compute-optimal frontier of SGD on PLRF at (alpha, beta); write PNG + JSON."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from riskcurves import studies
    if not (a.d_min >= 2 and a.d_max > a.d_min and a.d_num >= 3):
        raise ValueError(f"--d-min/--d-max/--d-num: need 2 <= d-min < d-max and d-num >= 3, "
                         f"got {a.d_min}, {a.d_max}, {a.d_num}")
    if not 0 < a.lr_fraction < 1:
        raise ValueError(f"--lr-fraction must be in (0, 1), got {a.lr_fraction}")
    if a.batch < 1:
        raise ValueError(f"--batch must be an integer >= 1, got {a.batch}")
    if not 0 <= a.momentum < 1:
        raise ValueError(f"--momentum must be in [0, 1), got {a.momentum}")
    ds = np.unique(np.round(np.logspace(np.log10(a.d_min), np.log10(a.d_max), a.d_num))
                   .astype(int))
    make = {"sgd": lambda: studies.sgd_at_fraction(a.lr_fraction, a.batch),
            "sgdm": lambda: studies.sgdm_at_fraction(a.lr_fraction, a.momentum, a.batch),
            "dana-decaying": lambda: studies.dana_at_fraction(a.alpha, "decaying", a.lr_fraction,
                                                              batch=a.batch),
            "dana-constant": lambda: studies.dana_at_fraction(a.alpha, "constant", a.lr_fraction,
                                                              batch=a.batch)}[a.optimizer]()
    t0 = time.perf_counter()
    r = studies.compute_optimal(a.alpha, a.beta, ds, optimizer=make, batch=a.batch,
                                v_ratio=a.v_ratio, horizon=a.horizon,
                                plrf_options=_COARSE_PLRF if a.coarse else None)
    pred = studies.paper_exponents(a.alpha, a.beta)
    phase = studies.plrf_phase(a.alpha, a.beta)
    print(f"PLRF alpha={a.alpha:g} beta={a.beta:g} (paper's convention), phase {phase}, "
          f"{a.optimizer} at {a.lr_fraction:g} x threshold, B={a.batch}"
          + ("" if a.optimizer == "sgd" else " (paper's formulas are for SGD)"))
    print(f"  loss exponent  L* ~ f^-eta: fitted {r.loss_exponent:.4f}, paper "
          f"{pred['loss']:.4f}")
    print(f"  size exponent  d* ~ f^xi : fitted {r.d_exponent:.4f}, paper {pred['d']:.4f}")
    os.makedirs(a.out, exist_ok=True)
    opt_tag = "" if a.optimizer == "sgd" else f"_{a.optimizer}"
    stem = f"scaling_law{opt_tag}_a{a.alpha:g}_b{a.beta:g}_B{a.batch}_lr{a.lr_fraction:g}"
    fig, ax = plt.subplots(1, 2, figsize=(10, 4))
    for i, d in enumerate(r.ds):
        ax[0].loglog(d * r.ks[1:] * r.batch, r.loss[i, 1:], lw=0.8, alpha=0.6,
                     label=f"d={d}" if i in (0, len(r.ds) - 1) else None)
    ax[0].loglog(r.flops, r.frontier, "k", lw=2,
                 label=f"frontier L*(f), fit f^-{r.loss_exponent:.3f}")
    ax[0].set(xlabel="flops f = d·k·B", ylabel="loss L(d, f/(dB))",
              title=f"PLRF α={a.alpha:g}, β={a.beta:g} (phase {phase}), {a.optimizer} B={a.batch}")
    ax[0].legend(fontsize=7)
    ax[1].loglog(r.flops, r.d_opt, "k")
    ax[1].set(xlabel="flops f", ylabel="compute-optimal d*(f)",
              title=f"d* ~ f^{r.d_exponent:.3f} (paper {pred['d']:.3f})")
    fig.tight_layout()
    fig.savefig(os.path.join(a.out, stem + ".png"), dpi=120)
    plt.close(fig)
    out = {"alpha": a.alpha, "beta": a.beta, "phase": phase, "optimizer": a.optimizer,
           "momentum": a.momentum, "batch": a.batch,
           "lr_fraction": a.lr_fraction, "loss_predicted": pred["loss"],
           "loss_fitted": r.loss_exponent, "d_predicted": pred["d"], "d_fitted": r.d_exponent,
           "fit_range": list(map(float, r.fit_range)), "ds": r.ds.tolist(),
           "flops": r.flops.tolist(), "frontier": r.frontier.tolist(),
           "d_opt": r.d_opt.tolist(), "seconds": time.perf_counter() - t0}
    with open(os.path.join(a.out, stem + ".json"), "w") as f:
        json.dump(out, f, indent=1)
    print(f"wrote {os.path.join(a.out, stem)}.png and .json")
    return 0


def _add_scaling_parser(sub):
    q = sub.add_parser("scaling-law", help="compute-optimal frontier on PLRF",
                       description="Compute-optimal scaling law of SGD on power-law random "
                                   "features (arXiv 2405.15074 conventions: data j^-alpha, "
                                   "target j^-beta): the frontier min_d L(d, f/(dB)), d*(f) "
                                   "and their fitted exponents vs the paper's formulas. "
                                   "Writes scaling_law_<parameters>.png and .json.")
    q.add_argument("--alpha", type=float, required=True,
                   help="data exponent (paper's alpha; required, no default)")
    q.add_argument("--beta", type=float, required=True,
                   help="target exponent (paper's beta; required, no default)")
    q.add_argument("--d-min", type=float, default=100, help="smallest model size d")
    q.add_argument("--d-max", type=float, default=1e5, help="largest model size d")
    q.add_argument("--d-num", type=int, default=7, help="model sizes, log-spaced")
    q.add_argument("--batch", type=int, default=1, help="minibatch size B")
    q.add_argument("--optimizer", choices=("sgd", "sgdm", "dana-decaying", "dana-constant"),
                   default="sgd", help="sgd; sgdm (heavy ball, --momentum); DANA (arXiv "
                   "2505.16098): decaying kappa=1/(2 alpha), g3=lr/2, or constant g3=lr/(2d)")
    q.add_argument("--momentum", type=float, default=0.9, help="momentum of sgdm")
    q.add_argument("--lr-fraction", type=float, default=0.5,
                   help="step size (DANA: gamma2) as a fraction of the stability threshold "
                        "(SGD's; sgdm: its own)")
    q.add_argument("--v-ratio", type=float, default=None,
                   help="data dimension v = ratio·d (default: v = infinity)")
    q.add_argument("--horizon", type=float, default=1e12, help="largest iteration count")
    q.add_argument("--coarse", action="store_true",
                   help="coarser spectral nodes (faster, about 1%% less accurate)")
    q.add_argument("--out", default="riskcurves-out", help="output folder")
    q.set_defaults(fn=_cmd_scaling_law)


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="riskcurves", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True, metavar="COMMAND",
                           parser_class=_Parser)
    d = sub.add_parser("demo", help="theory vs simulation for every optimizer",
                       description="Theory vs simulation for every optimizer on its default "
                                   "problem: prints a table of errors, writes demo.png (one "
                                   "panel per case) and demo.json.")
    d.add_argument("--out", default="riskcurves-out", help="output folder")
    d.add_argument("--d", type=int, default=1000,
                   help="dimension of the vector problems (matrix cases use min(d, 128))")
    d.add_argument("--n-runs", type=int, default=None,
                   help="simulated runs per case (default: per case, more runs at the early "
                        "checkpoints, so that the Monte-Carlo standard error is below 1%%)")
    d.add_argument("--steps", type=int, default=None,
                   help="horizon of every case; default per case (400 matrix, 4000 clipping, "
                        "2000 others)")
    d.add_argument("--seed", type=int, default=0, help="seed of the simulations")
    d.add_argument("--only", nargs="+", default=None, metavar="CASE",
                   help="run only these cases: " + ", ".join(c.name for c in DEMO_CASES))
    d.set_defaults(fn=_cmd_demo)
    c = sub.add_parser("compare", help="theory vs simulation for one optimizer",
                       description="ODE vs Monte-Carlo simulation for one optimizer and "
                                   "problem. Writes compare_<parameters>.png and .json.")
    _add_problem_args(c)
    _add_optimizer_args(c)
    c.add_argument("--steps", type=int, default=2000, help="horizon (iterations)")
    c.add_argument("--n-runs", type=int, default=32, help="simulated runs (>= 2)")
    c.add_argument("--out", default="riskcurves-out", help="output folder")
    c.set_defaults(fn=_cmd_compare)
    t = sub.add_parser("threshold", help="stability threshold of the step size",
                       description="Largest stable constant step size (SGD); optimizers "
                                   "whose risk cannot diverge say so.")
    _add_problem_args(t)
    _add_optimizer_args(t, with_hyperparameters=False)
    t.set_defaults(fn=_cmd_threshold)
    _add_phase_parser(sub)
    _add_scaling_parser(sub)
    return p


def main(argv=None) -> int:
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        a = parser.parse_args(argv)
    except SystemExit as e:  # usage error (one line already printed) or --help
        return e.code if isinstance(e.code, int) else 2
    a.given = {t.split("=", 1)[0] for t in argv if t.startswith("--")}  # typed options
    try:
        return a.fn(a)
    except ValueError as e:  # includes DivergenceError
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        print(f"riskcurves: error: {msg}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

