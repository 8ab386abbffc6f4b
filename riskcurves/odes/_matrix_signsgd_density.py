"""Matrix SignSGD on diagonal `K`: lattice density evolution of the entries.

Problem: docs/theory/signsvd_derivation.md §5.2.

A sign step moves every entry of `Δ = W − W*` by exactly `±η`, so entry `(i, c)`
lives on the lattice `Δ0_ic + ηZ`. The row-energy closure (`_matrix_signsgd.py`)
only sees `D_i = Σ_c Δ_ic²` and misses this in the high per-entry SNR transient.
Here the law of the entries is evolved on a grid of spacing `η/J`
(`J = n_offsets` offset classes; one step moves mass by exactly `±J` cells),
started from the problem's actual `Δ0` (or its Gaussian law `N(0, D_i(0)/m)`).

Entry `(i, c)` of the batch gradient, for diagonal `K` (`x_bi ~ N(0, λ_i)`
independent across `i`):

    G_ic = (1/B) Σ_b x_bi (x_bi Δ_ic + ξ_bc),   ξ_bc = Σ_{j≠i} x_bj Δ_jc − ε_bc,

with `ξ_bc ~ N(0, R_ic)`, `R_ic = Σ_{j≠i} λ_j Δ_jc² + σ²`, independent of `x_bi`
given `Δ`. Since `Σ_b z_b ξ_b | z ~ N(0, R Σ_b z_b²)` (`x_bi = √λ_i z_b`), the mean
sign is a function of one scalar:

    h(δ; R) = E sign(G_ic | Δ_ic = δ) = H_B(√λ_i δ/√R),   H_B(t) = E erf(t χ_B/√2)

(`χ_B`: chi law, B degrees of freedom; `H_1(t) = (2/π) arctan t`, the arcsine
law). `H_B` is exact in closed form (regularized incomplete beta, see
`sign_table`; it equals `riskcurves.theory.expected_sign` to < 1e-7 for `B ≤ 33`),
tabulated once and linearly interpolated in `u = t/(1 + t)`. One step
(`P(s = +1 | δ) = (1 + h(δ))/2`, `Δ ← Δ − η s`) of a law `p` on the lattice:

    p'(x) = p(x + η) (1 + h(x + η))/2 + p(x − η) (1 − h(x − η))/2.

Two levels of description (time = iteration count `k`, no diffusion limit):

- **Top rows per column** (`i < T`, `T = column_rows`): the law `p_ic` of each
  entry (a point mass at `Δ0_ic` at `k = 0`), with the column's own rest variance
  `R_ic = Σ_{j<T, j≠i} λ_j E Δ_jc² + Σ_{j≥T} λ_j E_c Δ_j² + σ²`. This keeps the
  correlation between an entry and its column's noise: a column whose top
  entries have reached the lattice floor has a small `R` and its remaining
  entries then move deterministically.
- **Bulk rows pooled** (`i ≥ T`): one law `p_i` of the row's entries over the
  columns, with the column-mean `R_i = (1/m) Σ_c Σ_{j≠i} λ_j E Δ_jc² + σ²`.

`T = 0` is the plain mean field `R_i = (2P − λ_i D_i)/m + σ²`; `T = d` evolves
every column as an independent walk with its own mean field. Then
`D_i = Σ_c E Δ_ic²`, `P = ½ Σ_i λ_i D_i`. Neglected: run-to-run fluctuations of
`P`, correlations inside the bulk. Needs a constant step size (lattice `ηZ`).
Derivation and measured accuracy: `docs/theory/matrix_signsgd.md`.
"""

from __future__ import annotations

import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .._curve import Curve, validate_checkpoints
from ._base import AbstractTheory

__all__ = ["MatrixSignSGDDensity", "build_grid", "matrix_signsgd_density", "sign_table",
           "MAX_GRID_CELLS"]

MAX_GRID_CELLS = 4_000_000  # laws × cells of the lattice grid (≈ 32 MB per float64 array)
_N_TABLE = 4097
_TINY = 1e-300


