"""Muon (optax's Newton–Schulz orthogonalisation, with momentum): the row-energy ODE.

Update (simulated by `optax.contrib.muon(η/√max(1, m/d), beta=μ, nesterov=...)`):
`M̂_k = Σ_j c_j G_{k−j}` (bias-corrected EMA, with or without Nesterov),
`W ← W − η NS(M̂_k)`; time unit: one iteration `k`. As for SignSVD (`_signsvd.py`), with
`Q = NS(M)`:

    dD_i/dk = −2η drift_i + η² noise_i,   drift_i = E(QΔᵀ)_ii = ρ_i D_i,  noise_i = E(QQᵀ)_ii

**Newton–Schulz as a spectral map.** optax divides by `n = ‖M‖_F + 1e-8`, then applies
`ns_steps` times `X ← aX + b(XXᵀ)X + c(XXᵀ)²X` (`(a, b, c) = (3.4445, −4.775, 2.0315)`),
so `NS(M) = U f(S/n) Vᵀ` with `f = p∘…∘p`, `p(x) = ax + bx³ + cx⁵` (`f(x) ≈ a⁵x ≈ 485x`
for `x ≲ 2·10⁻³`, then oscillating in `[0.68, 1.2]` up to `x = 1`). Hence
`NS(M) = φ(MMᵀ)M` with `φ(u) = f(√u/n)/√u = h(u/n²)/n`, `h(v) = f(√v)/√v`, and
`NS NSᵀ = F(MMᵀ/n²)`, `F(v) = f(√v)²`. `n² ≈ E‖M‖_F²`, exactly (Gaussian data):

    E‖M‖_F² = (1 + 1/B_eff) Σ λ_i² D_i + tr K (2P + mσ²)/B_eff,   1/B_eff = Σ_samples c_b²

(`B_eff = B` without momentum). Pole sums with `t_j` on a log grid (least squares):

    h(v) ≈ Σ_j c_j/(t_j + v),    F(v) ≈ Σ_j e_j v/(t_j + v)

fitted to `f` smoothed by a Gaussian window in `log x` (standard deviation `smooth/2`
decades; `f(x) := f(1)` for `x > 1`, where `x = s/√E‖M‖²` can land when `‖M‖_F`
fluctuates). The smoothing stands for the spread of `x` between samples: the
oscillations of `f` cannot be written with poles on the negative axis (errors in
`docs/theory/muon.md`). With `s_j = t_j n²` and the blocks `g11_i, g12_i` of the
deterministic equivalent (`_signsvd._Equivalent.at_nodes`):

    ρ_i = n Σ_j c_j g12_i(s_j)/√D_i,     noise_i = Σ_j e_j (1 + s_j g11_i(s_j))

**Top singular value (`spike=True`).** The smoothing is wrong where one singular value
is sharply located: a mode `i` that dominates `M` has `x_i² ≈ A_i/(A_i + R_i)`,
`A_i = λ_i² D_i y² + λ_i(2P + mσ²)/B_eff`, `R_i = E‖M‖² − E A_i` (times an independent
`y'`), `y, y' ~ χ²_B_eff/B_eff` (lognormal, 16×16 Gauss–Hermite nodes), and `f(x_i)`
sits where `f` drops from 1.03 (`x = 0.85`) to 0.68 (`x = 0.9`). Drift and noise of mode `i`
are multiplied by `κ1 = E f(x_i)/E f̃(x_i)` and `κ2 = E f(x_i)²/E f̃(x_i)²` (`f̃` the
fitted map) with the weight `clip((q_i − 0.3)/0.3, 0, 1)·clip((B_eff − 8)/16, 0, 1)`,
`q_i = E A_i/E‖M‖²`: spike-like modes only, and only where `x` concentrates.

**Momentum: which samples, with which weights.** `M̂_k = Σ_j c_j G_{k−j}`
(`momentum_weights`: `c_j = c1(1 − μ)μ^j + c2[j = 0]`, `(c1, c2)` from `ema_coefficients`,
optax's bias corrections, with or without Nesterov). The leave-one-out equivalent with
per-sample weights keeps the same three scalars `x` (with `B → B_eff = B(Σc)²/Σc²`) and
replaces Γ by the class sum (`_signsvd._gamma`, `p_j = c_j B_eff`):

    Γ = (1/B_eff) Σ_j B p_j [−p_j x22, 1 + p_j x12, −p_j x11] / ((1 + p_j x12)² − p_j² x11 x22)

**Momentum: the linear-response model (default, `momentum_model="linear"`).** Per mode
`i` (rows are `m`-vectors; only their second moments enter), with `M = λh + z`, `h` the
EMA of `Δ`, `z` the EMA of the batch noise `ε` (`E‖ε_i‖² = s_i = [λ_i(2P + mσ²) +
λ_i²D_i]/B`), `ĥ = αh + βΔ`, `ẑ = αz + βε`, `α = c1μ`, `β = c1(1 − μ) + c2`:

    Q_i = a_s λ ĥ̄ + a_n (λ ĥ̃ + ẑ) + r,   Δ' = Δ − ηQ,   h' = μh + (1 − μ)Δ,   z' = μz + (1 − μ)ε

`ĥ̄` is the mean of `ĥ` (deterministic, `∝ Δ_0`), `ĥ̃` its fluctuation (built from past
noise). The state is the mean `(u, u_h)` (`E Δ = uΔ_0`) and the fluctuation second
moments `Σ̃` of `(Δ, h, z, q)` (10 per mode); the map `Σ̃' = AΣ̃Aᵀ + s bbᵀ + b_q b_qᵀ` is
exact for this linear model. The gains come from the equivalent at the buffer's signal
energy `D̃ = E ĥ²`:

- `a_s = ρ/λ`: response to a signal independent of the samples (the drift of §SignSVD);
- `a_n = (E(QMᵀ)_ii − λρD̃)/E‖Z_i‖²`: response to the buffer's own noise, smaller than
  `a_s` (leave-one-out), from `E(QMᵀ)_ii = n Σ_j c_j(1 + s_j g11_i(s_j))` (the same pole sum
  as `h`, since `φ(u)u = n v h(v)`); the noise-built `ĥ̃` gets `a_n` too
  (`split_gain`; measured in the closed loop: the regression gain of `Q` on `ĥ` at the
  floor equals `a_n` to 5%, not `a_s`);
- `r = a_r q`: the rest, `a_r² = noise − E‖linear part‖²`, with the EMA's correlation in
  time (`correlated_rest`: `q_k = μq_{k−1} + √(1 − μ²)ξ_k`, unit energy; measured:
  `corr(Q_k, Q_{k−l}) ≈ μ^l` on every mode, with or without Nesterov);
- `closed_loop`: `ĥ` and `ẑ` are correlated (the iterate moves against the noise it has
  seen: `corr(ĥ_0, ẑ_0) ≈ −0.48` at the floor); the equivalent is evaluated at the signal
  `(λ + c)ĥ`, `c = E⟨ĥ, ẑ⟩/D̃`, and `‖M‖² = Σ(λ²D̃ + 2λE⟨ĥ,ẑ⟩ + E ẑ²)`.

`momentum_model="lagged"` is the earlier quasi-static model (state `(D, ⟨Δ̃, Δ⟩, ‖Δ̃‖²)`,
noise amplified by `1 + 2Σ_l r_l e^{−ηρl}`). Measured errors: `docs/theory/muon.md` §2.

**Regime.** As SignSVD (diagonal closure `ΔΔᵀ ≈ diag(D)`, orthogonal target rows) plus:
`‖M‖_F` replaced by its mean (fluctuates at small `B_eff`: coefficient of variation
≈ 1 at `B = 4` on an `α = 1.5` power law; there all `x` sit in the saturated range where
only the smoothed `f` matters), and `f` smoothed. Measured accuracy: `docs/theory/muon.md`.

References: Jordan et al., "Muon" (2024); "Phases of Muon" (arXiv 2605.09552).
"""

