"""Large-`d` asymptotics of SignSVD vs generic-`K` matrix SignSGD on power laws.

Closed forms only (no solver); derivation and numerical checks in
`docs/theory/phases.md` §2. Our normalisation: `λ_j = j^(−α)`, `D_j(0) = j^(−β)`
(orthogonal target rows), `m = 2d`, batch `B`, time = iteration count `k`, step `η`
per iteration. "Phases of Muon" writes power laws as `j^(−2α')`, `j^(−2β')`:
`α = 2α'`, `β = 2β'` (so our `α = 1` is their `α' = ½`).

Results (both methods read as SGD with a risk-dependent step `γ`):

- `sgd_equivalent_step`: generic-`K` SignSGD is SGD with
  `γ = η √(2/π) √(B d m / (2P tr K))` (per-entry SNR `B λ_1/tr K → 0`); SignSVD on the
  modes `λ_i ≪ κ0(B)` is SGD with `γ = η B/√(2P (tr K + Bλ_i))` when the residual
  Gram `YYᵀ` concentrates (effective rank `(ΣλD)²/Σλ²D² ≫ B`, i.e. `α + β < 1`).
  In both cases the SGD noise is `γ² (2P/B) λ_i`: the same noise constant `2/B`.
- `projector_kappa_asymptotic`: `κ0(B)` of the SignSVD noise projector
  `Σ_j λ_j/(λ_j + κ0) = B`: `κ0 ≈ tr K/B − ...` for `α < 1` (all modes SGD-like once
  `tr K > B`), `κ0 → ((π/α)/(B sin(π/α)))^α` for `α > 1` (the top `≈ B` modes are
  `√λ`-preconditioned).
- `risk_exponent`, `optimal_lr_exponent`: tail-limited decay `P*(k) ∝ k^(−p)`,
  `p = (α+β−1)/α` (`p < 2`), and `η*(k) ∝ k^(−min(p, 2)/2)` (both methods are
  normalised: a constant `η` floors at `∝ η²`; `p >= 2`: the normalised-step limit
  `η* ∝ 1/k`).
- `tail_log_ratio`: for `α > 1`, SignSVD's late-horizon advantage
  `log(P*_SVD/P*_SGN) = −p·½ log(λ_1/κ0(B))` (its tail step is `√(λ_1/κ0) ≈ B^(α/2)` times
  SignSGD's).
- `mode_horizon`: `k_J = tr K · J^α / B`, the horizon at which SGD at its noise-limited
  step `γ ≈ B/tr K` has learned the top `J` modes (the d-scaled horizon of the study).
- `predicted_phase`: over horizons up to the spectrum's edge, `+1` SignSVD (`α > 1`, or
  `α + β <= 1`); `None` (not derived) for `α < 1 < α + β`.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["power_law_trace", "projector_kappa_asymptotic", "sgd_equivalent_step",
           "bulk_noise_constant", "risk_exponent", "optimal_lr_exponent", "mode_horizon",
           "predicted_phase", "residual_effective_rank", "tail_log_ratio", "PAPER_TO_OURS"]

PAPER_TO_OURS = "alpha = 2 alpha', beta = 2 beta' (paper: lambda_j = j^(-2 alpha'))"


def _check(alpha, name="alpha"):
    if not (np.isfinite(alpha) and alpha > 0):
        raise ValueError(f"`{name}` must be finite and > 0, got {alpha!r}")


def power_law_trace(alpha: float, d: float, power: float = 1.0) -> float:
    """`Σ_{j=1}^d j^(−power·α)` (exact below 1e5 terms, Euler–Maclaurin above)."""
    _check(alpha)
    if not d >= 1:
        raise ValueError(f"`d` must be >= 1, got {d!r}")
    s = power * alpha
    n = int(min(d, 100_000))
    head = float(np.sum(np.arange(1, n + 1, dtype=np.float64) ** -s))
    if d <= n:
        return head
    # Σ_{j=n+1}^d j^-s ≈ ∫_{n}^{d} x^-s dx + (d^-s − n^-s)/2
    integ = math.log(d / n) if abs(s - 1) < 1e-12 else (d ** (1 - s) - n ** (1 - s)) / (1 - s)
    return head + integ + 0.5 * (d ** -s - n ** -s)


def projector_kappa_asymptotic(alpha: float, batch: float, d: float | None = None) -> float:
    """Asymptotic `κ0` of `Σ_j λ_j/(λ_j + κ0) = B` for `λ_j = j^(−α)`.

    `α > 1`, `d = ∞`: `κ0 = ((π/α)/(B sin(π/α)))^α` (integral approximation, relative
    error `O(1/B)`). `α <= 1` (needs `d`): `κ0 = tr K/B − Σλ²/tr K` (first order in
    `λ_1/κ0`, valid while `tr K ≫ B`); `inf`-free: raises if `tr K <= B`."""
    _check(alpha)
    if not batch >= 1:
        raise ValueError(f"`batch` must be >= 1, got {batch!r}")
    if alpha > 1 and d is None:
        return ((math.pi / alpha) / (batch * math.sin(math.pi / alpha))) ** alpha
    if d is None:
        raise ValueError("`d` is required for alpha <= 1 (tr K grows with d)")
    tr = power_law_trace(alpha, d)
    if alpha > 1:
        return ((math.pi / alpha) / (batch * math.sin(math.pi / alpha))) ** alpha
    if not tr > batch:
        raise ValueError(f"need tr K > batch for the alpha <= 1 expansion; tr K = {tr:g}")
    return tr / batch - power_law_trace(alpha, d, 2.0) / tr


def sgd_equivalent_step(method: str, eta, P, trK, batch, d=None, m=None, lam=None):
    """SGD step `γ` equivalent to one method at step `η` and excess risk `P` (large `d`).

    `"signsgd"`: `γ = η √(2/π) √(B d m/(2P tr K))`; `"signsvd"` (bulk modes, `Y Yᵀ`
    concentrated): `γ = η B/√(2P (tr K + B λ))` (`lam` = the mode's eigenvalue,
    default 0). Both then have SGD's noise `γ² (2P/B) λ_i` (`bulk_noise_constant`)."""
    eta, P = np.asarray(eta, np.float64), np.asarray(P, np.float64)
    if method == "signsgd":
        if d is None or m is None:
            raise ValueError("`d` and `m` are required for method='signsgd'")
        return eta * np.sqrt(2 / np.pi) * np.sqrt(batch * d * m / (2 * P * trK))
    if method == "signsvd":
        lam = 0.0 if lam is None else np.asarray(lam, np.float64)
        return eta * batch / np.sqrt(2 * P * (trK + batch * lam))
    raise ValueError(f"`method` must be 'signsgd' or 'signsvd', got {method!r}")


