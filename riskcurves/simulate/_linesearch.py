"""Oracle exact line search as an optax transformation.

    η_k = argmin_η E[R(θ_k − η g_k) | θ_k]
        = ΔᵀK²Δ / ((1 + 1/B) ΔᵀK³Δ + tr(K²)(2P + σ²)/B),     θ_{k+1} = θ_k − η_k g_k

computed from the true covariance `K = U diag(λ) Uᵀ` of the problem and the current
`params = Δ = θ − θ*` (the engine passes Δ; any orthogonal `U`, so rotated K works).
`σ² = E[ε²]` is the problem's noise variance. Derivation: `docs/theory/adagrad.md`.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from ..optimizers import LineSearch, check_batch
from ._registry import SimSpec, register

__all__ = ["oracle_line_search", "LineSearchState"]


class LineSearchState(NamedTuple):
    """`lr`: the oracle step used by the last update (0 before the first)."""

    lr: jax.Array


def _oracle_step(problem, batch, delta):
    lam = jnp.asarray(problem.eigenvalues)
    if problem.eigenvectors is not None:
        delta = jnp.asarray(problem.eigenvectors).T.astype(delta.dtype) @ delta
    lam = lam.astype(delta.dtype)
    e = jnp.square(delta)
    s2 = jnp.sum(lam**2 * e)
    s3 = jnp.sum(lam**3 * e)
    two_p = jnp.sum(lam * e)
    sigma2 = float(problem.noise.variance)
    den = (1 + 1 / batch) * s3 + jnp.sum(lam**2) * (two_p + sigma2) / batch
    return jnp.where(den > 0, s2 / jnp.where(den > 0, den, 1.0), 0.0)


def oracle_line_search(problem, batch: int = 1) -> optax.GradientTransformation:
    """Exact line search on the population risk of `problem` (module docstring).

    **Arguments:**

    - `problem`: a simulable `Problem` (its `K` and noise variance are the oracle).
    - `batch`: the minibatch size `B` of the gradients it will receive.

    **Returns:** an `optax.GradientTransformation` with state `LineSearchState`;
    `update` needs `params = Δ`.

    **Raises:** `ValueError` for a bad `batch`, a compressed problem, or a noise
    law with infinite variance.
    """
    B = check_batch(batch)
    problem._require_simulable()
    float(problem.noise.variance)  # ValueError for infinite variance

    def init_fn(params):
        return LineSearchState(jnp.zeros((), jnp.asarray(params).dtype))

    def update_fn(updates, state, params=None):
        if params is None:
            raise ValueError("oracle_line_search needs `params` (= Δ = θ − θ*) in update")
        eta = _oracle_step(problem, B, params).astype(state.lr.dtype)
        new = jax.tree.map(lambda u: (-eta * u).astype(u.dtype), updates)
        return new, LineSearchState(eta)

    return optax.GradientTransformation(init_fn, update_fn)


@register(LineSearch)
def _line_search(optimizer: LineSearch, problem) -> SimSpec:
    def observe(state, delta, k):
        return {"lr": _oracle_step(problem, optimizer.batch, delta)}

    return SimSpec(oracle_line_search(problem, optimizer.batch), observe)
