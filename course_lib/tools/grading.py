"""Homework: student versions of the notebooks, and autograding of submissions, with nbgrader.

Exercises live in the course notebooks themselves, in nbgrader's format (see
``docs/exercises.md``): solution regions, visible test cells, hidden tests, points.
Every notebook is one nbgrader *assignment*, named after its file.

* :func:`release` runs ``nbgrader generate_assignment`` on every notebook: the
  student version (solutions -> ``raise NotImplementedError()``, hidden tests
  removed) lands in ``build/release/<notebook>/<notebook>.ipynb``; ``make release`` then writes the
  student bundle from them (``course_lib/tools/bundle.py``).
* :func:`grade` runs ``nbgrader autograde`` on every submitted notebook under the
  ``grade`` profile, with a per-cell timeout, and keeps the scores in nbgrader's
  gradebook (SQLite, in ``grades/``, kept between runs and by ``make clean``); it
  writes ``scores.csv`` (every student ever graded) and per-student feedback beside it. Written answers
  (nbgrader's manually graded cells) wait for a person: :func:`record_manual_grades` records their points.
  ``jobs`` students are executed at once in worker processes; this process alone writes the gradebook.

One submission cannot change another's grade. Each student is graded in a fresh
folder built from copies the grader holds in memory (the source notebook, nbgrader's
gradebook of the assignment, the warm-up's cache), and its kernel runs isolated
(``course_lib.tools.sandbox``: bubblewrap; it sees the system, the Python environment and
the course's code and data, read-only, and nothing else: no answers, no gradebook, no other
submission, no network) when the OS allows; when it does not, the grader says so and checks
the Python environment and the gradebook after every student. Each kernel runs under limits
of memory, processes, CPU time and disk (``course_lib.tools.limits``), when cgroups can be made.
A failure of the grader itself (a kernel that hangs idle, nbgrader crashing) is retried once,
then reported as "not graded: grader error", never as a student's 0.

Before the students, the instructor's notebook runs once under the same profile:
its cache (checkpoints, baselines) seeds every submission's, so that training
cells reload instead of retrain, and a test that the solution itself fails is
reported.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import csv
import dataclasses
import fcntl
import io
import json
import multiprocessing
import os
import re
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellTimeoutError, DeadKernelError
from nbconvert.preprocessors import ClearMetadataPreprocessor, CSSHTMLHeaderPreprocessor
from traitlets import Float, Integer
from traitlets.config import Config

from course_lib.config import PROFILE_ENV, PROFILES, REPO_ROOT
from course_lib.tools import sandbox
from course_lib.tools.bundle import REGIONS
from course_lib.tools.extras import MissingExtra, require
from course_lib.tools.limits import MODES as LIMIT_MODES
from course_lib.tools.limits import CpuWatch, KernelCgroup, Limits, cgroup_problem, launcher, reasons

try:  # nbgrader is in the instructor extra: a student install imports course_lib without it, and grading says so
    from nbgrader.api import Gradebook
    from nbgrader.apps import NbGraderAPI
    from nbgrader.coursedir import CourseDirectory
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
except ModuleNotFoundError as e:
    if (e.name or "").partition(".")[0] != "nbgrader":
        raise
    raise MissingExtra("grading (release, grade, grade-manual)", "instructor", "nbgrader") from e
from course_lib.tools.watchdog import (
    ClientWatch,
    KernelWatchdog,
    NotebookHang,
    default_idle_grace_s,
    kill_kernel,
)
from course_lib.widgets import HEADLESS_ENV

SOURCE_DIR = REPO_ROOT / "notebooks"
RELEASE_DIR = REPO_ROOT / "build" / "release"
GRADING_DIR = REPO_ROOT / "grades"  # not in build/: `make clean` must never delete grades
ISOLATION = ("auto", "bwrap", "none")
STUDENT_ID = re.compile(r"[A-Za-z0-9][\w.@+-]*")
LEAK_MARKERS = tuple(begin for begin, _ in REGIONS.values())  # a solution or hidden test left in a student version


class GradingError(RuntimeError):
    """The grader cannot go on (broken source notebooks, no submissions): not a student's fault."""


class GraderFailure(RuntimeError):
    """The grading machinery failed on one submission (a hang, nbgrader crashing): retried, never the student's 0."""


NOT_GRADED = "not graded: grader error"


@dataclass
class Score:
    """One row of ``scores.csv``: one student's notebook."""

    student: str
    notebook: str
    points: float | None = 0.0  # None: not graded because the grader failed (NOT_GRADED in failures)
    max_points: float = 0.0
    failures: list[str] = field(default_factory=list)  # "test id: why", or why the notebook was not graded
    seconds: float = 0.0
    grader: list[str] = field(default_factory=list)  # what the machinery did: isolation, retries after a hang
    manual: list[str] = field(default_factory=list)  # "question (N points)": written answers to be graded by hand
    answers: dict[str, str] = field(default_factory=dict)  # question id -> the student's written answer
    usage: dict[str, float] = field(default_factory=dict)  # what its kernel used (peak memory MB, CPU s, processes)


# ------------------------------------------------------------------ nbgrader, hardened


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


class _HideHiddenTests(ClearHiddenTests):
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


def _nbgrader(root: Path, db: Path, cell_timeout: float = 120, kernel: dict | None = None) -> NbGraderAPI:
    """nbgrader's API on the course folder ``root``, with the gradebook ``db`` (which may live elsewhere);
    ``kernel``: settings of the kernel manager (``sandbox``, ``transport``, ``connection_file``)."""
    (root / "exchange").mkdir(parents=True, exist_ok=True)  # unused, but nbgrader checks that it exists
    c = Config()
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
    c.GenerateFeedback.preprocessors = [GetGrades, _HideHiddenTests, CSSHTMLHeaderPreprocessor]  # + hiding
    return NbGraderAPI(CourseDirectory(config=c), config=c)


def _check(result: dict, what: str) -> None:
    if not result.get("success"):
        raise GradingError(f"{what} failed:\n{result.get('log', '')}\n{result.get('error', '')}".strip())


@contextlib.contextmanager
def _environ(**values: str):
    """Environment variables for the kernels started inside (they inherit ours)."""
    old = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _tools_on_path():
    """nbgrader's gradebook runs the ``alembic`` command, installed beside this Python (a venv's bin/)."""
    return _environ(PATH=os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]))


