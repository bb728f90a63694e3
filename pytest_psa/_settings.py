"""Options, ini values and environment variables -> one `Settings` object; marker validation.

Every option is declared once in `OPTIONS`: the plugin builds both the ``--psa-*`` flag and its
ini twin from it, so they cannot drift apart. Precedence: command line > ini > environment > default.
"""

from __future__ import annotations

import argparse
import os
import secrets
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from pytest_psa._paths import CACHE_DIR_ENV, DATA_ROOT_ENV
from pytest_psa._validation import alpha_problem, fraction_problem, gamma_problem, is_number
from pytest_psa._specs.attacks import ATTACK_KEYS, parse_attack, resolve_attacks
from pytest_psa._specs.names import (
    CORRUPTION_NAMES,
    CORRUPTION_SETS,
    DISTANCE_NAMES,
    FLATNESS_METRICS,
    PERTURBATION_NAMES,
    PERTURBATION_SETS,
)
from pytest_psa.errors import PsaUsageError


def _seed(value: str) -> int | str:
    if value == "random":
        return value
    try:
        seed = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"seed must be an integer >= 0 or 'random', got {value!r}") from None
    if seed < 0:
        raise argparse.ArgumentTypeError(f"seed must be >= 0, got {seed}")
    return seed


def _device(value: str) -> str:
    if value in ("auto", "cpu", "cuda") or (value.startswith("cuda:") and value[5:].isdigit()):
        return value
    raise argparse.ArgumentTypeError(f"device must be auto, cpu, cuda or cuda:N, got {value!r}")


def _executor(value: str) -> str:
    from pytest_psa._specs.executors import EXECUTORS

    if value.strip().lower() not in EXECUTORS:
        raise argparse.ArgumentTypeError(f"unknown executor {value!r}; use one of {', '.join(EXECUTORS)}")
    return value.strip().lower()


def _positive_int(value: str) -> int:
    try:
        n = int(value)
    except ValueError:
        n = 0
    if n < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {value!r}")
    return n


def _alpha(value: str) -> float:
    try:
        a = float(value)
    except ValueError:
        a = -1.0
    if (problem := alpha_problem(a)) is not None:
        raise argparse.ArgumentTypeError(f"alpha {problem}, got {value!r}")
    return a


def _preset(value: str) -> str:
    if value not in ("smoke", "fast", "paper"):
        raise argparse.ArgumentTypeError(f"preset must be smoke, fast or paper, got {value!r}")
    return value


def _seconds(value: str) -> float:
    try:
        seconds = float(value)
    except ValueError:
        seconds = -1.0
    if not seconds > 0 or seconds == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a number of seconds > 0, got {value!r}")
    return seconds


def _bool(value: str) -> bool:
    if value.lower() in ("1", "true", "yes", "on"):
        return True
    if value.lower() in ("0", "false", "no", "off", ""):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {value!r}")


def _run_name(value: str) -> str:
    import re

    if not re.match(r"^[A-Za-z0-9._+-]+$", value):
        raise argparse.ArgumentTypeError(f"run name must hold only letters, digits and . _ + -, got {value!r}")
    return value


def _compare_id(value: str) -> str:
    """``latest``, a run number (3, 0003), an id (0003_main), a name (main), KEYDIR/ID or a .json path."""
    import re

    if value.endswith(".json") or re.match(r"^([A-Za-z0-9._+-]+/)?[A-Za-z0-9._+-]+$", value):
        return value
    raise argparse.ArgumentTypeError(
        f"--psa-compare takes an optional run id attached with '=' (--psa-compare=0003, --psa-compare=main, "
        f"--psa-compare=path/to/run.json), got {value!r}; to compare with the latest run, put a bare "
        f"--psa-compare after the test paths or write --psa-compare=latest")


def _compare_fail(value: str) -> tuple[str, ...]:
    from pytest_psa._fail_spec import parse_fail_specs

    try:  # validated here, kept as text (plain values travel to xdist workers)
        return tuple(str(spec) for spec in parse_fail_specs(value))
    except PsaUsageError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


