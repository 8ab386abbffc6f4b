"""Closed-form theory: stability thresholds, noise expectations, limits, phases."""

from ._noise_expectations import effective_sign_gain as effective_sign_gain
from ._noise_expectations import expected_clipped_square as expected_clipped_square
from ._noise_expectations import mixture as mixture
from ._noise_expectations import prob_abs_residual_below as prob_abs_residual_below
from ._noise_expectations import residual_density_at_zero as residual_density_at_zero
from ._stability import check_stable as check_stable
from ._stability import sgd_kernel_norm as sgd_kernel_norm
from ._stability import stability_threshold as stability_threshold
