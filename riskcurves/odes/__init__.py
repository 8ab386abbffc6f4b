"""ODEs of the optimizers' risk curves (one module per optimizer) and `solve_ode`."""

from . import _sgd as _sgd  # registers SGD
from ._base import AbstractTheory as AbstractTheory
from ._base import register as register
from ._base import theory_for as theory_for
from ._sgd import SGDTheory as SGDTheory
from ._sgd import sgd_recursion as sgd_recursion
from ._solve import solve_ode as solve_ode
from ._solve import solve_theory as solve_theory
from ._solver import ETD2 as ETD2