@dataclass(frozen=True)
class Option:
    name: str  # settings field; flag --psa-<name with dashes>, ini psa_<name>
    parse: Callable[[str], Any]
    default: Any
    help: str
    env: str | None = None
    flag: bool = False  # a store_true switch on the command line
    const: Any = None  # not None: the flag's value is optional (--psa-compare means --psa-compare=latest)
    multiple: bool = False  # repeatable flag; parse returns a tuple, the values are joined (ini: whitespace)

    @property
    def cli(self) -> str:
        return "--psa-" + self.name.replace("_", "-")

    @property
    def ini(self) -> str:
        return "psa_" + self.name


OPTIONS: tuple[Option, ...] = (
    Option("seed", _seed, 0, "base seed of every psa measurement (integer, or 'random' to draw one and print it)"),
    Option("device", _device, "auto", "device for training and attacks: auto (CUDA when present), cpu, cuda, cuda:N"),
    Option("data", str, "synthetic", "default data set: synthetic, cifar10, cifar100 or a path"),
    Option("data_root", str, None, f"folder holding data sets (env ${DATA_ROOT_ENV})", env=DATA_ROOT_ENV),
    Option("cache_dir", str, None, f"cache for decoded data, trained models and measurements (env ${CACHE_DIR_ENV})",
           env=CACHE_DIR_ENV),
    Option("n_images", _positive_int, 500, "images per density audit"),
    Option("draws", _positive_int, 8, "augmentation draws per image in a density audit"),
    Option("distance", str, "l2", "default distance: l2 (normalized), linf, l2_raw, l2_aligned (best shift/flip), "
                                  "feature (ERM embeddings) or a registered name; parameters as in l2_aligned(radius=2)"),
    Option("alpha", _alpha, 1e-3, "declared false-failure rate of each psa check"),
    Option("preset", _preset, "smoke", "training preset: smoke (CPU, minutes), fast (one GPU), paper"),
    Option("allow_download", _bool, False, "allow data sets to be downloaded (never by default)", flag=True),
    Option("cache_clear", _bool, False, "delete the trained-model cache before the run", flag=True),
    Option("no_replay", _bool, False, "do not re-measure a failed psa check with the same seed (a failure "
           "that does not reproduce on replay is reported as flaky)", flag=True),
    Option("require_gpu", _bool, False, "fail, instead of skip, a psa test that needs a GPU when none is "
           "available (marker device='cuda', --psa-device=cuda, the psa_gpu fixture)", flag=True),
    Option("executor", _executor, "local", "where an audit's trainings run: local (this process, the default) "
           "or ray (Ray tasks; pip install \"pytest-psa[ray]\"; docs/scaling.md)", env="PSA_EXECUTOR"),
    Option("ray_address", str, None, "the Ray cluster for --psa-executor=ray: none (default) starts a local one, "
           "'auto' joins this host's cluster, ray://host:10001 a remote one", env="PSA_RAY_ADDRESS"),
    Option("time_budget", _seconds, None, "session time budget in seconds: a psa measurement still running "
           "this long after the session started fails with TimeBudgetExceeded"),
    # baselines (docs/baselines.md)
    Option("storage", str, None, "folder of stored runs and baselines (default: <rootdir>/.psa)"),
    Option("save", _run_name, None, "save this run's results as <storage>/<key>/NNNN_NAME.json"),
    Option("autosave", _bool, False, "save this run's results under an automatic name (the git commit)",
           flag=True),
    Option("compare", _compare_id, None, "compare each psa audit with the latest stored run (or the given "
           "one: --psa-compare=0003, =main, =path.json); a test without a baseline gets one and fails",
           const="latest"),
    Option("compare_fail", _compare_fail, (), "fail a test whose metric got worse than its baseline by more "
           "than this: METRIC:N% or METRIC:X, e.g. F(0.05):0.02, mce:2%; repeatable", multiple=True),
    Option("baseline_update", _bool, False, "write the current values as the baselines and pass (the summary "
           "lists the files written)", flag=True),
    # reports (docs/reports.md)
    Option("json", str, None, "write this session's psa audits as a psa run file (JSON) to this path"),
    Option("plots", str, None, "write PNG figures (eCDFs, flatness, per-corruption errors) into this folder; "
           "needs matplotlib: pip install pytest-psa[plots]"),
    Option("markdown", str, None, "write a Markdown summary of the psa audits (for a pull-request comment) to "
           "this path; 'github' appends it to $GITHUB_STEP_SUMMARY (the GitHub Actions job summary)"),
)


