"""`psa audit`: density, flatness and robustness against ERM on the synthetic set, Tables 1–3, the run
file and the figures; augmentation names and import paths; a missing piece is reported, never skipped
silently; `psa report` prints the same tables from the file; the console script is installed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import pytest_psa
from pytest_psa.augment.known import resolve_augmentation
from pytest_psa.cli import EXIT_INCOMPLETE, EXIT_OK, EXIT_USAGE, main
from pytest_psa.errors import PsaWarning
from pytest_psa.report.run_files import load_run

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
def test_audit_prints_tables_1_to_3_and_writes_the_run_and_figures(tmp_path: Path, report_cache, tiny_flatness,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    t = tiny_flatness  # the models of test_report_session: cache hits whichever test runs first
    argv = ["audit", "cropflip", "destructive", "--data", "synthetic", "--cache-dir", str(report_cache),
            "--seeds", str(t["seeds"]), "--epochs", str(t["epochs"]), "--n-train", str(t["n_train"]),
            "--batch-size", str(t["batch_size"]), "--metrics", "lpf", "--n-measure", str(t["n_measure"]),
            "--n-images", "60", "--draws", "2",
            "--corruptions", "gaussian_noise,contrast", "--severities", "1,5", "--robust-images", "100",
            "--attacks", "linf:8/255:3", "--attack-images", "20",
            "--json", str(tmp_path / "run.json"), "--plots", str(tmp_path / "figs"), "-q"]
    # one-epoch models at chance (and a destructive augmentation's collapsed one): the tables' plumbing
    # is under test, so the sanity gate only warns; without --sanity warn the same run is refused
    assert main(argv + ["--no-density", "--no-robustness"]) == EXIT_USAGE
    refused = capsys.readouterr().err
    assert "sanity gate: the baseline erm did not learn" in refused and "--sanity warn measures anyway" in refused
    with pytest.warns(PsaWarning, match="sanity gate"):
        assert main(argv + ["--sanity", "warn"]) == EXIT_OK
    out = capsys.readouterr().out
    tables = out[: out.index("psa: run written")].rstrip("\n")
    for head in ("Proximal density F_N(γ)", "Table 2. Flatness, mean over 2 seeds",
                 "Table 3. Robustness, error in %"):
        assert head in tables
    lines = tables.splitlines()
    assert any(line.split()[:3] == ["γ", "cropflip", "destructive"] for line in lines)
    assert any(line.split()[:3] == ["error", "%", "ERM"] for line in lines)
    assert any(line.strip().startswith("mce ") for line in lines) and any("adv_error(linf,8/255)" in x for x in lines)

    # the run file: one entry per (augmentation, check), values as measured
    doc = load_run(tmp_path / "run.json")
    assert doc["source"] == "psa audit" and doc["skipped"] == []
    kinds = {(e["nodeid"], e["index"]): e["kind"] for e in doc["results"]}
    assert kinds == {("psa-audit::cropflip", 0): "density", ("psa-audit::destructive", 0): "density",
                     ("psa-audit::cropflip", 1): "flatness", ("psa-audit::destructive", 1): "flatness",
                     ("psa-audit::cropflip", 2): "robustness", ("psa-audit::destructive", 2): "robustness"}
    density = {e["nodeid"]: e for e in doc["results"] if e["kind"] == "density"}
    again = pytest_psa.density(resolve_augmentation("destructive"), n_images=60, draws=2, seed=0)
    assert density["psa-audit::destructive"]["metrics"]["F(0.05)"]["estimate"] == again.F(0.05) == 0.0
    robust = next(e for e in doc["results"] if e["kind"] == "robustness")
    assert robust["summary"]["corruptions"] == ["gaussian_noise", "contrast"]
    assert {"mce", "baseline_mce", "delta_mce", "adv_error(linf,8/255)"} <= set(robust["metrics"])

    figs = sorted(p.name for p in (tmp_path / "figs").iterdir())
    assert figs == ["corruptions.png", "ecdf_l2.png", "flatness.png"]
    assert all((tmp_path / "figs" / f).read_bytes().startswith(PNG) for f in figs)

    # `psa report` rebuilds the same tables from the file alone
    assert main(["report", str(tmp_path / "run.json")]) == EXIT_OK
    assert capsys.readouterr().out.rstrip("\n") == tables


def test_import_paths_and_names(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["audit", "torchvision.transforms.v2:RandomHorizontalFlip", "none", "--no-flatness", "--no-robustness",
            "--n-images", "20", "--draws", "2", "--gamma", "0.01,0.5", "-q"]
    assert main(argv) == EXIT_OK
    out = capsys.readouterr().out
    rows = {line.split()[0]: line.split()[1:] for line in out.splitlines() if line.strip()}
    assert rows["γ"] == ["RandomHorizontalFlip", "none"]
    assert rows["identity"] == [rows["identity"][0], "100.0%"]  # the identity returns every image as it is
    assert rows["0.5"][2] == "1.0000"  # F(0.5) of the identity (cells: estimate [interval])

    assert main(["audit", "augmx", "--no-flatness", "--no-robustness"]) == EXIT_USAGE
    assert "unknown augmentation 'augmx' (did you mean 'augmix'?)" in capsys.readouterr().err
    assert main(["audit", "no_such_module:Thing", "--no-flatness", "--no-robustness"]) == EXIT_USAGE
    assert "cannot import 'no_such_module'" in capsys.readouterr().err
    assert main(["audit", "augmix", "--no-density", "--no-flatness", "--no-robustness"]) == EXIT_USAGE

    assert main(["list"]) == EXIT_OK
    listed = capsys.readouterr().out
    for name in ("augmix", "randaugment", "trivialaugment", "autoaugment", "cropflip", "destructive", "module:attr"):
        assert name in listed


def test_an_augmentation_of_the_project_it_runs_in(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "g1_cli_augs.py").write_text(
        "import torch\n\ndef jitter(x):\n    return (x + 0.02 * torch.randn_like(x)).clamp(0, 1)\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(tmp_path))])
    monkeypatch.delitem(sys.modules, "g1_cli_augs", raising=False)
    argv = ["audit", "g1_cli_augs:jitter", "--no-flatness", "--no-robustness", "--n-images", "20", "--draws", "2", "-q"]
    assert main(argv) == EXIT_OK
    rows = {line.split()[0]: line.split()[1:] for line in capsys.readouterr().out.splitlines() if line.strip()}
    assert rows["γ"] == ["jitter"] and rows["0.05"][0] == "1.0000"  # noise of sigma 0.02 stays within 0.05
    sys.modules.pop("g1_cli_augs", None)


RECIPE = """
import torch
import torch.nn.functional as F

