"""DANA as an optax `GradientTransformation` (the simulator's update rule).

`y ← (1 − Δ(k)) y + g`, update `−(γ2(k) g + γ3(k) y)` with `Δ(k) = δ/(δ + k)`,
`γ3(k) = g3 (1 + k)^(−κ)` and `k` the step count (0 at the first update): the
update of the authors' optax code for arXiv:2505.16098 with `γ1 = 1`.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from ..optimizers import DANA
from ._registry import SimSpec, register

__all__ = ["dana", "DanaState"]


class DanaState(NamedTuple):
    count: jax.Array  # int32 step count k
    y: optax.Updates  # momentum buffer


def _value(x, k):
    return x(k) if callable(x) else x


def dana(learning_rate, g3, delta=8.0, kappa=0.0) -> optax.GradientTransformation:
    """DANA: `y_{k+1} = (1 − δ/(δ + k)) y_k + g_k`, `θ_{k+1} = θ_k − γ2(k) g_k −
    g3 (1 + k)^(−κ) y_{k+1}`.

    **Arguments:** `learning_rate` `γ2` (a float or a schedule `k ↦ γ2(k)`), `g3`,
    `delta` `δ > 0`, `kappa` `κ >= 0` (scalars or arrays).

    **Returns:** an `optax.GradientTransformation` with state `DanaState`.
    """

    def init(params):
        return DanaState(count=jnp.zeros((), jnp.int32),
                         y=jax.tree.map(jnp.zeros_like, params))

    def update(updates, state, params=None):
        del params
        k = state.count.astype(jnp.float64)
        keep = 1.0 - delta / (delta + k)
        g2 = _value(learning_rate, k)
        c3 = g3 * (1.0 + k) ** (-kappa)
        y = jax.tree.map(lambda m, g: (keep * m + g).astype(m.dtype), state.y, updates)
        out = jax.tree.map(lambda m, g: (-(g2 * g + c3 * m)).astype(g.dtype), y, updates)
        return out, DanaState(count=optax.safe_increment(state.count), y=y)

    return optax.GradientTransformation(init, update)


@register(DANA)
def _dana(optimizer: DANA, problem) -> SimSpec:
    return SimSpec(dana(optimizer.lr, optimizer.g3, optimizer.delta, optimizer.kappa))
