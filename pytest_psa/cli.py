"""The ``psa`` command: audits and regression gates outside pytest.

    psa audit augmix trivialaugment destructive --data synthetic --seeds 3 --json run.json --plots figs/
    psa compare baseline.json run.json --fail mce:2% --fail "F(0.05):0.02"
    psa report run.json --plots figs/          # the tables (and figures) of a saved run
    psa list                                   # the augmentation names `audit` knows

`audit` runs the density audit, the flatness comparison with ERM and the robustness comparison
with ERM for each augmentation and prints their tables: proximal density on this tool's scale (RMS
pixel distance in [0, 1]; `--scale paper` prints the paper's Table 1 in its layout and scale: L2 on
0-255 pixel values at γ = 1, 5, 10, 50), then the paper's Tables 2–3. A check that cannot run
(a missing optional piece) is reported and makes the exit status 3, never skipped silently.
Exit status: 0 done, 1 regression (compare), 2 usage error or nothing compared, 3 a requested
check could not run.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import sys
import time
from collections.abc import Sequence
from typing import Any, cast

from pytest_psa import _timings
from pytest_psa._settings import _positive_int as _positive
from pytest_psa._version import __version__

# Before torch loads (as in the pytest plugin): spinning OpenMP threads make training on a busy
# 2-core machine many times slower; passive waiting changes no result. A user's own setting wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

EXIT_OK, EXIT_REGRESSION, EXIT_USAGE, EXIT_INCOMPLETE = 0, 1, 2, 3
CHECKS = ("density", "flatness", "robustness")


def _csv_floats(text: str) -> tuple[float, ...]:
    try:
        values = tuple(float(v) for v in text.replace(",", " ").split())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected numbers separated by commas, got {text!r}") from None
    if not values or any(v < 0 for v in values):
        raise argparse.ArgumentTypeError(f"expected one or more numbers >= 0, got {text!r}")
    return values


def _csv_words(text: str) -> tuple[str, ...]:
    words = tuple(w for w in text.replace(",", " ").split() if w)
    if not words:
        raise argparse.ArgumentTypeError("expected one or more names separated by commas")
    return words


def _severities(text: str) -> tuple[int, ...]:
    words = _csv_words(text)
    if not all(w.isdigit() and 1 <= int(w) <= 5 for w in words):
        raise argparse.ArgumentTypeError(f"severities are integers 1 to 5 separated by commas, got {text!r}")
    return tuple(int(w) for w in words)


def _seed(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        n = -1
    if n < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}")
    return n


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="psa", description="pytest-psa outside pytest: audit augmentations "
                                     "(proximal density, flatness over ERM, robustness) and gate on saved runs.")
    parser.add_argument("--version", action="version", version=version_line())
    sub = parser.add_subparsers(dest="command", required=True, metavar="{audit,compare,report,list}")

    a = sub.add_parser("audit", help="density, flatness and robustness of augmentations vs ERM",
                       description="Audit each augmentation against ERM and print the proximal density table "
                                   "(the paper's Table 1 with --scale paper) and the seed paper's Tables 2-3.")
    a.add_argument("augmentations", nargs="+", metavar="AUG",
                   help="a known name (see `psa list`) or module:attr of your own augmentation")
    g = a.add_argument_group("data and training")
    g.add_argument("--data", default="synthetic", help="synthetic (default), synthetic-clean (the easy variant), cifar10, cifar100 or a path")
    g.add_argument("--data-root", default=None, help="folder holding data sets (default $PSA_DATA_ROOT)")
    g.add_argument("--cache-dir", default=None, help="trained models, measurements and decoded data ($PSA_CACHE_DIR)")
    g.add_argument("--preset", default="smoke", choices=("smoke", "converged", "fast", "paper"),
                   help="training preset (smoke; converged: train until the clean training loss reaches 0.3)")
    g.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: the preset's)")
    g.add_argument("--model", default=None,
                   help="model of every training, by name (small_cnn, resnet9, wrn40_2, resnet18; default: the preset's)")
    g.add_argument("--trainer", default=None, metavar="MODULE:FN",
                   help="your training recipe fn(job) -> nn.Module for every model, both sides of each comparison "
                        "(docs/training.md); default: the built-in trainer")
    g.add_argument("--executor", default=None, choices=("local", "ray"),
                   help="where trainings run: local (default; $PSA_EXECUTOR) or ray (docs/scaling.md)")
    g.add_argument("--ray-address", default=None, help="Ray cluster: none starts a local one, auto, ray://host:10001")
    g.add_argument("--seed", type=_seed, default=0, help="base seed of every measurement (0)")
    g.add_argument("--seeds", type=_positive, default=3, help="training seeds per model: seed, seed+1, ... (3)")
    g.add_argument("--epochs", type=_positive, default=None, help="override the preset's epochs (quick runs)")
    g.add_argument("--n-train", type=_positive, default=None, help="override the preset's training subset size")
    g.add_argument("--batch-size", type=_positive, default=None, help="override the preset's batch size")
    g.add_argument("--target-train-loss", type=float, default=None, metavar="NATS",
                   help="stop each model once its clean training loss is <= NATS (epochs become the cap)")
    g.add_argument("--fgsm-at", type=float, default=None, metavar="EPS",
                   help="FGSM adversarial training at L-inf EPS on the [0, 1] scale (e.g. 0.0314 = 8/255) for every model")
    g = a.add_argument_group("density (proximal density eCDF; --scale paper for the paper's Table 1)")
    g.add_argument("--scale", default="tool", choices=("tool", "paper"),
                   help="tool (default): distance l2, RMS on [0, 1], γ 0.01,0.02,0.05,0.1,0.2, this tool's own "
                        "scale; paper: distance l2_255, L2 on 0-255 pixel values, γ 1,5,10,50, printed as the "
                        "paper's Table 1 (arXiv 2505.24592)")
    g.add_argument("--distance", default=None, help="distance for the density audit (the scale's: l2, or l2_255)")
    g.add_argument("--gamma", type=_csv_floats, default=None, help="γ grid (the distance's: 0.01,0.02,0.05,0.1,0.2 "
                   "for l2, 1,5,10,50 for l2_255)")
    g.add_argument("--n-images", type=_positive, default=500, help="images in the density audit (500)")
    g.add_argument("--draws", type=_positive, default=8, help="augmentation draws per image (8)")
    g.add_argument("--psa-gamma", type=float, default=None,
                   help="γ of the PSA verdict row, this tool's own threshold, not the paper's (0.05 on the tool "
                        "scale; at the paper scale no verdict unless given)")
    g.add_argument("--min-density", type=float, default=None,
                   help="min density of the PSA verdict row, this tool's own threshold (0.05)")
    g = a.add_argument_group("flatness (Table 2)")
    g.add_argument("--metrics", type=_csv_words, default=None, help="flatness metrics (pac_bayes,lpf,eps_sharpness)")
    g.add_argument("--n-measure", type=_positive, default=None, help="training images the metrics use (1000)")
    g = a.add_argument_group("robustness (Table 3)")
    g.add_argument("--corruptions", type=_csv_words, default=None, help="cifar10-c (default), all, or names")
    g.add_argument("--severities", type=_severities, default=None, help="severities, e.g. 1,3,5 (all five)")
    g.add_argument("--attacks", type=_csv_words, default=None, help="default, none, or specs like linf:8/255:20")
    g.add_argument("--robust-images", type=_positive, default=None, help="images under corruption (1000)")
    g.add_argument("--attack-images", type=_positive, default=None, help="images attacked (500)")
    g = a.add_argument_group("domain generalization (leave one domain out; docs/domains.md; off unless --domains)")
    g.add_argument("--domains", default=None, metavar="DATA",
                   help="multi-domain data: synthetic-domains, or a root/<domain>/<class>/<file> folder or archive")
    g.add_argument("--held-out", type=_csv_words, default=None, help="domains to hold out (default: each in turn)")
    g.add_argument("--domain-size", type=_positive, default=None, help="resize the domains' images to N x N px")
    g.add_argument("--per-domain", type=_positive, default=None, help="images per domain (seeded subset)")
    g = a.add_argument_group("checks and outputs")
    for check in CHECKS:
        g.add_argument(f"--no-{check}", action="store_true", help=f"skip the {check} check")
    g.add_argument("--sanity", default="error", choices=("error", "warn"),
                   help="error (default): refuse flatness/robustness verdicts on models at chance; warn: measure anyway")
    g.add_argument("--json", default=None, metavar="PATH", help="write the run (psa run format) to PATH")
    g.add_argument("--plots", default=None, metavar="DIR", help="write PNG figures to DIR (needs matplotlib)")
    g.add_argument("-q", "--quiet", action="store_true", help="no progress bars, step lines or stage times")
    a.set_defaults(func=cmd_audit)

    c = sub.add_parser("compare", help="compare two saved runs; exit 1 on a regression",
                       description="Compare run B (candidate) with run A (baseline) using the interval rule of "
                                   "--psa-compare-fail. Exit 0 no regression, 1 regression, 2 nothing compared.")
    c.add_argument("baseline", metavar="A.json")
    c.add_argument("current", metavar="B.json")
    c.add_argument("--fail", action="append", default=[], metavar="SPEC",
                   help="METRIC:N%% or METRIC:X, repeatable (e.g. mce:2%%, adv_error:0.01, F(0.05):0.02)")
    c.add_argument("--ignore-key", action="store_true",
                   help="compare even when torch version, device or determinism differ")
    c.add_argument("--json", default=None, metavar="PATH", help="also write the comparison as JSON")
    c.set_defaults(func=cmd_compare)

    r = sub.add_parser("report", help="print the tables (and write figures) of a saved run")
    r.add_argument("run", metavar="RUN.json")
    r.add_argument("--plots", default=None, metavar="DIR", help="write PNG figures to DIR")
    r.set_defaults(func=cmd_report)

    li = sub.add_parser("list", help="the augmentation names `psa audit` knows")
    li.set_defaults(func=cmd_list)

    rp = sub.add_parser("reproduce", help="run the seed paper's experiment and write its tables and page "
                                          "(docs/reproduce.md)")
    rp.add_argument("--data", default=None, help="data set (default cifar10; the synthetic set with --tiny)")
    rp.add_argument("--data-root", default=os.environ.get("PSA_DATA_ROOT"), help="where the data lives (env $PSA_DATA_ROOT)")
    rp.add_argument("--preset", default=None, choices=("smoke", "converged", "fast", "paper"),
                    help="training preset (default converged, CPU; fast / paper need a GPU)")
    rp.add_argument("--model", default=None, help="model name (default: the preset's; wrn40_2 as the paper)")
    rp.add_argument("--seeds", default=None, type=lambda v: [int(x) for x in v.split(",")],
                    help="training seeds, comma-separated (default 0,1,2)")
    rp.add_argument("--arms", default=None, type=lambda v: v.split(","), help="a subset of the arms, comma-separated")
    rp.add_argument("--out", default=None, metavar="DIR", help="write reproduce.json, results.md and figures/ to DIR")
    rp.add_argument("--cache-dir", default=None, help="model and evaluation cache folder")
    rp.add_argument("--tiny", action="store_true", help="the CI size on the synthetic set (minutes on 2 cores)")
    rp.add_argument("--domains", default=None, metavar="DATA",
                    help="also audit each augmentation under domain shift, leave one domain out (Table 3's PACS / "
                         "OfficeHome rows): synthetic-domains, or a root/<domain>/<class>/<file> tree (docs/domains.md)")
    rp.add_argument("--domain-size", default=None, type=int, metavar="PX", help="resize the domains' images")
    rp.add_argument("--domain-per-domain", default=None, type=int, metavar="N", help="a seeded subset per domain")
    rp.add_argument("--no-plots", dest="plots", action="store_false", default=None, help="write no figures")
    rp.add_argument("--quiet", action="store_true", help="no progress lines")
    rp.set_defaults(func=cmd_reproduce)
    return parser


def cmd_reproduce(args: argparse.Namespace) -> int:
    """``psa reproduce``: the tables on stdout, the files under --out (pytest_psa.reproduce.main)."""
    from pytest_psa.reproduce.main import main_text, reproduce

    command = "psa reproduce " + " ".join(sys.argv[2:]) if sys.argv[1:2] == ["reproduce"] else "psa reproduce"
    report = reproduce(data=args.data, data_root=args.data_root, preset=args.preset, model=args.model,
                       seeds=args.seeds, arms=args.arms, out=args.out, cache_dir=args.cache_dir, tiny=args.tiny,
                       plots=args.plots, command=command, quiet=args.quiet, domains=args.domains,
                       domain_size=args.domain_size, domain_per_domain=args.domain_per_domain)
    print(main_text(report))
    return 0


def version_line() -> str:
    """``psa --version``: the package's version and Python's (cheap: nothing heavy is imported)."""
    return f"psa (pytest-psa) {__version__}, Python {platform.python_version()}"


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``psa`` console script; returns the exit status."""
    from pytest_psa.errors import PsaError

    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except PsaError as exc:  # one message, in this command's flags; no traceback
        print(f"psa {args.command}: error: {cli_spelling(str(exc))}", file=sys.stderr)
        return EXIT_USAGE


