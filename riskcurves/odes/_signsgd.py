"""SignSGD: risk ODEs for diagonal and general covariances (setting.md §5).

Update `Δ ← Δ − η(k) sign(g)`, `g = (1/B) Σ_b x_b r_b`. Time is the iteration
count `k`; `η` is per iteration. Exact one-step identity for any coordinate:

    E[Δ_i'² − Δ_i² | Δ] = −2η Δ_i E[sign(g_i) | Δ] + η²          (sign² = 1)

**Diagonal K** (`problem.is_diagonal`; state `D_i`, `P = ½ Σ w_i λ_i D_i`):

    dD_i/dk = −2η √D_i m_i + η²

- `drift="exact"` (default; alias `"arcsin"`): `m_i = E[sign(g_i) | Δ_i = √D_i]`
  exactly (`theory.expected_sign` with `a = √(λ_i D_i)`, `rest = 2P − λ_i D_i`);
  `B = 1`: `m_i = Σ_k w_k (2/π) arcsin(√(λ_i D_i/(2P + v_k)))` (the arcsin
  drift; Gaussian noise: one term with `v = σ²`).
- `drift="linear"`: `m_i = φ_B(P) √λ_i √D_i`, i.e. `dD_i/dk = −2ηφ_B √λ_i D_i + η²`.


The damping (stiff part, integrated exactly by `ETD2`) is the secant rate
`2η m_i/√D_i`.

**General K** (dense, `d ≲ 2000`): `K̄ = Dg^(−1/4) K Dg^(−1/4) = V diag(λ̄) Vᵀ`,
`y_j = (v_jᵀ Dg^(1/4) Δ)²`, `n_j = v_jᵀ Dg^(1/4) K̃ Dg^(1/4) v_j`,
`K̃ = (2/π) arcsin(C)`, `P = ½ Σ λ̄_j y_j`:

    dy_j/dk = −2ηφ̂ λ̄_j y_j + η² [n_j + (2/π) χ_B(P) (λ̄_j² y_j − (Wᵀ W λ̄² y)_j)]

with `W = V ∘ V` (entrywise square). `drift="linear"`: `φ̂ = φ_B(P)` (setting.md §5).
`drift="exact"` (default): `φ̂ = E[a m(a)]/s_a²`, `a ~ N(0, s_a²)`, the
statistical (Bussgang) linearisation of the exact per-coordinate response
`m(a) = E[sign(g_i) | a_i = a]` (`theory.expected_sign`, `rest = 2P − a²`) over
the coordinates' signals `a_i = (KΔ)_i/√K_ii`, whose mean square is
`s_a² = (1/d) Σ_l (Σ_i V_il² Dg_i^(−1/2)) λ̄_l² y_l`; it tends to `φ_B` when
`s_a² ≪ 2P` (large intrinsic dimension `tr K/λ_max`) and corrects the
`arcsin` curvature when a few eigenvalues dominate. The `χ_B` term is the signal part of the
sign covariance for `B > 1` (zero for `B = 1`, where `E[sign(g) sign(g)ᵀ] = K̃`
exactly); see `docs/theory/signsgd.md`.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from ..optimizers import SignSGD, numeric
from ..problems import Problem
from ..theory._signsgd import SignBasis, expected_sign, sign_gain, sign_noise_coefficient
from ._base import AbstractRateTheory, register
from ._topmodes import (
    DEFAULT_PARTICLES,
    AbstractTopModeTheory,
    check_top_mode_options,
    hybrid_fields,
    mean_field_arrays,
    normal,
)

__all__ = ["SignSGDDiagonalTheory", "SignSGDGeneralTheory", "SignSGDTopModes"]

_DRIFTS = ("exact", "arcsin", "linear")


class SignSGDDiagonalTheory(AbstractRateTheory):
    """Mode-energy ODE of SignSGD on a diagonal `K` (see module docstring)."""


    lam: jax.Array
    weights: jax.Array
    D0: jax.Array
    opt: SignSGD
    noise: object
    drift: str = eqx.field(static=True, default="exact")

    def _eta(self, k):
        return self.opt.lr_at(k)

    def init_state(self):
        return self.D0

    def risk(self, D):
        return 0.5 * jnp.sum(self.weights * self.lam * D)

    def _slope(self, D):
        """`m_i/√D_i` (finite as `D_i → 0`)."""
        B = self.opt.batch
        s2 = 2 * self.risk(D)
        lin = sign_gain(self.noise, s2, B) * jnp.sqrt(self.lam)
        if self.drift == "linear":
            return lin
        sq = jnp.sqrt(jnp.maximum(D, 0.0))
        a = jnp.sqrt(self.lam) * sq
        rest = jnp.maximum(s2 - self.lam * D, 0.0)
        m = expected_sign(self.noise, a, rest, B)
        small = sq < 1e-150
        return jnp.where(small, lin, m / jnp.where(small, 1.0, sq))

    def _rates(self, k, D):
        eta = self._eta(k)
        return 2 * eta * self._slope(D), jnp.broadcast_to(eta**2, D.shape)

    def lr(self, k, D):
        return self._eta(k)

    def observables(self, k, D):
        return {"phi": sign_gain(self.noise, 2 * self.risk(D), self.opt.batch)}

    def expected_sign(self, delta):
        """`E[sign(g) | Δ]` used by the ODE, for a coordinate-basis `Δ` (diagnostics)."""
        delta = jnp.asarray(delta, jnp.float64)
        s2 = 2 * self.risk(delta**2)
        if self.drift == "linear":
            return sign_gain(self.noise, s2, self.opt.batch) * jnp.sqrt(self.lam) * delta
        return expected_sign(self.noise, jnp.sqrt(self.lam) * delta,
                             s2 - self.lam * delta**2, self.opt.batch)


class SignSGDTopModes(AbstractTopModeTheory):
    """Top-mode hybrid of SignSGD on a diagonal `K`, batch 1 (`odes._topmodes`).

    Particles: `y ← y − η sign(x_top r)`, `r = x_topᵀy + u`, `u ~ N(0, 2P_bulk + v)`
    (`v` the noise's scale-mixture component, drawn). Bulk mode `j`, given a particle
    and `v`: `E[sign g_j] = (2/π) arcsin(√(λ_j D_j)/√S)`, `S = 2P^(n) + v`, expanded to
    fifth order in `√(λ_j D_j/S)` so that only the particle means `⟨S^(−1/2)⟩`,
    `⟨S^(−3/2)⟩`, `⟨S^(−5/2)⟩` enter: `D_j ← D_j − 2η √D_j m_j + η²`.
    """

    opt: SignSGD

    def _eta(self, k):
        return self.opt.lr_at(k)

    def _particle_step(self, key, k, Y, D):
        n, m = Y.shape
        eta = self._eta(k)
        kx, ku, kv = jax.random.split(key, 3)
        x = normal(kx, (n, m)) * jnp.sqrt(self.lam_t)
        t2 = self.residual_variance(kv, (n,), D)  # 2P_bulk + v
        r = jnp.sum(x * Y, -1) + normal(ku, (n,)) * jnp.sqrt(t2)
        Yn = Y - eta * jnp.sign(x * r[:, None])
        S = jnp.maximum(jnp.sum(self.lam_t * Y**2, -1) + t2, 1e-300)  # 2P^(n) + v
        # E[sign(x_i r) | y, v] = (2/π) arcsin(√λ_i y_i / √S) (exact: Gaussian given v)
        mi = (2 / jnp.pi) * jnp.arcsin(jnp.clip(jnp.sqrt(self.lam_t) * Y / jnp.sqrt(S)[:, None],
                                                -1.0, 1.0))
        top_next = jnp.sum(self.lam_t * (Y**2 - 2 * eta * Y * mi + eta**2), -1)
        coeffs = (S**-0.5, S**-1.5, S**-2.5)
        return Yn, coeffs, {"lr": eta}, top_next

    def _bulk_update(self, k, D, coeffs):
        s1, s3, s5 = coeffs
        eta = self._eta(k)
        q2 = self.lam_b * jnp.maximum(D, 0.0)  # (√(λ_j D_j))², arcsin x ≈ x + x³/6 + 3x⁵/40
        slope = (2 / jnp.pi) * jnp.sqrt(self.lam_b) * (s1 + q2 * s3 / 6 + 3 * q2**2 * s5 / 40)
        return D - 2 * eta * slope * D + eta**2


class SignSGDGeneralTheory(AbstractRateTheory):
    """SignSGD ODE on a general (dense) `K` in the `K̄` eigenbasis (see module docstring)."""

    lam_bar: jax.Array
    n: jax.Array
    W: jax.Array
    g: jax.Array
    y0: jax.Array
    opt: SignSGD
    noise: object
    nodes: jax.Array
    qweights: jax.Array
    # for diagnostics in the coordinate basis
    K: jax.Array
    dg: jax.Array
    drift: str = eqx.field(static=True, default="exact")

    def init_state(self):
        return self.y0

    def _eta(self, k):
        return self.opt.lr_at(k)

    def risk(self, y):
        return 0.5 * jnp.sum(self.lam_bar * y)

    def gain(self, y):
        """`φ̂`: `φ_B(P)` (linear) or its Bussgang linearisation (exact; see module)."""
        B = self.opt.batch
        s2 = 2 * self.risk(y)
        if self.drift == "linear":
            return sign_gain(self.noise, s2, B)
        sa2 = jnp.maximum(jnp.sum(self.g * self.lam_bar**2 * y) / self.g.shape[0], 1e-300)
        sa2 = jnp.minimum(sa2, s2)
        a = jnp.sqrt(sa2) * self.nodes
        m = expected_sign(self.noise, a, s2 - a**2, B)
        return jnp.sum(self.qweights * a * m) / sa2

    def _rates(self, k, y):
        eta = self._eta(k)
        B = self.opt.batch
        f = eta**2 * self.n
        if B > 1:
            chi = sign_noise_coefficient(self.noise, 2 * self.risk(y), B)
            ly = self.lam_bar**2 * y
            f = f + eta**2 * (2 / jnp.pi) * chi * (ly - self.W.T @ (self.W @ ly))
        return 2 * eta * self.gain(y) * self.lam_bar, f

    def lr(self, k, y):
        return self._eta(k)

    def observables(self, k, y):
        return {"phi": sign_gain(self.noise, 2 * self.risk(y), self.opt.batch)}

    def expected_sign(self, delta):
        """Linear response `E[sign(g) | Δ] ≈ φ_B(P) Dg^(−1/2) KΔ` (coordinate basis)."""
        delta = jnp.asarray(delta, jnp.float64)
        Kd = self.K @ delta
        phi = sign_gain(self.noise, jnp.dot(delta, Kd), self.opt.batch)
        return phi * Kd / jnp.sqrt(self.dg)


@register(SignSGD)
def _signsgd_theory(opt: SignSGD, problem: Problem, drift: str = "exact",
                    basis: str = "auto", topmodes: int | str = 0,
                    particles: int = DEFAULT_PARTICLES, seed: int = 0):
    """Builder: `drift` in {"exact", "arcsin", "linear"} (see module docstring);
    `basis` in {"auto", "diagonal", "general"} ("general" forces the dense K̄ ODE,
    also for a diagonal K). Diagonal `K`, batch 1, `drift="exact"`: `topmodes` (an
    integer `m > 0`, or `"auto"`: 16 when `tr K/λ_max < 50`), `particles`, `seed`
    select the top-mode hybrid `SignSGDTopModes` (opt-in: on the measured power laws
    the exact-drift ODE is already within 2%, see docs/theory/topmodes.md);
    `topmodes=0` (default) is the ODE."""
    if drift not in _DRIFTS:
        raise ValueError(f"`drift` must be one of {_DRIFTS}, got {drift!r}")
    if basis not in ("auto", "diagonal", "general"):
        raise ValueError(f"`basis` must be 'auto', 'diagonal' or 'general', got {basis!r}")
    opt = numeric(opt)  # the step size (constant or schedule) is an array leaf
    if basis == "auto":
        basis = "diagonal" if problem.is_diagonal else "general"
    m, n, seed = check_top_mode_options(problem, topmodes, particles, seed)
    if topmodes == "auto" and (basis != "diagonal" or opt.batch > 1 or drift == "linear"):
        m = 0  # no hybrid for these: the ODE
    if basis == "diagonal":
        if not problem.is_diagonal:
            raise ValueError("`basis='diagonal'` needs a diagonal K (problem.eigenvectors None)")
        if m > 0 and (opt.batch > 1 or drift == "linear"):
            raise ValueError(f"`topmodes`={topmodes!r}: the SignSGD top-mode hybrid needs "
                             f"batch 1 and drift='exact', got batch={opt.batch}, "
                             f"drift={drift!r}; use topmodes=0")
        if m > 0:
            fields = hybrid_fields(problem, m, n, seed)
            mf = SignSGDDiagonalTheory(**mean_field_arrays(fields), opt=opt,
                                       noise=problem.noise, drift="exact")
            return SignSGDTopModes(**fields, opt=opt, mean_field=mf)
        return SignSGDDiagonalTheory(
            lam=jnp.asarray(problem.eigenvalues),
            weights=jnp.asarray(problem.mode_weights),
            D0=jnp.asarray(problem.initial_energies),
            opt=opt, noise=problem.noise,
            drift="exact" if drift == "arcsin" else drift,
        )
    if m > 0:
        raise ValueError(f"`topmodes`={topmodes!r}: the SignSGD top-mode hybrid needs a "
                         "diagonal K (basis='diagonal'); use topmodes=0")
    if problem.weights is not None:
        raise ValueError("`basis='general'` needs an uncompressed problem (weights None)")
    if problem.d > 4096:
        raise ValueError(f"the general-K SignSGD ODE is dense (O(d²) memory, O(d³) setup); "
                         f"`problem.d` must be <= 4096, got {problem.d}")
    K = problem.K
    b = SignBasis(K)
    delta0 = np.asarray(problem.init_delta(jnp.float64))
    x, wq = np.polynomial.hermite_e.hermegauss(24)
    return SignSGDGeneralTheory(
        lam_bar=jnp.asarray(b.lam_bar), n=jnp.asarray(b.n), W=jnp.asarray(b.V**2),
        g=jnp.asarray((b.V**2).T @ b.dg**-0.5), nodes=jnp.asarray(x),
        qweights=jnp.asarray(wq / wq.sum()), drift="linear" if drift == "linear" else "exact",
        y0=jnp.asarray(b.coordinates(delta0)), opt=opt, noise=problem.noise,
        K=jnp.asarray(K), dg=jnp.asarray(b.dg),
    )
