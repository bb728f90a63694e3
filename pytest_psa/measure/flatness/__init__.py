"""Flatness of a trained model: PAC-Bayes sigma (isotropic and magnitude-aware), LPF,
eps-sharpness, Hessian top eigenvalue and trace, each with its standard error and settings.

A flatter measurement is a measurement, not proof of robustness or of generalization.
"""

from pytest_psa.measure.flatness.measure import DEFAULTS, METRICS, measure_flatness
from pytest_psa.measure.flatness.flatness_report import FlatnessReport

__all__ = ["DEFAULTS", "METRICS", "FlatnessReport", "measure_flatness"]