# The pytest options whose messages the library shares with this command, and this command's flag for each.
CLI_FLAGS = {"--psa-data-root": "--data-root", "--psa-data": "--data", "--psa-cache-dir": "--cache-dir",
             "--psa-seed": "--seed", "--psa-device": "--device", "--psa-preset": "--preset",
             "--psa-distance": "--distance", "--psa-n-images": "--n-images", "--psa-draws": "--draws",
             "--psa-json": "--json", "--psa-plots": "--plots", "--psa-compare-fail": "--fail"}


def cli_spelling(text: str) -> str:
    """A message written for pytest, in this command's terms: ``--psa-data-root`` becomes ``--data-root``,
    ini keys (pytest only) are dropped, and advice to pass an option this command lacks
    (``--psa-allow-download``) goes. Commands quoted as ``pytest --psa-...`` stay as they are."""
    text = re.sub(r"\(ini psa_\w+, (env \$\w+)\)", r"(\1)", text)  # "(ini psa_data_root, env $X)" -> "(env $X)"
    text = re.sub(r" / psa_\w+ / ", " / ", text)  # "--psa-data-root / psa_data_root / $X"
    text = re.sub(r"[;,]? *or (allow a download with|pass) --psa-allow-download", "", text)
    text = text.replace("sanity='warn'", "--sanity warn")  # the sanity gate's opt-out, as this command spells it
    text = re.sub(r"(?<!pytest )(?<![\w-])(--psa-[a-z0-9-]+)(?![\w-])(=?)",
                  lambda m: _cli_flag(m.group(1), m.group(2)), text)
    return re.sub(r"(--[a-z0-9-]+) / \1(?![\w-])", r"\1", text)  # "--plots / --plots" after the mapping


