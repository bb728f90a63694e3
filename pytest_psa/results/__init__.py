"""Results: what an audit measured, as small frozen objects that assert on themselves.

`DensityResult`, `FlatnessComparison` and `RobustnessResult` implement the one contract with the
layers above them (`pytest_psa._records.AuditResult`): kind and subject, headline metrics with
intervals, the verdicts their ``assert_*`` methods reached, and a JSON-ready record. They import
measurement types, never the audits that build them nor anything from pytest.
"""

from pytest_psa.results.checks import Checked, CheckVerdict
from pytest_psa.results.density import DensityResult, Verdict
from pytest_psa.results.flatness import FlatnessComparison, FlatnessVerdict, MetricComparison
from pytest_psa.results.robustness import RobustnessResult, Samples
from pytest_psa.results.robustness_budgets import BudgetVerdict

__all__ = [
    "BudgetVerdict",
    "CheckVerdict",
    "Checked",
    "DensityResult",
    "FlatnessComparison",
    "FlatnessVerdict",
    "MetricComparison",
    "RobustnessResult",
    "Samples",
    "Verdict",
]