def bulk_noise_constant(batch: float) -> float:
    """`c` in the SGD-equivalent noise `γ² c P λ_i` (`c = 2/B`, both methods)."""
    if not batch >= 1:
        raise ValueError(f"`batch` must be >= 1, got {batch!r}")
    return 2.0 / batch


def risk_exponent(alpha: float, beta: float) -> float:
    """`p` in `P*(k) ∝ k^(−p)` for the tuned noiseless envelope of either method in the
    tail-limited regime: `p = (α + β − 1)/α` (SGD's decay at its critical step; valid for
    `α + β > 1` and `p < 2`, see `optimal_lr_exponent`). For `α + β < 1` the risk sits
    on modes `j ~ d` (horizons `mode_horizon(d)`)."""
    _check(alpha)
    if not alpha + beta > 1:
        raise ValueError(f"need alpha + beta > 1 for a d-independent decay, got "
                         f"{alpha} + {beta}")
    return (alpha + beta - 1) / alpha


def optimal_lr_exponent(alpha: float, beta: float) -> float:
    """`q` in `η*(k) ∝ k^q`: `q = −min(p, 2)/2`, `p = risk_exponent(α, β)`.

    Tail-limited (`p < 2`): `η* ∝ √P*` (a normalised method at constant `η` floors at
    `P_f ∝ η²`). `p >= 2`: the normalised-step limit `η* ∝ 1/k` (the equivalent SGD step
    `γ ∝ η/√P` starts small and the run needs `k ≳ √P0/η` steps to accelerate); the
    envelope then decays slower than `k^(−2)` (measured, docs/theory/phases.md §2.3)."""
    return -0.5 * min(risk_exponent(alpha, beta), 2.0)


