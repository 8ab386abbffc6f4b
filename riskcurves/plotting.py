"""Plots comparing theory and simulation (matplotlib is imported lazily)."""

from __future__ import annotations

import numpy as np

__all__ = ["plot_compare"]


def plot_compare(*curves, ax=None, field: str = "risk", title: str | None = None,
                 time: str = "k", d: int | None = None, population: bool = False):
    """Log-log plot: theory curves as lines, simulations as mean ± 2 s.e. bands.

    **Arguments:**

    - `curves`: `Curve`s (ODE / recursion drawn as lines, simulations as bands).
    - `ax`: a matplotlib axis (a new figure if `None`).
    - `field`: `"risk"` or `"lr"` (the effective step-size curve).
    - `time`: `"k"` (iterations) or `"k/d"` (rescaled time; needs `d`).
    - `population`: plot `P + ½E[ε²]` instead of the excess risk `P`.

    **Returns:** the axis.
    """
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(6, 4))
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
            (line,) = ax.plot(k[mask], y[mask], "o", ms=3, alpha=0.8, label=c.label)
            if c.stderr is not None and field == "risk":
                se = np.asarray(c.stderr)[mask]
                ax.fill_between(k[mask], np.clip(y[mask] - 2 * se, 1e-300, None),
                                y[mask] + 2 * se, color=line.get_color(), alpha=0.25)
        else:
            ax.plot(k[mask], y[mask], "-", lw=1.8, label=c.label)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("iteration k" if time == "k" else "time k/d")
    if field == "risk":
        ax.set_ylabel("population risk R(k)" if population else "excess risk P(k)")
    else:
        ax.set_ylabel("effective step size η_k")
    if title:
        ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    return ax