def _cli_flag(flag: str, equals: str) -> str:
    mapped = CLI_FLAGS.get(flag)
    if mapped is None:
        return flag + equals
    return mapped + (" " if equals else "")  # argparse takes "--fail SPEC"; "--fail=SPEC" works too, but reads worse


# -- audit ------------------------------------------------------------------------------------------
class _Audit:
    """Runs the requested checks for each augmentation and collects records, notes and skips."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.records: list[Any] = []
        self.skipped: list[dict[str, str]] = []
        self.overrides = {k: v for k, v in (("epochs", args.epochs), ("n_train", args.n_train),
                                            ("batch_size", args.batch_size),
                                            ("target_train_loss", args.target_train_loss)) if v is not None}
        if args.fgsm_at is not None:
            self.overrides.update(regime="fgsm_at", at_epsilon=args.fgsm_at)
        self.stage_mark = _timings.count()

    def say(self, text: str) -> None:
        if not self.args.quiet:
            print(f"psa: {text}", file=sys.stderr, flush=True)

    def record(self, aug_key: str, kind: str, summary: dict[str, Any], verdicts: list[dict[str, Any]]) -> None:
        from pytest_psa._records import AuditRecord, StageTimingRecord

        # the stages since the previous record are this audit's
        stages = [cast(StageTimingRecord, t.to_dict()) for t in _timings.collect()[self.stage_mark:]]
        self.stage_mark = _timings.count()
        self.records.append(AuditRecord(f"psa-audit::{aug_key}", summary, verdicts, kind=kind, timings=stages))

    def unavailable(self, check: str, exc: BaseException) -> None:
        reason = f"{type(exc).__name__}: {exc}".splitlines()[0]
        self.skipped.append({"check": check, "reason": reason})
        print(f"psa audit: {check} could not run: {reason}\n  (pass --no-{check} to leave it out on purpose; "
              f"the exit status is {EXIT_INCOMPLETE} while a requested check is missing)", file=sys.stderr)

    def density(self, key: str, aug: Any) -> None:
        from pytest_psa.audits.density import density
        from pytest_psa.results.density import DEFAULT_GAMMA as DEFAULT_PSA_GAMMA, DEFAULT_MIN_DENSITY

        a = self.args
        t0 = time.perf_counter()
        distance, paper = _density_scale(a)
        result = density(aug, data=a.data, n_images=a.n_images, draws=a.draws, distance=distance, seed=a.seed,
                         data_root=a.data_root, cache_dir=a.cache_dir)
        if a.gamma:
            import dataclasses

            result = dataclasses.replace(result, gammas=tuple(a.gamma))
        # the verdict's γ and min_density are this tool's own thresholds on its l2 scale (docs/density.md);
        # on the paper's scale (γ in 0-255 L2 units) there is none unless asked for
        psa_gamma = a.psa_gamma if a.psa_gamma is not None or paper else DEFAULT_PSA_GAMMA
        min_density = DEFAULT_MIN_DENSITY if a.min_density is None else a.min_density
        verdicts = [] if psa_gamma is None else [v.to_dict() for v in result.verdicts(psa_gamma, min_density)]
        self.record(key, "density", result.to_dict(), verdicts)
        shown = " ".join(f"F({g:g}) = {result.F(g):.4f}" for g in
                         ([psa_gamma] if psa_gamma is not None else list(result.gammas)))
        self.say(f"density {key}: {shown} ({a.n_images}×{a.draws} draws, {time.perf_counter() - t0:.1f} s)")

    def flatness(self, key: str, aug: Any) -> None:
        from pytest_psa.audits.flatness import DEFAULT_METRICS, flatness

        a = self.args
        t0 = time.perf_counter()
        extra = {"n_measure": a.n_measure} if a.n_measure else {}
        result = flatness(aug, seeds=[a.seed + i for i in range(a.seeds)], metrics=list(a.metrics or DEFAULT_METRICS),
                          preset=a.preset, data=a.data, data_root=a.data_root, cache_dir=a.cache_dir,
                          device=a.device, progress=True, sanity=a.sanity, model=a.model, trainer=a.trainer_fn,
                          **extra, **self.overrides)
        self.record(key, "flatness", result.to_dict(), [])
        self.say(f"flatness {key}: {a.seeds} seeds x (ERM, augmented) in {time.perf_counter() - t0:.1f} s")

    def robustness(self, key: str, aug: Any) -> None:
        from pytest_psa.audits.robustness import robustness

        a = self.args
        t0 = time.perf_counter()
        kw: dict[str, Any] = {}
        if a.corruptions:
            kw["corruptions"] = None if a.corruptions == ("none",) else \
                a.corruptions[0] if len(a.corruptions) == 1 and a.corruptions[0] in ("cifar10-c", "all") \
                else list(a.corruptions)
        if a.severities:
            kw["severities"] = a.severities
        if a.attacks:
            kw["attacks"] = None if a.attacks == ("none",) else a.attacks[0] if a.attacks == ("default",) \
                else list(a.attacks)
        if a.robust_images:
            kw["n_images"] = a.robust_images
        if a.attack_images:
            kw["n_attack_images"] = a.attack_images
        result = robustness(aug, data=a.data, preset=a.preset, seed=a.seed, seeds=a.seeds, device=a.device,
                            cache_dir=a.cache_dir, data_root=a.data_root, progress=True, sanity=a.sanity,
                            model=a.model, trainer=a.trainer_fn, **kw, **self.overrides)
        self.record(key, "robustness", result.to_dict(), [])
        self.say(f"robustness {key}: done in {time.perf_counter() - t0:.1f} s")


    def domain(self, key: str, aug: Any) -> str:
        """The leave-one-domain-out audit on --domains; returns its per-domain table."""
        from pytest_psa.audits.domain import domain_generalization

        a = self.args
        t0 = time.perf_counter()
        # by its spec: a name resolves at the domains' image size (--domain-size), not --data's
        result = domain_generalization(key, data=a.domains, held_out=a.held_out,
                                       seeds=[a.seed + i for i in range(a.seeds)],
                                       preset=a.preset, size=a.domain_size, n_per_domain=a.per_domain,
                                       data_root=a.data_root, cache_dir=a.cache_dir, device=a.device, progress=True,
                                       sanity=a.sanity, model=a.model, trainer=a.trainer_fn, **self.overrides)
        self.record(key, "domain", result.to_dict(), [])
        self.say(f"domain {key}: {len(result.domains)} held-out domains x {a.seeds} seeds x (ERM, augmented) in "
                 f"{time.perf_counter() - t0:.1f} s")
        return f"Domain generalization: {key} vs {result.baseline} ({result.data.get('describe', '?')}, " \
               f"{len(result.seeds)} seed(s), {int(100 * (1 - result.alpha))} % intervals)\n{result.table()}"


def _density_scale(args: argparse.Namespace) -> tuple[str, bool]:
    """The density audit's distance (--distance, else the --scale's) and whether it is the paper's
    scale: ``--scale paper``, or ``l2_255`` asked for by name."""
    from pytest_psa.errors import PsaUsageError
    from pytest_psa.measure.density.distances import PAPER_DISTANCE, SCALES, get_distance

    distance = args.distance or SCALES[args.scale][0]
    name = get_distance(distance).name
    if args.scale == "paper" and name != PAPER_DISTANCE:
        raise PsaUsageError(f"--scale paper measures with the distance {PAPER_DISTANCE!r}, not {distance!r}",
                            fix="drop --distance (or pass --distance l2_255), or drop --scale paper")
    return distance, name == PAPER_DISTANCE


def _tables(records: list[Any]) -> list[str]:
    """The tables of a run: density records on the paper's scale (``l2_255``) in the layout of its
    Table 1 (γ as rows, augmentations as columns), any others as this tool's density table, then Tables 2-3."""
    from pytest_psa.measure.density.distances import PAPER_DISTANCE
    from pytest_psa.report.tables import paper_density_table, paper_tables

    paper = [r for r in records if r.kind == "density" and r.density().get("distance") == PAPER_DISTANCE]
    if not paper:
        return paper_tables(records)
    rest = paper_tables([r for r in records if not any(r is p for p in paper)])
    return paper_density_table(paper) + ([""] if rest else []) + rest