def tail_log_ratio(alpha: float, beta: float, batch: float) -> float:
    """`log(P*_SVD/P*_SGN)` on the tail (late horizons), `α > 1`:
    `−p · ½ log(λ_1/κ0(B))`, `p = risk_exponent(α, β)`.

    Both methods are SGD-like on the modes below `κ0`; SignSVD's usable step there is
    `√(λ_1/κ0)` times SignSGD's (its top block is preconditioned by `√λ`, so the top
    mode's stability limit `η√(Bλ_1/2P) ≲ 1` allows a larger tail step than SignSGD's
    curvature limit `γλ_1 ≲ 1`), and `P* ∝ γ^(−p)`."""
    if not alpha > 1:
        raise ValueError(f"`alpha` must be > 1 (tr K finite), got {alpha!r}")
    k0 = projector_kappa_asymptotic(alpha, batch)
    return -risk_exponent(alpha, beta) * 0.5 * math.log(1.0 / k0)


def mode_horizon(J, alpha: float, d: float, batch: float):
    """`k_J = tr K · J^α / B`: SGD at `γ = B/tr K` has learned modes `j <= J` (both
    methods' bulk step is noise limited at `γ ∝ B/tr K`). For `α < 1` it grows as
    `d^(1−α)` at fixed `J` (the horizon tied to `d`)."""
    J = np.asarray(J, np.float64)
    return power_law_trace(alpha, d) * J**alpha / batch


def residual_effective_rank(alpha: float, beta: float, d: float) -> float:
    """`(Σ λD)²/Σ (λD)²` at `k = 0`: the number of directions the residual `Y = XΔ`
    spreads over. Finite as `d → ∞` iff `α + β > 1`; when it is `≲ B` the SignSVD
    polar factor whitens the residual directions (tail drift above the SGD form,
    top-mode drift below it)."""
    s1 = power_law_trace(alpha + beta, d)
    s2 = power_law_trace(2 * (alpha + beta), d)
    return s1 * s1 / s2


def predicted_phase(alpha: float, beta: float):
    """Asymptotic phase (`d → ∞`, fixed `B`) over the horizons `k_J = mode_horizon(J)`,
    `J ∈ [1, d/4]` (training reaches the spectrum's edge), where it is derived: `+1`
    SignSVD better at every horizon for `α > 1` (`√λ` preconditioning of the top `≈ B`
    modes) and for `α < 1, α + β <= 1` (a tie in the bulk: both are SGD with the same
    noise constant; then SignSGD's isotropic arcsine noise `η²m(1 − 2/π)` dominates the
    bottom modes, which carry the risk; at `α + β = 1` the residual's effective rank
    grows like `log² d`, the `α + β < 1` side). `None` for `α < 1 < α + β`: not derived
    (measured at B = 16: SignSVD at (0.5, 1), trade-off at (0.5, 2) and (0.75, 2),
    docs/theory/phases.md §3; the early SignSGD lead needs a residual of small effective
    rank, `residual_effective_rank` 1.5–1.7 there against 5.7 at (0.5, 1))."""
    _check(alpha)
    if alpha > 1 or alpha + beta <= 1:
        return 1
    return None
