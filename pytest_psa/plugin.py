"""The pytest plugin: options, marker, fixture, header, summary. Thin and torch-free at import.

Everything heavy (torch, torchvision, scipy) loads when a test first uses the ``psa`` fixture,
so a suite without psa tests pays nothing for having the plugin installed.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest

from pytest_psa import _devices, _timings, _xdist, hookspec
from pytest_psa._session import SESSION_KEY, SESSION_NAME, PsaSession, is_worker, session_of, uses_psa
from pytest_psa._settings import MARKER_DOC, OPTIONS, distance_problem, known_distances, marker_problems, resolve
from pytest_psa._time_budget import BudgetHooks
from pytest_psa.errors import PsaError, PSAViolation, without_library_frames
from pytest_psa.fixture import Psa

# Before torch loads: OpenMP threads that spin while waiting make a training step 4-25x slower
# on 2 cores as soon as any other process is busy (pytest -n 2 included); passive waiting does
# not change results. A user's own setting wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__all__ = ["SESSION_KEY", "PsaSession"]  # re-exported for conftest files that reach for the session


def pytest_addhooks(pluginmanager: pytest.PytestPluginManager) -> None:
    pluginmanager.add_hookspecs(hookspec)


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("psa", "pytest-psa: augmentation robustness checks")
    for opt in OPTIONS:
        if opt.flag:
            group.addoption(opt.cli, action="store_true", default=None, dest=f"psa_{opt.name}", help=opt.help)
        elif opt.multiple:
            group.addoption(opt.cli, action="append", type=opt.parse, default=None, dest=f"psa_{opt.name}",
                            help=opt.help.replace("%", "%%"))  # argparse %-formats help
        elif opt.const is not None:  # --psa-compare or --psa-compare=ID
            group.addoption(opt.cli, nargs="?", const=opt.const, type=opt.parse, default=None,
                            dest=f"psa_{opt.name}", metavar="ID", help=opt.help)
        else:
            group.addoption(opt.cli, type=opt.parse, default=None, dest=f"psa_{opt.name}",
                            help=f"{opt.help} (default: {opt.default})")
        parser.addini(opt.ini, help=f"{opt.help} (ini twin of {opt.cli})", default=None)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", MARKER_DOC)
    cli = {opt.name: config.getoption(f"psa_{opt.name}") for opt in OPTIONS}
    ini = {opt.name: config.getini(opt.ini) for opt in OPTIONS}
    try:
        settings = resolve(cli, ini)
    except ValueError as exc:
        raise pytest.UsageError(str(exc)) from None
    settings = _xdist.settings_from_controller(config, settings)  # workers use the controller's seed and all
    session = config.stash[SESSION_KEY] = PsaSession(settings, config, started=_xdist.session_start(config))
    config.pluginmanager.register(session, SESSION_NAME)
    config.pluginmanager.register(BudgetHooks(settings.time_budget, session.started), "psa-budget")
    from pytest_psa import execution  # torch- and ray-free: ray is imported on the first remote unit

    previous = execution.use(None)
    execution.configure(settings.executor, settings.ray_address)
    config.add_cleanup(lambda: None if execution.use(previous) else None)  # inline runs leave the caller's
    if config.pluginmanager.hasplugin("xdist"):
        config.pluginmanager.register(_xdist.XdistHooks(config, session), "psa-xdist")
    if settings.save or settings.autosave or settings.compare or settings.baseline_update or cli["compare_fail"]:
        from pytest_psa.report.baseline import BaselineGate  # stored runs and the compare gate

        config.pluginmanager.register(BaselineGate.from_config(config, settings, cli), "psa-baseline")
    from pytest_psa.report.outputs import ReportHooks  # grouped summary, --psa-json/--psa-plots, html, progress

    config.pluginmanager.register(ReportHooks(config, session), "psa-reports")
    if settings.cache_clear and not is_worker(config):
        from pytest_psa.train.model_cache import ModelCache

        from pytest_psa.audits.evaluation_cache import EvaluationStore

        ModelCache(settings.cache_dir).clear()
        EvaluationStore(settings.cache_dir).clear()  # evaluations of cleared models are stale too
        EvaluationStore(settings.cache_dir, kind="flatness").clear()  # measurements of them too


MARKER_PROBLEMS = pytest.StashKey[list[str]]()  # a test's invalid psa marker arguments, raised in its setup


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # Validate every psa marker at collection, but fail only the tests that carry a bad one, in their
    # setup: a -k / -m selection that leaves them out runs as usual.
    psa_items = [item for item in items if uses_psa(item)]
    if not psa_items:
        return
    settings = config.stash[SESSION_KEY].settings
    distances = known_distances(name for mapping in config.hook.pytest_psa_distances() for name in (mapping or {}))
    option_problem = distance_problem(settings.distance, distances)
    for item in psa_items:
        problems = [f"@pytest.mark.psa: {p}" for mark in item.iter_markers("psa")
                    for p in marker_problems(mark.args, mark.kwargs, distances)]
        own_distance = any("distance" in mark.kwargs for mark in item.iter_markers("psa"))
        if option_problem and not own_distance:
            where = "--psa-distance" if config.getoption("psa_distance") is not None else "ini psa_distance"
            problems.append(f"{where}={settings.distance!r} {option_problem}")
        if problems:
            item.stash[MARKER_PROBLEMS] = problems


PSA_KEY = pytest.StashKey[Psa]()  # the test's `psa` fixture object, so its verdicts can be flushed


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Any:
    try:
        return (yield)
    except PSAViolation as first:
        session = session_of(item.config)
        if session is None or session.settings.no_replay or "psa" not in getattr(item, "fixturenames", ()):
            raise
        _flush(item)  # the first run's verdicts, before the replay counts records and properties
        from pytest_psa._replay import replay

        replay(item, first, session.records)
        raise  # not reached: replay always raises
    finally:
        _flush(item)


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    # an error raised on purpose says what and how to fix it: show the user's frames, not ours
    # (--fulltrace keeps every frame)
    excinfo = call.excinfo
    if excinfo is not None and isinstance(excinfo.value, PsaError) and not item.config.getoption("fulltrace"):
        kept = without_library_frames(excinfo.value)
        if kept is not None:
            excinfo.traceback = type(excinfo.traceback)(kept)
    return (yield)


def _flush(item: pytest.Item) -> None:
    psa = item.stash.get(PSA_KEY, None)
    if psa is not None:
        psa.flush()


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    problems = item.stash.get(MARKER_PROBLEMS, None)
    if problems:  # one readable error, no traceback through the plugin
        pytest.fail("invalid psa arguments:\n  " + "\n  ".join(f"{item.nodeid}: {p}" for p in problems),
                    pytrace=False)
    session = item.config.stash[SESSION_KEY]
    _timings.reset()  # this test's stages, attached to its records at teardown
    item.stash[FIRST_RECORD] = len(session.records)
    device = _devices.marker_device(item)
    if _devices.needs_gpu(device):  # a GPU test: skip it without a GPU, or fail it under --psa-require-gpu
        _devices.require_gpu(f"{item.nodeid} (marker device={device!r})", device,
                             require_gpu=item.config.stash[SESSION_KEY].settings.require_gpu)


FIRST_RECORD = pytest.StashKey[int]()  # len(session.records) when the test's setup began


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item: pytest.Item) -> Any:
    try:
        return (yield)
    finally:  # before the teardown report: under xdist the records leave with it
        start = item.stash.get(FIRST_RECORD, None)
        if start is not None:
            session = item.config.stash[SESSION_KEY]
            stages = _timings.reset()
            if uses_psa(item):  # a test that calls the audits directly is not a psa test: its stages are dropped
                session.attach_timings([r for r in session.records[start:] if r.nodeid == item.nodeid], stages)


def _load_extensions(config: pytest.Config, session: PsaSession) -> None:
    """Register users' distances and data sources from the pytest_psa_* hooks (on first use)."""
    if session.extensions_loaded:
        return
    from pytest_psa.data.sources import register_data_source
    from pytest_psa.measure.density.distances import register_distance

    for mapping in config.hook.pytest_psa_distances():
        for name, fn in (mapping or {}).items():
            register_distance(name, fn, replace=True)
    for mapping in config.hook.pytest_psa_data_sources():
        for name, factory in (mapping or {}).items():
            register_data_source(name, factory, replace=True)
    session.extensions_loaded = True


