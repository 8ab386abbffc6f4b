"""Optimizer configurations shared by `odes/` (theory) and `simulate/` (empirics).

A config holds hyperparameters only; it knows neither its ODE nor its simulator
(those live in `riskcurves.odes` and `riskcurves.simulate`, keyed by config
type), so agreement between the two is a real check.

Step sizes `lr` are per iteration (no hidden `1/d`). `lr` is a positive float or
a schedule `k ↦ η(k)` (any JAX-traceable callable, e.g. an `optax` schedule or
`riskcurves.power_decay`). The update from iterate `k` to `k+1` uses `η(k)`;
the ODEs evaluate the same function at continuous `k`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import ClassVar

import equinox as eqx
import jax.numpy as jnp

__all__ = [
    "AbstractOptimizer",
    "SGD",
    "SignSGD",
    "ClippedSGD",
    "AdaGradNorm",
    "LineSearch",
    "power_decay",
    "check_lr",
    "check_batch",
    "SignSVD",
    "Muon",
    "MatrixSignSGD",
]

Schedule = Callable[[jnp.ndarray], jnp.ndarray]


def check_lr(lr, name: str = "lr"):
    """Validate a step size: a finite float > 0, or a callable schedule."""
    if callable(lr):
        return lr
    try:
        v = float(lr)
    except (TypeError, ValueError):
        raise ValueError(
            f"`{name}` must be a float > 0 or a schedule k -> lr, got {lr!r}") from None
    if not (math.isfinite(v) and v > 0):
        raise ValueError(f"`{name}` must be finite and > 0, got {lr!r}")
    return v


def check_batch(batch) -> int:
    try:
        integral = not isinstance(batch, bool) and float(batch).is_integer()
    except (TypeError, ValueError):
        integral = False
    if not integral:
        raise ValueError(f"`batch` must be an integer >= 1, got {batch!r}")
    b = int(batch)
    if b < 1:
        raise ValueError(f"`batch` must be an integer >= 1, got {batch!r}")
    return b


def power_decay(lr0: float, k0: float = 1.0, exponent: float = 1.0) -> Schedule:
    """Schedule `η(k) = lr0 / (1 + k/k0)^exponent`."""
    lr0 = check_lr(lr0, "lr0")
    if not k0 > 0:
        raise ValueError(f"`k0` must be > 0, got {k0}")
    if not exponent >= 0:
        raise ValueError(f"`exponent` must be >= 0, got {exponent}")

    def schedule(k):
        return lr0 / (1.0 + jnp.asarray(k) / k0) ** exponent

    schedule.__name__ = f"power_decay({lr0:g},{k0:g},{exponent:g})"
    return schedule


class AbstractOptimizer(eqx.Module):
    """Base class: a step size (float or schedule) and a batch size."""

    lr: float | Schedule = eqx.field(static=True)
    batch: int = eqx.field(static=True)
    name: ClassVar[str] = "optimizer"

    def lr_at(self, k):
        """`η(k)` as a JAX array (constant or schedule)."""
        if callable(self.lr):
            return jnp.asarray(self.lr(k))
        return jnp.asarray(self.lr)

    @property
    def constant_lr(self) -> bool:
        return not callable(self.lr)

    def describe(self) -> dict:
        """JSON-friendly description (for reports)."""
        out = {"optimizer": self.name}
        for f in self.__dataclass_fields__:
            v = getattr(self, f)
            out[f] = v if isinstance(v, (int, float, str, bool)) or v is None else repr(v)
        return out


class SGD(AbstractOptimizer):
    """Minibatch SGD: `θ ← θ − η(k) g`, `g = (1/B) Σ_b x_b (x_bᵀθ − y_b)`."""

    name: ClassVar[str] = "sgd"

    def __init__(self, lr=0.1, batch: int = 1):
        self.lr = check_lr(lr)
        self.batch = check_batch(batch)


class SignSGD(AbstractOptimizer):
    """SignSGD: `θ ← θ − η(k) sign(g)` (entrywise sign of the minibatch gradient)."""

    name: ClassVar[str] = "signsgd"

    def __init__(self, lr=1e-3, batch: int = 1):
        self.lr = check_lr(lr)
        self.batch = check_batch(batch)


class ClippedSGD(AbstractOptimizer):
    """Clipped SGD: `θ ← θ − η(k) g·min(1, c/‖g‖)` (global-norm clipping)."""

    clip: float = eqx.field(static=True)
    name: ClassVar[str] = "clipped_sgd"

    def __init__(self, lr=0.1, clip: float = 1.0, batch: int = 1):
        self.lr = check_lr(lr)
        self.batch = check_batch(batch)
        try:
            c = float(clip)
        except (TypeError, ValueError):
            raise ValueError(f"`clip` must be a float > 0, got {clip!r}") from None
        if not (math.isfinite(c) and c > 0):
            raise ValueError(f"`clip` must be finite and > 0, got {clip!r}")
        self.clip = c


class AdaGradNorm(AbstractOptimizer):
    """AdaGrad-Norm: `b²_{k+1} = b²_k + ‖g_k‖²`, `θ_{k+1} = θ_k − (η/b_{k+1}) g_k`."""

    b0: float = eqx.field(static=True)
    name: ClassVar[str] = "adagrad_norm"

    def __init__(self, lr=1.0, b0: float = 0.1, batch: int = 1):
        self.lr = check_lr(lr)
        self.batch = check_batch(batch)
        b0 = float(b0)
        if not (math.isfinite(b0) and b0 > 0):
            raise ValueError(f"`b0` must be finite and > 0, got {b0!r}")
        self.b0 = b0


class LineSearch(AbstractOptimizer):
    """Idealised exact line search on the population risk (oracle step from `K`).

    `η_k = argmin_η E[R(θ_k − η g_k) | θ_k]`; `lr` is unused (kept as 1.0).
    """

    name: ClassVar[str] = "line_search"

    def __init__(self, batch: int = 1):
        self.lr = 1.0
        self.batch = check_batch(batch)


# ---- spectral optimizers on matrix problems (SPEC §1.3, §7) -------------------
class SignSVD(AbstractOptimizer):
    """SignSVD: `W ← W − η(k) polar(G)`, `polar(G) = U Vᵀ` (exact thin SVD `G = U S Vᵀ`,
    nonzero singular values only), `G = (1/B) Σ_b x_b r_bᵀ`. Matrix problems only."""

    name: ClassVar[str] = "signsvd"

    def __init__(self, lr=1e-2, batch: int = 1):
        self.lr = check_lr(lr)
        self.batch = check_batch(batch)


class Muon(AbstractOptimizer):
    """Muon: SignSVD with the polar factor replaced by `ns_steps` Newton–Schulz steps
    (optax's quintic iteration on `M/‖M‖_F`) of the momentum `M`.

    `M_k = μ M_{k−1} + (1 − μ) G_k` (bias-corrected EMA; NS is scale invariant, so this
    equals the heavy-ball buffer `M ← μ M + G`), `W ← W − η(k) NS(M_k)`.
    `momentum=0` gives `W ← W − η NS(G)`. Matrix problems only.
    """

    momentum: float = eqx.field(static=True)
    ns_steps: int = eqx.field(static=True)
    name: ClassVar[str] = "muon"

    def __init__(self, lr=1e-2, batch: int = 1, momentum: float = 0.0, ns_steps: int = 5):
        self.lr = check_lr(lr)
        self.batch = check_batch(batch)
        mu = float(momentum)
        if not (math.isfinite(mu) and 0 <= mu < 1):
            raise ValueError(f"`momentum` must be in [0, 1), got {momentum!r}")
        if isinstance(ns_steps, bool) or int(ns_steps) != ns_steps or int(ns_steps) < 1:
            raise ValueError(f"`ns_steps` must be an integer >= 1, got {ns_steps!r}")
        self.momentum = mu
        self.ns_steps = int(ns_steps)


class MatrixSignSGD(AbstractOptimizer):
    """SignSGD on a matrix problem: `W ← W − η(k) sign(G)` entrywise.

    A separate config from `SignSGD` (vector problems) so that the ODE and the
    simulator registries, which dispatch on the config type, stay one-to-one.
    """

    name: ClassVar[str] = "matrix_signsgd"

    def __init__(self, lr=1e-3, batch: int = 1):
        self.lr = check_lr(lr)
        self.batch = check_batch(batch)
