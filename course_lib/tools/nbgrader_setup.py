"""nbgrader as the course runs it, hardened: the one module that imports nbgrader.

:func:`nbgrader_api` is nbgrader's API on a course folder, with a gradebook that may live elsewhere, configured so
that a submission cannot take the grader down or hide its own failures:

* :class:`_Execute` runs the cells in a kernel started through ``sandbox.IsolatedKernelManager`` (isolated when so
  configured), watched by the course's :class:`~course_lib.tools.watchdog.KernelWatchdog`. A kernel that dies, or
  two cells in a row that time out, cost the cells from there on instead of the whole notebook; a hang of the
  machinery (the kernel idle while the client waits) raises :class:`NotebookHang`, and the grader runs the
  submission again.
* :class:`_TrimOutput` cuts every text output (nbgrader's LimitOutput counts lines: one 10 MB line passes it).
* :class:`HideHiddenTests`: the students' feedback never shows the hidden tests' code (also named in the course
  folder's ``nbgrader_config.py``, so that ``nbgrader generate_feedback`` hides them too).

nbgrader is in the instructor extra: without it, importing this module raises
:class:`~course_lib.tools.extras.MissingExtra`, which names the extra to install.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import nbformat
from nbclient.exceptions import CellTimeoutError, DeadKernelError
from nbconvert.preprocessors import ClearMetadataPreprocessor, CSSHTMLHeaderPreprocessor
from traitlets import Float, Integer
from traitlets.config import Config

from course_lib.config import environ
from course_lib.tools import sandbox
from course_lib.tools.extras import MissingExtra
from course_lib.tools.submissions import GradingError

try:  # nbgrader is in the instructor extra: a student install imports course_lib without it, and grading says so
    from nbgrader.api import Gradebook  # noqa: F401 (execute.py and gradebook.py take it from here: one guarded import)
    from nbgrader.apps import NbGraderAPI
    from nbgrader.coursedir import CourseDirectory  # noqa: F401 (course_folder.py takes it from here)
    from nbgrader.preprocessors import (
        AssignLatePenalties,
        CheckCellMetadata,
        ClearHiddenTests,
        Execute,
        GetGrades,
        IgnorePattern,
        LimitOutput,
        NbGraderPreprocessor,
        SaveAutoGrades,
    )
    from nbgrader.utils import parse_utc  # noqa: F401 (gradebook.py takes it from here)
except ModuleNotFoundError as e:
    if (e.name or "").partition(".")[0] != "nbgrader":
        raise
    raise MissingExtra("grading (release, grade, grade-manual)", "instructor", "nbgrader") from e
from course_lib.tools.watchdog import KernelWatchdog, NotebookHang, default_idle_grace_s, kill_kernel


class _Watched:
    """Hooks for an nbclient client: the course's :class:`KernelWatchdog` on its kernel (a hang of the machinery
    kills the kernel, and :meth:`_hang` says so), and no stand-in for the Output widget (nbclient's stand-in
    sends on the shell socket while the client waits there for the reply: the course's hang)."""

    _watchdog: KernelWatchdog | None = None

    def on_notebook_start(self, notebook=None, **kwargs):
        self.widget_registry = {}
        self._watchdog = KernelWatchdog(self.km.get_connection_info(), lambda _msg: kill_kernel(self.km),
                                        idle_grace_s=self.idle_grace_s, name=self.watch_name).start()

    def on_cell_execute(self, cell=None, cell_index=None, **kwargs):
        if self._watchdog is not None:
            self._watchdog.cell_started(cell_index, self.timeout)

    def on_cell_executed(self, **kwargs):
        parent = getattr(super(), "on_cell_executed", None)
        if callable(parent):
            parent(**kwargs)
        if self._watchdog is not None:
            self._watchdog.cell_finished()

    def _hang(self) -> str | None:
        return self._watchdog.verdict if self._watchdog is not None else None

    def _stop_watchdog(self) -> None:
        if self._watchdog is not None:
            self._watchdog.stop()


class _Execute(_Watched, Execute):
    """nbgrader's Execute, but a kernel that dies (``os._exit``, a crash, out of memory) costs the cells
    from there on instead of the whole notebook, and so does a kernel stuck in a loop that ignores the
    interrupt (two cells in a row time out); output that outlasts the IOPub timeout costs its cell.
    A hang of the machinery (the kernel idle while the client waits: the course's watchdog) is not the
    notebook's: :class:`NotebookHang` stops this run, and the grader runs the submission again.
    The kernel starts through :class:`sandbox.IsolatedKernelManager` (isolated when so configured)."""

    idle_grace_s = Float(None, allow_none=True, help="the watchdog's idle grace (None: its default)").tag(config=True)
    watch_name = "submission"

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("kernel_manager_class", sandbox.IsolatedKernelManager)
        super().__init__(*args, **kwargs)

    def on_cell_executed(self, **kwargs):
        super().on_cell_executed(**kwargs)
        if kwargs["execute_reply"]["content"].get("status") == "aborted":  # no error output: would score its points
            _add_error(kwargs["cell"], "NotRun", "the kernel skipped this cell (aborted after an error)")

    def preprocess(self, nb, resources=None, km=None):
        self._stopped, self._timed_out, self._watchdog = "", False, None
        try:
            nb, resources = super().preprocess(nb, resources, km)
        finally:
            self._stop_watchdog()
        # a submission that deleted its own folder still gets its executed notebook written there
        Path(resources["metadata"]["path"]).mkdir(parents=True, exist_ok=True)
        return nb, resources

    def preprocess_cell(self, cell, resources, index):
        if cell.cell_type != "code":
            return cell, self.resources
        if self._stopped:
            _add_error(cell, "NotRun", f"not run: {self._stopped}")
            return cell, self.resources
        try:
            super().preprocess_cell(cell, resources, index)
        except DeadKernelError:
            if self._hang():  # the watchdog killed it: not the notebook's fault, this run stops
                raise NotebookHang(self._hang()) from None
            self._stopped = f"the kernel died in cell {index}"
            _add_error(cell, "DeadKernelError", "the kernel died in this cell (os._exit, a crash or out of memory)")
        except CellTimeoutError as e:
            _add_error(cell, "CellTimeoutError", str(e).strip().splitlines()[0])
        timed_out = any(out.get("ename") == "CellTimeoutError" for out in cell.outputs)
        if timed_out and self._timed_out:  # the interrupt did not stop the previous cell
            self._stopped = f"the kernel stopped answering (cells {index - 1} and {index} timed out)"
        self._timed_out = timed_out
        return cell, self.resources


class HideHiddenTests(ClearHiddenTests):
    """For the students' feedback: the hidden test regions are removed from the source (the comment
    above each stays, saying what was checked), and a failing hidden test's traceback, which would
    quote the hidden code, is cut to its error line (e.g. ``AssertionError: wrong targets``)."""

    def preprocess_cell(self, cell, resources, index):
        if cell.cell_type == "code" and self.begin_test_delimeter in cell.source:
            cell, resources = super().preprocess_cell(cell, resources, index)
            for out in cell.get("outputs", []):
                if out.get("output_type") == "error":
                    out.traceback = [f"{out.get('ename', 'Error')}: {out.get('evalue', '')}"]
        return cell, resources


class _TrimOutput(NbGraderPreprocessor):
    """Cut every text output to ``max_chars`` (LimitOutput counts lines: one 10 MB line passes it)."""

    max_chars = Integer(10_000, help="longest text kept of one output").tag(config=True)

    def _cut(self, text: str) -> str:
        return text if len(text) <= self.max_chars else text[:self.max_chars] + "\n... output cut by the grader ..."

    def preprocess_cell(self, cell, resources, index):
        for out in cell.get("outputs", []):
            if isinstance(out.get("text"), str):
                out.text = self._cut(out.text)
            for mime, value in out.get("data", {}).items():
                if mime.startswith("text/") and isinstance(value, str):
                    out.data[mime] = self._cut(value)
            if out.get("output_type") == "error":
                out.evalue = self._cut(str(out.get("evalue", "")))
                out.traceback = [self._cut(line) for line in out.get("traceback", [])[:100]]
        return cell, resources


def _add_error(cell, ename: str, evalue: str) -> None:
    cell.outputs.append(nbformat.v4.new_output("error", ename=ename, evalue=evalue, traceback=[f"{ename}: {evalue}"]))


def cell_errors(nb) -> dict[int, str]:
    """Cell index -> 'Ename: message' of the cell's error (the grader's own, timeout or dead kernel, first)."""
    found = {}
    for i, cell in enumerate(nb.cells):
        errors = [out for out in cell.get("outputs", []) if out.get("output_type") == "error"]
        errors.sort(key=lambda out: out.get("ename") not in ("CellTimeoutError", "DeadKernelError", "NotRun"))
        if errors:
            lines = str(errors[0].get("evalue", "")).strip().splitlines()
            found[i] = f"{errors[0].get('ename', 'Error')}: {lines[0][:200] if lines else ''}".rstrip(": ")
    return found


def nbgrader_api(root: Path, db: Path, cell_timeout: float = 120, kernel: dict | None = None,
                 kernel_name: str = "", late: dict | None = None, course_id: str = "") -> NbGraderAPI:
    """nbgrader's API on the course folder ``root``, with the gradebook ``db`` (which may live elsewhere);
    ``kernel``: settings of the kernel manager (``sandbox``, ``transport``, ``connection_file``); ``kernel_name``:
    the kernel every notebook runs in (empty: its kernelspec's); ``late``: the late-penalty configuration (sections
    of a course folder's ``nbgrader_config.py``)."""
    (root / "exchange").mkdir(parents=True, exist_ok=True)  # unused, but nbgrader checks that it exists
    c = Config(late or {})
    if course_id:
        c.CourseDirectory.course_id = course_id
    if kernel_name:
        c.Execute.kernel_name = kernel_name
    for key, value in (kernel or {}).items():
        setattr(c.IsolatedKernelManager, key, value)
    c.Exchange.root = str(root / "exchange")
    c.CourseDirectory.root = str(root)
    c.CourseDirectory.db_url = f"sqlite:///{db}"
    c.Execute.timeout = cell_timeout  # then the kernel is interrupted and the cell fails
    c.Execute.shutdown_kernel = "immediate"  # kill it when done: a stuck kernel would not shut down
    c.Execute.idle_grace_s = min(default_idle_grace_s(), max(1.0, cell_timeout / 2))  # judged before the timeout
    c.Execute.error_on_timeout = {  # (an idle kernel is a hang of the machinery, found by the watchdog before this)
        "ename": "CellTimeoutError", "traceback": ["CellTimeoutError"],
        "evalue": f"the cell ran longer than {cell_timeout:g} s and was interrupted (the kernel was busy running it: "
                  "a slow or looping cell)"}
    c.Autograde.autograde_preprocessors = [  # nbgrader 0.9's list, with the two classes above
        _Execute, IgnorePattern, ClearMetadataPreprocessor, LimitOutput, _TrimOutput, SaveAutoGrades,
        AssignLatePenalties, CheckCellMetadata]
    c.GenerateFeedback.preprocessors = [GetGrades, HideHiddenTests, CSSHTMLHeaderPreprocessor]  # + hiding
    return NbGraderAPI(CourseDirectory(config=c), config=c)


def check_success(result: dict, what: str) -> None:
    if not result.get("success"):
        raise GradingError(f"{what} failed:\n{result.get('log', '')}\n{result.get('error', '')}".strip())


def tools_on_path():
    """nbgrader's gradebook runs the ``alembic`` command, installed beside this Python (a venv's bin/)."""
    return environ(PATH=os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]))