@pytest.fixture
def psa_data() -> Any:
    """Override in conftest.py to audit your own torch Dataset (or any data spec) by default."""
    return None


@pytest.fixture
def psa_model() -> Any:
    """Override in conftest.py with a model factory ``(num_classes) -> nn.Module`` (or a model name)
    for psa.flatness; None means the preset's model."""
    return None


@pytest.fixture
def psa_trainer(request: pytest.FixtureRequest) -> Any:
    """The training recipe ``fn(job) -> nn.Module`` the psa fixture trains with: the ``pytest_psa_train``
    hook when a conftest.py at or above the test implements it, else None (the built-in trainer).
    Override it in conftest.py to choose a recipe per directory; ``psa.flatness(aug, trainer=fn)``
    overrides it per call."""
    hook = request.node.ihook.pytest_psa_train  # path-aware: only the conftest files above this test
    impls = hook.get_hookimpls()
    if not impls:
        return None
    from pytest_psa.train.recipe import HookRecipe

    return HookRecipe(hook, [impl.function for impl in impls])


@pytest.fixture
def psa(request: pytest.FixtureRequest, psa_data: Any, psa_model: Any, psa_trainer: Any) -> Iterator[Psa]:
    """Measure and assert augmentation robustness: ``psa.density(aug).assert_psa(gamma=0.05)``."""
    config = request.config
    session = config.stash[SESSION_KEY]
    _load_extensions(config, session)
    marker: dict[str, Any] = {}
    for mark in reversed(list(request.node.iter_markers("psa"))):  # closest marker wins
        marker.update(mark.kwargs)
    if "device" not in marker and _devices.needs_gpu(session.settings.device):
        device = session.settings.device
        _devices.require_gpu(f"--psa-device={device}", device, require_gpu=session.settings.require_gpu)

    def repro(seed: int) -> str:
        return session.repro_command(request.node.nodeid, seed=seed)

    psa = Psa(session.settings, marker, request.node, psa_data, session.records, repro, model=psa_model,
              trainer=psa_trainer)
    request.node.stash[PSA_KEY] = psa
    yield psa
    psa.flush()  # verdicts reached in a later fixture's teardown


@pytest.fixture
def psa_gpu(request: pytest.FixtureRequest) -> Any:
    """This test's CUDA device as a ``torch.device`` (this xdist worker's GPU); without a GPU the test
    is skipped, or fails under ``--psa-require-gpu``."""
    settings = request.config.stash[SESSION_KEY].settings
    marker = _devices.marker_device(request.node)
    wanted = next((d for d in (marker, settings.device) if d is not None and _devices.needs_gpu(d)), "cuda")
    _devices.require_gpu(f"{request.node.nodeid} (psa_gpu fixture)", wanted, require_gpu=settings.require_gpu)
    import torch

    device = _devices.measurement_device(wanted)
    if device is None:  # only "auto" without CUDA gives None; `wanted` is "cuda" or "cuda:N", which raise instead
        raise RuntimeError(f"psa_gpu: no device for {wanted!r} (a pytest-psa bug: please report it)")
    return torch.device(device)
