"""SGD simulated with `optax.sgd` (the minibatch gradient is formed by the engine).

`momentum=μ` uses optax's heavy-ball trace `v ← μ v + g`, `θ ← θ − η v`
(`nesterov=True`: `θ ← θ − η (g + μ v)`), exactly `optax.sgd(lr, μ, nesterov)`.
"""

from __future__ import annotations

import optax

from ..optimizers import SGD
from ._registry import SimSpec, register


@register(SGD)
def _sgd(optimizer: SGD, problem) -> SimSpec:
    if not optimizer.has_momentum:
        return SimSpec(optax.sgd(optimizer.lr))
    return SimSpec(optax.sgd(optimizer.lr, momentum=optimizer.momentum,
                             nesterov=optimizer.nesterov))