def _kernel_env(profile: str, cache: Path, home: Path) -> dict[str, str]:
    """A kernel's environment: the profile, its own cache, and its own home and IPython/matplotlib folders
    (``home``) and no user site-packages, so that nothing a former kernel wrote in the user's home folder is read."""
    # One thread per kernel: on a shared CPU, torch's thread pool is many times slower than one thread.
    return {PROFILE_ENV: profile, "COURSE_CACHE": str(cache), "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
            HEADLESS_ENV: "1",  # the course's widgets draw plain figures
            "MPLBACKEND": "Agg", "HOME": str(home), "IPYTHONDIR": str(home / "ipython"),
            "MPLCONFIGDIR": str(home / "matplotlib"), "XDG_CACHE_HOME": str(home / "cache"), "TMPDIR": str(home / "tmp"), "PYTHONNOUSERSITE": "1"}


# ------------------------------------------------------------------ release


def course_notebooks(source_dir: str | Path = SOURCE_DIR) -> dict[str, Path]:
    """The course notebooks (``[0-9]*.ipynb``) by assignment name (the file's stem)."""
    paths = sorted(Path(source_dir).glob("[0-9]*.ipynb"))
    if not paths:
        raise GradingError(f"no notebooks ([0-9]*.ipynb) in {source_dir}")
    return {p.stem: p for p in paths}


def release(source_dir: str | Path = SOURCE_DIR, out: str | Path = RELEASE_DIR) -> list[Path]:
    """Student versions of every notebook in ``out/<name>/<name>.ipynb``, made by nbgrader generate_assignment."""
    sources, out = course_notebooks(source_dir), Path(out)
    written = []
    with tempfile.TemporaryDirectory(prefix="course-release-") as tmp, _tools_on_path():
        root = Path(tmp)
        api = _nbgrader(root, root / "gradebook.db")
        for name, path in sources.items():
            (root / "source" / name).mkdir(parents=True)
            shutil.copy(path, root / "source" / name / path.name)
            _check(api.generate_assignment(name), f"nbgrader generate_assignment {name}")
            student_version = root / "release" / name / path.name
            leaks = [m for m in LEAK_MARKERS if m in student_version.read_text(encoding="utf-8")]
            if leaks:  # markers in a cell without nbgrader metadata are not removed: the answer would leak
                raise GradingError(f"{path}: {leaks} left in the student version; is the cell marked as a "
                                   "solution/test cell (docs/exercises.md)?")
            shutil.rmtree(out / name, ignore_errors=True)
            shutil.copytree(root / "release" / name, out / name)
            written.append(out / name / path.name)
    return written


# ------------------------------------------------------------------ grading


@dataclass
class Submission:
    student: str
    notebook: str  # assignment name = the notebook's stem
    path: Path


def _link_problem(path: Path, folder: Path, instructor: list[Path]) -> str:
    """'' or why a submitted file is refused: a link (symbolic, or hard to an instructor's file)."""
    for p in [path, *path.parents]:
        if p == folder:
            break
        if p.is_symlink():
            return f"refused: {p} is a symbolic link (to {os.readlink(p)}), not a file of the student's own"
    if not path.resolve().is_relative_to(folder.resolve()):
        return f"refused: {path} lies outside the folder of submissions ({path.resolve()})"
    st = path.stat()
    for own in instructor:
        with contextlib.suppress(OSError):
            if (own.stat().st_dev, own.stat().st_ino) == (st.st_dev, st.st_ino):
                return f"refused: {path} is the instructor's file {own} (a hard link)"
    return ""


def find_submissions(folder: str | Path, known: dict[str, Path]) -> tuple[list[Submission], list[Score]]:
    """Submitted notebooks in ``<student>/<notebook>.ipynb`` or nbgrader's ``[submitted/]<student>/<assignment>/
    <notebook>.ipynb``; files the grader cannot take (wrong names, links) come back as Scores that say why."""
    folder = Path(folder)
    if not folder.is_dir():
        raise GradingError(f"no such folder of submissions: {folder}")
    if (folder / "submitted").is_dir():
        folder = folder / "submitted"
    found: dict[tuple[str, str], Submission] = {}
    rejected = []
    for student_dir in sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")):
        student = student_dir.name
        for path in sorted(student_dir.glob("*.ipynb")) + sorted(student_dir.glob("*/*.ipynb")):
            if ".ipynb_checkpoints" in path.parts:
                continue
            why = ""
            if not STUDENT_ID.fullmatch(student):
                why = f"student folder name {student!r}: use letters, digits and . _ @ + -"
            elif path.stem not in known:
                why = f"not a course notebook: {path.name} (expected one of {', '.join(sorted(known))})"
            elif (student, path.stem) in found:
                why = f"{path.stem} submitted twice: graded {found[student, path.stem].path}, ignored {path}"
            else:
                why = _link_problem(path, folder, list(known.values()))
            if why:
                rejected.append(Score(student, path.stem, failures=[why]))
            else:
                found[student, path.stem] = Submission(student, path.stem, path)
    return list(found.values()), rejected


def _read_submission(src: Path):
    """The submitted notebook (upgraded to nbformat 4) and '', or None and why it is not a notebook."""
    try:
        nb = nbformat.read(src, as_version=4)
        nbformat.validate(nb)
    except nbformat.reader.NotJSONError:
        return None, "not graded: the file is not valid JSON, so not a notebook (was it saved by Jupyter?)"
    except UnicodeDecodeError:
        return None, "not graded: the file is not UTF-8 text, so not a notebook"
    except nbformat.ValidationError as e:
        return None, f"not graded: not a valid notebook: {e.message}"
    except Exception as e:  # NBFormatError (unsupported version), a JSON list instead of an object, ...
        return None, f"not graded: not a valid notebook: {type(e).__name__}: {e}"
    return nb, ""


def _grade_ids(nb) -> list[str]:
    return [c.metadata["nbgrader"]["grade_id"] for c in nb.cells
            if c.metadata.get("nbgrader", {}).get("grade") and "grade_id" in c.metadata["nbgrader"]]


