"""Regenerate the step-count table of docs/theory/solver.md.

SGD on the default power law (d = 1000, α = 1.5, β = 0.5, σ = 0.1, η = 0.4, B = 4),
30 log-spaced checkpoints; for each horizon and rtol: solver steps, max relative error of
the risk against an rtol = 1e-8 solve, and the solve time after compilation.

    PYTHONPATH=. python3 docs/scripts/solver_steps.py
"""

import time

import numpy as np

import riskcurves as rc

prob = rc.PowerLaw(d=1000, alpha=1.5, beta=0.5, noise=rc.Gaussian(0.1))
opt = rc.SGD(lr=0.4, batch=4)
rtols = (1e-3, 1e-4, 1e-5, 1e-6)
print("| horizon | " + " | ".join(f"rtol {r:.0e}" for r in rtols) + " |")
print("|---------|" + "|".join("---" for _ in rtols) + "|")
for horizon in (10**4, 10**5, 10**6):
    ks = rc.checkpoints(horizon, 30)
    ref = rc.solve_ode(prob, opt, ks, rtol=1e-8, max_steps=2_000_000)
    cells = []
    for rtol in rtols:
        rc.solve_ode(prob, opt, ks, rtol=rtol)  # compile
        t0 = time.perf_counter()
        c = rc.solve_ode(prob, opt, ks, rtol=rtol)
        sec = time.perf_counter() - t0
        err = float(np.max(np.abs(c.risk[1:] / ref.risk[1:] - 1)))
        cells.append(f"{c.meta['solver']['num_steps']} ({err:.1e}), {sec:.2f} s")
    print(f"| {horizon:.0e} | " + " | ".join(cells) + f" |   (reference: "
          f"{ref.meta['solver']['num_steps']} steps)", flush=True)
