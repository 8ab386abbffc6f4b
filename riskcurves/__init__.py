"""riskcurves: exact risk curves of SGD-type optimizers in high dimensions.

    import riskcurves as rc
    prob = rc.PowerLaw(d=1000, alpha=1.5, beta=0.5, noise=rc.Gaussian(0.1))
    opt = rc.SGD(lr=0.4, batch=4)
    ks = rc.checkpoints(10_000)
    theory = rc.solve_ode(prob, opt, ks)
    sims = rc.simulate(prob, opt, ks, n_runs=64, seed=0)
    rc.plot_compare(theory, sims)

float64: importing riskcurves enables `jax_enable_x64` (the ODEs are solved in
float64; simulators pick their dtype explicitly, float32 by default).
"""

import jax as _jax

_jax.config.update("jax_enable_x64", True)

from . import odes as odes  # noqa: E402
from . import simulate as _simulate_pkg  # noqa: E402, F401
from . import studies as studies  # noqa: E402
from . import theory as theory  # noqa: E402
from ._compress import compress as compress  # noqa: E402
from ._curve import STATUS as STATUS  # noqa: E402
from ._curve import Curve as Curve  # noqa: E402
from ._curve import checkpoints as checkpoints  # noqa: E402
from ._curve import max_rel_err as max_rel_err  # noqa: E402
from ._errors import DivergenceError as DivergenceError  # noqa: E402
from ._errors import SolverError as SolverError  # noqa: E402
from ._plrf import PowerLawRF as PowerLawRF  # noqa: E402
from ._plrf import PowerLawRFData as PowerLawRFData  # noqa: E402
from .odes import momentum_recursion as momentum_recursion  # noqa: E402
from .odes import sgd_recursion as sgd_recursion  # noqa: E402
from .odes import solve_ode as solve_ode  # noqa: E402
from .optimizers import DANA as DANA  # noqa: E402
from .optimizers import SGD as SGD  # noqa: E402
from .optimizers import AbstractOptimizer as AbstractOptimizer  # noqa: E402
from .optimizers import AbstractSchedule as AbstractSchedule  # noqa: E402
from .optimizers import AdaGradNorm as AdaGradNorm  # noqa: E402
from .optimizers import ClippedSGD as ClippedSGD  # noqa: E402
from .optimizers import LineSearch as LineSearch  # noqa: E402
from .optimizers import MatrixSignSGD as MatrixSignSGD  # noqa: E402
from .optimizers import Muon as Muon  # noqa: E402
from .optimizers import PiecewiseLogLinear as PiecewiseLogLinear  # noqa: E402
from .optimizers import PowerDecay as PowerDecay  # noqa: E402
from .optimizers import SignSGD as SignSGD  # noqa: E402
from .optimizers import SignSVD as SignSVD  # noqa: E402
from .optimizers import WarmupStableDecay as WarmupStableDecay  # noqa: E402
from .optimizers import power_decay as power_decay  # noqa: E402
from .plotting import plot_compare as plot_compare  # noqa: E402
from .problems import AbstractNoise as AbstractNoise  # noqa: E402
from .problems import Flat as Flat  # noqa: E402
from .problems import Gaussian as Gaussian  # noqa: E402
from .problems import GaussianMixture as GaussianMixture  # noqa: E402
from .problems import MatrixPowerLaw as MatrixPowerLaw  # noqa: E402
from .problems import MatrixProblem as MatrixProblem  # noqa: E402
from .problems import Noiseless as Noiseless  # noqa: E402
from .problems import PowerLaw as PowerLaw  # noqa: E402
from .problems import Problem as Problem  # noqa: E402
from .problems import StudentT as StudentT  # noqa: E402
from .problems import TwoLevel as TwoLevel  # noqa: E402
from .problems import random_rotation as random_rotation  # noqa: E402
from .simulate import adagrad_norm as adagrad_norm  # noqa: E402
from .simulate import oracle_line_search as oracle_line_search  # noqa: E402
from .simulate import simulate as simulate  # noqa: E402
from .simulate import simulate_tiered as simulate_tiered  # noqa: E402
from .studies import compare_clipped_sgd as compare_clipped_sgd  # noqa: E402
from .theory import clipped_gain_ratio as clipped_gain_ratio  # noqa: E402

__version__ = "0.1.0"