def _errors(nb) -> dict[int, str]:
    """Cell index -> 'Ename: message' of the cell's error (the grader's own, timeout or dead kernel, first)."""
    found = {}
    for i, cell in enumerate(nb.cells):
        errors = [out for out in cell.get("outputs", []) if out.get("output_type") == "error"]
        errors.sort(key=lambda out: out.get("ename") not in ("CellTimeoutError", "DeadKernelError", "NotRun"))
        if errors:
            lines = str(errors[0].get("evalue", "")).strip().splitlines()
            found[i] = f"{errors[0].get('ename', 'Error')}: {lines[0][:200] if lines else ''}".rstrip(": ")
    return found


def _warm_up(name: str, source: bytes, folder: Path, profile: str, timeout: float) -> dict[str, bytes]:
    """Execute the instructor's notebook; return its cache (relative path -> bytes), which seeds every
    submission's. A hang of the machinery is retried once; then the students start from what was cached."""
    cache = folder / "cache"
    start = time.perf_counter()
    for attempt in (1, 2):
        nb = nbformat.reads(source.decode("utf-8"), as_version=4)
        run = folder / f"run{attempt}"
        run.mkdir(parents=True)
        (folder / f"home{attempt}" / "tmp").mkdir(parents=True)
        with _environ(**_kernel_env(profile, cache, folder / f"home{attempt}")):
            client = NotebookClient(nb, timeout=timeout, kernel_name="python3", allow_errors=True,
                                    resources={"metadata": {"path": str(run)}})
            watch = ClientWatch(client, "the instructor's notebook")
            try:
                client.execute()
                break
            except DeadKernelError as e:
                if not watch.verdict:
                    print(f"warning: the instructor's {name} stopped: {type(e).__name__}: {e}", file=sys.stderr)
                    break
                print(f"warning: the instructor's {name} hung (grader machinery, {watch.verdict}); "
                      f"{'running it again' if attempt == 1 else 'the students start from what it cached'}",
                      file=sys.stderr, flush=True)
            except Exception as e:  # a broken source notebook: the students' runs will show it too
                print(f"warning: the instructor's {name} stopped: {type(e).__name__}: {e}", file=sys.stderr)
                break
            finally:
                watch.stop()
    errors = _errors(nb)
    failed = [c.metadata["nbgrader"].get("grade_id", str(i)) for i, c in enumerate(nb.cells)
              if i in errors and c.metadata.get("nbgrader", {}).get("grade")]
    if failed:
        print(f"warning: the instructor's solution of {name} fails {', '.join(failed)} under the {profile!r} "
              "profile: every student loses these points", file=sys.stderr)
    print(f"{'(instructor)':20s} {name:32s} warm-up {time.perf_counter() - start:5.1f}s", flush=True)
    return {str(p.relative_to(cache)): p.read_bytes() for p in sorted(cache.rglob("*")) if p.is_file()} \
        if cache.is_dir() else {}


@dataclass
class _Inputs:
    """What grading one notebook needs, held in memory so that no submission can change it for the next one."""

    name: str
    source: bytes  # the instructor's notebook
    gradebook: bytes  # nbgrader's gradebook with the assignments registered, before any student
    cache: dict[str, bytes]  # the warm-up's cache
    order: list[str]  # test ids in cell order
    manual: set[str] = field(default_factory=set)  # ids of the cells graded by hand (written answers)


@dataclass
class _Run:
    """One grading run: where things are, how kernels run, and what is checked between students."""

    tmp: Path
    out: Path
    db: Path
    profile: str
    cell_timeout: float
    sandbox: bool  # kernels isolated with bwrap
    limits: Limits | None  # what one kernel may use (None: --limits off)
    cgroups: bool  # memory, process and CPU limits enforced (cgroups could be made)
    env_roots: list[Path]
    env_before: dict = field(default_factory=dict)
    broken: str = ""  # set once the environment changed under a kernel that was not isolated


def _write_tree(root: Path, files: dict[str, bytes]) -> None:
    for rel, data in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)


def _attempt(sub: Submission, nb, inputs: _Inputs, run: _Run):
    """Grade one submission once, in a fresh folder built from ``inputs``. Returns (test id -> points, the executed
    notebook, the feedback HTML or None, the limits it hit, what it used); raises GraderFailure when the machinery
    failed."""
    root = Path(tempfile.mkdtemp(prefix=f"{sub.student}-{sub.notebook}-", dir=run.tmp))
    # the sockets: short (a Unix socket's path has at most 107 bytes), and in RAM where it can be, so that what a
    # kernel writes there counts towards its memory limit instead of filling a disk
    shm = Path("/dev/shm")
    ipc = Path(tempfile.mkdtemp(prefix="k-", dir=shm if shm.is_dir() and os.access(shm, os.W_OK) else None))
    cgroup = watch = None
    try:
        name, student = inputs.name, sub.student
        _write_tree(root, {f"source/{name}/{name}.ipynb": inputs.source, "gradebook.db": inputs.gradebook})
        _write_tree(root / "cache", inputs.cache)
        (root / "submitted" / student / name).mkdir(parents=True)
        nbformat.write(nb, root / "submitted" / student / name / f"{name}.ipynb")
        for folder in ("autograded", "cache", "home", "home/tmp", "box/home"):  # (box/home: for the grader's IPython)
            (root / folder).mkdir(parents=True, exist_ok=True)
        if run.cgroups:
            cgroup = KernelCgroup(run.limits)
            watch = CpuWatch(cgroup).start()
        kernel = {"launcher": launcher(cgroup, run.limits)} if run.sandbox or cgroup else {}
        cache, home = root / "cache", root / "home"
        if run.sandbox:  # the kernel's cache, home and working folder live in a bounded tmpfs, ``box``
            cache, home = root / "box" / "cache", root / "box" / "home"
            kernel.update(transport="ipc", connection_file=str(ipc / "kernel.json"), sandbox=sandbox.kernel_sandbox(
                root / "box", root / "cache", ipc, run.limits.disk_mb if run.limits else None))
        api = _nbgrader(root, root / "gradebook.db", run.cell_timeout, kernel)
        with _environ(**_kernel_env(run.profile, cache, home)):
            result = api.autograde(name, student)
        if watch is not None:
            watch.stop()
        executed = root / "autograded" / student / name / f"{name}.ipynb"
        if not result.get("success") or not executed.exists():
            log = result.get("log", "") + result.get("error", "")
            hang = re.findall(r"NotebookHang: (.*)$", log, flags=re.M)
            if hang:
                raise GraderFailure(hang[-1][:300])
            errors = [e for e in re.findall(r"^\s*([\w.]+(?:Error|Exception): .*)$", log, flags=re.M)  # tracebacks'
                      if "NbGraderException" not in e] or re.findall(r"^\s*([\w.]+Exception: .*)$", log, flags=re.M)
            raise GraderFailure("nbgrader autograde failed" + (f": {errors[-1][:300]}" if errors else ""))
        html = root / "feedback" / student / name / f"{name}.html"
        page = html.read_bytes() if api.generate_feedback(name, student).get("success") and html.exists() else None
        with Gradebook(f"sqlite:///{root / 'gradebook.db'}") as gb:
            graded = gb.find_submission_notebook(name, name, student)
            # a written answer left as released: nbgrader scores it 0 itself; any other needs a person (None)
            points = {g.name: None if g.needs_manual_grade else (g.score or 0.0) for g in graded.grades}
        executed = nbformat.read(executed, as_version=4)
        hits = reasons(cgroup, watch, run.limits, _outputs_text(executed), run.sandbox) if run.limits else []
        usage = {"peak_memory_mb": round(cgroup.peak_memory_mb(), 1), "cpu_seconds": round(cgroup.cpu_seconds(), 1),
                 "peak_processes": watch.peak_processes} if cgroup is not None else {}
        return points, executed, page, hits, usage
    finally:
        if watch is not None:
            watch.stop()
        if cgroup is not None:
            cgroup.close()
        shutil.rmtree(root, ignore_errors=True)
        shutil.rmtree(ipc, ignore_errors=True)


