"""Registry: optimizer config -> optax transformation (+ what to record)."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import NamedTuple

import optax

__all__ = ["SimSpec", "transform_for", "register"]


class SimSpec(NamedTuple):
    """What the engine needs to simulate one optimizer.

    - `tx`: an optax `GradientTransformation`; the engine calls
      `tx.update(g, state, params)` with `params = Δ = θ − θ*` (every update rule
      here is translation invariant) and applies the updates.
    - `observe`: optional `(state, params, k) -> dict` of scalars recorded at
      checkpoints (e.g. the effective step size `lr`).
    - `bounded`: True if each update is bounded whatever the label noise (sign,
      clipping, polar factor): then the mean risk stays finite under
      infinite-variance noise, which the engine otherwise refuses.
    """

    tx: optax.GradientTransformation
    observe: Callable | None = None
    bounded: bool = False


@functools.singledispatch
def transform_for(optimizer, problem) -> SimSpec:
    """The `SimSpec` simulating `optimizer` on `problem` (registered per config type)."""
    raise ValueError(f"no simulator is registered for optimizer {type(optimizer).__name__!r}")


def register(optimizer_type):
    """Decorator: register `fn(optimizer, problem) -> SimSpec`."""
    return transform_for.register(optimizer_type)
