"""Optimizer configurations shared by `odes/` (theory) and `simulate/` (empirics).

A config holds hyperparameters only; it knows neither its ODE nor its simulator
(those live in `riskcurves.odes` and `riskcurves.simulate`, keyed by config
type), so agreement between the two is a real check.

Configs are frozen pytrees (`equinox.Module`). Every number (step size,
schedule parameters, batch size, clip threshold, `b0`, momentum) is a pytree
*leaf*, never a static field: `jax.jit`, `jax.vmap` and `jax.grad` go through
`riskcurves.solve_ode` with respect to any of them, and a new value never
recompiles. Concrete values are validated at construction (a `ValueError`
naming the argument and the allowed range); traced values (inside `jax.vmap`,
`jax.grad`, ...) are passed through unchecked.

Step sizes `lr` are per iteration (no hidden `1/d`). `lr` is a positive float,
a schedule from this module (`PowerDecay`, `WarmupStableDecay`,
`PiecewiseLogLinear`: pytrees whose parameters are leaves too), or any
JAX-traceable callable `k ↦ η(k)` (e.g. an optax schedule; a new function
object then compiles anew). The update from iterate `k` to `k+1` uses `η(k)`;
the ODEs evaluate the same function at continuous `k`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

__all__ = [
    "AbstractOptimizer",
    "AbstractSchedule",
    "SGD",
    "SignSGD",
    "ClippedSGD",
    "AdaGradNorm",
    "LineSearch",
    "PowerDecay",
    "WarmupStableDecay",
    "PiecewiseLogLinear",
    "power_decay",
    "check_lr",
    "check_batch",
    "check_horizon",
    "is_concrete",
    "numeric",
    "static_batch",
    "SignSVD",
    "Muon",
    "MatrixSignSGD",
    "DANA",
]

Schedule = Callable[[jnp.ndarray], jnp.ndarray]


def is_concrete(x) -> bool:
    """True if `x` (a pytree) holds no JAX tracer (so it can be checked with Python)."""
    return not any(isinstance(leaf, jax.core.Tracer) for leaf in jax.tree.leaves(x))


def concrete_batch(batch, needs: str, way_out: str) -> int:
    """`batch` as an int where it sets a shape, a closed form or a fixed point (`needs`);
    a traced `batch` (`jax.vmap`/`jit` over it) is refused with a `ValueError` naming
    `way_out`."""
    if not is_concrete(batch):
        raise ValueError(f"`batch` is traced (a jax.vmap or jit over it), but {needs} needs "
                         f"a concrete integer batch: {way_out}")
    return int(batch)


def _check_positive(x, name: str, *, allow_zero: bool = False, upper: float | None = None,
                    upper_open: bool = True, what: str = "a float"):
    """Validate a concrete scalar; pass tracers through. Returns a Python float."""
    if isinstance(x, jax.core.Tracer):
        return x
    if isinstance(x, bool):
        raise ValueError(f"`{name}` must be {what}, got {x!r}")
    try:
        a = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"`{name}` must be {what}, got {x!r}") from None
    if a.ndim != 0:
        raise ValueError(f"`{name}` must be a scalar (use jax.vmap or a list of configs for "
                         f"sweeps), got shape {a.shape}")
    v = float(a)
    lo_ok = v >= 0 if allow_zero else v > 0
    hi_ok = upper is None or (v < upper if upper_open else v <= upper)
    if not (math.isfinite(v) and lo_ok and hi_ok):
        rng = (f"in [0, {upper:g}{')' if upper_open else ']'}" if allow_zero and upper is not None
               else ">= 0" if allow_zero else
               f"in (0, {upper:g}{')' if upper_open else ']'}" if upper is not None else "> 0")
        raise ValueError(f"`{name}` must be finite and {rng}, got {x!r}")
    return v


def check_lr(lr, name: str = "lr"):
    """Validate a step size: a finite float > 0 (or a tracer), or a schedule `k ↦ η(k)`."""
    if callable(lr):
        return lr
    try:
        return _check_positive(lr, name, what="a float > 0 or a schedule k -> lr")
    except ValueError as e:
        if "must be a scalar" in str(e):
            raise
        raise ValueError(
            f"`{name}` must be a finite float > 0 or a schedule k -> lr, got {lr!r}") from None


def check_batch(batch):
    """Validate a batch size: an integer >= 1 (or a tracer, for ODE sweeps)."""
    if isinstance(batch, jax.core.Tracer):
        return batch
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


def static_batch(optimizer) -> int:
    """The batch size as a Python int (simulators need it for array shapes)."""
    try:
        return check_batch(np.asarray(optimizer.batch).item())
    except (TypeError, jax.errors.ConcretizationTypeError):
        raise ValueError("`batch` must be a concrete integer to simulate (it sets array "
                         "shapes); sweep it in the ODE or with a Python loop") from None


def numeric(tree, dtype=jnp.float64):
    """`tree` with every Python float leaf (and float array leaf) as a `dtype` array.

    Used at jit boundaries so that a new hyperparameter value is a new array
    value, never a new compilation (simulators pass their own dtype).
    """
    def conv(x):
        # Python ints (batch sizes, counts) stay static: some theories branch on them
        if isinstance(x, (float, np.floating)):
            return jnp.asarray(x, dtype)
        if isinstance(x, (jax.Array, np.ndarray)) and jnp.issubdtype(x.dtype, jnp.floating):
            return jnp.asarray(x, dtype)
        return x

    return jax.tree.map(conv, tree)


# ---- schedules -------------------------------------------------------------------
class AbstractSchedule(eqx.Module):
    """A step-size schedule `k ↦ η(k)` whose parameters are pytree leaves.

    Subclasses implement `__call__(k)` (JAX-traceable, `k` a float iteration count)
    and validate concrete parameters in `__init__`.
    """

    def __call__(self, k):
        raise NotImplementedError


class PowerDecay(AbstractSchedule):
    """`η(k) = lr0 / (1 + k/k0)^exponent` (iteration time `k`)."""

    lr0: Any
    k0: Any
    exponent: Any

    def __init__(self, lr0, k0=1.0, exponent=1.0):
        self.lr0 = check_lr(lr0, "lr0")
        self.k0 = _check_positive(k0, "k0")
        self.exponent = _check_positive(exponent, "exponent", allow_zero=True)

    def __call__(self, k):
        return self.lr0 / (1.0 + jnp.asarray(k) / self.k0) ** self.exponent


def power_decay(lr0, k0=1.0, exponent=1.0) -> PowerDecay:
    """Schedule `η(k) = lr0 / (1 + k/k0)^exponent` (a `PowerDecay`)."""
    return PowerDecay(lr0, k0, exponent)


class WarmupStableDecay(AbstractSchedule):
    """Warmup–stable–decay in iteration time `k`:

    - `k < warmup`: linear warmup `η(k) = peak·(k + 1)/(warmup + 1)`;
    - `warmup ≤ k < decay_start`: `peak`;
    - `k ≥ decay_start`: `peak·(final/peak)^((k − decay_start)/(horizon − decay_start))`
      (geometric decay to `final` at `horizon`, held there afterwards).

    All five numbers are leaves (differentiable where the formula is).
    """

    peak: Any
    final: Any
    warmup: Any
    decay_start: Any
    horizon: Any

    def __init__(self, peak, final, warmup=0.0, decay_start=0.0, horizon=1.0):
        self.peak = check_lr(peak, "peak")
        self.final = check_lr(final, "final")
        self.warmup = _check_positive(warmup, "warmup", allow_zero=True)
        self.decay_start = _check_positive(decay_start, "decay_start", allow_zero=True)
        self.horizon = _check_positive(horizon, "horizon")
        if is_concrete((self.decay_start, self.horizon, self.warmup)):
            if not self.warmup <= self.decay_start < self.horizon:
                raise ValueError(
                    "`warmup`, `decay_start`, `horizon` must satisfy warmup <= decay_start "
                    f"< horizon, got {self.warmup}, {self.decay_start}, {self.horizon}")

    def __call__(self, k):
        k = jnp.asarray(k, jnp.float64)
        warm = self.peak * jnp.minimum((k + 1.0) / (self.warmup + 1.0), 1.0)
        frac = jnp.clip((k - self.decay_start) / (self.horizon - self.decay_start), 0.0, 1.0)
        decay = self.peak * jnp.exp(frac * jnp.log(self.final / self.peak))
        return jnp.where(k < self.decay_start, warm, decay)


class PiecewiseLogLinear(AbstractSchedule):
    """`log η` piecewise linear in `log(1 + k)` through the knots
    `(log(1 + knots[i]), log_lr[i])`, constant beyond the end knots.

    `knots` (iteration counts, increasing, fixed) and `log_lr` (the natural log of
    the step size at each knot) are leaves: `jax.grad` with respect to `log_lr`
    designs a schedule (see `riskcurves.studies.optimize_schedule`).
    """

    knots: Any
    log_lr: Any

    def __init__(self, knots, log_lr):
        if is_concrete((knots, log_lr)):
            kn = np.asarray(knots, np.float64)
            ll = np.asarray(log_lr, np.float64)
            if kn.ndim != 1 or kn.size < 2 or np.any(kn < 0) or np.any(np.diff(kn) <= 0):
                raise ValueError("`knots` must be >= 2 increasing iteration counts >= 0, "
                                 f"got {knots!r}")
            if ll.shape != kn.shape or not np.all(np.isfinite(ll)):
                raise ValueError(f"`log_lr` must be finite with the shape of `knots` "
                                 f"{kn.shape}, got {ll.shape}")
            knots, log_lr = kn, ll
        self.knots = jnp.asarray(knots, jnp.float64)
        self.log_lr = jnp.asarray(log_lr, jnp.float64)

    def __call__(self, k):
        x = jnp.log1p(jnp.asarray(k, jnp.float64))
        return jnp.exp(jnp.interp(x, jnp.log1p(self.knots), self.log_lr))


def check_horizon(optimizer, k_max: int, n: int = 512):
    """Refuse a schedule that is not finite and > 0 on `[0, k_max]`.

    Evaluated at `n` log-spaced iterations (and every integer up to 64). A no-op
    for constant step sizes and for traced parameters.
    """
    lr = optimizer.lr
    if not callable(lr) or not is_concrete(lr):
        return
    ks = np.unique(np.concatenate([np.arange(min(int(k_max), 64) + 1),
                                   np.round(np.logspace(0, np.log10(max(k_max, 1)), n)),
                                   [k_max]]))
    try:
        vals = np.asarray(jax.vmap(lambda k: jnp.asarray(lr(k), jnp.float64))(
            jnp.asarray(ks, jnp.float64)))
    except Exception as e:  # noqa: BLE001 — a schedule that cannot even be evaluated
        raise ValueError(f"`lr` schedule could not be evaluated at k = 0..{k_max}: {e}") from e
    if vals.shape != ks.shape:
        raise ValueError(f"`lr` schedule must return a scalar per k, got shape "
                         f"{vals.shape[1:]}")
    bad = ~np.isfinite(vals) | (vals <= 0)
    if np.any(bad):
        k_bad = int(ks[np.argmax(bad)])
        raise ValueError(f"`lr` schedule must be finite and > 0 for every k in [0, {k_max}]; "
                         f"η({k_bad}) = {float(vals[np.argmax(bad)])!r}")


# ---- optimizers ------------------------------------------------------------------
class AbstractOptimizer(eqx.Module):
    """Base class: a step size (float or schedule) and a batch size, both leaves."""

    lr: Any
    batch: Any
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
            if isinstance(v, (int, float, str, bool)) or v is None:
                out[f] = v
            elif is_concrete(v) and np.ndim(v) == 0 and not callable(v):
                out[f] = float(np.asarray(v))
            else:
                out[f] = repr(v)
        return out


class SGD(AbstractOptimizer):
    """Minibatch SGD, optionally with heavy-ball or Nesterov momentum (optax semantics).

    `g = (1/B) Σ_b x_b (x_bᵀθ − y_b)`; `momentum = 0`: `θ ← θ − η(k) g`;
    otherwise `v ← μ v + g`, `θ ← θ − η(k) v` (heavy ball, `optax.sgd(lr, μ)`), or
    `θ ← θ − η(k)(g + μ v)` with the updated `v` (`nesterov=True`, as optax).
    """

    momentum: Any
    nesterov: bool = eqx.field(static=True)
    use_momentum: bool = eqx.field(static=True)
    name: ClassVar[str] = "sgd"

    def __init__(self, lr=0.1, batch=1, momentum=0.0, nesterov: bool = False):
        self.lr = check_lr(lr)
        self.batch = check_batch(batch)
        self.momentum = _check_positive(momentum, "momentum", allow_zero=True, upper=1.0)
        if not isinstance(nesterov, bool):
            raise ValueError(f"`nesterov` must be a bool, got {nesterov!r}")
        self.nesterov = nesterov
        # static: whether the momentum buffer exists (a traced momentum always has one)
        self.use_momentum = bool(nesterov or not is_concrete(self.momentum)
                                 or float(np.asarray(self.momentum)) != 0.0)

    @property
    def has_momentum(self) -> bool:
        """False only when the momentum is concretely 0 and `nesterov` is off."""
        return self.use_momentum


class SignSGD(AbstractOptimizer):
    """SignSGD: `θ ← θ − η(k) sign(g)` (entrywise sign of the minibatch gradient)."""

    name: ClassVar[str] = "signsgd"

    def __init__(self, lr=1e-3, batch=1):
        self.lr = check_lr(lr)
        self.batch = check_batch(batch)


class ClippedSGD(AbstractOptimizer):
    """Clipped SGD: `θ ← θ − η(k) g·min(1, c/‖g‖)` (global-norm clipping)."""

    clip: Any
    name: ClassVar[str] = "clipped_sgd"

    def __init__(self, lr=0.1, clip=1.0, batch=1):
        self.lr = check_lr(lr)
        self.batch = check_batch(batch)
        self.clip = _check_positive(clip, "clip", what="a float > 0")


class AdaGradNorm(AbstractOptimizer):
    """AdaGrad-Norm: `b²_{k+1} = b²_k + ‖g_k‖²`, `θ_{k+1} = θ_k − (η/b_{k+1}) g_k`."""

    b0: Any
    name: ClassVar[str] = "adagrad_norm"

    def __init__(self, lr=1.0, b0=0.1, batch=1):
        self.lr = check_lr(lr)
        self.batch = check_batch(batch)
        self.b0 = _check_positive(b0, "b0", what="a float > 0")


class LineSearch(AbstractOptimizer):
    """Idealised exact line search on the population risk (oracle step from `K`).

    `η_k = argmin_η E[R(θ_k − η g_k) | θ_k]`; `lr` is unused (kept as 1.0).
    """

    name: ClassVar[str] = "line_search"

    def __init__(self, batch=1):
        self.lr = 1.0
        self.batch = check_batch(batch)


# ---- spectral optimizers on matrix problems ----------------------------------------
class SignSVD(AbstractOptimizer):
    """SignSVD: `W ← W − η(k) polar(G)`, `polar(G) = U Vᵀ` (exact thin SVD `G = U S Vᵀ`,
    nonzero singular values only), `G = (1/B) Σ_b x_b r_bᵀ`. Matrix problems only."""

    name: ClassVar[str] = "signsvd"

    def __init__(self, lr=1e-2, batch=1):
        self.lr = check_lr(lr)
        self.batch = check_batch(batch)


class Muon(AbstractOptimizer):
    """Muon: SignSVD with the polar factor replaced by `ns_steps` Newton–Schulz steps
    (optax's quintic iteration on `M/‖M‖_F`) of the momentum `M`.

    `M_k = μ M_{k−1} + (1 − μ) G_k` (bias-corrected EMA; NS is scale invariant, so this
    equals the heavy-ball buffer `M ← μ M + G`), `W ← W − η(k) NS(M̂_k)` with
    `M̂_k = M_k/(1 − μ^k)`, or with `nesterov=True` (the default, as
    `optax.contrib.muon`) `M̂_k = μ M_k/(1 − μ^{k+1}) + (1 − μ) G_k/(1 − μ^k)`.
    `momentum=0` gives `W ← W − η NS(G)` (either way). Matrix problems only.
    """

    momentum: Any
    ns_steps: int = eqx.field(static=True)
    nesterov: bool = eqx.field(static=True)
    name: ClassVar[str] = "muon"

    def __init__(self, lr=1e-2, batch=1, momentum=0.0, ns_steps: int = 5,
                 nesterov: bool = True):
        self.lr = check_lr(lr)
        self.batch = check_batch(batch)
        self.momentum = _check_positive(momentum, "momentum", allow_zero=True, upper=1.0)
        if isinstance(ns_steps, bool) or int(ns_steps) != ns_steps or int(ns_steps) < 1:
            raise ValueError(f"`ns_steps` must be an integer >= 1, got {ns_steps!r}")
        self.ns_steps = int(ns_steps)
        if not isinstance(nesterov, bool):
            raise ValueError(f"`nesterov` must be a bool, got {nesterov!r}")
        self.nesterov = nesterov


class MatrixSignSGD(AbstractOptimizer):
    """SignSGD on a matrix problem: `W ← W − η(k) sign(G)` entrywise.

    A separate config from `SignSGD` (vector problems) so that the ODE and the
    simulator registries, which dispatch on the config type, stay one-to-one.
    """

    name: ClassVar[str] = "matrix_signsgd"

    def __init__(self, lr=1e-3, batch=1):
        self.lr = check_lr(lr)
        self.batch = check_batch(batch)


# ---- momentum with two step sizes --------------------------------------------------
class DANA(AbstractOptimizer):
    """DANA (dimension-adapted Nesterov acceleration; Ferbach, Everett, Gidel,
    C. Paquette, E. Paquette 2025, "Dimension-adapted Momentum Outscales SGD",
    arXiv:2505.16098), as in the authors' optax code:

        y_{k+1} = (1 − Δ(k)) y_k + g_k,          Δ(k) = δ / (δ + k),
        θ_{k+1} = θ_k − γ2(k) g_k − γ3(k) y_{k+1},  γ3(k) = g3 (1 + k)^(−κ)

    (iteration time `k`, `g_k` the minibatch gradient, `y_0 = 0`). `lr` is `γ2`
    (a float or a schedule). DANA-constant: `kappa=0` with `g3 ∝ 1/d` (the
    authors use `g3 = c·lr/d`); DANA-decaying: `kappa = 1/(2α)` on a power law
    of data exponent `α` (`g3 = c·lr`). `delta` `δ > 0` (the authors use 8, or
    `4 + (α + β)/α`); `variant` reports which of the two `kappa` gives.
    """

    g3: Any
    delta: Any
    kappa: Any
    name: ClassVar[str] = "dana"

    def __init__(self, lr=0.1, g3=1e-3, batch=1, delta=8.0, kappa=0.0):
        self.lr = check_lr(lr)
        self.batch = check_batch(batch)
        self.g3 = _check_positive(g3, "g3", allow_zero=True)
        self.delta = _check_positive(delta, "delta")
        self.kappa = _check_positive(kappa, "kappa", allow_zero=True)

    @property
    def variant(self) -> str:
        """`"constant"` (`kappa == 0`) or `"decaying"`."""
        if is_concrete(self.kappa) and float(np.asarray(self.kappa)) == 0.0:
            return "constant"
        return "decaying"

    def momentum_at(self, k):
        """`1 − Δ(k) = k / (δ + k)`."""
        k = jnp.asarray(k)
        return k / (self.delta + k)

    def g3_at(self, k):
        """`γ3(k) = g3 (1 + k)^(−κ)`."""
        return self.g3 * (1.0 + jnp.asarray(k)) ** (-self.kappa)
