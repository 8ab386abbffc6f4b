"""Studies: what researchers do with curves — sweeps, tuned comparisons, phase
diagrams, schedule design, compute-optimal scaling laws.

This layer sits above `riskcurves.odes` and `riskcurves.simulate` (it may call
both; they never import it) and below the CLI.
"""
