"""`Curve`: a risk curve from theory (ODE / recursion) or from simulation.

A `Curve` is a pytree (`equinox.Module`): its arrays are leaves, so a curve can
be returned from `jax.jit`, `jax.vmap` (a sweep gives a curve whose arrays
have a leading sweep axis) and `jax.grad`. Its status is an integer array code
(like diffrax's `RESULTS`), so a vmapped sweep reports divergence per element;
`curve.status` gives the name(s) and `curve.message` the explanation.
"""

from __future__ import annotations

import json
from typing import Any

import equinox as eqx
import jax
import numpy as np

__all__ = ["Curve", "max_rel_err", "checkpoints", "STATUS", "status_code"]

#: status codes of a `Curve` (index = code) and their default messages
STATUS = ("ok", "diverged", "max_steps_reached", "solver_failed", "fixed_point_failed",
          "nonfinite")
_MESSAGES = {
    "ok": "",
    "diverged": "the risk diverged (step size above the stability threshold)",
    "max_steps_reached": "the ODE solver reached max_steps; increase max_steps or loosen rtol",
    "solver_failed": "the ODE solver failed; loosen rtol or check the problem",
    "fixed_point_failed": "a fixed-point (Newton) iteration inside the theory did not converge",
    "nonfinite": "the curve has non-finite values",
}


def status_code(name: str) -> int:
    """The integer code of a status name (`STATUS`)."""
    try:
        return STATUS.index(name)
    except ValueError:
        raise ValueError(f"`status` must be one of {STATUS}, got {name!r}") from None


def checkpoints(n_max: int, num: int = 40, include_zero: bool = True) -> np.ndarray:
    """Log-spaced integer iteration counts in `[1, n_max]` (plus 0), unique, sorted."""
    try:
        ok = not isinstance(n_max, bool) and float(n_max).is_integer() and int(n_max) >= 1
    except (TypeError, ValueError, OverflowError):
        ok = False
    if not ok:
        raise ValueError(f"`n_max` (the horizon) must be an integer >= 1, got {n_max!r}")
    if int(num) < 1:
        raise ValueError(f"`num` must be >= 1, got {num!r}")
    ks = np.unique(np.round(np.logspace(0, np.log10(int(n_max)), int(num))).astype(np.int64))
    return np.concatenate([[0], ks]) if include_zero else ks


def validate_checkpoints(ks) -> np.ndarray:
    a = np.asarray(ks)
    if a.ndim != 1 or a.size == 0:
        raise ValueError(f"`checkpoints` must be a non-empty 1-D array of iteration counts, "
                         f"got shape {a.shape}")
    if not np.all(np.isfinite(a)) or np.any(a < 0) or np.any(a != np.round(a)):
        raise ValueError("`checkpoints` must be integers >= 0 (iteration counts)")
    a = a.astype(np.int64)
    if np.any(np.diff(a) <= 0):
        raise ValueError("`checkpoints` must be strictly increasing")
    return a