def sign_table(batch: int, n: int = _N_TABLE) -> np.ndarray:
    """`H_B(t)` at `t = u/(1 − u)`, `u = linspace(0, 1, n)` (`H_B(∞) = 1`).

    `H_B(t) = E sign(Σ_b z_b (t z_b + w_b))`, `z_b, w_b ~ N(0, 1)` i.i.d. Each term
    is a quadratic form with eigenvalues `(t ± √(1 + t²))/2`, so the sum is
    `λ₊ U − |λ₋| V` with `U, V ~ χ²_B` independent and (F law of `U/V`)

        H_B(t) = 1 − 2 I_x(B/2, B/2),   x = (1 − t/√(1 + t²))/2

    (`I` the regularized incomplete beta; `B = 1`: `(2/π) arctan t`).
    """
    from scipy.special import betainc

    u = np.linspace(0.0, 1.0, int(n))
    t = u[:-1] / (1.0 - u[:-1])
    x = 0.5 * (1.0 - t / np.sqrt(1.0 + t * t))
    H = 1.0 - 2.0 * betainc(0.5 * batch, 0.5 * batch, x)
    return np.clip(np.concatenate([H, [1.0]]), -1.0, 1.0)


def _interp_sign(table, t):
    """Odd extension of the tabulated `H_B`, linear in `u = |t|/(1 + |t|)`."""
    a = jnp.abs(t)
    f = a / (1.0 + a) * (table.shape[0] - 1)
    i = jnp.clip(jnp.floor(f).astype(jnp.int32), 0, table.shape[0] - 2)
    w = f - i
    return jnp.sign(t) * (table[i] * (1.0 - w) + table[i + 1] * w)


class _Grid(eqx.Module):
    """Lattice state `(pt, pb)` on `x = (n − N) η/J`: `pt` `(m, T, cells)` the laws of
    the top-row entries per column, `pb` `(d − T, cells)` the pooled bulk rows."""

    lam_top: jax.Array
    lam_bot: jax.Array
    x: jax.Array
    p0: tuple
    table: jax.Array
    sigma2: jax.Array
    m: int = eqx.field(static=True)
    J: int = eqx.field(static=True)

    def row_energies(self, p):
        """`D_i`: sum over the columns (top rows), `m E_c Δ_i²` (bulk rows)."""
        pt, pb = p
        return jnp.concatenate([jnp.sum(pt @ self.x**2, axis=0), self.m * (pb @ self.x**2)])

    def _move(self, p, h):
        down = 0.5 * p * (1.0 + h)  # s = +1: the entry moves to x − η (J cells down)
        up = p - down
        J = self.J
        z = jnp.zeros(p.shape[:-1] + (J,), p.dtype)
        new = (jnp.concatenate([down[..., J:], z], axis=-1)
               + jnp.concatenate([z, up[..., :-J]], axis=-1))
        lost = jnp.sum(down[..., :J], axis=-1) + jnp.sum(up[..., -J:], axis=-1)
        return new, lost

    def step(self, p):
        """One SignSGD step of every entry law; returns `(p', max mass lost per row)`."""
        pt, pb = p
        H = lambda lam, R: _interp_sign(  # noqa: E731
            self.table, jnp.sqrt(lam / jnp.maximum(R, _TINY))[..., None] * self.x)
        M2t = pt @ self.x**2  # (m, T)
        M2b = pb @ self.x**2  # (d − T,)
        S = M2t @ self.lam_top  # (m,) top-row energy of each column
        bulk = self.lam_bot @ M2b
        Rt = S[:, None] - self.lam_top * M2t + bulk + self.sigma2
        pt2, lt = self._move(pt, H(self.lam_top, Rt))
        Rb = jnp.mean(S) + bulk - self.lam_bot * M2b + self.sigma2  # (d − T,)
        pb2, lb = self._move(pb, H(self.lam_bot, Rb))
        lost = jnp.max(jnp.concatenate([jnp.sum(lt, axis=0) / self.m, lb, jnp.zeros(1)]))
        return (pt2, pb2), lost

    def risk(self, p):
        return 0.5 * jnp.sum(jnp.concatenate([self.lam_top, self.lam_bot])
                             * self.row_energies(p))


def _check_options(n_offsets, init):
    if isinstance(n_offsets, bool) or int(n_offsets) != n_offsets or not 1 <= n_offsets <= 64:
        raise ValueError(f"`n_offsets` must be an integer in [1, 64], got {n_offsets!r}")
    if init not in ("entries", "gaussian"):
        raise ValueError(f"`init` must be 'entries' or 'gaussian', got {init!r}")
    return int(n_offsets)


