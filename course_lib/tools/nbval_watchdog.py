"""pytest plugin: the hang watchdog for notebooks executed by nbval (``make test`` loads it).

nbval waits for each cell's reply with its own client, and ``--nbval-cell-timeout`` bounds
a busy (slow or endless) cell. This plugin adds what a timeout cannot tell: a kernel that
is *idle* while nbval still waits for the cell's reply is a hang of the machinery. The
watchdog (``watchdog.py``) then kills the kernel and interrupts nbval's wait with
:class:`NotebookHang`, so the cell fails at once with a message naming the notebook and the
cell, and the notebook's remaining cells fail fast on the dead kernel.
"""

from __future__ import annotations

import signal
import threading

import pytest

from course_lib.tools.watchdog import KernelWatchdog, NotebookHang, kill_kernel

_SIGNAL = signal.SIGUSR1
_watchdogs: dict[int, KernelWatchdog] = {}  # id of nbval's notebook item -> its kernel's watchdog
_hang: list[str] = []  # the message of a hang being raised in the main thread


def _raise_in_main_thread(signum, frame) -> None:
    if _hang:
        raise NotebookHang(_hang.pop())


def pytest_configure(config) -> None:
    if threading.current_thread() is threading.main_thread():
        signal.signal(_SIGNAL, _raise_in_main_thread)


def _watchdog_for(item) -> KernelWatchdog | None:
    notebook = item.parent
    kernel = getattr(notebook, "kernel", None)
    if kernel is None or getattr(kernel, "km", None) is None:
        return None  # not an nbval cell
    if id(notebook) not in _watchdogs:
        for old in _watchdogs.values():  # the previous notebook's kernel is gone
            old.stop()
        _watchdogs.clear()
        main = threading.main_thread().ident

        def on_hang(message: str) -> None:
            _hang.append(message)
            kill_kernel(kernel.km)  # the notebook's next cells then fail at once on a dead kernel
            signal.pthread_kill(main, _SIGNAL)

        _watchdogs[id(notebook)] = KernelWatchdog(kernel.km.get_connection_info(), on_hang,
                                                  name=notebook.name).start()
    return _watchdogs[id(notebook)]


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item):
    watchdog = _watchdog_for(item)
    if watchdog is None:
        yield
        return
    watchdog.cell_started(getattr(item, "cell_num", 0), item.config.getoption("nbval_cell_timeout", None))
    try:
        yield
    finally:
        watchdog.cell_finished()


NOTEBOOKS_GROUP, UNITS_GROUP = "notebooks", "unit-tests"


def split_scope(nodeid: str) -> str:
    """The worker group of a test: every notebook cell in one, every unit test in the other."""
    return NOTEBOOKS_GROUP if ".ipynb::" in nodeid else UNITS_GROUP


@pytest.hookimpl(optionalhook=True)  # a hook of pytest-xdist, which may not be installed
def pytest_xdist_make_scheduler(config, log):
    """With ``-n 2 --dist loadgroup`` (``make test`` on two cores): one worker runs the notebooks in course order
    (10 reads what 01-09 saved), the other the unit tests. Two work units, so neither worker is handed a share
    of the other's. (A scheduler of our own rather than ``xdist_group`` marks: pytest-xdist 3.8 renames the
    marked tests through an attribute that pytest 9 no longer reads, so the marks group nothing.)

    ``_split_scope`` is private: it is the method xdist's own LoadFileScheduling and LoadGroupScheduling override,
    and xdist has no public way to choose the groups (``--dist loadfile``/``loadscope`` would spread the notebooks
    over both workers). pyproject.toml bounds pytest-xdist below 4; if a release drops the method, ``make test``
    stops here with a message instead of running the notebooks out of order."""
    if config.getoption("dist", "no") != "loadgroup":
        return None
    from xdist.scheduler import LoadScopeScheduling

    if not callable(getattr(LoadScopeScheduling, "_split_scope", None)):
        raise pytest.UsageError("this pytest-xdist has no LoadScopeScheduling._split_scope, which the course's "
                                "two-worker scheduler overrides: run python -m course_lib test --workers 1")

    class CourseScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return split_scope(nodeid)

    return CourseScheduling(config, log)


def pytest_sessionfinish(session) -> None:
    for w in _watchdogs.values():
        w.stop()
    _watchdogs.clear()
