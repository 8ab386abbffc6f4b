"""Plots comparing theory and simulation (matplotlib is imported lazily).

`plot_compare` draws theory curves as lines and simulations as their mean with a
± 2 standard-error band, and says so in the legend; `run_title` writes a title with
the problem, the noise law, the optimizer and its hyperparameters.
"""

from __future__ import annotations

import numpy as np

__all__ = ["plot_compare", "run_title", "describe_noise", "describe_optimizer",
           "plot_phase_plane"]


def describe_noise(noise) -> str:
    """Short text for a label-noise law, e.g. `"Gaussian σ=0.1"`, `"Student-t ν=3, s=0.17"`."""
    name = type(noise).__name__
    if name == "Noiseless":
        return "noiseless"
    if name == "Gaussian":
        return f"Gaussian σ={float(noise.sigma):.3g}"
    if name == "StudentT":
        return f"Student-t ν={float(noise.nu):.3g}, scale={float(noise.scale):.3g}"
    if name == "GaussianMixture":
        return (f"mixture σ={float(noise.sigma):.3g}, outliers σ="
                f"{float(noise.outlier_sigma):.3g} w.p. {float(noise.p):.3g}")
    return name


def describe_optimizer(opt) -> str:
    """Optimizer and its numeric hyperparameters, e.g. `"sgd lr=0.4 B=4"`."""
    d = opt.describe()
    parts = [str(d.get("optimizer", type(opt).__name__))]
    no_lr = type(opt).__name__ == "LineSearch"  # the oracle sets η_k; `lr` is unused
    for key, val in d.items():
        if key in ("optimizer", "batch", "name") or (no_lr and key == "lr"):
            continue
        if isinstance(val, bool) or not isinstance(val, (int, float)):
            if key == "lr" and val is not None:
                parts.append("lr=schedule")
            continue
        parts.append(f"{key}={val:.3g}")
    parts.append(f"B={opt.batch}")
    return " ".join(parts)


def run_title(problem, opt) -> str:
    """Two-line title: optimizer and hyperparameters; problem and noise law."""
    return f"{describe_optimizer(opt)}\n{problem.label}, {describe_noise(problem.noise)}"


def plot_compare(*curves, ax=None, field: str = "risk", title: str | None = None,
                 time: str = "k", d: int | None = None, population: bool = False,
                 error: float | None = None, save: str | None = None, legend: bool = True):
    """Log-log plot: theory curves as lines, simulations as mean ± 2 s.e. bands.

    **Arguments:**

    - `curves`: `Curve`s (ODE / recursion drawn as lines, simulations as markers at
      the mean over runs with a shaded band of ± 2 standard errors of that mean).
    - `ax`: a matplotlib axis (a new figure if `None`).
    - `field`: `"risk"` or `"lr"` (the effective step-size curve).
    - `title`: the axis title (default: the optimizer, its hyperparameters, the
      problem and its noise, from the first curve's `meta` and `noise_variance`;
      `run_title(problem, optimizer)` names the noise law).
    - `time`: `"k"` (iterations) or `"k/d"` (rescaled time; needs `d`).
    - `population`: plot `P + ½E[ε²]` instead of the excess risk `P`.
    - `error`: a max relative error to print in the corner (e.g. `rc.max_rel_err(...)`).
    - `save`: a file name: save the figure there (so a script needs no `plt.show()`).
    - `legend`: draw the legend (a figure with many panels may draw one for all).

    **Returns:** the axis (`ax.figure` is the figure).
    """
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(6.4, 4.4))
    for c in curves:
        k = np.asarray(c.k, float)
        if time == "k/d":
            dd = d or c.meta.get("d") or 1
            k = k / dd
        y = np.asarray(c.risk if field == "risk" else c.lr, float)
        if field == "risk" and population:
            y = y + 0.5 * c.noise_variance
        mask = k > 0
        if c.kind == "simulation":
            n = c.meta.get("n_runs")
            runs = f", {n} runs" if n else ""
            band = c.stderr is not None and field == "risk"
            label = f"simulation: {c.label} (mean{runs}{', band ± 2 s.e.' if band else ''})"
            (line,) = ax.plot(k[mask], y[mask], "o", ms=3, alpha=0.8, label=label)
            if band:
                se = np.asarray(c.stderr)[mask]
                ax.fill_between(k[mask], np.clip(y[mask] - 2 * se, 1e-300, None),
                                y[mask] + 2 * se, color=line.get_color(), alpha=0.25)
        else:
            kind = "exact recursion" if c.kind == "recursion" else "theory"
            ax.plot(k[mask], y[mask], "-", lw=1.8, label=f"{kind}: {c.label}")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("iteration k" if time == "k" else "time k/d")
    if field == "risk":
        ax.set_ylabel("population risk R(k)" if population else "excess risk P(k)")
    else:
        ax.set_ylabel("effective step size η_k")
    if title is None and curves:
        m = curves[0].meta
        hp = " ".join(f"{key}={val:g}" for key, val in m.items()
                      if key in ("lr", "clip", "b0", "momentum") and isinstance(val, (int, float))
                      and not isinstance(val, bool))
        nv = float(curves[0].noise_variance)
        noise = m.get("noise") or (f"noise E[ε²]={nv:.3g}" if nv > 0 else "noiseless")
        title = (f"{m.get('optimizer', '')} {hp} B={m.get('batch', '?')}\n"
                 f"{m.get('problem', '')}, {noise}")
    if title:
        ax.set_title(title, fontsize=9)
    if error is not None:
        ax.text(0.02, 0.03, f"max rel err (k ≥ 1): {error:.3f}", transform=ax.transAxes,
                fontsize=8, va="bottom")
    ax.grid(True, which="both", alpha=0.3)
    if legend:
        ax.legend(fontsize=7, loc="best")
    if save is not None:
        ax.figure.tight_layout()
        ax.figure.savefig(save, dpi=110)
    return ax


