"""`Curve`: a risk curve from theory (ODE / recursion) or from simulation."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import numpy as np

__all__ = ["Curve", "max_rel_err", "checkpoints"]


def checkpoints(n_max: int, num: int = 40, include_zero: bool = True) -> np.ndarray:
    """Log-spaced integer iteration counts in `[1, n_max]` (plus 0), unique, sorted."""
    if int(n_max) < 1:
        raise ValueError(f"`n_max` must be an integer >= 1, got {n_max!r}")
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


@dataclasses.dataclass(frozen=True)
class Curve:
    """A risk curve.

    **Fields:**

    - `k`: iteration counts (checkpoints).
    - `risk`: excess risk `P(k) = ½ E[ΔᵀKΔ]` (theory: the ODE/recursion value;
      simulation: the mean over runs).
    - `kind`: `"ode"`, `"recursion"` or `"simulation"`.
    - `stderr`, `median`: Monte-Carlo standard error and median (simulation only).
    - `lr`: the effective step size at `k` (adaptive methods), else `η(k)`.
    - `extras`: other named observables (e.g. `b2` for AdaGrad-Norm).
    - `status`: `"ok"`, `"diverged"` or a solver failure; `message` explains.
    - `noise_variance`: `E[ε²]`, so that `population_risk = risk + ½E[ε²]`.
    - `meta`: problem / optimizer description, timings, run count.
    """

    k: np.ndarray
    risk: np.ndarray
    kind: str
    label: str = ""
    stderr: np.ndarray | None = None
    median: np.ndarray | None = None
    lr: np.ndarray | None = None
    extras: dict = dataclasses.field(default_factory=dict)
    status: str = "ok"
    message: str = ""
    noise_variance: float = 0.0
    meta: dict = dataclasses.field(default_factory=dict)

    @property
    def population_risk(self) -> np.ndarray:
        return self.risk + 0.5 * self.noise_variance

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def to_dict(self) -> dict[str, Any]:
        def conv(x):
            if isinstance(x, np.ndarray):
                return x.tolist()
            if isinstance(x, dict):
                return {k: conv(v) for k, v in x.items()}
            if isinstance(x, (np.floating, np.integer)):
                return x.item()
            return x

        return {f.name: conv(getattr(self, f.name)) for f in dataclasses.fields(self)}

    def to_json(self) -> str:
        return json.dumps(self.to_dict())


def max_rel_err(theory: Curve, sims: Curve, k_min: int = 1, field: str = "risk") -> float:
    """`max_k |sims(k) − theory(k)| / theory(k)` over common checkpoints `k >= k_min`."""
    common, it, is_ = np.intersect1d(theory.k, sims.k, return_indices=True)
    mask = common >= k_min
    a = np.asarray(getattr(theory, field) if field != "extras" else theory.extras)[it][mask]
    b = np.asarray(getattr(sims, field))[is_][mask]
    if a.size == 0:
        raise ValueError("the two curves share no checkpoint >= k_min")
    return float(np.max(np.abs(b - a) / np.abs(a)))
