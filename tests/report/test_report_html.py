"""pytest-html: a test's audits reach its row of the report as a summary table and PNG figures; without
``--html`` nothing is drawn; JUnit properties carry the numbers."""

from __future__ import annotations

import base64
import re

import pytest

pytest.importorskip("pytest_html")

TESTS = """
import pytest
from torchvision.transforms import v2

@pytest.mark.psa(n_images=40, draws=2)
def test_augmix_is_proximal(psa):
    psa.density(v2.AugMix()).assert_psa(gamma=0.05, min_density=0.3)

def test_without_audits():
    pass
"""


def test_html_report_embeds_figures_and_table_on_the_row(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(TESTS)
    result = pytester.runpytest("-p", "no:cacheprovider", "--html=report.html", "--self-contained-html")
    result.assert_outcomes(passed=2)
    page = (pytester.path / "report.html").read_text()
    # pytest-html keeps each row's extras as JSON inside the page; ours are a <pre> table and a PNG
    assert page.count("psa-summary") == 1  # only the test that audited something
    assert "test_augmix_is_proximal | l2, N\\u00d7K=40\\u00d72" in page  # JSON-escaped inside the page
    images = re.findall(r"data:image/png;base64,([A-Za-z0-9+/=]+)", page)
    # the eCDF figure, then the sample grid: x and A(x) at the 10/50/90 % distance quantiles
    assert len(images) == 1 + 2 * 3 and all(base64.b64decode(i).startswith(b"\x89PNG") for i in images)
    assert page.count("q=10%") == 1 and page.count("q=90%") == 1
    assert "psa ecdf_l2.png" in page


def test_without_html_nothing_is_attached(pytester: pytest.Pytester) -> None:
    pytester.makeconftest("""
        import pytest
        @pytest.hookimpl(trylast=True)
        def pytest_runtest_logreport(report):
            if report.when == "call":
                with open("extras.txt", "a") as f:
                    f.write(f"{len(getattr(report, 'extras', []))}\\n")
    """)
    pytester.makepyfile(TESTS)
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=2)
    assert (pytester.path / "extras.txt").read_text().split() == ["0", "0"]