def _check_columns(rows, d, init):
    if isinstance(rows, bool) or int(rows) != rows or not 0 <= rows <= d:
        raise ValueError(f"`column_rows` must be an integer in [0, d={d}], got {rows!r}")
    if init == "gaussian" and rows != 0:
        raise ValueError("`column_rows` > 0 needs init='entries' (per-column laws start at "
                         "the actual entries)")
    return int(rows)


def build_grid(problem, optimizer, *, n_offsets: int = 2, init: str = "entries",
               column_rows: int = 0, horizon: int | None = None,
               max_cells: int = MAX_GRID_CELLS) -> _Grid:
    """The lattice grid and initial entry laws for `problem` (diagonal `K`).

    `column_rows` `T`: top rows tracked per column (default 0: mean field, all rows
    pooled; `T = d`: every entry per column, accurate at small `d`, `m·d` laws).
    Half-width of the grid `L = max_i (ext_i + 7 s_i) + 2η`: `ext_i` the largest
    initial entry of row `i` (`init="entries"`) or `6√(D_i(0)/m)` (`"gaussian"`);
    `s_i = min(√(η/(2c_i)), η√horizon)` bounds how far entries spread beyond it
    (`c_i = H_B'(0)√λ_i/√R^max`, `R^max = max_c Σ_j λ_j Δ0_jc² + σ²`: the restoring
    slope of `h`, stationary variance `η/(2c_i)`; the random walk `η√k`).
    """
    J = _check_options(n_offsets, init)
    if not problem.is_diagonal:
        raise ValueError("`transient='density'` needs a diagonal K (problem.is_diagonal); "
                         "use the closure ODE (transient='closure') for a rotated K")
    if not optimizer.constant_lr:
        raise ValueError("`transient='density'` needs a constant `lr` (entries live on the "
                         "lattice Δ0 + ηZ); use transient='closure' for schedules")
    eta = float(optimizer.lr)
    lam = np.asarray(problem.eigenvalues, np.float64)
    d, m, B, s2 = lam.size, int(problem.m), int(optimizer.batch), float(problem.sigma2)
    T = _check_columns(column_rows, d, init)
    delta0 = np.asarray(problem.delta0_eig, np.float64)
    D0 = np.sum(delta0**2, axis=1)
    Rmax = max(float(np.max(lam @ delta0**2)) + s2, _TINY)  # largest column energy
    slope0 = math.sqrt(2 / math.pi) * math.sqrt(2) * math.exp(
        math.lgamma((B + 1) / 2) - math.lgamma(B / 2))  # H_B'(0) = √(2/π) E χ_B
    c = slope0 * np.sqrt(lam / Rmax)
    spread = np.sqrt(eta / (2 * np.maximum(c, _TINY)))
    if horizon is not None:
        spread = np.minimum(spread, eta * math.sqrt(max(int(horizon), 1)))
    ext = (np.max(np.abs(delta0), axis=1) if init == "entries" else 6 * np.sqrt(D0 / m))
    L = float(np.max(ext + 7 * spread)) + 2 * eta
    cell = eta / J
    N = int(math.ceil(L / cell)) + J
    n_cells = 2 * N + 1
    size = (m * T + d - T) * n_cells
    if size > max_cells:
        raise ValueError(
            f"the density grid would have (m·T + d − T) laws × cells = ({m}·{T} + {d - T})"
            f" × {n_cells} = {size:,} > max_cells={max_cells:,} (half-width {L:.3g} = "
            f"{L / eta:.0f} steps of lr={eta:g}, n_offsets={J}); lower `column_rows` or "
            "`n_offsets`, pass `horizon`, or use the row-energy closure ODE "
            "(transient='closure')")
    x = (np.arange(n_cells) - N) * cell
    if init == "entries":
        idx = np.clip(np.rint(delta0 / cell).astype(np.int64) + N, 0, n_cells - 1)
        pt = np.zeros((m, T, n_cells))
        cols, rows = np.meshgrid(np.arange(m), np.arange(T), indexing="ij")
        pt[cols, rows, idx[:T].T] = 1.0
        pb = np.zeros((d - T, n_cells))
        np.add.at(pb, (np.repeat(np.arange(d - T), m), idx[T:].ravel()), 1.0 / m)
    else:
        from scipy.special import ndtr

        sd = np.sqrt(np.maximum(D0 / m, _TINY))[:, None]
        edges = np.concatenate([x - cell / 2, [x[-1] + cell / 2]])
        pb = np.diff(ndtr(edges[None, :] / sd), axis=1)
        pb /= np.sum(pb, axis=-1, keepdims=True)
        pt = np.zeros((m, 0, n_cells))
    f64 = lambda a: jnp.asarray(a, jnp.float64)  # noqa: E731
    return _Grid(f64(lam[:T]), f64(lam[T:]), f64(x), (f64(pt), f64(pb)),
                 f64(sign_table(B)), f64(s2), m, J)


