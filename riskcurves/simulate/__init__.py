"""Simulators: optax transformations run by one jitted, vmapped engine."""

from . import _sgd as _sgd  # registers SGD
from ._engine import simulate as simulate
from ._engine import simulate_runs as simulate_runs
from ._registry import SimSpec as SimSpec
from ._registry import register as register
from ._registry import transform_for as transform_for
