"""ODEs of the optimizers' risk curves (one module per optimizer) and `solve_ode`."""

from . import _adagrad as _adagrad  # registers AdaGradNorm
from . import _clipping as _clipping  # registers ClippedSGD
from . import _dana as _dana  # registers DANA
from . import _linesearch as _linesearch  # registers LineSearch
from . import _matrix_signsgd as _matrix_signsgd  # registers MatrixSignSGD
from . import _muon as _muon  # registers Muon
from . import _sgd as _sgd  # registers SGD
from . import _signsgd as _signsgd  # registers SignSGD
from . import _signsvd as _signsvd  # registers SignSVD
from ._adagrad import AdaGradNormTheory as AdaGradNormTheory
from ._base import AbstractTheory as AbstractTheory
from ._base import register as register
from ._base import theory_for as theory_for
from ._clipping import ClippedSGDTheory as ClippedSGDTheory
from ._clipping import ClippedSGDTopModes as ClippedSGDTopModes
from ._dana import DANATheory as DANATheory
from ._linesearch import LineSearchTheory as LineSearchTheory
from ._linesearch import LineSearchTopModes as LineSearchTopModes
from ._momentum import MomentumSGDTheory as MomentumSGDTheory
from ._momentum import momentum_recursion as momentum_recursion
from ._sgd import SGDTheory as SGDTheory
from ._sgd import sgd_recursion as sgd_recursion
from ._signsgd import SignSGDDiagonalTheory as SignSGDDiagonalTheory
from ._signsgd import SignSGDGeneralTheory as SignSGDGeneralTheory
from ._signsgd import SignSGDTopModes as SignSGDTopModes
from ._solve import integrate as integrate
from ._solve import solve_ode as solve_ode
from ._solve import solve_ode_sweep as solve_ode_sweep
from ._solve import solve_theory as solve_theory
from ._solver import ETD2 as ETD2
from ._topmodes import AbstractTopModeTheory as AbstractTopModeTheory