def _outputs_text(nb) -> str:
    """Every text a notebook's cells printed or raised (streams, errors, plain-text results), joined."""
    texts = []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            texts += [str(out.get("text", "")), str(out.get("evalue", "")),
                      str(out.get("data", {}).get("text/plain", ""))]
    return "\n".join(texts)


def _record(db: Path, name: str, student: str, points: dict[str, float | None], changed: set[str] = frozenset()) \
        -> None:
    """Store a student's points (test id -> points; tests not in ``points`` get 0) in the gradebook. ``None``: a
    written answer to be graded by hand; a score already given by hand is kept, unless the answer is in
    ``changed`` (it differs from the one graded before): then it is dropped and the answer waits for a person."""
    with Gradebook(f"sqlite:///{db}") as gb:
        gb.update_or_create_student(student)
        submission = gb.update_or_create_submission(name, student)
        for nb in submission.notebooks:
            for grade in nb.grades:
                if grade.name in points and points[grade.name] is None:
                    grade.auto_score = None
                    if grade.name in changed:  # a score given to another answer is not this one's
                        grade.manual_score = None
                    grade.needs_manual_grade = grade.manual_score is None
                else:
                    grade.auto_score, grade.manual_score = points.get(grade.name, 0.0), None
                    grade.needs_manual_grade = False
        gb.db.commit()


def _stored_grades(db: Path, name: str, student: str) -> dict[str, tuple[float, float, bool]]:
    """A student's grades in the gradebook: id -> (points, max points, waiting for a person)."""
    with Gradebook(f"sqlite:///{db}") as gb:
        return {g.name: (0.0 if g.needs_manual_grade else g.score or 0.0, g.max_score, bool(g.needs_manual_grade))
                for g in gb.find_submission_notebook(name, name, student).grades}


def _manual_ids(nb) -> set[str]:
    """Cells graded by hand: nbgrader's manually graded answers (``grade`` and ``solution`` both true)."""
    return {c.metadata["nbgrader"]["grade_id"] for c in nb.cells
            if c.metadata.get("nbgrader", {}).get("grade") and c.metadata["nbgrader"].get("solution")}


def _max_points(db: Path, name: str) -> dict[str, float]:
    with Gradebook(f"sqlite:///{db}") as gb:
        return {g.name: g.max_score for nb in gb.find_assignment(name).notebooks for g in nb.grade_cells}


def _score_and_feedback(score: Score, grades: dict[str, tuple], executed, feedback_dir: Path) -> None:
    """Points from ``grades`` (test id -> (points, max points[, waiting for a person])), why each test failed
    from the executed notebook; write the feedback Markdown."""
    score.points = sum(g[0] for g in grades.values())
    score.max_points = sum(g[1] for g in grades.values())
    score.manual = [f"{gid} ({g[1]:g} points)" for gid, g in grades.items() if len(g) > 2 and g[2]]
    errors = _errors(executed) if executed is not None else {}
    cells = executed.cells if executed is not None else []
    cell_of = {c.metadata.get("nbgrader", {}).get("grade_id"): i for i, c in enumerate(cells)}
    lines = [f"# {score.notebook}: {score.points:g} / {score.max_points:g} points ({score.student})", ""]
    if score.manual:
        lines += [f"Written answers still to be graded by hand: {', '.join(score.manual)}; the points above "
                  "do not count them yet.", ""]
    lines += [f"**{why}**\n" for why in score.failures]
    lines += ["| test | points | result |", "|---|---|---|"] if grades else []
    for gid, (points, max_points, *waiting) in grades.items():
        result = "passed"
        if waiting and waiting[0]:
            result = "written answer: to be graded by hand"
        elif points < max_points:
            if executed is None:
                result = "not run"
            else:
                why = errors.get(cell_of[gid], "failed") if gid in cell_of else "the test cell is missing"
                score.failures.append(f"{gid}: {why}")
                result = f"failed: {why}"
        lines.append(f"| `{gid}` | {points:g} / {max_points:g} | {result} |")
    others = [f"* cell {i} (`{cells[i].metadata.get('nbgrader', {}).get('grade_id', 'code')}`): {error}"
              for i, error in errors.items() if not cells[i].metadata.get("nbgrader", {}).get("grade")]
    if others:
        lines += ["", "Errors in other cells (often the reason a test failed):", *others]
    if executed is not None:
        lines += ["", f"Every cell with its output: [{score.notebook}.html]({score.notebook}.html)"]
    _write_feedback(feedback_dir, score.notebook, "\n".join(lines) + "\n")


