"""The names a robustness or flatness audit can be asked for: corruptions, perturbations, metrics, vs_erm keys.

Declared here once, without torch, so that the psa marker is checked against the same lists the
registries implement (`measure/robustness/corruptions/registry.py`, `measure/robustness/perturbations.py`,
`measure/flatness/measure.py`).
"""

from __future__ import annotations

__all__ = [
    "BENCHMARK_CORRUPTIONS",
    "CORRUPTION_NAMES",
    "CORRUPTION_SETS",
    "DEPRECATED_VS_ERM_KEYS",
    "DISTANCE_NAMES",
    "FLATNESS_METRICS",
    "PERTURBATION_NAMES",
    "PERTURBATION_SETS",
    "PERTURBATION_SET_ALIASES",
    "VALIDATION_CORRUPTIONS",
    "VS_ERM_KEYS",
    "VS_ERM_RATIO_KEYS",
    "deprecated_key_message",
]

#: The 15 CIFAR-10-C / ImageNet-C corruptions, in the order of the released files and tables.
BENCHMARK_CORRUPTIONS: tuple[str, ...] = (
    "gaussian_noise",
    "shot_noise",
    "impulse_noise",
    "defocus_blur",
    "glass_blur",
    "motion_blur",
    "zoom_blur",
    "snow",
    "frost",
    "fog",
    "brightness",
    "contrast",
    "elastic_transform",
    "pixelate",
    "jpeg_compression",
)
#: The 4 extra corruptions Hendrycks & Dietterich hold out for validation.
VALIDATION_CORRUPTIONS: tuple[str, ...] = ("speckle_noise", "gaussian_blur", "spatter", "saturate")
#: Every corruption, benchmark first.
CORRUPTION_NAMES: tuple[str, ...] = BENCHMARK_CORRUPTIONS + VALIDATION_CORRUPTIONS
#: Named sets of corruptions: "cifar10-c" (the benchmark) and "all" (adds the validation ones).
CORRUPTION_SETS: dict[str, tuple[str, ...]] = {"cifar10-c": BENCHMARK_CORRUPTIONS, "all": CORRUPTION_NAMES}

#: The 10 CIFAR-10-P perturbation sequences, in the reference's order.
PERTURBATION_NAMES: tuple[str, ...] = ("gaussian_noise", "shot_noise", "motion_blur", "zoom_blur", "spatter",
                                       "brightness", "translate", "rotate", "tilt", "scale")
#: Named sets of perturbations: "cifar10-p" (all 10).
PERTURBATION_SETS: dict[str, tuple[str, ...]] = {"cifar10-p": PERTURBATION_NAMES}
#: Other spellings of "cifar10-p" that the Python API (`resolve_perturbations`) also takes; the marker does not.
PERTURBATION_SET_ALIASES: tuple[str, ...] = ("cifar-p", "all")

#: The distances `measure/density/distances.py` registers at import (users add theirs with `register_distance` or
#: the `pytest_psa_distances` hook): what the psa marker and `psa audit --distance` check a name against.
DISTANCE_NAMES: tuple[str, ...] = ("l2", "linf", "l2_raw", "l2_255", "l2_aligned", "feature")

#: The flatness metrics `measure_flatness` computes, in its order (the order also derives their noise seeds).
FLATNESS_METRICS: tuple[str, ...] = ("pac_bayes", "pac_bayes_mag", "lpf", "eps_sharpness", "hessian_top",
                                     "hessian_trace")

#: The keys of a ``vs_erm={...}`` budget (besides ``adv_error(<attack label>)``): mce, clean_error, mfp and
#: adv_error bound the paired difference audited − baseline; the ratio keys (`VS_ERM_RATIO_KEYS`) bound
#: "mce_ratio" (mean_c Σ_s E_{c,s} / Σ_s E^b_{c,s}), "hd_relative_mce" (Hendrycks & Dietterich's relative mCE:
#: mean_c Σ_s (E_{c,s} − E_clean) / Σ_s (E^b_{c,s} − E^b_clean)) and "rel_mfp" (mean_p FP_p / FP^b_p).
VS_ERM_KEYS: tuple[str, ...] = ("mce", "clean_error", "mfp", "mce_ratio", "hd_relative_mce", "rel_mfp", "adv_error")
#: Old vs_erm keys still accepted, with a PsaWarning, and the key they mean now. "rel_mce" was the tool's
#: ratio (now "mce_ratio"); the name collided with Hendrycks & Dietterich's relative mCE ("hd_relative_mce").
DEPRECATED_VS_ERM_KEYS: dict[str, str] = {"rel_mce": "mce_ratio"}
#: The vs_erm keys that bound a ratio to the baseline (a ceiling > 0), deprecated spellings included.
VS_ERM_RATIO_KEYS: tuple[str, ...] = ("mce_ratio", "hd_relative_mce", "rel_mfp", "rel_mce")


def deprecated_key_message(name: str) -> str:
    """The PsaWarning text for an old metric or vs_erm key ("rel_mce"): the new spelling, and why."""
    new = DEPRECATED_VS_ERM_KEYS[name]
    return (f"{name!r} is deprecated: write {new!r}. It is this tool's ratio mean_c Σ_s E_{{c,s}} / "
            f"Σ_s E^baseline_{{c,s}} and keeps that meaning; the old name collided with Hendrycks & Dietterich's "
            f"relative mCE, which subtracts each model's clean error and is reported as 'hd_relative_mce'")