def padded_checkpoints(ks: np.ndarray, bucket: int = 16) -> np.ndarray:
    """`ks` padded (repeating its last entry) to a multiple of `bucket` entries, so that
    horizons with slightly different checkpoint counts share one compilation."""
    n = ks.shape[0]
    m = -(-n // bucket) * bucket
    return np.concatenate([ks, np.full(m - n, ks[-1], ks.dtype)])


def _concrete(x) -> bool:
    return not any(isinstance(leaf, jax.core.Tracer) for leaf in jax.tree.leaves(x))


class Curve(eqx.Module):
    """A risk curve.

    **Fields:**

    - `k`: iteration counts (checkpoints).
    - `risk`: excess risk `P(k) = ½ E[ΔᵀKΔ]` (theory: the ODE/recursion value;
      simulation: the mean over runs).
    - `kind`: `"ode"`, `"recursion"` or `"simulation"`.
    - `stderr`, `median`: Monte-Carlo standard error and median (simulation only).
    - `lr`: the effective step size at `k` (adaptive methods), else `η(k)`.
    - `extras`: other named observables (e.g. `b2` for AdaGrad-Norm).
    - `code`: integer status code (`STATUS`); `status` is its name (`"ok"`,
      `"diverged"`, `"max_steps_reached"`, ...), `message` explains it.
    - `noise_variance`: `E[ε²]`, so that `population_risk = risk + ½E[ε²]`.
    - `meta`: problem / optimizer description, timings, run count.

    A curve from a vmapped sweep has a leading sweep axis on its arrays (and on
    `code`); `curve[i]` or `curve.unstack()` gives the single curves.
    """

    k: Any
    risk: Any
    code: Any
    stderr: Any
    median: Any
    lr: Any
    extras: dict
    noise_variance: Any
    kind: str = eqx.field(static=True)
    label: str = eqx.field(static=True)
    detail: str = eqx.field(static=True)
    meta: dict = eqx.field(static=True)

    def __init__(self, k, risk, kind: str = "ode", label: str = "", stderr=None, median=None,
                 lr=None, extras=None, status="ok", message: str = "", noise_variance=0.0,
                 meta=None, code=None):
        self.k = k
        self.risk = risk
        if code is None:
            code = status_code(status) if isinstance(status, str) else status
        self.code = code if not isinstance(code, int) else np.int32(code)
        self.stderr = stderr
        self.median = median
        self.lr = lr
        self.extras = dict(extras or {})
        self.noise_variance = noise_variance
        self.kind = str(kind)
        self.label = str(label)
        self.detail = str(message)
        self.meta = dict(meta or {})

    # -- status -------------------------------------------------------------------
    @property
    def status(self):
        """Status name (`"ok"`, `"diverged"`, ...); an array of names for a sweep."""
        c = np.asarray(self.code)
        if c.ndim == 0:
            return STATUS[int(c)]
        return np.vectorize(lambda i: STATUS[int(i)])(c)

    @property
    def message(self):
        """What the status means (the specific message when one was recorded)."""
        if self.detail:
            return self.detail
        st = self.status
        if isinstance(st, str):
            return _MESSAGES[st]
        return np.vectorize(lambda s: _MESSAGES[s])(st)

    @property
    def ok(self) -> bool:
        """True if every element of the curve (or sweep) has status `"ok"`."""
        return bool(np.all(np.asarray(self.code) == 0))

    @property
    def population_risk(self):
        return self.risk + 0.5 * self.noise_variance

    # -- sweeps -------------------------------------------------------------------
    @property
    def batch_shape(self) -> tuple:
        """Shape of the sweep axes (`()` for a single curve)."""
        return tuple(np.shape(self.code))

    def __getitem__(self, i) -> Curve:
        if not self.batch_shape:
            raise TypeError("a single Curve cannot be indexed; index its arrays instead")
        return jax.tree.map(lambda x: x[i], self)

    def __len__(self) -> int:
        if not self.batch_shape:
            raise TypeError("a single Curve has no length")
        return self.batch_shape[0]

    def unstack(self) -> list[Curve]:
        """The single curves of a sweep (leading axis)."""
        return [self[i] for i in range(len(self))]

    # -- export -------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        def conv(x):
            if isinstance(x, (np.ndarray, jax.Array)):
                return np.asarray(x).tolist()
            if isinstance(x, dict):
                return {k: conv(v) for k, v in x.items()}
            if isinstance(x, (np.floating, np.integer)):
                return x.item()
            return x

        out = {f: conv(getattr(self, f)) for f in
               ("k", "risk", "kind", "label", "stderr", "median", "lr", "extras",
                "noise_variance", "meta")}
        st = self.status
        out["status"] = st if isinstance(st, str) else np.asarray(st).tolist()
        msg = self.message
        out["message"] = msg if isinstance(msg, str) else np.asarray(msg).tolist()
        return out

    def to_json(self) -> str:
        return json.dumps(self.to_dict())


def _field(curve: Curve, field: str):
    if field in ("risk", "lr", "median", "stderr"):
        v = getattr(curve, field)
        if v is None:
            raise ValueError(f"`field`={field!r}: this {curve.kind} curve has no {field}")
        return np.asarray(v)
    if field in curve.extras:
        return np.asarray(curve.extras[field])
    raise ValueError(f"`field` must be 'risk', 'lr', 'median', 'stderr' or a name in "
                     f"extras {sorted(curve.extras)}, got {field!r}")


def max_rel_err(theory: Curve, sims: Curve, k_min: int = 1, field: str = "risk") -> float:
    """`max_k |sims(k) − theory(k)| / |theory(k)|` over common checkpoints `k >= k_min`.

    `field`: `"risk"` (default), `"lr"`, or the name of an observable in `extras`
    (e.g. `"b2"`), compared between the two curves.
    """
    common, it, is_ = np.intersect1d(np.asarray(theory.k), np.asarray(sims.k),
                                     return_indices=True)
    mask = common >= k_min
    a = _field(theory, field)[..., it][..., mask]
    b = _field(sims, field)[..., is_][..., mask]
    if a.shape[-1] == 0:
        raise ValueError("the two curves share no checkpoint >= k_min")
    return float(np.max(np.abs(b - a) / np.abs(a)))


def as_numpy(curve: Curve) -> Curve:
    """A concrete curve with numpy arrays (for printing, JSON and plotting)."""
    return jax.tree.map(lambda x: np.asarray(x) if isinstance(x, jax.Array) else x, curve)