@dataclass(frozen=True)
class Settings:
    seed: int
    device: str
    data: str
    data_root: str | None
    cache_dir: str | None
    n_images: int
    draws: int
    distance: str
    alpha: float
    preset: str
    allow_download: bool
    cache_clear: bool = False
    no_replay: bool = False
    require_gpu: bool = False
    time_budget: float | None = None
    executor: str = "local"
    ray_address: str | None = None
    storage: str | None = None
    save: str | None = None
    autosave: bool = False
    compare: str | None = None
    compare_fail: tuple[str, ...] = ()
    baseline_update: bool = False
    json: str | None = None
    plots: str | None = None
    markdown: str | None = None
    seed_was_random: bool = False

    def header(self) -> str:
        seed = f"{self.seed}" + (" (random)" if self.seed_was_random else "")
        root = f", data root {self.data_root}" if self.data_root else ""
        return (f"psa: seed={seed}, device={self.device}, data={self.data}{root}, "
                f"alpha={self.alpha:g}, preset={self.preset}")


def resolve(cli: Mapping[str, Any], ini: Mapping[str, Any]) -> Settings:
    """Settings from parsed command-line values (None = not given) and raw ini strings."""
    values: dict[str, Any] = {}
    for opt in OPTIONS:
        value = cli.get(opt.name)
        if opt.multiple and value is not None:  # a repeated flag: one tuple per occurrence
            value = tuple(x for part in value for x in part)
        if value is None or (opt.flag and value is False):
            raw = ini.get(opt.name)
            if raw in (None, "") and opt.env:
                raw = os.environ.get(opt.env) or None
            if raw not in (None, ""):
                try:
                    value = opt.parse(str(raw).strip())
                except argparse.ArgumentTypeError as exc:
                    where = f"ini {opt.ini}" if ini.get(opt.name) not in (None, "") else f"${opt.env}"
                    raise PsaUsageError(f"{where}: {exc}", fix=f"see `pytest --help`, option {opt.cli}") from None
            else:
                value = opt.default
        values[opt.name] = value
    was_random = values["seed"] == "random"
    if was_random:
        values["seed"] = secrets.randbelow(2**31)
    return Settings(**values, seed_was_random=was_random)


# -- the psa marker --------------------------------------------------------------------------
MARKER_DOC = (
    "psa(gamma=0.05, min_density=0.05, alpha=None, distance=None, n_images=None, draws=None, seed=None, "
    "exclude_identity=False, strict=False, data=None, split='test', metric=None, metrics=None, "
    "min_rel_improvement=0.0, seeds=3, preset=None, device=None, budget_s=None, compare_fail=None, max_mce=None, max_adv_error=None, max_clean_error=None, max_mfp=None, "
    "vs_erm=None, corruptions='cifar10-c', attacks='default', perturbations=None, min_domain_accuracy=None, domain_vs_erm=None): defaults for the psa fixture's checks in this test "
    "(see pytest-psa docs/options.md)"
)


def _check_compare_fail(v: Any) -> str | None:
    from pytest_psa._fail_spec import parse_fail_specs

    if not isinstance(v, (str, list, tuple)) or (not isinstance(v, str) and not all(isinstance(x, str) for x in v)):
        return "must be a spec like 'mce:2%' or a list of them"
    try:
        parse_fail_specs(v)
    except PsaUsageError as exc:
        return f"is invalid: {exc.problem}"
    return None


