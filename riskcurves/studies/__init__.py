"""Studies: what researchers do with curves — sweeps, tuned comparisons, phase
diagrams, schedule design, compute-optimal scaling laws.

This layer sits above `riskcurves.odes` and `riskcurves.simulate` (it may call
both; they never import it) and below the CLI.
"""

from ._scaling import ScalingLaw as ScalingLaw  # noqa: E402
from ._scaling import compute_optimal as compute_optimal  # noqa: E402
from ._scaling import paper_exponents as paper_exponents  # noqa: E402
from ._scaling import plrf_phase as plrf_phase  # noqa: E402
from ._scaling import sgd_at_fraction as sgd_at_fraction  # noqa: E402