from __future__ import annotations

import functools
from typing import ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from ..optimizers import Muon
from ._base import AbstractRateTheory, register
from ._matrix_sampled import sampled_theory
from ._signsvd import _Equivalent, use_sampled
from ._signsvd_common import NS_COEFFS, RESIDUAL_TOL, check_matrix, check_spectrum, leaf_opt, ns_map

__all__ = ["MuonTheory", "muon_theory", "ns_map", "pole_fit", "expected_sq_norm",
           "ema_coefficients", "momentum_weights"]

NS_EPS = 1e-8  # optax's Frobenius pre-scaling: M/(‖M‖_F + eps)


def _smoothed_f(x, ns_steps, smooth):
    f1 = float(ns_map(1.0, ns_steps))
    ev = lambda z: np.where(z <= 1, ns_map(np.minimum(z, 1.0), ns_steps), f1)  # noqa: E731
    if smooth <= 0:
        return ev(x)
    g = np.linspace(-1.0, 1.0, 41)
    wg = np.exp(-2.0 * g**2)
    wg /= wg.sum()
    return sum(wk * ev(x * 10.0 ** (smooth * gk)) for gk, wk in zip(g, wg))


@functools.lru_cache(maxsize=16)
def pole_fit(ns_steps: int = 5, smooth: float = 0.3, per_decade: int = 4, ridge: float = 1e-6):
    """Pole sums `h(v) ≈ Σ c_j/(t_j + v)`, `F(v) ≈ Σ e_j v/(t_j + v)` (module docstring).

    Returns `(t, c, e, info)`: `t` descending (numpy), `info` with the max relative error
    of both fits to the smoothed target on `v ∈ [v_lo, 100]` and the rms relative
    deviation of the smoothed `f` from `f` (the oscillation that is averaged out).
    """
    if not (isinstance(ns_steps, int) and ns_steps >= 1):
        raise ValueError(f"`ns_steps` must be an integer >= 1, got {ns_steps!r}")
    if not 0 <= smooth <= 1:
        raise ValueError(f"`smooth` must be in [0, 1] (decades), got {smooth!r}")
    slope = NS_COEFFS[0] ** ns_steps
    t_lo = min(1e-9, 1e-3 / slope**2)
    t = np.logspace(np.log10(t_lo), 2.0, int(round((2 - np.log10(t_lo)) * per_decade)) + 1)
    v = np.logspace(np.log10(t_lo) - 3, 2.0, 3000)
    fx = _smoothed_f(np.sqrt(v), ns_steps, smooth)
    h, F = fx / np.sqrt(v), fx**2

    def lsq(A, y):  # relative least squares, column-scaled ridge
        Ar = A / y[:, None]
        cs = np.linalg.norm(Ar, axis=0)
        Ars = Ar / cs
        coef = np.linalg.solve(Ars.T @ Ars + ridge * np.eye(t.size), Ars.T @ np.ones_like(y))
        return coef / cs, float(np.max(np.abs(A @ (coef / cs) / y - 1)))

    c, err_h = lsq(1.0 / (t[None, :] + v[:, None]), h)
    e, err_F = lsq(v[:, None] / (t[None, :] + v[:, None]), F)
    sat = v > 1e-4
    osc = float(np.sqrt(np.mean((fx[sat] / ns_map(np.sqrt(np.minimum(v[sat], 1)), ns_steps)
                                 - 1) ** 2)))
    info = {"err_h": err_h, "err_F": err_F, "osc_rms": osc, "n_poles": int(t.size)}
    return t[::-1].copy(), c[::-1].copy(), e[::-1].copy(), info


