"""`AbstractTheory`: the interface every optimizer's ODE implements."""

from __future__ import annotations

import functools

import equinox as eqx
import jax
import jax.numpy as jnp

__all__ = ["AbstractTheory", "AbstractRateTheory", "theory_for", "register"]


class AbstractTheory(eqx.Module):
    """Deterministic dynamics `dy/dk = vector_field(k, y)` in iteration time `k`.

    Subclasses (one module per optimizer) implement:

    - `init_state()`: the state `y(0)` (a pytree of float64 arrays).
    - `vector_field(k, y, args)`: `dy/dk`.
    - `damping(k, y, args)`: a non-negative pytree `a` like `y` such that the
      stiff part of the field is `−a ⊙ y` (the exponential integrator treats it
      exactly). Default: zero (no stiff part).
    - `risk(y)`: excess risk `P`.
    - `lr(k, y)`: effective step size at `k`.
    - `observables(k, y)`: other named scalars saved at checkpoints.
    """

    def init_state(self):
        raise NotImplementedError

    def vector_field(self, k, y, args):
        raise NotImplementedError

    def damping(self, k, y, args):
        return jax.tree.map(jnp.zeros_like, y)

    def risk(self, y):
        raise NotImplementedError

    def lr(self, k, y):
        return jnp.nan

    def observables(self, k, y) -> dict:
        return {}

    def recursion(self, ks):
        """`(risk, lr, observables)` at the integer checkpoints `ks` in one pass, for
        theories that are exact recursions in `k` (then `solve_theory` skips the ODE
        solver); `None` (the default) for ODEs."""
        return None


class AbstractRateTheory(AbstractTheory):
    """A theory whose field is `dy/dk = −a(k, y) ⊙ y + f(k, y)` with `a >= 0`.

    Subclasses implement `_rates(k, y) -> (a, f)`; the field and the damping
    handed to the exponential integrator both come from it.
    """

    def _rates(self, k, y):
        raise NotImplementedError

    def vector_field(self, k, y, args):
        a, f = self._rates(k, y)
        return -a * y + f

    def damping(self, k, y, args):
        return self._rates(k, y)[0]


@functools.singledispatch
def theory_for(optimizer, problem) -> AbstractTheory:
    """The ODE (an `AbstractTheory`) for `optimizer` on `problem`.

    Each optimizer module registers its builder with `@register(ConfigType)`.
    """
    raise ValueError(
        f"no ODE is registered for optimizer {type(optimizer).__name__!r} on "
        f"{type(problem).__name__}"
    )


def register(optimizer_type):
    """Decorator: register `fn(optimizer, problem) -> AbstractTheory`."""
    return theory_for.register(optimizer_type)