_PHASE_COLORS = {1: ("#4c72b0", "SignSVD better at every horizon"),
                 -1: ("#dd8452", "SignSGD better at every horizon"),
                 0: ("#8c8c8c", "trade-off (ordering flips)")}


def _edges(v):
    v = np.asarray(v, np.float64)
    if v.size == 1:
        return np.array([v[0] - 0.5, v[0] + 0.5])
    mid = 0.5 * (v[1:] + v[:-1])
    return np.concatenate([[2 * v[0] - mid[0]], mid, [2 * v[-1] - mid[-1]]])


def plot_phase_plane(res, d=None, fig=None, insets: bool = True):
    """The `(α, β)` phase plane of `riskcurves.studies.phase_plane` output `res`.

    Cells (left half): the computed phase over all horizons `J ≤ d/4` at dimension `d`
    (default: the largest computed); right half: the phase over the bulk horizons
    `J ≤ √d` (pale yellow: a tie); text: the range of the log ratio;
    a black dot marks cells whose phase differs at another computed `d`. Dashed lines:
    the asymptotic boundaries `α = 1` and `α + β = 1` (docs/theory/phases.md §2).
    Insets: both methods' tuned risk envelopes against `J` (modes learned,
    `k = tr K J^α/B`) for the cell with the largest `|log ratio|` of each phase present.
    Returns the figure."""
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    ds = [int(x) for x in res["ds"]]
    d = max(ds) if d is None else int(d)
    g = res[str(d)]
    al, be = np.asarray(res["alphas"]), np.asarray(res["betas"])
    ph = np.asarray([[np.nan if v is None else v for v in row] for row in g["phase"]])
    if fig is None:
        fig = plt.figure(figsize=(9.5, 6.0))
    ax = fig.add_axes([0.08, 0.22, 0.50, 0.66])
    from matplotlib.patches import Rectangle
    eb, ea = _edges(be), _edges(al)
    for i in range(len(al)):
        for j in range(len(be)):
            if np.isnan(ph[i, j]):
                continue
            w, h = eb[j + 1] - eb[j], ea[i + 1] - ea[i]
            ax.add_patch(Rectangle((eb[j], ea[i]), w / 2, h, color=_PHASE_COLORS[ph[i, j]][0]))
            bulk = 2 if g.get("tie_bulk", [[False] * len(be)] * len(al))[i][j] else \
                g.get("phase_bulk", [[ph[i, j]] * len(be)] * len(al))[i][j]
            ax.add_patch(Rectangle((eb[j] + w / 2, ea[i]), w / 2, h,
                                   color=_PHASE_COLORS.get(bulk, ("#e9dca0",))[0]))
    for i, a in enumerate(al):
        for j, b in enumerate(be):
            if g["phase"][i][j] is None:  # not computed
                ax.text(b, a, "not\ncomputed", ha="center", va="center", fontsize=6.5)
                continue
            bulk = g.get("phase_bulk", [[None] * len(be)] * len(al))[i][j]
            tie = g.get("tie_bulk", [[False] * len(be)] * len(al))[i][j]
            tag = "=" if tie else {1: "SVD", -1: "SGN", 0: "flip", None: "?"}[bulk]
            ax.text(b, a, f"{g['min_log_ratio'][i][j]:+.2f}…{g['max_log_ratio'][i][j]:+.2f}"
                    f"\nbulk: {tag}", ha="center", va="center", fontsize=6.5, color="white",
                    bbox=dict(facecolor="black", alpha=0.25, lw=0))
            if any(res[str(o)]["phase"][i][j] not in (None, g["phase"][i][j]) for o in ds):
                ax.plot(b + 0.3 * np.diff(_edges(be))[j], a, "k.", ms=5)
    bb = np.linspace(_edges(be)[0], _edges(be)[-1], 50)
    ax.plot(bb, np.ones_like(bb), "k--", lw=1.2)
    ax.plot(bb, 1 - bb, "k:", lw=1.2)
    ax.set_xlim(_edges(be)[0], _edges(be)[-1])
    ax.set_ylim(_edges(al)[0], _edges(al)[-1])
    ax.set_xlabel("β  (target row energies D_j(0) = j^-β)")
    ax.set_ylabel("α  (eigenvalues λ_j = j^-α)")
    ax.set_title(f"SignSVD vs SignSGD (generic K), tuned constant η per horizon\n"
                 f"d={d:.0e}, B={res['batch']}, k = trK·J^α/B; left half: phase over "
                 "J ≤ d/4, right half: over the bulk J ≤ √d;\n"
                 "text: min…max log(P_SVD/P_SGN) over J ≤ d/4", fontsize=8)
    handles = [Patch(color=c, label=lab) for c, lab in _PHASE_COLORS.values()]
    handles += [Patch(color="#e9dca0", label="tie (|log ratio| ≤ 0.05)")]
    handles += [plt.Line2D([], [], color="k", ls="--", label="α = 1 (derived)"),
                plt.Line2D([], [], color="k", ls=":", label="α + β = 1 (derived)")]
    ax.legend(handles=handles, fontsize=6.5, loc="upper center",
              bbox_to_anchor=(0.5, -0.1), ncol=2)
    if insets and "svd_env" in g:
        y = 0.97
        for p in (1, 0, -1):
            cells = [(abs(g["final_log_ratio"][i][j]) + abs(g["max_log_ratio"][i][j]
                      - g["min_log_ratio"][i][j]), i, j)
                     for i in range(len(al)) for j in range(len(be)) if g["phase"][i][j] == p]
            if not cells:
                continue
            _, i, j = max(cells)
            y -= 0.31
            iax = fig.add_axes([0.68, y + 0.04, 0.29, 0.2])
            J = np.asarray(g["J"][i][j])
            iax.loglog(J, g["svd_env"][i][j], color=_PHASE_COLORS[1][0], label="SignSVD")
            iax.loglog(J, g["sgn_env"][i][j], color=_PHASE_COLORS[-1][0], label="SignSGD")
            if g.get("muon_env") and g["muon_env"][i][j] is not None:
                iax.loglog(J, g["muon_env"][i][j], color="k", ls=":", label="Muon")
            iax.set_title(f"α={al[i]:g}, β={be[j]:g} ({_PHASE_COLORS[p][1].split(' ')[0]})",
                          fontsize=7)
            iax.tick_params(labelsize=6)
            iax.set_ylabel("tuned P", fontsize=6)
            if y < 0.1 or p == -1:
                iax.set_xlabel("J (modes learned)", fontsize=6)
            iax.legend(fontsize=5.5)
    return fig
