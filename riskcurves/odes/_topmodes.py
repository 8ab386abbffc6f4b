"""Top modes stochastic, bulk deterministic: the finite-d hybrid of `docs/theory/topmodes.md`.

When a few top modes hold the risk (power laws with `α ≥ 1`), the quadratic forms
that set the step (line search `ΔᵀK²Δ/ΔᵀK³Δ`), the clipping (`‖x‖²`, the residual)
or the sign gains do not concentrate, and the mean-field ODEs (one deterministic
`D_i` per mode) are off by 5–15% at every `d`. The hybrid keeps the coordinates
`y = (u_1ᵀΔ, …, u_mᵀΔ)` of the `m` largest-eigenvalue modes as random variables,
represented by `N` particles `y^(n)`, and the bulk (every other mode) by its mean
energies `D_j`. One iteration `k → k + 1` (time = iteration count):

- each particle takes the optimizer's exact stochastic step restricted to the top
  coordinates, with the data `x_top ~ N(0, diag λ_top)`, the label noise `ε`, and
  the bulk entering only through its (deterministic) quadratic forms, e.g. the
  bulk part of the residual `z_bulk ~ N(0, Σ_bulk w_j λ_j D_j)`;
- the bulk energies take their exact one-step mean given each particle's state,
  averaged over the particles: `D_j ← D_j + (1/N) Σ_n ΔD_j(y^(n), D_bulk)`.

Risk: `P = ½ (1/N) Σ_n Σ_top λ_i (y_i^(n))² + ½ Σ_bulk w_j λ_j D_j`.

This is a discrete map (a recursion in `k`, run to the last checkpoint by
`recursion`); its state is not smooth in `k` (the particles jump), so it has no
ODE form. The randomness is a fixed internal seed (`fold_in(seed, k)` at step
`k`): the curve is deterministic, with a particle error `O(1/√N)` (measured in
`docs/theory/topmodes.md`). Cost per step: `O(N·m·B + nodes)`; the noise law enters
by drawing its scale-mixture component (`residual_variance`), so every law is exact.

Subclasses implement `_particle_step` (which also reports the step size and
observables) and `_bulk_update`; the mode split is `split_top_modes`. The particle
noise is reduced by a conditional-mean readout of the risk and by `EARLY_FACTOR`
times more particles during the first `EARLY_STEPS` iterations (see `_run`).
"""

from __future__ import annotations

import functools
from typing import ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .._curve import padded_checkpoints
from ._base import AbstractTheory
from ._solve import integrate

__all__ = ["AbstractTopModeTheory", "split_top_modes", "hybrid_fields", "DEFAULT_TOP_MODES",
           "DEFAULT_PARTICLES", "AUTO_INTRINSIC_DIMENSION", "check_top_mode_options",
           "draw_top_gradient", "normal"]

DEFAULT_TOP_MODES = 16
DEFAULT_PARTICLES = 4096
AUTO_INTRINSIC_DIMENSION = 50.0
EARLY_STEPS = 64  # iterations run with EARLY_FACTOR times more particles
EARLY_FACTOR = 4
DEFAULT_HANDOVER = 16_384  # iterations of the hybrid before the mean-field ODE takes over
BLOCK = 128  # iterations per checkpointed block of `_run`


