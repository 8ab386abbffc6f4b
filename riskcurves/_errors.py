"""Exceptions shared by the whole library."""

from __future__ import annotations

__all__ = ["DivergenceError", "SolverError"]


class DivergenceError(ValueError):
    """The step size makes the risk diverge.

    Carries the offending `lr` and the stability `threshold` from
    `riskcurves.theory` (if one is known) so callers can report both.
    """

    def __init__(self, message: str, lr=None, threshold=None):
        super().__init__(message)
        self.lr = lr
        self.threshold = threshold


class SolverError(RuntimeError):
    """The ODE solver failed (e.g. it reached `max_steps`)."""