def _write_feedback(feedback_dir: Path, notebook: str, text: str) -> None:
    feedback_dir.mkdir(parents=True, exist_ok=True)
    (feedback_dir / f"{notebook}.md").write_text(text, encoding="utf-8")


@dataclass
class _Executed:
    """A submission executed (or not): what :func:`_grade_one` records. Made in a worker process with ``--jobs``."""

    points: dict[str, float | None]
    executed: object  # the executed notebook, or None
    page: bytes | None  # nbgrader's feedback HTML
    why: str  # '' or why it was not graded / was refused
    notes: list[str]  # what the machinery did (retries)
    seconds: float
    limits: list[str] = field(default_factory=list)  # the resource limits it hit, said for the student
    usage: dict[str, float] = field(default_factory=dict)  # what its kernel used


def _not_executed(why: str) -> _Executed:
    """A submission the grader could not execute (a worker failed, a cluster lost): never the student's 0."""
    return _Executed({}, None, None, f"{NOT_GRADED}: {why}", [], 0.0)


def _execute(sub: Submission, inputs: _Inputs, run: _Run) -> _Executed:
    """Read and execute one submission (a machinery failure is retried once); touches no gradebook but its own."""
    start = time.perf_counter()
    nb, why = _read_submission(sub.path)
    executed, page, points, notes, hits, usage = None, None, {}, [], [], {}
    if not why:
        for attempt in (1, 2):
            if run.broken:
                why = f"{NOT_GRADED}: {run.broken}"
                break
            try:
                points, executed, page, hits, usage = _attempt(sub, nb, inputs, run)
                why = ""
            except GraderFailure as e:
                why = f"{NOT_GRADED}: {e}"
                notes.append(f"try {attempt}: {e}" + ("; graded again" if attempt == 1 else ""))
            refused = _check_environment(run, sub)
            if refused or not why:
                why = refused
                break
    return _Executed(points, executed, page, why, notes, time.perf_counter() - start, hits, usage)


def _answers(executed, manual: set[str]) -> dict[str, str]:
    """The student's written answers (question id -> text) in the executed notebook."""
    return {c.metadata["nbgrader"]["grade_id"]: c.source for c in executed.cells
            if c.metadata.get("nbgrader", {}).get("grade_id") in manual}


def _grade_one(sub: Submission, inputs: _Inputs, run: _Run, previous: dict | None = None,
               done: _Executed | None = None) -> Score:
    """Grade one submission (or record ``done``, executed by a worker): gradebook, feedback, Score. ``previous``:
    its last entry in the grading log (the written answers graded before)."""
    start = time.perf_counter()
    score = Score(sub.student, sub.notebook, grader=["isolated (bwrap)" if run.sandbox else "NOT isolated"])
    feedback_dir = run.out / "feedback" / sub.student
    for old in (feedback_dir / f"{sub.notebook}.md", feedback_dir / f"{sub.notebook}.html"):
        old.unlink(missing_ok=True)
    maxima = _max_points(run.db, sub.notebook)
    order = {gid: i for i, gid in enumerate(inputs.order)}
    kept = run.db.read_bytes()  # without isolation a kernel can reach the gradebook: compared after it
    ran = time.perf_counter()
    result = done or _execute(sub, inputs, run)
    ran = time.perf_counter() - ran
    points, executed, page, why = result.points, result.executed, result.page, result.why
    score.grader += result.notes
    score.usage = result.usage
    if run.db.read_bytes() != kept:
        run.db.write_bytes(kept)
        why = (why + "; " if why.startswith("refused") else "refused: ") + \
            "the submission changed the gradebook (restored as it was before it)"
    if why.startswith(NOT_GRADED):  # never a 0: the gradebook keeps what it had, the CSV says why
        score.points, score.failures = None, [why]
        score.max_points = sum(maxima.values())
        _write_feedback(feedback_dir, sub.notebook, f"# {sub.notebook} ({sub.student}): not graded yet\n\n"
                        "The grader failed on this submission (not your work's fault); it will be graded again.\n")
    else:
        if why:
            score.failures.append(why)
            points = {}
        score.failures += result.limits  # (the points earned before a limit stopped the kernel stay)
        score.answers = _answers(executed, inputs.manual) if executed is not None and not why else {}
        before = (previous or {}).get("answers", {})
        changed = {q for q, text in score.answers.items() if q in before and before[q] != text}
        _record(run.db, sub.notebook, sub.student, points, changed)
        stored = _stored_grades(run.db, sub.notebook, sub.student)
        grades = {gid: stored.get(gid, (0.0, m, False))
                  for gid, m in sorted(maxima.items(), key=lambda kv: order.get(kv[0], len(order)))}
        _score_and_feedback(score, grades, executed, feedback_dir)
        if page is not None:
            (feedback_dir / f"{sub.notebook}.html").write_bytes(page)
    score.seconds = round(time.perf_counter() - start - ran + result.seconds, 1)
    return score


def _check_environment(run: _Run, sub: Submission) -> str:
    """Without isolation: '' if the Python environment and the course's code are as before the student, else
    why grading cannot go on (and every later student is not graded)."""
    if run.sandbox or run.broken:
        return ""
    changed = sandbox.changes(run.env_before, sandbox.fingerprint(run.env_roots))
    if changed:
        run.broken = (f"the Python environment or the course's code changed while {sub.student}'s {sub.notebook} "
                      f"ran ({len(changed)} paths, e.g. {', '.join(changed[:3])}); reinstall it, then grade again")
        _shout(f"GRADING STOPPED: {run.broken}")
        return f"refused: the submission changed files outside its folder ({', '.join(changed[:3])})"
    return ""


def _shout(text: str) -> None:
    bar = "!" * 100
    print(f"{bar}\n{text}\n{bar}", file=sys.stderr, flush=True)


# ------------------------------------------------------------------ the gradebook, scores.csv


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def _load_log(path: Path) -> dict[str, dict]:
    try:
        return json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
    except (ValueError, OSError) as e:
        raise GradingError(f"{path} is not readable JSON ({e}); it holds the failures behind scores.csv: restore it "
                           "or delete it (the points are in the gradebook)") from None


SCORES_HEADER = ["student", "notebook", "points", "max_points", "needs_manual_grading", "failures", "seconds",
                 "grader"]
