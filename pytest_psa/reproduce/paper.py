"""The seed paper's own numbers, transcribed from its text (arXiv 2505.24592, "A Flat Minima Perspective
on Understanding Augmentations and Model Robustness"), each with the table and row it comes from.

These are the PAPER's numbers: WideResNet-40-2, 200 epochs, 3 seeds (its §4.3, C.1.1), Table 1 on
CIFAR-100. They are printed beside the tool's measurements, never mixed with them. The text this
project holds lost some symbols: Table 1's distance and γ values (the tool reads γ = 1, 5, 10, 50 on
L2 over 0-255 pixel values, docs/density.md), Table 2's metric names in two of three rows (the order
PAC-Bayes, LPF, ε-sharpness is the §4.3 text's), Table 3's "-P" suffix and attack budgets. Where a
label is our reading of a lost symbol, ``reading`` says so.
"""

from __future__ import annotations

from typing import Any, Final

SOURCE: Final = "arXiv 2505.24592 (text copy in shared/seeds/002_2094a7fc02057632.txt)"
SETUP: Final = "paper: WideResNet-40-2, 200 epochs, SGD, 3 seeds (C.1.1)"

# columns as the paper names them -> the tool's arm keys (the DeepAug/StyleAug columns are the real
# methods; the tool trains stand-ins, so a paper number beside a stand-in is context, not a replication)
COLUMNS: Final[dict[str, str]] = {
    "ERM": "erm", "AugMix": "augmix", "RandAug": "randaugment", "PixMix": "pixmix",
    "DeepAug": "deepaugment-standin", "StyleAug": "styleaug-standin-randconv",
    "DeepAug + AugMix": "deepaugment-standin|augmix", "StyleAug + AugMix": "styleaug-standin-randconv|augmix",
    "DeepAug + StyleAug": "deepaugment-standin|styleaug-standin-randconv",
    "AT": "fgsm_at", "AT + AugMix": "fgsm_at+augmix",
}

# Table 1: F_N(gamma), CIFAR-100 (and ImageNet, not shown), rows gamma = 1, 5, 10, 50 (our reading)
TABLE1: Final[dict[str, Any]] = {
    "where": "Table 1 (§4.2), CIFAR-100 columns", "data": "CIFAR-100",
    "reading": "distance and γ symbols lost; read as L2 on 0-255 pixels at γ = 1, 5, 10, 50 (docs/density.md)",
    "gammas": (1.0, 5.0, 10.0, 50.0),
    "values": {
        "augmix": (0.0024, 0.0107, 0.0202, 0.0993),
        "randaugment": (0.0060, 0.0060, 0.0061, 0.0378),
        "pixmix": (0.0011, 0.0011, 0.0012, 0.0012),
        "deepaugment-standin": (0.0000, 0.0000, 0.0000, 0.0001),
        "styleaug-standin-randconv": (0.0000, 0.0000, 0.0000, 0.0000),
    },
}

# Table 2: flatness on CIFAR-10 (lower is flatter); rows in the §4.3 order
TABLE2: Final[dict[str, Any]] = {
    "where": "Table 2 (§4.3), CIFAR-10 rows", "data": "CIFAR-10",
    "reading": "row names lost except LPF; order PAC-Bayes, LPF, ε-sharpness as §4.3 lists them",
    "values": {
        "pac_bayes": {"erm": 166.72, "augmix": 116.70, "randaugment": 113.68, "pixmix": 105.30,
                      "deepaugment-standin": 66.89, "styleaug-standin-randconv": 122.76},
        "lpf": {"erm": 1.01, "augmix": 0.52, "randaugment": 0.46, "pixmix": 0.37,
                "deepaugment-standin": 0.71, "styleaug-standin-randconv": 1.14},
        "eps_sharpness": {"erm": 10.28, "augmix": 7.42, "randaugment": 7.32, "pixmix": 9.19,
                          "deepaugment-standin": 11.13, "styleaug-standin-randconv": 19.84},
    },
}

# Table 3: robustness on CIFAR-10 (percent, lower is better)
TABLE3: Final[dict[str, Any]] = {
    "where": "Table 3 (§4.4), CIFAR-10 rows", "data": "CIFAR-10",
    "reading": "'CIFAR-10-' row read as CIFAR-10-P mFP; the two adversarial rows' budgets lost (PGD, untargeted)",
    "values": {
        "mce": {"erm": 30.54, "augmix": 15.24, "randaugment": 19.65, "pixmix": 10.57,
                "deepaugment-standin": 31.92, "styleaug-standin-randconv": 30.50},
        "mfp": {"erm": 8.13, "augmix": 1.73, "randaugment": 3.07, "pixmix": 1.05,
                "deepaugment-standin": 17.99, "styleaug-standin-randconv": 9.34},
        "pgd_a": {"erm": 77.67, "augmix": 70.68, "randaugment": 76.30, "pixmix": 65.24,
                  "deepaugment-standin": 91.07, "styleaug-standin-randconv": 91.13},
        "pgd_b": {"erm": 98.48, "augmix": 99.57, "randaugment": 99.86, "pixmix": 99.46,
                  "deepaugment-standin": 100.00, "styleaug-standin-randconv": 99.97},
    },
}

