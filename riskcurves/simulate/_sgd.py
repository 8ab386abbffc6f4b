"""SGD simulated with `optax.sgd` (the minibatch gradient is formed by the engine)."""

from __future__ import annotations

import optax

from ..optimizers import SGD
from ._registry import SimSpec, register


@register(SGD)
def _sgd(optimizer: SGD, problem) -> SimSpec:
    return SimSpec(optax.sgd(optimizer.lr))
