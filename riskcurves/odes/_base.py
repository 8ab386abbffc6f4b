"""`AbstractTheory`: the interface every optimizer's ODE implements."""

from __future__ import annotations

import functools
import inspect
from typing import ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp

__all__ = ["AbstractTheory", "AbstractRateTheory", "theory_for", "register", "build_theory"]


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
    - `increment(k, y)`: the exact expected one-step change `E[y_{k+1}] − y_k`
      of the discrete dynamics (default: `vector_field`, i.e. the field *is* the
      one-step increment). Theories with `discrete_start = True` are run as this
      discrete map for the first `exact_steps` iterations (exact from `k = 1`)
      and then handed over to the ODE.
    - `residual(k, y)`: the residual of any fixed point solved inside the theory
      (default 0); the solver checks it at every checkpoint against
      `residual_tol` and reports `status="fixed_point_failed"` above it.

    Damping per state leaf is either diagonal (same shape as the leaf) or a
    stack of small blocks (`(n, p, p)` for a leaf `(n, p)`): see `ETD2`.
    """

    discrete_start: ClassVar[bool] = False
    # iterations of the exact map before the ODE when `exact_steps` is not given
    default_exact_steps: ClassVar[int] = 1024
    residual_tol: ClassVar[float] = 1e-6

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

    def field_and_damping(self, k, y, args):
        """`(vector_field, damping)` at one point (the integrator's step start);
        rate-form theories compute both from one `_rates` call."""
        return self.vector_field(k, y, args), self.damping(k, y, args)

    def increment(self, k, y):
        return self.vector_field(k, y, None)

    def residual(self, k, y):
        return jnp.zeros((), jnp.float64)

    def recursion(self, ks, *, rtol=1e-5, atol=1e-30, max_steps=100_000):
        """`(risk, lr, observables, code)` at the integer checkpoints `ks` in one pass,
        for theories that are exact recursions in `k` (then `solve_theory` skips the ODE
        solver; the tolerances are for any ODE a recursion hands over to, `code` a
        status code); `None` (the default) for ODEs."""
        return None


def _apply(a, y):
    """`a ⊙ y` (diagonal leaf) or `A_i y_i` per mode (block leaf `(n, p, p)`)."""
    if a.ndim == y.ndim + 1:
        return jnp.einsum("...ij,...j->...i", a, y)
    return a * y


class AbstractRateTheory(AbstractTheory):
    """A theory whose field is `dy/dk = −A(k, y) y + f(k, y)` (rate form).

    Subclasses implement `_rates(k, y) -> (A, f)` with pytrees like `y`: per leaf,
    `A` is diagonal rates `a >= 0` or per-mode blocks (`(n, p, p)` for an `(n, p)`
    leaf). The field and the damping handed to the exponential integrator both
    come from it. Diagonal rates are clipped at 0 in the damping (a negative rate
    is an instability the explicit part then carries).
    """

    def _rates(self, k, y):
        raise NotImplementedError

    @staticmethod
    def _field(a, f, y):
        return jax.tree.map(lambda ai, yi, fi: -_apply(ai, yi) + fi, a, y, f)

    @staticmethod
    def _damping(a, y):
        return jax.tree.map(lambda ai, yi: ai if ai.ndim == yi.ndim + 1
                            else jnp.clip(ai, 0.0, None), a, y)

    def vector_field(self, k, y, args):
        a, f = self._rates(k, y)
        return self._field(a, f, y)

    def damping(self, k, y, args):
        a, _ = self._rates(k, y)
        return self._damping(a, y)

    def field_and_damping(self, k, y, args):
        a, f = self._rates(k, y)
        return self._field(a, f, y), self._damping(a, y)


@functools.singledispatch
def theory_for(optimizer, problem) -> AbstractTheory:
    """The ODE (an `AbstractTheory`) for `optimizer` on `problem`.

    Each optimizer module registers its builder with `@register(ConfigType)`.
    """
    raise ValueError(
        f"no ODE is registered for optimizer {type(optimizer).__name__!r} on "
        f"{type(problem).__name__}"
    )


def build_theory(optimizer, problem, **options) -> AbstractTheory:
    """`theory_for(optimizer, problem, **options)` with the options checked against
    the registered builder's signature (a `ValueError` naming unknown options)."""
    builder = theory_for.dispatch(type(optimizer))
    if options and builder is not theory_for.registry[object]:
        params = inspect.signature(builder).parameters
        allowed = [n for n, p in list(params.items())[2:]
                   if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
        has_var = any(p.kind is p.VAR_KEYWORD for p in params.values())
        unknown = sorted(set(options) - set(allowed))
        if unknown and not has_var:
            raise ValueError(
                f"unknown option(s) {unknown} for the {type(optimizer).__name__} ODE on "
                f"{type(problem).__name__}; allowed: {allowed or 'none'}")
    return theory_for(optimizer, problem, **options)


def register(optimizer_type):
    """Decorator: register `fn(optimizer, problem) -> AbstractTheory`."""
    return theory_for.register(optimizer_type)