def cmd_audit(args: argparse.Namespace) -> int:
    from pytest_psa import _progress as progress
    from pytest_psa.augment.known import resolve_augmentation
    from pytest_psa.data.sources import load_data

    if args.quiet:
        progress.configure(enabled=False)
    if args.plots:  # fail before hours of work, not after
        from pytest_psa.report.plots import require_matplotlib

        require_matplotlib()
    checks = [c for c in CHECKS if not getattr(args, f"no_{c}")]
    if not checks and not args.domains:
        print("psa audit: every check was switched off (--no-density --no-flatness --no-robustness): nothing to do",
              file=sys.stderr)
        return EXIT_USAGE
    _check_audit_args(args, checks)  # every name and path before any work
    from pytest_psa import execution

    execution.configure(args.executor, args.ray_address)  # None: $PSA_EXECUTOR / $PSA_RAY_ADDRESS, else local
    if "density" in checks:  # a --distance that contradicts --scale fails before any work
        _density_scale(args)
    if os.getcwd() not in sys.path and "" not in sys.path:  # module:attr of the project it runs in, as python -m
        sys.path.insert(0, os.getcwd())
    args.trainer_fn = _load_trainer(args.trainer) if args.trainer else None  # before any work, as the names
    _timings.reset()
    with _timings.stage("data", detail=f"{args.data} (image size probe)"):
        probe = load_data(args.data, split="test", root=args.data_root, cache_dir=args.cache_dir, n=1)
    augs = {spec: resolve_augmentation(spec, image_size=max(probe.image_size)) for spec in args.augmentations}
    audit = _Audit(args)
    for check in checks:
        try:
            run = getattr(audit, check)
            for key, aug in augs.items():
                run(key, aug)
        except ImportError as exc:  # an optional piece of this installation is missing
            audit.unavailable(check, exc)
    domain_tables = [audit.domain(key, aug) for key, aug in augs.items()] if args.domains else []
    print("\n".join(_tables(audit.records) + domain_tables))
    with _timings.stage("outputs", detail="--json / --plots"):
        timings = _timings.summarize(_timings.collect())
        _write_outputs(audit.records, args, source="psa audit", skipped=audit.skipped, timings=timings)
    if not args.quiet:  # where the time went; on stderr, with the step lines, so stdout stays the tables
        from pytest_psa.report.terminal import stage_lines

        print("\n".join(stage_lines(_timings.summarize(_timings.collect()))), file=sys.stderr)
    return EXIT_INCOMPLETE if audit.skipped else EXIT_OK


