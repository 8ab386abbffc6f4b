"""Compute-optimal study on PLRF (docs/theory/scaling_laws.md)."""

import numpy as np
import pytest

from riskcurves.studies import compute_optimal, paper_exponents, plrf_phase, sgd_at_fraction


def _model_loss(d, r, a, b):
    """The paper's four terms (constants set to 1), r = iterations."""
    fpp = r ** (-(2 * a + 2 * b - 1) / (2 * a))
    fac = d ** -1.0 * r ** (-1 + 1 / (2 * a)) if 2 * b > 1 else 0 * r
    f0 = d ** (-2 * a + max(0.0, 1 - 2 * b))
    kpp = r ** (-2 + 1 / (2 * a))
    return fpp + fac + f0 + kpp


@pytest.mark.parametrize("a,b", [(1.0, 0.3), (0.8, 0.4), (1.0, 0.7), (1.5, 1.0),
                                 (0.7, 1.2), (0.6, 2.0)])
def test_paper_exponents_balance_the_terms(a, b):
    """Minimising the sum of the paper's terms over d at fixed f = d·r gives the tabulated
    exponents (log-log slopes over f = 1e20..1e30, to 0.01)."""
    ds = np.logspace(0, 30, 30001)
    fs = np.logspace(20, 30, 11)
    dst, lst = [], []
    for f in fs:
        L = _model_loss(ds, f / ds, a, b)
        i = np.argmin(L)
        dst.append(ds[i])
        lst.append(L[i])
    pe = paper_exponents(a, b)
    assert abs(np.polyfit(np.log(fs), np.log(dst), 1)[0] - pe["d"]) < 0.01
    assert abs(-np.polyfit(np.log(fs), np.log(lst), 1)[0] - pe["loss"]) < 0.01


def test_phases_and_arguments():
    assert plrf_phase(1.0, 0.3) == "Ia"
    assert plrf_phase(1.0, 0.7) == "II"
    assert plrf_phase(0.7, 1.2) == "III"
    assert plrf_phase(0.4, 1.0) == "IV/Ib/Ic"
    with pytest.raises(ValueError, match="alpha"):
        paper_exponents(0.4, 1.0)
    with pytest.raises(ValueError, match="fraction"):
        sgd_at_fraction(1.5)
    with pytest.raises(ValueError, match="at least 3"):
        compute_optimal(1.0, 0.7, [100, 1000])


@pytest.mark.slow
def test_compute_optimal_phase_ii_small_grid():
    """Phase II (α = 1, β = 0.7) on d = 100..10^4.5: fitted exponents within 0.1 of the
    formulas on this small grid (the docs table uses d up to 10^5.5)."""
    ds = np.unique(np.round(np.logspace(2, 4.5, 6)).astype(int))
    r = compute_optimal(1.0, 0.7, ds, horizon=1e11,
                        plrf_options=dict(nodes_per_decade=8, sub_ratio=1.2, n_top=32,
                                          pts_per_decade=50))
    pe = paper_exponents(1.0, 0.7)
    assert abs(r.loss_exponent - pe["loss"]) < 0.1, (r.loss_exponent, pe)
    assert abs(r.d_exponent - pe["d"]) < 0.1, (r.d_exponent, pe)