def _check_names(v: Any, sets: tuple[str, ...], names: tuple[str, ...]) -> str | None:
    values = [v] if isinstance(v, str) else v
    if not isinstance(values, (list, tuple)) or not all(isinstance(x, str) for x in values):
        return f"must be {' or '.join(repr(x) for x in sets)}, a name or a list of names"
    bad = [x for x in values if x not in names and x not in sets]
    return f"has unknown name(s) {bad} (valid: {', '.join(sets + names)})" if bad else None


def _check_error_budget(v: Any) -> str | None:
    if isinstance(v, dict):
        if not v or not all(isinstance(k, str) and is_number(x) and 0 <= x <= 1 for k, x in v.items()):
            return "must be a number in [0, 1] or a dict {attack label: number in [0, 1]}"
        return None
    return None if is_number(v) and 0 <= v <= 1 else "must be a number in [0, 1] (or a dict per attack)"


def _check_vs_erm(v: Any) -> str | None:
    # the same parser assert_budget uses: "+0.5pp", "x1.02", bare numbers (old meaning); "+2%" refused
    from pytest_psa._specs.budgets import vs_erm_entries

    try:
        vs_erm_entries(v)
    except PsaUsageError as exc:
        return f"is invalid: {_why(exc)}"
    return None


def _check_domain_vs_erm(v: Any) -> str | None:
    from pytest_psa._specs.budgets import accuracy_floor

    try:
        accuracy_floor(v, where="domain_vs_erm")
    except PsaUsageError as exc:
        return f"is invalid: {_why(exc)}"
    return None


def _why(exc: PsaUsageError) -> str:
    """A usage error's problem and fix on one line, for a marker problem."""
    return exc.problem + (f" ({exc.fix})" if exc.fix else "")


def _check_attacks(v: Any) -> str | None:
    """Accepts exactly what `resolve_attacks` accepts, with the problem of the first bad spec; None is
    refused (in the marker it would not mean "no attacks": write attacks=[] for that)."""
    import difflib

    values = [v] if isinstance(v, (str, dict)) else v
    if not isinstance(values, (list, tuple)):
        return "must be 'default', a spec like 'linf:8/255:20', a dict, or a list of them"
    if not (isinstance(v, str) and v == "default"):
        for a in values:
            try:
                parse_attack(a)
            except PsaUsageError as exc:
                if not isinstance(a, dict):
                    return (f"has {a!r}, not a spec like 'linf:8/255:20' or 'l2:0.25:7' (norm:eps[:steps[:method]]): "
                            f"{_why(exc)}")
                bad = sorted(str(k) for k in set(a) - ATTACK_KEYS)
                if bad:
                    close = difflib.get_close_matches(bad[0], ATTACK_KEYS, n=1)
                    hint = f"did you mean {close[0]!r}? " if close else ""
                    return f"has a dict with unknown key(s) {bad} ({hint}use keys from {sorted(ATTACK_KEYS)})"
                return f"has {a!r}: {_why(exc)}"
    try:
        resolve_attacks(v)  # what is left: the same attack listed twice
    except PsaUsageError as exc:
        return f"is invalid: {_why(exc)}"
    return None


