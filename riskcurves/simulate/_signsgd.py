"""SignSGD simulated with `optax.sign_sgd`: `Δ ← Δ − η(k) sign(g)` entrywise.

`g = (1/B) Σ_b x_b r_b` is formed by the engine; `optax.sign_sgd(lr)` is
`chain(scale_by_sign(), scale_by_learning_rate(lr))` (a schedule is evaluated
at the step count `k`, so step `k → k+1` uses `η(k)`).
"""

from __future__ import annotations

import optax

from ..optimizers import SignSGD
from ._registry import SimSpec, register


@register(SignSGD)
def _signsgd(optimizer: SignSGD, problem) -> SimSpec:
    return SimSpec(optax.sign_sgd(optimizer.lr), bounded=True)