MANUAL_HEADER = ["student", "notebook", "question", "max_points", "points", "status", "answer"]


def write_scores(db: Path, log: dict[str, dict], path: Path) -> list[dict[str, str]]:
    """Write ``scores.csv`` atomically: one row per notebook of every student in the gradebook (points from the
    gradebook) and per file in ``log`` (the grading log: failures, seconds, what the grader did). Returns the rows.

    ``points`` counts what is graded; a written answer that waits for a person counts 0 there and is named in
    ``needs_manual_grading`` (``question (N points)``). Beside it, ``manual_grading.csv``: every written answer
    with its points so far, for :func:`record_manual_grades`."""
    rows: dict[tuple[str, str], dict[str, str]] = {}
    manual: list[dict[str, str]] = []
    if db.exists():
        with Gradebook(f"sqlite:///{db}") as gb:
            for assignment in gb.assignments:
                for submission in assignment.submissions:
                    grades = [g for nb in submission.notebooks for g in nb.grades]
                    waiting = [g for g in grades if g.needs_manual_grade]
                    student = submission.student.id
                    rows[student, assignment.name] = {
                        "points": f"{sum(g.score or 0.0 for g in grades if not g.needs_manual_grade):g}",
                        "max_points": f"{sum(g.max_score for g in grades):g}",
                        "needs_manual_grading": " | ".join(f"{g.name} ({g.max_score:g} points)" for g in waiting)}
                    answers = log.get(f"{student}/{assignment.name}", {}).get("answers", {})
                    for g in grades:
                        if g.name in answers:
                            manual.append({"student": student, "notebook": assignment.name, "question": g.name,
                                           "max_points": f"{g.max_score:g}", "answer": answers[g.name],
                                           "points": "" if g.needs_manual_grade or g.manual_score is None
                                           else f"{g.manual_score:g}",
                                           "status": "to grade" if g.needs_manual_grade else
                                           "graded by hand" if g.manual_score is not None else "left blank: 0"})
    for entry in log.values():
        row = rows.setdefault((entry["student"], entry["notebook"]), {"points": "0", "max_points": "0"})
        if entry.get("points") is None:  # not graded (grader error): no points claimed
            row.update(points="", max_points=f"{entry.get('max_points', 0):g}")
        row.update(failures=" | ".join(entry.get("failures", [])), seconds=str(entry.get("seconds", "")),
                   grader=" | ".join(entry.get("grader", [])))
    header = SCORES_HEADER
    text = io.StringIO()
    w = csv.writer(text, lineterminator="\n")
    w.writerow(header)
    out = []
    for (student, notebook), row in sorted(rows.items()):
        full = {"student": student, "notebook": notebook, **{k: row.get(k, "") for k in header[2:]}}
        w.writerow([full[k] for k in header])
        out.append(full)
    _atomic_write(path, text.getvalue())
    text = io.StringIO()
    w = csv.DictWriter(text, MANUAL_HEADER, lineterminator="\n")
    w.writeheader()
    w.writerows(sorted(manual, key=lambda r: (r["notebook"], r["question"], r["student"])))
    _atomic_write(path.with_name("manual_grading.csv"), text.getvalue())
    return out


