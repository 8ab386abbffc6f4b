"""Studies: what researchers do with curves — sweeps, tuned comparisons, phase
diagrams, schedule design, compute-optimal scaling laws.

This layer sits above `riskcurves.odes` and `riskcurves.simulate` (it may call
both; they never import it) and below the CLI. Every search is built on
`jax.vmap` (one compiled program per sweep) or `jax.grad` through `solve_ode`.
"""

from ._compare import ClipComparison as ClipComparison
from ._compare import compare_clipped_sgd as compare_clipped_sgd
from ._compare import tuned_comparison as tuned_comparison
from ._compression import compress_on_curve as compress_on_curve
from ._phases import classify as classify
from ._phases import compare_at_optimal_lr as compare_at_optimal_lr
from ._phases import compare_in_plane as compare_in_plane
from ._phases import compressed_power_law as compressed_power_law
from ._phases import fixed_power_law_nodes as fixed_power_law_nodes
from ._phases import flip_time as flip_time
from ._phases import local_drift_exponent as local_drift_exponent
from ._phases import phase_diagram as phase_diagram
from ._phases import phase_grid as phase_grid
from ._phases import phase_plane as phase_plane
from ._phases import phase_point as phase_point
from ._phases import signsgd_drift_rates as signsgd_drift_rates
from ._phases import step_ratio as step_ratio
from ._scaling import ScalingLaw as ScalingLaw  # noqa: E402
from ._scaling import compute_optimal as compute_optimal  # noqa: E402
from ._scaling import dana_at_fraction as dana_at_fraction  # noqa: E402
from ._scaling import dana_exponents as dana_exponents  # noqa: E402
from ._scaling import loss_exponent as loss_exponent  # noqa: E402
from ._scaling import paper_exponents as paper_exponents  # noqa: E402
from ._scaling import plrf_phase as plrf_phase  # noqa: E402
from ._scaling import sgd_at_fraction as sgd_at_fraction  # noqa: E402
from ._scaling import sgdm_at_fraction as sgdm_at_fraction  # noqa: E402
from ._schedule import optimize_schedule as optimize_schedule
from ._schedule import schedule_risk as schedule_risk
from ._sweep import best_lr as best_lr
from ._sweep import envelope as envelope
from ._sweep import sweep as sweep
