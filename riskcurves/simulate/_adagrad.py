"""AdaGrad-Norm as an optax transformation (optax has no AdaGrad-Norm).

    b²_{k+1} = b²_k + ‖g_k‖²,      θ_{k+1} = θ_k − (η(k)/b_{k+1}) g_k

`‖g‖` is the global (Euclidean) norm over all leaves. Reference: Ward, Wu & Bottou,
"AdaGrad stepsizes: sharp convergence over nonconvex landscapes" (ICML 2019).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from ..optimizers import AdaGradNorm
from ._registry import SimSpec, register

__all__ = ["adagrad_norm", "AdaGradNormState"]


class AdaGradNormState(NamedTuple):
    """`count`: steps taken; `b2`: accumulated `b²` (float64 when x64 is on)."""

    count: jax.Array
    b2: jax.Array


def adagrad_norm(learning_rate, b0: float) -> optax.GradientTransformation:
    """AdaGrad-Norm with base step `learning_rate` (float or schedule `k ↦ η(k)`).

    **Arguments:**

    - `learning_rate`: `η > 0` or a schedule evaluated at the step count.
    - `b0`: initial `b_0 > 0` (the state starts at `b² = b0²`).

    **Returns:** an `optax.GradientTransformation` with state `AdaGradNormState`.

    **Raises:** `ValueError` if `b0` is not finite and > 0.
    """
    if not isinstance(b0, jax.core.Tracer):
        b0 = float(b0)
        if not (math.isfinite(b0) and b0 > 0):
            raise ValueError(f"`b0` must be finite and > 0, got {b0!r}")

    def init_fn(params):
        del params
        return AdaGradNormState(jnp.zeros((), jnp.int32),
                                jnp.asarray(jnp.asarray(b0, jnp.float64) ** 2, jnp.float64))

    def update_fn(updates, state, params=None):
        del params
        sq = sum(jnp.sum(jnp.square(u)) for u in jax.tree.leaves(updates))
        b2 = state.b2 + sq.astype(state.b2.dtype)
        eta = learning_rate(state.count) if callable(learning_rate) else learning_rate
        scale = eta / jnp.sqrt(b2)
        new = jax.tree.map(lambda u: (-scale * u).astype(u.dtype), updates)
        return new, AdaGradNormState(state.count + 1, b2)

    return optax.GradientTransformation(init_fn, update_fn)


@register(AdaGradNorm)
def _adagrad(optimizer: AdaGradNorm, problem) -> SimSpec:
    def observe(state, delta, k):
        return {"lr": optimizer.lr_at(k) / jnp.sqrt(state.b2), "b2": state.b2}

    return SimSpec(adagrad_norm(optimizer.lr, optimizer.b0), observe)