@eqx.filter_jit
def _scan(grid: _Grid, n_steps: int):
    def body(carry, _):
        p, lost = carry
        p2, dl = grid.step(p)
        return (p2, jnp.maximum(lost, dl)), (grid.risk(p2), grid.row_energies(p2))

    (_, lost), (P, D) = jax.lax.scan(body, (grid.p0, jnp.zeros((), jnp.float64)), None,
                                     length=n_steps)
    P = jnp.concatenate([grid.risk(grid.p0)[None], P])
    D = jnp.concatenate([grid.row_energies(grid.p0)[None], D])
    return P, D, lost


def matrix_signsgd_density(problem, optimizer, checkpoints, *, n_offsets: int = 2,
                           init: str = "entries", column_rows: int = 0,
                           max_cells: int = MAX_GRID_CELLS,
                           label: str | None = None) -> Curve:
    """Risk curve of matrix SignSGD (diagonal `K`) from the lattice density recursion.

    One `lax.scan` over `k = 0 … max(checkpoints)` (see module docstring).

    **Arguments:** `problem` a diagonal `MatrixProblem`; `optimizer` a
    `MatrixSignSGD` with constant `lr`; `checkpoints` iteration counts;
    `n_offsets` `J` (grid spacing `η/J`); `init` `"entries"` (the actual `Δ0`) or
    `"gaussian"` (`N(0, D_i(0)/m)` per row, pooled); `column_rows` see
    `build_grid`.

    **Returns:** a `Curve` (`kind="recursion"`), `extras["D"]` the row energies
    (checkpoints × d), `meta["lost_mass"]` the largest per-step fraction of a row's mass that
    left the grid (≈ 0).

    **Raises:** `ValueError` for a rotated `K`, an `lr` schedule, or a grid larger
    than `max_cells` (use the closure ODE there).
    """
    ks = validate_checkpoints(checkpoints)
    grid = build_grid(problem, optimizer, n_offsets=n_offsets, init=init,
                      column_rows=column_rows,
                      horizon=int(ks[-1]), max_cells=max_cells)
    P, D, lost = _scan(grid, int(ks[-1]))
    P, D = np.asarray(P)[ks], np.asarray(D)[ks]
    return Curve(k=ks, risk=P, kind="recursion", label=label or "matrix_signsgd density",
                 lr=np.full(ks.shape, float(optimizer.lr)), extras={"D": D},
                 noise_variance=float(problem.sigma2),
                 meta={"problem": problem.label, "d": problem.d, **optimizer.describe(),
                       "n_offsets": int(n_offsets), "init": init,
                       "column_rows": int(grid.lam_top.shape[0]),
                       "grid_cells": int(grid.x.shape[0]), "lost_mass": float(lost)})


class MatrixSignSGDDensity(AbstractTheory):
    """The density recursion as a theory for `solve_ode` (`transient="density"`).

    An exact recursion in `k`: `recursion(ks)` runs one `lax.scan` to `max(ks)`
    (the same pass as `matrix_signsgd_density`), and `solve_theory` uses it instead
    of the ODE solver. The state `y` is the initial law (only `k = 0` is an ODE state).
    """

    grid: _Grid
    eta: jax.Array

    def init_state(self):
        return self.grid.p0

    def vector_field(self, k, y, args):
        raise NotImplementedError("the density theory is a recursion: use recursion(ks)")

    def risk(self, y):
        return self.grid.risk(y)

    def lr(self, k, y):
        return self.eta

    def recursion(self, ks, **tolerances):
        P, D, _ = _scan(self.grid, int(ks[-1]))
        ks = np.asarray(ks)
        return (np.asarray(P)[ks], np.full(ks.shape, float(self.eta)),
                {"D": np.asarray(D)[ks]}, 0)