def ema_coefficients(mu, k, nesterov: bool):
    """`(c1, c2)` with the update's buffer `M̂_k = c1 M_k + c2 G_k` at step `k = 0, 1, …`
    (`M_k = μM_{k−1} + (1 − μ)G_k`, `M_{−1} = 0`; optax's bias corrections):
    `(1/(1 − μ^{k+1}), 0)`, or with Nesterov `(μ/(1 − μ^{k+2}), (1 − μ)/(1 − μ^{k+1}))`."""
    if nesterov:
        return mu / (1 - mu ** (k + 2)), (1 - mu) / (1 - mu ** (k + 1))
    return 1 / (1 - mu ** (k + 1)), jnp.zeros_like(jnp.asarray(mu, jnp.float64))


def momentum_weights(mu, k, n_lags: int, nesterov: bool):
    """Weights of `G_{k−j}`, `j = 0 … n_lags − 1`, in `M̂_k` (`c1(1 − μ)μ^j + c2[j = 0]`),
    zero for gradients not yet drawn (fractional presence `clip(k + 1 − j, 0, 1)` at
    continuous `k`). NS is scale invariant: only their ratios matter."""
    c1, c2 = ema_coefficients(mu, k, nesterov)
    j = jnp.arange(n_lags, dtype=jnp.float64)
    return (c1 * (1 - mu) * mu**j + c2 * (j == 0)) * jnp.clip(k + 1.0 - j, 0.0, 1.0)