# Table 7 (E.1): combinations, CIFAR-10 rows
TABLE7: Final[dict[str, Any]] = {
    "where": "Table 7 (Appendix E.1), CIFAR-10 rows", "data": "CIFAR-10",
    "reading": "as Table 3",
    "values": {
        "mce": {"augmix": 15.24, "deepaugment-standin": 31.92, "styleaug-standin-randconv": 30.50,
                "deepaugment-standin|augmix": 15.04, "styleaug-standin-randconv|augmix": 19.02,
                "deepaugment-standin|styleaug-standin-randconv": 24.84},
        "mfp": {"augmix": 1.73, "deepaugment-standin": 17.99, "styleaug-standin-randconv": 9.34,
                "deepaugment-standin|augmix": 1.32, "styleaug-standin-randconv|augmix": 1.55,
                "deepaugment-standin|styleaug-standin-randconv": 4.12},
        "pgd_a": {"augmix": 70.68, "deepaugment-standin": 91.07, "styleaug-standin-randconv": 91.13,
                  "deepaugment-standin|augmix": 69.30, "styleaug-standin-randconv|augmix": 81.07,
                  "deepaugment-standin|styleaug-standin-randconv": 87.30},
        "pgd_b": {"augmix": 99.57, "deepaugment-standin": 100.00, "styleaug-standin-randconv": 99.97,
                  "deepaugment-standin|augmix": 94.15, "styleaug-standin-randconv|augmix": 96.34,
                  "deepaugment-standin|styleaug-standin-randconv": 99.80},
    },
}

# Table 8 (E.1): AT (FGSM) vs AT + AugMix, CIFAR-10 rows (flatness block, then robustness block)
TABLE8: Final[dict[str, Any]] = {
    "where": "Table 8 (Appendix E.1), CIFAR-10 rows", "data": "CIFAR-10",
    "reading": "FGSM budget symbol lost; flatness rows in Table 2's order",
    "values": {
        "pac_bayes": {"fgsm_at": 158.15, "fgsm_at+augmix": 113.78},
        "lpf": {"fgsm_at": 1.25, "fgsm_at+augmix": 0.58},
        "eps_sharpness": {"fgsm_at": 16.36, "fgsm_at+augmix": 10.29},
        "mce": {"fgsm_at": 24.12, "fgsm_at+augmix": 15.39},
        "mfp": {"fgsm_at": 3.25, "fgsm_at+augmix": 1.30},
        "pgd_a": {"fgsm_at": 69.24, "fgsm_at+augmix": 62.86},
        "pgd_b": {"fgsm_at": 94.55, "fgsm_at+augmix": 98.40},
    },
}

# Table 3's domain-shift rows: DomainBed protocol (leave one domain out, ResNet-50), accuracy in percent,
# higher is better (§4.4, Appendix C: "trained until convergence")
TABLE3_DOMAINS: Final[dict[str, Any]] = {
    "where": "Table 3 (§4.4), Domain Shifts rows (PACS, OfficeHome)", "data": "PACS / OfficeHome",
    "reading": "accuracy (%) averaged over held-out domains, DomainBed protocol, ResNet-50",
    "values": {
        "PACS": {"erm": 79.8, "augmix": 82.1, "randaugment": 83.4, "pixmix": 79.5,
                 "deepaugment-standin": 64.4, "styleaug-standin-randconv": 83.7},
        "OfficeHome": {"erm": 68.2, "augmix": 68.5, "randaugment": 67.4, "pixmix": 63.7,
                       "deepaugment-standin": 44.7, "styleaug-standin-randconv": 64.5},
    },
}

TABLES: Final[dict[str, dict[str, Any]]] = {"1": TABLE1, "2": TABLE2, "3": TABLE3, "3d": TABLE3_DOMAINS,
                                            "7": TABLE7, "8": TABLE8}


def paper_value(table: str, row: str, column: str) -> float | None:
    """The paper's number in `table` (``"2"``), `row` (a metric key) and `column` (an arm key), or None."""
    values = TABLES[table]["values"]
    if table == "1":
        gammas = TABLES["1"]["gammas"]
        col = values.get(column)
        return None if col is None or float(row) not in gammas else float(col[gammas.index(float(row))])
    v = values.get(row, {}).get(column)
    return None if v is None else float(v)


__all__ = ["COLUMNS", "SETUP", "SOURCE", "TABLE1", "TABLE2", "TABLE3", "TABLE3_DOMAINS", "TABLE7", "TABLE8", "TABLES", "paper_value"]
