"""Clipped SGD simulated with `optax.chain(optax.clip_by_global_norm(c), optax.sgd(lr))`.

The engine forms the minibatch gradient `g = Xᵀ(XΔ − ε)/B`; the chain clips its
global norm to `c` and takes an SGD step: `Δ ← Δ − η(k)·g·min(1, c/‖g‖)`.
A leading pass-through transformation records whether the step was clipped
(`‖g‖ > c`); the engine reports its mean over runs as `extras["clip_frac"]`.
"""

from __future__ import annotations

from typing import NamedTuple

import jax.numpy as jnp
import optax

from ..optimizers import ClippedSGD
from ._registry import SimSpec, register


class _ClipFlagState(NamedTuple):
    clipped: jnp.ndarray


def _record_clipping(max_norm: float) -> optax.GradientTransformation:
    """Identity on the updates; its state holds `1.0` if `‖g‖ > max_norm` at the last step."""

    def init(params):
        return _ClipFlagState(jnp.zeros((), jnp.float32))

    def update(updates, state, params=None):
        flag = (optax.global_norm(updates) > max_norm).astype(jnp.float32)
        return updates, _ClipFlagState(flag)

    return optax.GradientTransformation(init, update)


@register(ClippedSGD)
def _clipped_sgd(optimizer: ClippedSGD, problem) -> SimSpec:
    tx = optax.chain(_record_clipping(optimizer.clip),
                     optax.clip_by_global_norm(optimizer.clip),
                     optax.sgd(optimizer.lr))

    def observe(state, delta, k):
        return {"clip_frac": state[0].clipped}

    return SimSpec(tx, observe, bounded=True)