def check_top_mode_options(problem, topmodes, particles, seed) -> tuple[int, int, int]:
    """Validate the hybrid's options (`ValueError` naming the argument) and resolve
    `topmodes="auto"`: `DEFAULT_TOP_MODES` when the intrinsic dimension `tr K/λ_max`
    is below `AUTO_INTRINSIC_DIMENSION` (a few modes hold the spectrum), else `0` (the
    mean-field ODE, whose error there is `O(λ_max/tr K)`, ≲ 2%)."""
    if isinstance(topmodes, str):
        if topmodes != "auto":
            raise ValueError(f"`topmodes` must be 'auto' or an integer >= 0, got {topmodes!r}")
        lam = np.asarray(problem.eigenvalues)
        lam_max = float(lam.max()) if lam.size else 0.0
        ratio = np.inf if lam_max <= 0 else float(np.sum(problem.mode_weights * lam)) / lam_max
        topmodes = DEFAULT_TOP_MODES if ratio < AUTO_INTRINSIC_DIMENSION else 0
    out = []
    for name, v, lo in (("topmodes", topmodes, 0), ("particles", particles, 2),
                        ("seed", seed, 0)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < lo:
            extra = "'auto' or " if name == "topmodes" else ""
            raise ValueError(f"`{name}` must be {extra}an integer >= {lo}, got {v!r}")
        out.append(int(v))
    return tuple(out)


def hybrid_fields(problem, m: int, particles: int, seed: int) -> dict:
    """The fields of `AbstractTopModeTheory` for `problem` (split, noise mixture, seed)."""
    lt, dt, lb, wb, db = split_top_modes(problem, m)
    w, v = problem.noise.scale_mixture()
    return dict(lam_t=jnp.asarray(lt), D0_t=jnp.asarray(dt), lam_b=jnp.asarray(lb),
                w_b=jnp.asarray(wb), D0_b=jnp.asarray(db),
                mix_cdf=jnp.asarray(np.cumsum(w) / np.sum(w)), mix_v=jnp.asarray(v, jnp.float64),
                seed=jnp.asarray(seed, jnp.uint32), n_particles=int(particles))


def normal(key, shape):
    """Standard normals for the particles, drawn in float32 and returned as float64.

    The particle maps are bound by the random draws on CPU, and a float32 draw costs
    about a third of a float64 one (22 vs 61 ns per normal). A draw is a Monte-Carlo
    sample, so 24 bits of mantissa lose nothing. The state is still float64."""
    return jax.random.normal(key, shape, jnp.float32).astype(jnp.float64)


def draw_top_gradient(key, Y, lam_t, rest):
    """Exact draw of `g_top = (1/B) Σ_b x_b,top r_b` for every particle, `r_b = a_b + rest_b`.

    `Y`: `(N, m)` top coordinates; `rest`: `(N, B)` the part of each residual the top
    modes do not see (bulk residual and label noise, drawn by the caller). With
    `m + B` normals instead of `(m + 1)B`: split `x_b = Λy a_b/s + x_b⊥`,
    `a_b = x_bᵀy ~ N(0, s)`, `s = yᵀΛy`, `x_b⊥ ~ N(0, Λ − ΛyyᵀΛ/s)` independent of
    `a_b`; then `g = Λy (Σ_b a_b r_b)/(B s) + (√(Σ_b r_b²)/B) ξ⊥` with one
    `ξ⊥ ~ N(0, Λ − ΛyyᵀΛ/s)`. **Returns** `(g_top, r)`."""
    n, m = Y.shape
    B = rest.shape[-1]
    ka, kx = jax.random.split(key)
    ly = lam_t * Y
    s = jnp.sum(ly * Y, -1)
    ok = s > 0
    s_safe = jnp.where(ok, s, 1.0)
    a = normal(ka, (n, B)) * jnp.sqrt(s)[:, None]
    r = a + rest
    w = normal(kx, (n, m)) * jnp.sqrt(lam_t)
    xi = w - jnp.where(ok, jnp.sum(Y * w, -1) / s_safe, 0.0)[:, None] * ly
    par = jnp.where(ok, jnp.sum(a * r, -1) / (B * s_safe), 0.0)
    return par[:, None] * ly + (jnp.sqrt(jnp.sum(r**2, -1)) / B)[:, None] * xi, r


def split_top_modes(problem, m: int):
    """Split a diagonal spectrum into `m` single top modes and a weighted bulk.

    Modes are taken by decreasing `λ` (ties: larger `D(0)` first). A node of a
    compressed spectrum with an integer weight `w` stands for `w` identical modes:
    up to `m` of them become top modes and the rest stays in the bulk with the
    remaining weight. The split stops at the first node with a non-integer weight
    (a quadrature node), so fewer than `m` top modes can be returned.

    **Returns:** `(lam_top, D0_top, lam_bulk, w_bulk, D0_bulk)` as float64 numpy arrays.
    """
    lam = np.asarray(problem.eigenvalues, np.float64)
    D0 = np.asarray(problem.initial_energies, np.float64)
    w = np.asarray(problem.mode_weights, np.float64).copy()
    order = np.lexsort((-D0, -lam))
    lt, dt = [], []
    for i in order:
        if len(lt) >= m:
            break
        wi = w[i]
        if abs(wi - round(wi)) > 1e-9 or lam[i] <= 0:
            break
        take = min(int(round(wi)), m - len(lt))
        lt += [lam[i]] * take
        dt += [D0[i]] * take
        w[i] = wi - take
    keep = w > 1e-9
    return (np.asarray(lt), np.asarray(dt), lam[keep], w[keep], D0[keep])


class AbstractTopModeTheory(AbstractTheory):
    """Hybrid particle/mean-field recursion (module docstring).

    State: `(Y, D)` with `Y` of shape `(N, m)` (top coordinates, one row per
    particle) and `D` the bulk energies.
    """

    lam_t: jax.Array
    D0_t: jax.Array
    lam_b: jax.Array
    w_b: jax.Array
    D0_b: jax.Array
    mix_cdf: jax.Array
    mix_v: jax.Array
    seed: jax.Array
    mean_field: AbstractTheory
    n_particles: int = eqx.field(static=True)
    handover: ClassVar[int] = DEFAULT_HANDOVER

    # ---- what a subclass implements ------------------------------------------------
    def _particle_step(self, key, k, Y, D):
        """`(Y_next, coeffs, report, top_next)` for iteration `k → k + 1`:

        - `Y_next`: every particle's exact stochastic step;
        - `coeffs`: per-particle coefficients (pytree, leading axis `N`) that
          `_bulk_update` receives averaged over the particles;
        - `report`: dict of per-particle values at the pre-step state, averaged and
          saved at `k` (`"lr"` is the step size, the rest observables);
        - `top_next`: per-particle `E[Σ_top λ_i y_i(k+1)² | y(k)]` (a conditional mean
          over the step's randomness, which lowers the particle noise of the risk),
          or `None` to read it from `Y_next`.
        """
        raise NotImplementedError

    def _bulk_update(self, k, D, coeffs):
        """Bulk energies after one step, from the particle-averaged `coeffs`."""
        raise NotImplementedError

    # ---- shared ----------------------------------------------------------------------
    def init_state(self, n_particles: int | None = None):
        n = self.n_particles if n_particles is None else n_particles
        Y0 = jnp.broadcast_to(jnp.sqrt(self.D0_t), (n, self.lam_t.shape[0]))
        return (self.init_particles(jnp.asarray(Y0, jnp.float64)),
                jnp.asarray(self.D0_b, jnp.float64))

    def init_particles(self, Y0):
        """The particle part of the state (a pytree, leading axis `N`) from the top
        coordinates `Y0`; default: `Y0` itself. A subclass with more per-particle state
        (AdaGrad-Norm's `b²`) returns a tuple and overrides `top`."""
        return Y0

    def top(self, P):
        """The top coordinates `Y` (shape `(N, m)`) of the particle state `P`."""
        return P

    def residual_variance(self, key, shape, D):
        """Variance `2P_bulk + v` of the residual part `z − ε` that the top modes do not
        see, with the noise's scale-mixture component `v` drawn per sample (so that
        `z − ε ~ N(0, 2P_bulk + v)` given it: the noise law, sampled exactly)."""
        if self.mix_v.shape[0] == 1:
            v = jnp.broadcast_to(self.mix_v[0], shape)
        else:
            u = jax.random.uniform(key, shape, jnp.float64)
            idx = jnp.minimum(jnp.searchsorted(self.mix_cdf, u), self.mix_v.shape[0] - 1)
            v = self.mix_v[idx]
        return self.bulk_risk2(D) + v

    def bulk_risk2(self, D):
        """`2 P_bulk = Σ_bulk w_j λ_j D_j`."""
        return jnp.sum(self.w_b * self.lam_b * D)

    def particle_risk2(self, Y, D):
        """`2P` of every particle: `Σ_top λ_i y_i² + 2 P_bulk`, shape `(N,)`."""
        return jnp.sum(self.lam_t * Y**2, axis=-1) + self.bulk_risk2(D)

    def risk(self, y):
        P, D = y
        return 0.5 * jnp.mean(self.particle_risk2(self.top(P), D))

    def step(self, k, y):
        """`(y_{k+1}, report_k, risk_{k+1})`: one iteration of the map, the particle
        means of the report at `k`, and the (conditional-mean) risk after the step."""
        Y, D = y
        key = jax.random.fold_in(jax.random.PRNGKey(self.seed), jnp.asarray(k, jnp.int32))
        Yn, coeffs, report, top_next = self._particle_step(key, k, Y, D)
        mean = jax.tree.map(lambda c: jnp.mean(c, axis=0), coeffs)
        Dn = self._bulk_update(k, D, mean)
        if top_next is None:
            top_next = jnp.sum(self.lam_t * self.top(Yn)**2, axis=-1)
        risk = 0.5 * (jnp.mean(top_next) + self.bulk_risk2(Dn))
        return (Yn, Dn), {n: jnp.mean(v) for n, v in report.items()}, risk

    def increment(self, k, y):
        """`y_{k+1} − y_k` of the discrete map (fixed seed; not an ODE field)."""
        return jax.tree.map(jnp.subtract, self.step(k, y)[0], y)

    def vector_field(self, k, y, args):
        raise NotImplementedError(
            "the top-mode hybrid is a discrete map (particles jump at every step): solve "
            "it with `recursion` (solve_ode does), or pass topmodes=0 for the mean-field ODE")

    def recursion(self, ks, *, rtol=1e-5, atol=1e-30, max_steps=100_000):
        n = len(ks)
        out = _run(self, jnp.asarray(padded_checkpoints(np.asarray(ks)), jnp.float64),
                   jnp.asarray(rtol, jnp.float64), jnp.asarray(atol, jnp.float64),
                   max_steps=int(max_steps), with_ode=bool(np.max(ks) > self.handover))
        risk, lr, obs, code = out
        return risk[:n], lr[:n], {k: v[:n] for k, v in obs.items()}, code

    def traced_recursion(self, ts, rtol, atol, *, max_steps: int):
        """`recursion` at (padded) checkpoints `ts` that may be traced: the same
        compiled map, called by `integrate` (so under `jax.vmap`/`jax.grad` and in
        sweeps). The mean-field continuation is compiled only if a checkpoint lies
        beyond the hand-over (always, when `ts` is traced)."""
        try:
            with_ode = bool(np.max(np.asarray(ts)) > self.handover)
        except jax.errors.TracerArrayConversionError:
            with_ode = True
        return _run(self, ts, rtol, atol, max_steps=max_steps, with_ode=with_ode)

    def handover_state(self, y):
        """The mean-field state `(mean_n y_i², D_bulk)` on `mean_field`'s split spectrum."""
        P, D = y
        return jnp.concatenate([jnp.mean(self.top(P)**2, axis=0), D])


def mean_field_arrays(fields: dict) -> dict:
    """`lam`, `weights`, `D0` of the split spectrum (top modes first, then the bulk), on
    which a hybrid's `mean_field` theory runs after `handover` iterations."""
    m = fields["lam_t"].shape[0]
    return dict(lam=jnp.concatenate([fields["lam_t"], fields["lam_b"]]),
                weights=jnp.concatenate([jnp.ones(m), fields["w_b"]]),
                D0=jnp.concatenate([fields["D0_t"], fields["D0_b"]]))


@functools.partial(eqx.filter_jit)
def _run(theory: AbstractTopModeTheory, ks, rtol, atol, max_steps: int, with_ode: bool = True):
    """`(risk, lr, observables, code)` at the (traced) checkpoints `ks`.

    The first `EARLY_STEPS` iterations use `EARLY_FACTOR·N` particles, then every
    `EARLY_FACTOR`-th particle is kept (the particles are i.i.d., so thinning is
    unbiased): the early transient, where the top modes hold nearly all the risk, has
    the largest particle noise. Then blocks of `BLOCK` iterations up to the last
    checkpoint (at most `handover`): fixed trip counts, a block past the last
    checkpoint skipped by `lax.cond`, each block under `jax.checkpoint`, so the map is
    reverse-differentiable with memory O(handover/BLOCK states), and a new horizon does
    not recompile. Beyond `handover` the mean-field ODE `theory.mean_field` continues
    from the particles' mean energies (module docstring); `with_ode=False` (static: no
    checkpoint beyond `handover`) leaves it out of the compiled program."""
    H = theory.handover

    def body(y, k):
        y, report, risk = theory.step(k, y)
        return y, (report, risk)

    n_early = min(EARLY_STEPS, H)
    y0 = theory.init_state(EARLY_FACTOR * theory.n_particles)
    y, (rep_e, risk_e) = jax.lax.scan(body, y0, jnp.arange(n_early, dtype=jnp.float64))
    risk_e = jnp.concatenate([jnp.asarray(theory.risk(y0))[None], risk_e])  # k = 0..n_early
    y = (jax.tree.map(lambda a: a[::EARLY_FACTOR], y[0]), y[1])

    # iterations n_early..H in blocks of BLOCK (a `lax.cond` skips the blocks past the
    # last checkpoint; `jax.checkpoint` keeps reverse mode at one state per block):
    # fixed trip counts, so `jax.grad` works through the map
    k_last = jnp.max(jnp.clip(ks, n_early, H))
    rep0 = {n: jnp.zeros(ks.shape, jnp.float64) for n in rep_e}
    risk0 = jnp.zeros(ks.shape, jnp.float64)

    def one(c, k):
        y, rep, risk = c
        active = k < k_last
        y1, report, r1 = theory.step(k, y)
        y1 = jax.tree.map(lambda a, b: jnp.where(active, a, b), y1, y)
        at = active & (ks == k)       # the report of the pre-step state k
        after = active & (ks == k + 1)  # the risk after the step
        rep = {n: jnp.where(at, report[n], v) for n, v in rep.items()}
        return (y1, rep, jnp.where(after, r1, risk)), None

    @jax.checkpoint
    def block(c, k0):
        return jax.lax.scan(one, c, k0 + jnp.arange(BLOCK, dtype=jnp.float64))[0]

    def outer(c, k0):
        return jax.lax.cond(k0 < k_last, block, lambda c, _: c, c, k0), None

    n_blocks = -(-(H - n_early) // BLOCK)
    starts = n_early + BLOCK * jnp.arange(n_blocks, dtype=jnp.float64)
    (y_end, rep_l, risk_l), _ = jax.lax.scan(outer, (y, rep0, risk0), starts)
    # a checkpoint at k_last holds its report at k_last (pre-step, state not advanced)
    last = theory.step(k_last, y_end)[1]
    rep_l = {n: jnp.where(ks == k_last, last[n], v) for n, v in rep_l.items()}
    idx = jnp.clip(ks, 0, n_early).astype(jnp.int32)
    early = ks < n_early
    risk = jnp.where(ks <= n_early, risk_e[idx], risk_l)
    rep = {n: jnp.where(early, jnp.concatenate([v, v[-1:]])[idx], rep_l[n])
           for n, v in rep_e.items()}
    lr = rep.pop("lr", jnp.full(risk.shape, jnp.nan))
    code = jnp.zeros((), jnp.int32)
    if not with_ode:
        code = jnp.where(~jnp.all(jnp.isfinite(risk)), 5, code)
        return risk, lr, rep, code.astype(jnp.int32)
    # beyond the hand-over: the mean-field ODE from the particles' mean energies
    late = ks > H
    m_risk, m_lr, m_obs, m_code, _ = integrate(
        theory.mean_field, ks, rtol, atol, max_steps=max_steps,
        start=(jnp.asarray(float(H), jnp.float64), theory.handover_state(y_end)))
    risk = jnp.where(late, m_risk, risk)
    lr = jnp.where(late, m_lr, lr)
    obs = {n: jnp.where(late, m_obs[n] if n in m_obs else jnp.nan, v) for n, v in rep.items()}
    code = jnp.where(jnp.any(late), m_code, 0)
    code = jnp.where((code == 0) & ~jnp.all(jnp.isfinite(risk)), 5, code)
    return risk, lr, obs, code.astype(jnp.int32)