def _load_trainer(spec: str) -> Any:
    """The recipe function ``--trainer MODULE:FN`` names (docs/training.md), imported from the working
    directory's project as ``python -m`` would."""
    from pytest_psa._imports import import_object
    from pytest_psa.errors import PsaUsageError

    fix = "give MODULE:FN, a function fn(job) -> nn.Module, e.g. --trainer myproject.recipes:augmix_jsd"
    obj = import_object(spec, what="--trainer", fix=fix, form="MODULE:FN")
    if not callable(obj):
        raise PsaUsageError(f"--trainer {spec} is a {type(obj).__name__}, not a function", fix=fix)
    return obj


def _check_audit_args(args: argparse.Namespace, checks: list[str]) -> None:
    """The names and paths `psa audit` was given, checked before any data is loaded or model trained:
    augmentations, --model, --data and --data-root, --distance, --metrics, --corruptions and --attacks."""
    import difflib

    from pytest_psa._paths import default_data_root
    from pytest_psa._settings import distance_problem, known_distances
    from pytest_psa._specs import CORRUPTION_NAMES, CORRUPTION_SETS, FLATNESS_METRICS, resolve_attacks
    from pytest_psa.augment.known import check_augmentation_name
    from pytest_psa.errors import PsaUsageError

    def unknown(what: str, value: str, valid: Sequence[str], fix: str) -> PsaUsageError:
        close = difflib.get_close_matches(value, valid, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        return PsaUsageError(f"unknown {what} {value!r}{hint}", fix=fix)

    for spec in args.augmentations:
        check_augmentation_name(spec)
    if args.model is not None:
        from pytest_psa.train.models import MODELS

        if args.model not in MODELS:
            raise unknown("model", args.model, sorted(MODELS), f"--model takes {', '.join(sorted(MODELS))}")
    if args.data_root is not None and not os.path.isdir(os.path.expanduser(args.data_root)):
        raise PsaUsageError(f"--data-root {args.data_root} is not a folder",
                            fix="pass the folder that holds your data sets (cifar-10-batches-py/, cifar10*.tar.gz, "
                                "...), or leave --data-root out to use $PSA_DATA_ROOT")
    names = ("synthetic", "synthetic-clean", "cifar10", "cifar100")
    if args.data not in names:
        root = args.data_root or default_data_root()
        candidates = [os.path.expanduser(args.data)] + ([os.path.join(os.path.expanduser(str(root)), args.data)]
                                                        if root else [])
        if not any(os.path.exists(c) for c in candidates) and not _registered_source(args.data):
            close = difflib.get_close_matches(args.data, names, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise PsaUsageError(f"--data {args.data!r} is neither a data set name nor an existing path{hint}",
                                observed=f"looked at {', '.join(candidates)}",
                                fix=f"pass {', '.join(names)}, or a path (a CIFAR folder, an image folder, a .tar.gz "
                                    "or .npz), absolute or under --data-root")
    if "density" in checks and args.distance and (problem := distance_problem(args.distance, known_distances())):
        raise PsaUsageError(f"--distance {args.distance!r} {problem}")
    if "flatness" in checks:
        for metric in args.metrics or ():
            if metric not in FLATNESS_METRICS:
                raise unknown("flatness metric", metric, FLATNESS_METRICS,
                              f"--metrics takes names from {', '.join(FLATNESS_METRICS)}, separated by commas")
    if "robustness" in checks:
        corruptions = () if args.corruptions in (None, ("none",)) or args.corruptions[0] in CORRUPTION_SETS \
            else args.corruptions
        for name in corruptions:
            if name not in CORRUPTION_NAMES:
                raise unknown("corruption", name, CORRUPTION_NAMES,
                              f"--corruptions takes {', '.join(CORRUPTION_SETS)}, none, or names from "
                              f"{', '.join(CORRUPTION_NAMES)} (as in CIFAR-10-C)")
        if args.attacks and args.attacks not in (("none",), ("default",)):
            try:
                resolve_attacks(list(args.attacks))
            except PsaUsageError as exc:
                raise PsaUsageError(f"--attacks: {exc.problem}", observed=exc.observed, fix=exc.fix) from None


def _registered_source(name: str) -> bool:
    """A data source a plugin registered in this process (the registry is read only if already loaded)."""
    sources = sys.modules.get("pytest_psa.data.sources")
    return sources is not None and name in getattr(sources, "_SOURCES", {})


def _write_outputs(records: list[Any], args: argparse.Namespace, *, source: str,
                   skipped: list[dict[str, str]] | None = None, timings: dict[str, Any] | None = None) -> None:
    from pytest_psa.report.json_report import run_document, write_json

    if getattr(args, "json", None):
        settings = {k: v for k, v in vars(args).items() if k not in ("func", "json", "plots", "quiet")}
        extra: dict[str, Any] = {"skipped": skipped or []}
        if timings is not None:
            extra["timings"] = timings  # per stage: wall seconds, runs, cache hits
        doc = run_document(records, settings=settings, source=source, extra=extra)
        print(f"psa: run written to {write_json(args.json, doc)}")
    if getattr(args, "plots", None):
        from pytest_psa.report.plots import write_plots

        for path in write_plots(records, args.plots):
            print(f"psa: figure {path}")


# -- compare, report, list ------------------------------------------------------------------------
def cmd_compare(args: argparse.Namespace) -> int:
    from pytest_psa.report.compare import compare_runs

    specs = [s for spec in args.fail for s in spec.split()]
    comparison = compare_runs(_run_path(args.baseline), _run_path(args.current), fail=specs,
                              ignore_key=args.ignore_key)
    print(cli_spelling(comparison.render()))  # "--fail SPEC", not pytest's --psa-compare-fail
    if args.json:
        from pytest_psa.report.json_report import write_json

        write_json(args.json, comparison.to_dict())
    return comparison.exit_code


def _run_path(path: str) -> str:
    if not os.path.isfile(path):
        from pytest_psa.errors import PsaUsageError

        raise PsaUsageError(f"no run file at {path}", fix="pass files written by `pytest --psa-json PATH`, "
                            "`--psa-save NAME` (under .psa/) or `psa audit --json PATH`")
    return path


def cmd_report(args: argparse.Namespace) -> int:
    from pytest_psa.report.json_report import load_records

    records = load_records(_run_path(args.run))
    print("\n".join(_tables(records)) or "psa report: the run holds no audit records")
    _write_outputs(records, args, source="psa report")
    return EXIT_OK


def cmd_list(args: argparse.Namespace) -> int:
    from pytest_psa.augment.known import KNOWN_AUGMENTATIONS

    width = max(map(len, KNOWN_AUGMENTATIONS))
    for name, (_, text) in KNOWN_AUGMENTATIONS.items():
        print(f"{name:<{width}}  {text}")
    print(f"{'module:attr':<{width}}  your own: a class (built without arguments) or a transform / function")
    print("\ntraining regimes (every model of an audit; in Python, one side: pytest_psa.arm(aug, ...)):")
    for name, text in _REGIMES:
        print(f"{name:<{width}}  {text}")
    return EXIT_OK


_REGIMES: tuple[tuple[str, str], ...] = (
    ("fgsm_at", "FGSM adversarial training with random start (Wong et al. 2020): --fgsm-at EPS; "
                "arm(aug, regime='fgsm_at', at_epsilon=8/255)"),
    ("sam / asam", "sharpness-aware minimization (Foret et al. 2021) / adaptive SAM: "
                   "arm(None, optimizer='sam'), the flat-minima optimizer to compare an augmentation with"),
    ("converged", "preset: train until the clean training loss reaches a target (0.3 nats, cap 60 epochs), "
                  "so no side is compared underfit: --preset converged, --target-train-loss NATS"),
)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
