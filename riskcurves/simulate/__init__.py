"""Simulators: optax transformations run by one jitted, vmapped engine."""

from . import _adagrad as _adagrad  # registers AdaGradNorm
from . import _clipping as _clipping  # registers ClippedSGD
from . import _dana as _dana  # registers DANA
from . import _linesearch as _linesearch  # registers LineSearch
from . import _sgd as _sgd  # registers SGD
from . import _signsgd as _signsgd  # registers SignSGD
from . import _spectral as _spectral  # registers SignSVD, Muon, MatrixSignSGD
from ._adagrad import adagrad_norm as adagrad_norm
from ._dana import dana as dana
from ._engine import simulate as simulate
from ._engine import simulate_runs as simulate_runs
from ._engine import simulate_tiered as simulate_tiered
from ._linesearch import oracle_line_search as oracle_line_search
from ._registry import SimSpec as SimSpec
from ._registry import register as register
from ._registry import transform_for as transform_for
