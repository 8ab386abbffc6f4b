"""Closed-form theory: stability thresholds, noise expectations, limits, gain ratios.

This layer imports no solver (sweeps, tuned comparisons and phase diagrams live in
`riskcurves.studies`)."""

from . import _phases_asymptotics as phases_asymptotics  # noqa: F401
from ._adagrad import adagrad_norm_limit_lr as adagrad_norm_limit_lr
from ._adagrad import adagrad_norm_phase as adagrad_norm_phase
from ._adagrad import two_level_line_search_limit as two_level_line_search_limit
from ._adagrad import two_level_sgd_best_rate as two_level_sgd_best_rate
from ._clipping import best_threshold as best_threshold
from ._clipping import check_intrinsic_dimension as check_intrinsic_dimension
from ._clipping import clip_coefficients as clip_coefficients
from ._clipping import clipped_gain as clipped_gain
from ._clipping import clipped_gain_ratio as clipped_gain_ratio
from ._clipping import intrinsic_dimension as intrinsic_dimension
from ._clipping import median_abs_noise as median_abs_noise
from ._clipping import prob_not_clipped as prob_not_clipped
from ._momentum import dana_divergence_time as dana_divergence_time
from ._momentum import momentum_stability_threshold as momentum_stability_threshold
from ._noise_expectations import effective_sign_gain as effective_sign_gain
from ._noise_expectations import expected_clipped_square as expected_clipped_square
from ._noise_expectations import mixture as mixture
from ._noise_expectations import prob_abs_residual_below as prob_abs_residual_below
from ._noise_expectations import residual_density_at_zero as residual_density_at_zero
from ._signsgd import SignBasis as SignBasis
from ._signsgd import drift_rates as drift_rates
from ._signsgd import expected_sign as expected_sign
from ._signsgd import noise_forcing as noise_forcing
from ._signsgd import reshaped_noise as reshaped_noise
from ._signsgd import sign_gain as sign_gain
from ._signsgd import sign_noise_coefficient as sign_noise_coefficient
from ._signsgd import signsgd_basis as signsgd_basis
from ._stability import check_stable as check_stable
from ._stability import sgd_kernel_norm as sgd_kernel_norm
from ._stability import stability_threshold as stability_threshold