CALLS = []


def recipe(job):
    CALLS.append((job.augmentation.name, job.seed))
    net = job.build_model().train()
    opt = job.optimizer(net)
    for x, y in job.batches(model=net):
        with torch.autocast(x.device.type, dtype=job.autocast_dtype or torch.float32,
                            enabled=job.autocast_dtype is not None):
            loss = F.cross_entropy(net(x).float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        job.log_loss(loss)
    return net


NOT_A_FUNCTION = 3
"""


def test_trainer_and_model_flags_train_every_model_with_the_users_recipe(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """`psa audit --trainer MODULE:FN --model NAME`: both sides of the comparison train with the recipe
    (the project's module, imported as python -m would) and the named model; bad values fail before work."""
    (tmp_path / "g1_cli_recipes.py").write_text(RECIPE)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(tmp_path))])
    monkeypatch.delitem(sys.modules, "g1_cli_recipes", raising=False)
    argv = ["audit", "cropflip", "--no-density", "--no-robustness", "--metrics", "lpf", "--seeds", "1",
            "--epochs", "1", "--n-train", "256", "--n-measure", "20", "--sanity", "warn", "--model", "small_cnn",
            "--trainer", "g1_cli_recipes:recipe", "--cache-dir", str(tmp_path / "cache"), "-q",
            "--json", str(tmp_path / "run.json")]
    with pytest.warns(PsaWarning, match="sanity gate"):  # one epoch on 256 images: plumbing, no verdict
        assert main(argv) == EXIT_OK
    calls = sys.modules["g1_cli_recipes"].CALLS
    assert sorted(calls) == [("cropflip", 0), ("none", 0)]  # ERM and the augmented model, both by the recipe
    training = load_run(tmp_path / "run.json")["results"][0]["summary"]["training"]
    for side in ("erm", "augmented"):
        (t,) = training[side]
        assert t["model"] == "small_cnn" and t["recipe"]["name"] == "g1_cli_recipes.recipe", t
        assert not t["recipe"]["declined"]
    for bad, problem in ((["--trainer", "g1_cli_recipes"], "is not MODULE:FN"),
                         (["--trainer", "no_such_module_x:fn"], "cannot import 'no_such_module_x'"),
                         (["--trainer", "g1_cli_recipes:nope"], "has no attribute 'nope'"),
                         (["--trainer", "g1_cli_recipes:NOT_A_FUNCTION"], "is a int, not a function"),
                         (["--model", "wrn40"], "unknown model 'wrn40' (did you mean 'wrn40_2'?)")):
        assert main(["audit", "cropflip", "--no-density", *bad]) == EXIT_USAGE
        assert problem in capsys.readouterr().err, bad
    sys.modules.pop("g1_cli_recipes", None)


def test_a_missing_check_is_reported_and_fails_the_exit_status(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    # what an installation without the robustness module looks like to `import`
    monkeypatch.setitem(sys.modules, "pytest_psa.audits.robustness", None)
    argv = ["audit", "cropflip", "--no-flatness", "--n-images", "20", "--draws", "2", "-q",
            "--json", str(tmp_path / "run.json")]
    assert main(argv) == EXIT_INCOMPLETE
    captured = capsys.readouterr()
    assert "psa audit: robustness could not run: ModuleNotFoundError" in captured.err
    assert "pass --no-robustness to leave it out on purpose" in captured.err
    assert "Proximal density F_N(γ)" in captured.out and "Table 3." not in captured.out
    assert load_run(tmp_path / "run.json")["skipped"][0]["check"] == "robustness"


@pytest.mark.slow
def test_console_script_is_installed() -> None:
    script = Path(sys.executable).with_name("psa")
    if not script.exists():
        pytest.skip(f"no `psa` script next to {sys.executable} (package not installed with its scripts)")
    out = subprocess.run([str(script), "list"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and "destructive" in out.stdout
