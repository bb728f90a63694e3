"""`psa audit --domains`: the leave-one-domain-out row of the command line (argument errors before
any training; the audit itself is exercised in test_domain_audit.py)."""

from __future__ import annotations

import pytest

from pytest_psa.cli import EXIT_USAGE, build_parser, main

ONLY_DOMAINS = ["--no-density", "--no-flatness", "--no-robustness", "--domains", "synthetic-domains"]


def test_flags_parse() -> None:
    args = build_parser().parse_args(["audit", "augmix", *ONLY_DOMAINS, "--held-out", "sketch,photo",
                                      "--domain-size", "16", "--per-domain", "100"])
    assert args.domains == "synthetic-domains" and list(args.held_out) == ["sketch", "photo"]
    assert args.domain_size == 16 and args.per_domain == 100


def test_unknown_held_out_domain_is_a_usage_error_before_training(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["audit", "none", *ONLY_DOMAINS, "--held-out", "watercolour", "--per-domain", "20", "-q"])
    err = capsys.readouterr().err
    assert code == EXIT_USAGE
    assert "held_out must name domains" in err and "photo" in err and "Traceback" not in err