def expected_sq_norm(lam, w, D, m, sigma2, batch_eff):
    """`E‖M‖_F² = (1 + 1/B_eff) Σ w λ² D + (Σ w λ)(Σ w λ D + mσ²)/B_eff` (exact, Gaussian
    data, any Δ with row energies `D` in the eigenbasis; `M = Σ_b c_b x_b r_bᵀ`,
    `Σ c_b = 1`, `1/B_eff = Σ c_b²`)."""
    return ((1 + 1 / batch_eff) * jnp.sum(w * lam**2 * D)
            + jnp.sum(w * lam) * (jnp.sum(w * lam * D) + m * sigma2) / batch_eff)


class MuonTheory(AbstractRateTheory):
    """Row-energy ODE of Muon (module docstring). State: `D` (modes)."""

    eq: _Equivalent
    D0: jax.Array
    opt: object  # `leaf_opt(opt)`: η(k) = opt.lr_at(k)
    t_poles: jax.Array
    c_poles: jax.Array
    e_poles: jax.Array
    momentum: jax.Array
    n_lags: int = eqx.field(static=True)
    weights: str = eqx.field(static=True)  # "exact" | "effective"
    noise_correlation: bool = eqx.field(static=True)
    lag: bool = eqx.field(static=True)  # track the lagged momentum Δ̃ (μ > 0)
    spike: bool = eqx.field(static=True)  # top-singular-value correction
    ns_steps: int = eqx.field(static=True)
    nesterov: bool = eqx.field(static=True)
    model: str = eqx.field(static=True)  # momentum model: "linear" | "lagged" | "none"
    closed_loop: bool = eqx.field(static=True)  # linear model: ĥ–ẑ correlation in M
    correlated_rest: bool = eqx.field(static=True)  # linear model: r correlated as ẑ
    split_gain: bool = eqx.field(static=True)  # linear model: noise gain on ĥ̃

    discrete_start: ClassVar[bool] = True
    residual_tol: ClassVar[float] = RESIDUAL_TOL

    def init_state(self):
        if self.model == "linear":  # (ΔΔ, Δh, Δz, hh, hz, zz) per mode (SECOND_MOMENTS)
            zero, one = jnp.zeros_like(self.D0), jnp.ones_like(self.D0)
            cols = [one if (i, j) == (3, 3) else zero for i, j in _PAIRS]  # q: unit, stationary
            return jnp.stack(cols + [one, zero], -1)
        if self.lag:  # (D, C = ⟨Δ̃, Δ⟩, D̃ = ‖Δ̃‖²) per mode
            return jnp.stack([self.D0, self.D0, self.D0])
        return self.D0

    def risk(self, y):
        if self.model == "linear":
            D = y[:, 0] + y[:, _NP] ** 2 * self.D0
        else:
            D = y[0] if self.lag else y
        return 0.5 * jnp.sum(self.eq.w * self.eq.lam * D)

    def lr(self, k, D):
        return jnp.asarray(self.opt.lr_at(k), jnp.float64)

    def residual(self, k, y):
        """Newton residual of the fixed point (at the lagged `D̃` with momentum)."""
        if self.model == "linear":
            return self._linear(k, y)[2]
        return self.drift_noise(k, y[2] if self.lag else y)[2]

    def increment(self, k, y):
        """The one-step mean map `E[y_{k+1}] − y_k` (the raw per-step rates)."""
        if self.model == "linear":
            L, f, _ = self._linear(k, y)
            return jnp.einsum("npq,nq->np", L, y) + f - y
        a, f = self._step_rates(k, y)
        return -a * y + f

    def _rates(self, k, y):
        if self.model == "linear":
            L, f, _ = self._linear(k, y)
            return jnp.eye(_NP + 2) - L, f
        return self._step_rates(k, y)  # the ODE: the map's per-step rates as rates in k

    def _classes(self, k):
        """`(B_eff, classes or None, r_l)` at time `k` (`k + 1` gradients in `M`)."""
        mu, B = self.momentum, self.eq.batch
        if self.n_lags == 1:
            return B, None, jnp.zeros((1,))
        ng = k + 1.0
        j = jnp.arange(self.n_lags, dtype=jnp.float64)
        raw = momentum_weights(mu, k, self.n_lags, self.nesterov)
        s1, s2 = jnp.sum(raw), jnp.sum(raw**2)
        B_eff = B * s1**2 / s2
        # correlation of M_k and M_{k-l}, l = 1..n_lags-1 (EMA of independent gradients)
        lag = j[1:]
        left = jnp.clip(ng - lag, 0.0, None)
        r = (mu**lag * jnp.sqrt((1 - mu ** (2 * left)) / (1 - mu ** (2 * ng)))
             * jnp.clip(ng - lag, 0.0, 1.0))
        if self.weights == "effective":
            return B_eff, None, r
        return B_eff, (jnp.full_like(raw, B), raw * s1 / s2), r

    def _ema(self, k):
        return ema_coefficients(self.momentum, k, self.nesterov)

    def _linear(self, k, y):
        """Linear-response momentum model: `(L, f, residual)` with `y_{k+1} = L y_k + f`.

        Per mode, `x = (Δ_k, h_{k−1}, z_{k−1}, q_{k−1})` (`M = λh + z`: the EMA of the signal
        and of the batch noise), split into its mean `x̄ = (u, u_h, 0, 0)·Δ_0` and fluctuation `x̃`
        (second moments `Σ̃` of `(Δ, h, z, q)`, packed as `_PAIRS`); `y = (Σ̃, u, u_h)`.
        The update is `Q = a_s λ ĥ̄ + a_n(λ ĥ̃ + ẑ) + a_r q` (`ĥ = αh + βΔ`, `ẑ = αz + βε`,
        `α = c1μ`, `β = c1(1 − μ) + c2`), `q` an AR(1) of coefficient `μ` (the rest).
        Module docstring and `docs/theory/muon.md` §2.
        """
        eq, lam, w, mu = self.eq, self.eq.lam, self.eq.w, self.momentum
        S = _unpack(y[:, :_NP])
        u, uh = y[:, _NP], y[:, _NP + 1]
        c1, c2 = self._ema(k)
        al, be = c1 * mu, c1 * (1 - mu) + c2
        hbar = al * uh + be * u  # mean of ĥ in units of Δ_0
        Dm = hbar**2 * self.D0  # E‖ĥ̄‖²
        Df = jnp.clip(al**2 * S[:, 1, 1] + 2 * al * be * S[:, 0, 1] + be**2 * S[:, 0, 0],
                      0.0, None)  # E‖ĥ̃‖²
        Dt = jnp.clip(Dm + Df, 1e-300, None)
        D = S[:, 0, 0] + u**2 * self.D0
        eta = self.lr(k, D)
        P2 = jnp.sum(w * lam * D) + eq.m * eq.sigma2
        s_now = (lam * P2 + lam**2 * D) / eq.batch  # fresh batch-gradient noise energy
        hz = al**2 * S[:, 1, 2] + al * be * S[:, 0, 2]  # E⟨ĥ, ẑ⟩ (ε_k is independent)
        zz = al**2 * S[:, 2, 2] + be**2 * s_now  # E ẑ²
        if self.closed_loop:
            # the buffer row is λĥ + ẑ with ẑ correlated to ĥ: the equivalent sees the
            # signal (λ + c)ĥ, c = E⟨ĥ,ẑ⟩/D̃, and ‖M‖² of the correlated pair
            amp = jnp.clip(lam * jnp.sqrt(Dt) + hz / jnp.sqrt(Dt), 0.0, None)
            D_eq = jnp.clip(amp**2 / lam**2, 1e-300, None)
            n2 = jnp.sum(w * (lam**2 * Dt + 2 * lam * hz + zz))
        else:
            D_eq, n2 = Dt, None
        rho, noise, res, B_eff, qm = self._equivalent(k, D_eq, n2)
        rho = jnp.clip(rho, 0.0, None)
        a_s = rho / lam  # response to a signal independent of the samples
        P2e = jnp.sum(w * lam * D_eq) + eq.m * eq.sigma2
        z_eq = (lam * P2e + lam**2 * D_eq) / B_eff  # the buffer noise the equivalent saw
        a_n = jnp.clip((qm - lam * rho * D_eq) / z_eq, 0.0, None)  # response to the noise
        a_f = a_n if self.split_gain else a_s  # gain on the noise-built ĥ̃
        lin = (a_s**2 * lam**2 * Dm + a_f**2 * lam**2 * Df + 2 * lam * a_f * a_n * hz
               + a_n**2 * zz)
        rest = jnp.clip(noise - lin, 0.0, None)
        z = jnp.zeros_like(lam)
        o = jnp.ones_like(lam)
        if self.correlated_rest:
            # r = a_r q, q_k = μ q_{k−1} + √(1 − μ²) ξ_k (unit energy, correlation μ^l as the
            # EMA), a_r² = the open-loop energy of the rest
            a_r = jnp.sqrt(rest)
            cq, wq, r2 = mu * o, jnp.sqrt(1 - mu**2) * o, z
        else:
            a_r, cq, wq, r2 = z, z, z, rest
        ef, en, er = eta * a_f, eta * a_n, eta * a_r
        A = jnp.stack([jnp.stack([1 - ef * lam * be, -ef * lam * al, -en * al, -er * cq], -1),
                       jnp.stack([(1 - mu) * o, mu * o, z, z], -1),
                       jnp.stack([z, z, mu * o, z], -1),
                       jnp.stack([z, z, z, cq], -1)], -2)  # (n, 4, 4)
        b = jnp.stack([-en * be, z, (1 - mu) * o, z], -1)  # batch noise ε (energy s)
        bq = jnp.stack([-er * wq, z, z, wq], -1)  # innovation of the rest (unit energy)
        N = (s_now[:, None, None] * b[:, :, None] * b[:, None, :]
             + bq[:, :, None] * bq[:, None, :])
        N = N.at[:, 0, 0].add(eta**2 * r2)
        basis = jnp.asarray(_BASIS)
        Lf = jax.vmap(lambda E: _pack(A @ E @ jnp.swapaxes(A, -1, -2)), out_axes=-1)(basis)
        es = eta * a_s
        Lm = jnp.stack([jnp.stack([1 - es * lam * be, -es * lam * al], -1),
                        jnp.stack([(1 - mu) * o, mu * o], -1)], -2)  # mean (u, u_h)
        n = lam.shape[0]
        L = jnp.zeros((n, _NP + 2, _NP + 2)).at[:, :_NP, :_NP].set(Lf)
        L = L.at[:, _NP:, _NP:].set(Lm)
        f = jnp.concatenate([_pack(N), jnp.zeros((n, 2))], -1)
        return L, f, res

    def _equivalent(self, k, D, n2=None):
        """`(ρ, noise, residual, B_eff, E(QMᵀ)_ii)` of one update at signal energies `D`
        (`n2`: `E‖M‖_F²` if known, else the open-loop value)."""
        eq, lam, w = self.eq, self.eq.lam, self.eq.w
        B_eff, classes, _ = self._classes(k)
        if n2 is None:
            n2 = expected_sq_norm(lam, w, D, eq.m, eq.sigma2, B_eff)
        n = jnp.sqrt(jnp.maximum(n2, 1e-300)) + NS_EPS
        s = self.t_poles * n**2
        g11, g12n, res = eq.at_nodes(D, s, B_eff, classes)
        rho = n * jnp.sum(self.c_poles[:, None] * g12n, 0)
        noise = jnp.clip(jnp.sum(self.e_poles[:, None] * (1 + s[:, None] * g11), 0), 0.0, None)
        # E(QMᵀ)_ii = n Σ_j c_j (1 + s_j g11_i(s_j))  (φ(u)u = n v h(v), v = u/n²)
        qm = n * jnp.sum(self.c_poles[:, None] * (1 + s[:, None] * g11), 0)
        if self.spike:
            k1, k2 = self._spike(D, n2, B_eff)
            rho, noise, qm = rho * k1, noise * k2, qm * k1
        return rho, noise, res, B_eff, qm

    def _spike(self, D, n2, B_eff):
        """Top-singular-value correction `(κ1, κ2)` per mode (module docstring)."""
        eq, lam = self.eq, self.eq.lam
        P2 = jnp.sum(eq.w * lam * D) + eq.m * eq.sigma2
        noise_part = lam * P2 / B_eff
        mean_A = lam**2 * D * (1 + 1 / B_eff) + noise_part
        rest = jnp.maximum(n2 - mean_A, 1e-300)
        q = mean_A / n2
        zh, wh = np.polynomial.hermite_e.hermegauss(16)
        s2 = jnp.log1p(2 / B_eff)
        y = jnp.exp(-s2 / 2 + jnp.sqrt(s2) * jnp.asarray(zh))  # χ²_B/B, lognormal
        A = (lam**2 * D * y[:, None, None] ** 2 + noise_part)  # (16, 1, modes)
        R = rest * y[None, :, None]  # the rest fluctuates independently (16 x 16 nodes)
        x = jnp.sqrt(jnp.clip(A / (A + R), 0.0, 1.0))
        f = ns_map(x, self.ns_steps)
        ft = x * jnp.sum(self.c_poles / (self.t_poles + x[..., None] ** 2), -1)
        w1 = jnp.asarray(wh / wh.sum())
        wq = (w1[:, None] * w1[None, :])[..., None]
        k1 = jnp.sum(wq * f, (0, 1)) / jnp.sum(wq * ft, (0, 1))
        k2 = jnp.sum(wq * f**2, (0, 1)) / jnp.sum(wq * ft**2, (0, 1))
        # spike-like modes only (q ≥ 0.6 full), and only where x concentrates: at
        # B_eff ≲ 8 ‖M‖_F fluctuates by O(1) and the smoothing of f already covers it
        gate = jnp.clip((q - 0.3) / 0.3, 0.0, 1.0) * jnp.clip((B_eff - 8) / 16, 0.0, 1.0)
        return 1 + gate * (k1 - 1), 1 + gate * (k2 - 1)

    def drift_noise(self, k, D):
        """`(ρ, noise, residual)` per mode at time `k` (noise with the lag correlation)."""
        eq, lam, w = self.eq, self.eq.lam, self.eq.w
        B_eff, classes, r = self._classes(k)
        n2 = expected_sq_norm(lam, w, D, eq.m, eq.sigma2, B_eff)
        n = jnp.sqrt(jnp.maximum(n2, 1e-300)) + NS_EPS
        s = self.t_poles * n**2
        g11, g12n, res = eq.at_nodes(D, s, B_eff, classes)
        rho = n * jnp.sum(self.c_poles[:, None] * g12n, 0)
        noise = jnp.clip(jnp.sum(self.e_poles[:, None] * (1 + s[:, None] * g11), 0), 0.0, None)
        if self.spike:
            k1, k2 = self._spike(D, n2, B_eff)
            rho, noise = rho * k1, noise * k2
        if self.noise_correlation and self.n_lags > 1:
            eta = self.lr(k, D)
            lag = jnp.arange(1, self.n_lags, dtype=jnp.float64)
            amp = 1 + 2 * jnp.sum(r[:, None] * jnp.exp(-eta * jnp.clip(rho, 0, None)[None, :]
                                                      * lag[:, None]), 0)
            mean_sq = jnp.minimum(rho**2 * D, noise)
            noise = mean_sq + (noise - mean_sq) * amp
        return rho, noise, res

    def _step_rates(self, k, y):
        if not self.lag:
            rho, noise, _ = self.drift_noise(k, y)
            eta = self.lr(k, y)
            return 2 * eta * jnp.clip(rho, 0.0, None), eta**2 * noise
        D, C, Dt = y[0], y[1], y[2]
        rho, noise, _ = self.drift_noise(k, Dt)  # the equivalent sees the lagged Δ̃
        rho = jnp.clip(rho, 0.0, None)
        eta = self.lr(k, D)
        mu = self.momentum
        g = (1 - mu) / (1 - mu ** (k + 2))  # weight of the newest gradient at step k + 1
        dD = -2 * eta * rho * C + eta**2 * noise
        a_D = 2 * eta * rho * jnp.clip(C, 0.0, None) / jnp.maximum(D, 1e-300)
        f_D = -2 * eta * rho * jnp.clip(C, None, 0.0) + eta**2 * noise
        a = jnp.stack([a_D, g * jnp.ones_like(D), (2 * g - g**2) * jnp.ones_like(D)])
        f = jnp.stack([f_D, g * (D + dD) - (1 - g) * eta * rho * Dt,
                       (2 * g - 2 * g**2) * C + g**2 * D])
        return a, f