def record_manual_grades(table: str | Path, out: str | Path = GRADING_DIR) -> int:
    """Record the points an instructor gave written answers: ``table`` is a CSV with the columns ``student``,
    ``notebook``, ``question``, ``points`` (others ignored; a row with empty points is skipped), e.g. a filled
    copy of ``out/manual_grading.csv``. Every row is checked first (a ValueError names the bad ones; nothing is
    written then); then the gradebook and ``scores.csv`` are updated. Returns the number of scores recorded."""
    out, table = Path(out).resolve(), Path(table)
    db = out / "gradebook.db"
    if not db.exists():
        raise GradingError(f"no gradebook in {out}: grade the submissions first")
    with open(table, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        missing = {"student", "notebook", "question", "points"} - set(reader.fieldnames or [])
        if missing:
            raise ValueError(f"{table}: expected the columns student, notebook, question, points; missing "
                             f"{sorted(missing)}")
        wanted = [(n, r) for n, r in enumerate(reader, start=2) if (r.get("points") or "").strip()]
    with _locked(out), _tools_on_path():
        problems, found = [], []
        with Gradebook(f"sqlite:///{db}") as gb:
            for line, row in wanted:
                where = f"line {line} ({row['student']}, {row['notebook']}, {row['question']})"
                try:
                    grade = gb.find_grade(row["question"], row["notebook"], row["notebook"], row["student"])
                except Exception:
                    problems.append(f"{where}: no such graded answer in the gradebook")
                    continue
                if grade.auto_score is not None and not grade.needs_manual_grade:
                    problems.append(f"{where}: not a written answer (an autograded test or an answer left blank)")
                    continue
                try:
                    points = float(row["points"])
                except ValueError:
                    problems.append(f"{where}: points {row['points']!r} is not a number")
                    continue
                if not 0 <= points <= grade.max_score:
                    problems.append(f"{where}: points {points:g} outside 0..{grade.max_score:g}")
                    continue
                found.append((grade, points))
            if problems:
                raise ValueError(f"{table}: nothing recorded, {len(problems)} row(s) to fix:\n" + "\n".join(problems))
            for grade, points in found:
                grade.manual_score, grade.needs_manual_grade = points, False
            gb.db.commit()
        write_scores(db, _load_log(out / "grading.json"), out / "scores.csv")
    return len(found)


@contextlib.contextmanager
def _locked(out: Path):
    """One grading run at a time per output folder (separate runs, e.g. one container per student, queue up)."""
    with open(out / ".grading.lock", "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


_WORKER: dict = {}  # in a worker process: what every submission needs (sent once, when the worker starts)


def _pool(jobs: int, initializer=None, initargs=()) -> concurrent.futures.ProcessPoolExecutor:
    """``jobs`` worker processes, started fresh (spawn: no copy of this process's threads or open gradebook)."""
    return concurrent.futures.ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn"),
                                                  initializer=initializer, initargs=initargs)


def _worker_init(inputs: dict[str, _Inputs], run: _Run) -> None:
    _WORKER.update(inputs=inputs, run=run)


def _worker_execute(sub: Submission) -> _Executed:
    return _execute(sub, _WORKER["inputs"][sub.notebook], _WORKER["run"])


def _pooled(subs: list[Submission], inputs: dict[str, _Inputs], run: _Run, jobs: int) \
        -> Iterator[tuple[Submission, _Executed]]:
    """Execute ``subs`` in ``jobs`` worker processes; yield each with what its worker returned, as they finish."""
    with _pool(jobs, _worker_init, (inputs, run)) as pool:
        futures = {pool.submit(_worker_execute, sub): sub for sub in subs}
        for future in concurrent.futures.as_completed(futures):
            try:
                done = future.result()
            except Exception as e:  # the worker process itself failed
                done = _not_executed(f"{type(e).__name__}: {e}")
            yield futures[future], done


def _warm_up_args(args: tuple) -> dict[str, bytes]:
    return _warm_up(*args)


def _warm_ups(args: dict[str, tuple], jobs: int) -> dict[str, dict[str, bytes]]:
    """Every notebook's warm-up (name -> cache), ``jobs`` at a time."""
    if jobs == 1 or len(args) < 2:
        return {name: _warm_up(*a) for name, a in args.items()}
    with _pool(min(jobs, len(args))) as pool:
        return dict(zip(args, pool.map(_warm_up_args, args.values()), strict=True))


def _isolation(isolation: str) -> tuple[bool, str]:
    """(isolate kernels?, why not) for ``isolation`` in ISOLATION."""
    if isolation == "none":
        return False, "isolation turned off (--isolation none)"
    problem = sandbox.bwrap_problem()
    if problem and isolation == "bwrap":
        raise GradingError(f"--isolation bwrap: {problem}")
    return not problem, problem


def _limits(mode: str) -> tuple[bool, str]:
    """(set memory, process and CPU limits with cgroups?, why not) for ``mode`` in LIMIT_MODES."""
    if mode == "off":
        return False, "limits turned off (--limits off)"
    problem = cgroup_problem()
    if problem and mode == "required":
        raise GradingError(f"--limits required: {problem}")
    return not problem, problem


def check_cell_timeout(cell_timeout) -> float:
    """``cell_timeout`` as seconds > 0 (nbclient reads 0 or less as 'no timeout': never accepted)."""
    if isinstance(cell_timeout, bool) or not isinstance(cell_timeout, (int, float)):
        raise TypeError(f"cell_timeout: expected a number of seconds, got {type(cell_timeout).__name__}")
    if not 0 < cell_timeout < float("inf"):
        raise ValueError(f"cell_timeout: expected seconds > 0 (0 or less would mean no timeout at all), "
                         f"got {cell_timeout}")
    return cell_timeout


def grade(submissions: str | Path, out: str | Path = GRADING_DIR, source_dir: str | Path = SOURCE_DIR,
          cell_timeout: float = 120, profile: str = "grade", work_dir: str | Path | None = None,
          warm_up: bool = True, isolation: str = "auto", jobs: int = 1, limits: Limits | None = None,
          enforce_limits: str = "auto", cluster: str | None = None, cluster_timeout: float = 120) -> list[Score]:
    """Autograde every notebook in ``submissions``; keep ``out/gradebook.db`` and ``out/grading.json`` (the
    failures), write ``out/scores.csv`` (every student ever graded into ``out``) and
    ``out/feedback/<student>/<notebook>.md`` (+ ``.html``). Returns this run's scores.

    ``isolation``: ``"auto"`` isolates each kernel with bubblewrap when it works here and says loudly when
    it does not; ``"bwrap"`` refuses to grade without it; ``"none"`` does not isolate (and says so).
    ``warm_up=False`` skips the instructor's run: each submission then trains from scratch
    (quicker for one or two submissions, slower for a class).
    ``jobs``: students graded at once, each in its own process (the warm-ups too); this process alone writes the
    gradebook, the log and ``scores.csv``. Needs isolated kernels: without, students are graded one at a time
    (said once), since the checks after every student must know whose kernel changed something.
    ``limits``: what each kernel may use (memory, processes, CPU time and cores, the size of its writable folders;
    default ``Limits()``); ``enforce_limits``: ``"auto"`` sets them where cgroups can be made here and says loudly
    when they cannot, ``"required"`` refuses to grade without them, ``"off"`` sets none (and says so).
    ``cluster``: execute the submissions on a Dask cluster instead (``course_lib.tools.cluster``): ``"local:N"``
    (N worker processes here) or ``"tcp://HOST:PORT"`` (a running scheduler); this process still records every
    result, and runs the warm-ups (``jobs`` at a time). Needs isolated kernels. ``cluster_timeout``: seconds the
    scheduler and a first worker may take, and the longest the cluster may be left without a worker.
    """
    cell_timeout = check_cell_timeout(cell_timeout)
    limits = Limits() if limits is None else limits
    if not isinstance(limits, Limits):
        raise TypeError(f"limits: expected a course_lib.tools.limits.Limits, got {type(limits).__name__}")
    if enforce_limits not in LIMIT_MODES:
        raise ValueError(f"enforce_limits: expected one of {LIMIT_MODES}, got {enforce_limits!r}")
    if isinstance(jobs, bool) or not isinstance(jobs, int):
        raise TypeError(f"jobs: expected a whole number of processes, got {type(jobs).__name__}")
    if jobs < 1:
        raise ValueError(f"jobs: expected 1 or more processes, got {jobs}")
    if profile not in PROFILES:
        raise GradingError(f"unknown profile {profile!r}: expected one of {sorted(PROFILES)}")
    if isolation not in ISOLATION:
        raise ValueError(f"isolation: expected one of {ISOLATION}, got {isolation!r}")
    where = None
    if cluster is not None:
        require({"distributed": "distributed (Dask)"}, "grading on a cluster (--cluster)", "instructor")
        from course_lib.tools import cluster as engine
        where = engine.parse(cluster, cluster_timeout)
    sources = course_notebooks(source_dir)
    found, rejected = find_submissions(submissions, sources)
    if not found and not rejected:
        raise GradingError(f"no submitted notebooks in {submissions}: expected <student>/<notebook>.ipynb "
                           "or submitted/<student>/<assignment>/<notebook>.ipynb")
    source_bytes = {name: sources[name].read_bytes() for name in sorted({s.notebook for s in found})}
    orders = {name: _grade_ids(nbformat.reads(data.decode("utf-8"), as_version=4))
              for name, data in source_bytes.items()}
    rejected += [Score(s.student, s.notebook, failures=[f"nothing to grade: {s.notebook} has no graded exercises"])
                 for s in found if not orders[s.notebook]]
    found = [s for s in found if orders[s.notebook]]
    out = Path(out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    isolated, why_not = _isolation(isolation)
    if where is not None and not isolated:  # no per-student checks of a kernel on another machine
        raise GradingError(f"--cluster needs isolated kernels: {why_not}")
    cgroups, no_limits = _limits(enforce_limits)
    if not isolated and jobs > 1:
        print(f"note: --jobs {jobs} needs isolated kernels; grading one student at a time", file=sys.stderr)
        jobs = 1
    if not isolated:
        _shout(f"WARNING: the submissions' kernels are NOT isolated: {why_not}.\nEach runs with your permissions "
               "and could change any file you can. Protected anyway: every student is graded from the grader's "
               "in-memory copies\n(source notebook, nbgrader files, warm-up cache), the gradebook is restored if a "
               "kernel changed it, and grading stops\n(not graded: grader error) if the Python environment changed. "
               "See docs/exercises.md.")
    if not cgroups:
        _shout(f"WARNING: NO memory, process or CPU-time limits on the submissions' kernels: {no_limits}.\nA "
               "submission can then take all the memory (the system may kill the grader or another student's kernel) "
               "or start processes until the machine stops.\nRun the grader as root (or in a container with cgroups "
               "it may write): see docs/exercises.md.")
    else:
        print(f"limits per kernel: {limits.describe()}", flush=True)
    if work_dir is not None:
        Path(work_dir).mkdir(parents=True, exist_ok=True)
    print(f"{'student':20s} {'notebook':32s} {'points':>9s} {'time':>6s}  failed", flush=True)
    scores = []
    with _locked(out), tempfile.TemporaryDirectory(prefix="course-grade-", dir=work_dir,
                                                   ignore_cleanup_errors=True) as tmp, _tools_on_path(), \
            (engine.connect(where) if where else contextlib.nullcontext()) as client:
        tmp, db, log_path = Path(tmp), out / "gradebook.db", out / "grading.json"
        log = _load_log(log_path)
        template = tmp / "instructor"
        for gradebook in (db, template / "gradebook.db"):  # the real one, and a pristine one for every student
            api = _nbgrader(template, gradebook)
            for name, data in source_bytes.items():
                _write_tree(template / "source" / name, {f"{name}.ipynb": data})
                _check(api.generate_assignment(name), f"nbgrader generate_assignment {name}")
        pristine = (template / "gradebook.db").read_bytes()
        caches = _warm_ups({name: (name, data, tmp / "warm-up" / name, profile, max(cell_timeout, 900))
                            for name, data in source_bytes.items()} if warm_up else {}, jobs)
        inputs = {name: _Inputs(name, data, pristine, caches.get(name, {}), orders[name],
                                _manual_ids(nbformat.reads(data.decode("utf-8"), as_version=4)))
                  for name, data in source_bytes.items()}
        too_big = {name: sum(map(len, cache.values())) for name, cache in caches.items()}
        too_big = {name: size for name, size in too_big.items() if isolated and size > limits.disk_mb * 2**20 / 2}
        if too_big:
            raise GradingError(f"the warm-up's cache of {', '.join(too_big)} ({max(too_big.values()) / 2**20:.0f} MB) "
                               f"takes more than half of a kernel's writable folder ({limits.disk_mb} MB): raise "
                               "the disk limit (--disk-mb)")
        run = _Run(tmp, out, db, profile, cell_timeout, isolated, None if enforce_limits == "off" else limits,
                   cgroups, sandbox.environment_roots())
        run.env_before = {} if isolated else sandbox.fingerprint(run.env_roots)  # (checked only without isolation)
        def record(sub: Submission, done: _Executed | None = None) -> None:
            key = f"{sub.student}/{sub.notebook}"
            try:
                score = _grade_one(sub, inputs[sub.notebook], run, log.get(key), done)
            except Exception as e:  # the grader's own failure on this submission: say so, grade the others
                score = Score(sub.student, sub.notebook, points=None, failures=[f"{NOT_GRADED}: {type(e).__name__}: {e}"])
            scores.append(score)
            log[key] = {**score.__dict__}  # (from memory: a kernel's edits are undone)
            _atomic_write(log_path, json.dumps(log, indent=1, sort_keys=True))
            write_scores(db, log, out / "scores.csv")
            points = "-" if score.points is None else f"{score.points:g}"
            print(f"{score.student:20s} {score.notebook:32s} {points:>4s}/{score.max_points:<4g} "
                  f"{score.seconds:5.1f}s  {', '.join(f.split(':')[0] for f in score.failures)}", flush=True)

        # who executes: this process, --jobs worker processes, or a cluster's workers; this process records
        workers_run = dataclasses.replace(run, env_before={})
        executions = engine.execute(client, found, inputs, workers_run, where.timeout) if client is not None \
            else _pooled(found, inputs, workers_run, jobs) if jobs > 1 else ((sub, None) for sub in found)
        for sub, done in executions:
            record(sub, done)
        for score in rejected:
            if STUDENT_ID.fullmatch(score.student):
                _score_and_feedback(score, {}, None, out / "feedback" / score.student)
            log[f"{score.student}/{score.notebook}"] = {**score.__dict__}
        _atomic_write(log_path, json.dumps(log, indent=1, sort_keys=True))
        write_scores(db, log, out / "scores.csv")
        if not run.broken and not isolated and sandbox.changes(run.env_before, sandbox.fingerprint(run.env_roots)):
            _shout("WARNING: the Python environment changed during grading")
        changed = [name for name, data in source_bytes.items() if sources[name].read_bytes() != data]
        if changed:
            _shout(f"WARNING: source notebooks changed during grading: {changed}; graded with the versions read at "
                   "the start. Check them (git diff).")
    print(f"scores in {out / 'scores.csv'}, feedback in {out / 'feedback'}, gradebook {db}")
    return sorted(scores + rejected, key=lambda s: (s.student, s.notebook))
