"""Independent reference for the momentum tests: the full `2d × 2d` second moment of
`z = (Δ, v)` propagated in the original basis (no eigen-decomposition, no per-mode
reduction), from the Gaussian fourth-moment formula

    Cov(g | Δ) = (K Δ Δᵀ K + (Δᵀ K Δ + σ²) K) / B.
"""

import numpy as np


def full_covariance_risk(K, delta0, sigma2, B, coeffs, n_steps, self_term=True):
    """Risk `½ tr(K Σ_ΔΔ)` at `k = 0..n_steps` for `v' = μv + g`, `Δ' = Δ − c g − e v`
    with `coeffs(k) -> (μ, c, e)`; `self_term=False` drops `KΣK/B` (a wrong model)."""
    d = K.shape[0]
    I = np.eye(d)
    S = np.zeros((2 * d, 2 * d))
    S[:d, :d] = np.outer(delta0, delta0)
    out = [0.5 * np.trace(K @ S[:d, :d])]
    for k in range(n_steps):
        mu, c, e = coeffs(k)
        A = np.block([[I - c * K, -e * I], [K, mu * I]])
        Sdd = S[:d, :d]
        noise = ((K @ Sdd @ K if self_term else 0.0) + (np.trace(K @ Sdd) + sigma2) * K) / B
        G = np.vstack([-c * I, I])
        S = A @ S @ A.T + G @ noise @ G.T
        out.append(0.5 * np.trace(K @ S[:d, :d]))
    return np.array(out)