_NX = 4  # (Δ, h, z, q) per mode
_PAIRS = tuple((i, j) for i in range(_NX) for j in range(i, _NX))  # packed symmetric
_NP = len(_PAIRS)


def _basis():
    E = np.zeros((_NP, _NX, _NX))
    for p, (i, j) in enumerate(_PAIRS):
        E[p, i, j] = E[p, j, i] = 1.0
    return E


_BASIS = _basis()


def _pack(S):
    return jnp.stack([S[..., i, j] for i, j in _PAIRS], -1)


def _unpack(y):
    idx = np.zeros((_NX, _NX), int)
    for p, (i, j) in enumerate(_PAIRS):
        idx[i, j] = idx[j, i] = p
    return y[:, idx]


def muon_theory(opt, lam, D0, m, sigma2=0.0, weights=None, *, smooth: float = 0.3,
                momentum_weights: str = "exact", noise_correlation: bool = True,
                lag: bool = True, spike: bool = True, n_newton: int = 3,
                lag_tol: float = 1e-10, momentum_model: str = "linear",
                closed_loop: bool = True, correlated_rest: bool = True,
                split_gain: bool = True) -> MuonTheory:
    """Build the Muon ODE from a spectrum (`weights` = multiplicities, compressed).

    `momentum_weights`: `"exact"` (per-lag weight classes) or `"effective"` (equal
    weights at `B_eff`); `noise_correlation`: the lag correlation of the updates;
    `lag`: evolve the lagged momentum `Δ̃` (else quasi-static `Δ̃ = Δ`); these three
    apply to `momentum_model="lagged"`. `momentum_model="linear"` (default): the
    linear-response model with the options `closed_loop`, `correlated_rest`,
    `split_gain` (module docstring; switching one off is the negative control of
    `tests/test_muon_ode.py`). `spike`: the top-singular-value correction; `smooth`:
    window of the fitted `f` (decades).
    """
    lam, D0, w = check_spectrum(lam, D0, weights, m)
    if momentum_weights not in ("exact", "effective"):
        raise ValueError(f"`momentum_weights` must be 'exact' or 'effective', got "
                         f"{momentum_weights!r}")
    if momentum_model not in ("linear", "lagged"):
        raise ValueError(f"`momentum_model` must be 'linear' or 'lagged', got "
                         f"{momentum_model!r}")
    if not 0 < lag_tol < 1:
        raise ValueError(f"`lag_tol` must be in (0, 1), got {lag_tol!r}")
    mu = float(opt.momentum)
    n_lags = 1 if mu == 0 else int(np.ceil(np.log(lag_tol) / np.log(mu))) + 1
    t, c, e, _ = pole_fit(int(opt.ns_steps), float(smooth))
    f64 = functools.partial(jnp.asarray, dtype=jnp.float64)
    eq = _Equivalent(f64(lam), f64(w), f64(m), f64(opt.batch), f64(sigma2), 8, int(n_newton))
    return MuonTheory(eq, f64(D0), leaf_opt(opt), f64(t), f64(c), f64(e), f64(mu),
                      n_lags, momentum_weights,
                      bool(noise_correlation), bool(lag) and n_lags > 1, bool(spike),
                      int(opt.ns_steps), bool(getattr(opt, "nesterov", False)),
                      momentum_model if n_lags > 1 else "none", bool(closed_loop),
                      bool(correlated_rest), bool(split_gain))


@register(Muon)
def _muon_builder(opt, problem, one_step: str = "auto", samples: int | None = None,
                  sample_seed: int = 0, **options):
    """Muon ODE. Without momentum, `one_step` (`_signsvd.use_sampled`) chooses the
    one-step mean over `samples` fixed batch draws (`_matrix_sampled`, the default
    where it applies) or the pole-sum equivalent below; passing one of `muon_theory`'s
    options selects the equivalent under `"auto"`."""
    check_matrix(problem, opt)
    if use_sampled(problem, opt, "equivalent" if options and one_step == "auto" else one_step,
                   samples):  # options of the equivalent ask for it
        return sampled_theory(opt, problem, int(opt.ns_steps), samples=samples,
                              seed=sample_seed)
    return muon_theory(opt, problem.eigenvalues, problem.initial_energies, problem.m,
                       sigma2=problem.sigma2, weights=problem.weights, **options)
