"""Robustness measurements: common corruptions, perturbation flip rates and adversarial attacks."""