def distance_problem(value: str, known: Collection[str]) -> str | None:
    """What is wrong with a distance name (``"l2_aligned(radius=2)"`` is checked by its name), with a
    did-you-mean among `known`; None when it is known."""
    import difflib

    name = value.split("(", 1)[0].strip()
    if name in known:
        return None
    close = difflib.get_close_matches(name, known, n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    return (f"is not a known distance ({hint}valid: {', '.join(sorted(known))}; register your own with the "
            "pytest_psa_distances hook or pytest_psa.register_distance)")


def known_distances(extra: Iterable[str] = ()) -> set[str]:
    """The built-in distance names, `extra` ones (from the hook), and any registered in this process
    so far (the registry is read only when its module is loaded already: no torch import here)."""
    import sys

    names = set(DISTANCE_NAMES) | set(extra)
    registry = sys.modules.get("pytest_psa.measure.density.distances")
    if registry is not None:
        names |= set(registry.available_distances())
    return names


MARKER_ARGS: dict[str, Callable[[Any], str | None]] = {
    "gamma": gamma_problem,
    "min_density": lambda v: fraction_problem(v, open_low=True),
    "alpha": alpha_problem,
    "distance": lambda v: None if isinstance(v, str) or callable(v) else "must be a distance name or a callable",
    "n_images": lambda v: None if isinstance(v, int) and not isinstance(v, bool) and v >= 1 else "must be an int >= 1",
    "draws": lambda v: None if isinstance(v, int) and not isinstance(v, bool) and v >= 1 else "must be an int >= 1",
    "seed": lambda v: None if isinstance(v, int) and not isinstance(v, bool) and v >= 0 else "must be an int >= 0",
    "exclude_identity": lambda v: None if isinstance(v, bool) else "must be True or False",
    "strict": lambda v: None if isinstance(v, bool) else "must be True or False",
    "data": lambda v: None,
    "split": lambda v: None if v in ("train", "test") else "must be 'train' or 'test'",
    # flatness
    "metric": lambda v: None if v in FLATNESS_METRICS else f"must be one of {', '.join(FLATNESS_METRICS)}",
    "metrics": lambda v: None if isinstance(v, (list, tuple)) and v and all(m in FLATNESS_METRICS for m in v)
    else f"must be a non-empty list of {', '.join(FLATNESS_METRICS)}",
    "min_rel_improvement": lambda v: None if is_number(v) and -1 < v < 1 else "must be a number in (-1, 1)",
    "seeds": lambda v: None if (isinstance(v, int) and not isinstance(v, bool) and v >= 1)
    or (isinstance(v, (list, tuple)) and v and all(isinstance(s, int) for s in v)) else "must be an int >= 1 or a list of ints",
    "preset": lambda v: None if v in ("smoke", "fast", "paper") else "must be 'smoke', 'fast' or 'paper'",
    # scale-out: the test's device (device="cuda" marks a GPU test) and its time budget
    "device": lambda v: None if isinstance(v, str) and (v in ("auto", "cpu", "cuda") or (
        v.startswith("cuda:") and v[5:].isdigit())) else "must be 'auto', 'cpu', 'cuda' or 'cuda:N'",
    "budget_s": lambda v: None if is_number(v) and 0 < v < float("inf") else "must be a number of seconds > 0",
    # baselines: this test's own --psa-compare-fail specs (they replace the global ones for the metrics they match)
    "compare_fail": lambda v: _check_compare_fail(v),
    # robustness budgets and what to measure (docs/robustness.md)
    "max_mce": fraction_problem,
    "max_clean_error": fraction_problem,
    "max_mfp": fraction_problem,
    "max_adv_error": _check_error_budget,
    "vs_erm": _check_vs_erm,
    "corruptions": lambda v: _check_names(v, tuple(CORRUPTION_SETS), CORRUPTION_NAMES),
    "perturbations": lambda v: _check_names(v, tuple(PERTURBATION_SETS), PERTURBATION_NAMES),
    "attacks": _check_attacks,
    # domain generalization floors (docs/domains.md): the average held-out accuracy and its difference to ERM
    "min_domain_accuracy": fraction_problem,
    "domain_vs_erm": _check_domain_vs_erm,
}


def marker_problems(args: tuple[Any, ...], kwargs: Mapping[str, Any],
                    distances: Collection[str] | None = None) -> list[str]:
    """What is wrong with one psa marker's arguments (empty when it is valid). With `distances` (the
    known names), a ``distance=`` name is checked against them too."""
    import difflib

    problems = []
    if args:
        problems.append(f"takes keyword arguments only, got positional {args!r}")
    for key, value in kwargs.items():
        check = MARKER_ARGS.get(key)
        if check is None:
            close = difflib.get_close_matches(key, MARKER_ARGS, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else f" (valid: {', '.join(sorted(MARKER_ARGS))})"
            problems.append(f"unknown argument {key!r}{hint}")
        elif (msg := check(value)) is not None:
            problems.append(f"{key}={value!r} {msg}")
        elif key == "distance" and isinstance(value, str) and distances is not None \
                and (msg := distance_problem(value, distances)) is not None:
            problems.append(f"{key}={value!r} {msg}")
    return problems
