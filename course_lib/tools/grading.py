"""Homework: student versions of the notebooks, and autograding of submissions, with nbgrader.

Exercises live in the course notebooks themselves, in nbgrader's format (see
``docs/exercises.md``): solution regions, visible test cells, hidden tests, points.
Every notebook is one nbgrader *assignment*, named after its file.

* :func:`release` runs ``nbgrader generate_assignment`` on every notebook: the
  student version (solutions -> ``raise NotImplementedError()``, hidden tests
  removed) lands in ``build/release/<notebook>/<notebook>.ipynb``.
* :func:`grade` runs ``nbgrader autograde`` on every submitted notebook, each in
  its own temporary course folder (the submission runs on a copy, away from the
  sources, the gradebook and the other submissions), under the ``grade`` profile,
  with a per-cell timeout. nbgrader puts the hidden tests back and keeps the scores
  in its gradebook (SQLite, kept between runs: grading again updates it); we write
  ``scores.csv`` and per-student feedback beside it.

Before the students, the instructor's notebook runs once under the same profile:
its cache (checkpoints, baselines) seeds every submission's, so that training
cells reload instead of retrain, and a test that the solution itself fails is
reported. Grading is not a sandbox: a submission runs with your permissions.
"""

from __future__ import annotations

import contextlib
import csv
import os
import re
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellTimeoutError, DeadKernelError
from nbconvert.preprocessors import ClearMetadataPreprocessor, CSSHTMLHeaderPreprocessor
from nbgrader.api import Gradebook, MissingEntry
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
from traitlets import Integer
from traitlets.config import Config

from course_lib.config import PROFILE_ENV, PROFILES, REPO_ROOT

SOURCE_DIR = REPO_ROOT / "notebooks"
RELEASE_DIR = REPO_ROOT / "build" / "release"
GRADING_DIR = REPO_ROOT / "build" / "grading"
STUDENT_ID = re.compile(r"[A-Za-z0-9][\w.@+-]*")
LEAK_MARKERS = ("### BEGIN SOLUTION", "### BEGIN HIDDEN TESTS")


class GradingError(RuntimeError):
    """The grader cannot go on (broken source notebooks, no submissions): not a student's fault."""


@dataclass
class Score:
    """One row of ``scores.csv``: one student's notebook."""

    student: str
    notebook: str
    points: float = 0.0
    max_points: float = 0.0
    failures: list[str] = field(default_factory=list)  # "test id: why", or why the notebook was not graded
    seconds: float = 0.0


# ------------------------------------------------------------------ nbgrader, hardened


class _Execute(Execute):
    """nbgrader's Execute, but a kernel that dies (``os._exit``, a crash, out of memory) costs the cells
    from there on instead of the whole notebook, and so does a kernel stuck in a loop that ignores the
    interrupt (two cells in a row time out); output that outlasts the IOPub timeout costs its cell."""

    def preprocess(self, nb, resources=None, km=None):
        self._stopped, self._timed_out = "", False
        nb, resources = super().preprocess(nb, resources, km)
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


def _nbgrader(root: Path, db: Path, cell_timeout: int = 120) -> NbGraderAPI:
    """nbgrader's API on the course folder ``root``, with the gradebook ``db`` (which may live elsewhere)."""
    (root / "exchange").mkdir(parents=True, exist_ok=True)  # unused, but nbgrader checks that it exists
    c = Config()
    c.Exchange.root = str(root / "exchange")
    c.CourseDirectory.root = str(root)
    c.CourseDirectory.db_url = f"sqlite:///{db}"
    c.Execute.timeout = cell_timeout  # then the kernel is interrupted and the cell fails
    c.Execute.shutdown_kernel = "immediate"  # kill it when done: a stuck kernel would not shut down
    c.Execute.error_on_timeout = {"ename": "CellTimeoutError", "traceback": ["CellTimeoutError"],
                                  "evalue": f"the cell ran longer than {cell_timeout} s and was interrupted"}
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


def _kernel_env(profile: str, cache: Path) -> dict[str, str]:
    # One thread per kernel: on a shared CPU, torch's thread pool is many times slower than one thread.
    return {PROFILE_ENV: profile, "COURSE_CACHE": str(cache), "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
            "MPLBACKEND": "Agg"}


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


def find_submissions(folder: str | Path, known: dict[str, Path]) -> tuple[list[Submission], list[Score]]:
    """Submitted notebooks in ``<student>/<notebook>.ipynb`` or nbgrader's ``[submitted/]<student>/<assignment>/
    <notebook>.ipynb``; files the grader cannot take come back as Scores that say why."""
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
            if why:
                rejected.append(Score(student, path.stem, failures=[why]))
            else:
                found[student, path.stem] = Submission(student, path.stem, path)
    return list(found.values()), rejected


def _copy_notebook(src: Path, dst: Path) -> str:
    """Copy a submitted notebook (upgraded to nbformat 4) to ``dst``; '' or why it is not a notebook."""
    try:
        nb = nbformat.read(src, as_version=4)
        nbformat.validate(nb)
    except nbformat.reader.NotJSONError:
        return "not graded: the file is not valid JSON, so not a notebook (was it saved by Jupyter?)"
    except UnicodeDecodeError:
        return "not graded: the file is not UTF-8 text, so not a notebook"
    except nbformat.ValidationError as e:
        return f"not graded: not a valid notebook: {e.message}"
    except Exception as e:  # NBFormatError (unsupported version), a JSON list instead of an object, ...
        return f"not graded: not a valid notebook: {type(e).__name__}: {e}"
    dst.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, dst)
    return ""


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


def _warm_up(name: str, source: Path, folder: Path, profile: str, timeout: int) -> None:
    """Execute the instructor's notebook once; its cache (``folder/cache``) seeds every submission's."""
    cache, run = folder / "cache", folder / "run"
    run.mkdir(parents=True)
    nb = nbformat.read(source, as_version=4)
    start = time.perf_counter()
    with _environ(**_kernel_env(profile, cache)):
        try:
            NotebookClient(nb, timeout=timeout, kernel_name="python3", allow_errors=True,
                           resources={"metadata": {"path": str(run)}}).execute()
        except Exception as e:  # a broken source notebook: the students' runs will show it too
            print(f"warning: the instructor's {name} stopped: {type(e).__name__}: {e}", file=sys.stderr)
    errors = _errors(nb)
    failed = [c.metadata["nbgrader"].get("grade_id", str(i)) for i, c in enumerate(nb.cells)
              if i in errors and c.metadata.get("nbgrader", {}).get("grade")]
    if failed:
        print(f"warning: the instructor's solution of {name} fails {', '.join(failed)} under the {profile!r} "
              "profile: every student loses these points", file=sys.stderr)
    print(f"{'(instructor)':20s} {name:32s} warm-up {time.perf_counter() - start:5.1f}s", flush=True)


def _zero(db: Path, name: str, student: str) -> None:
    """Record a notebook that could not be graded as 0 points in the gradebook."""
    with Gradebook(f"sqlite:///{db}") as gb:
        gb.update_or_create_student(student)
        submission = gb.update_or_create_submission(name, student)
        for nb in submission.notebooks:
            for grade in nb.grades:
                grade.auto_score, grade.manual_score, grade.needs_manual_grade = 0.0, None, False
        gb.db.commit()


def _grades(db: Path, score: Score, order: list[str]) -> dict[str, tuple[float, float]]:
    """Test id -> (points, max points) of one submitted notebook, from the gradebook, in cell order."""
    with Gradebook(f"sqlite:///{db}") as gb:
        try:
            nb = gb.find_submission_notebook(score.notebook, score.notebook, score.student)
        except MissingEntry:
            return {}
        grades = {g.name: (g.score or 0.0, g.max_score) for g in nb.grades}
    return dict(sorted(grades.items(), key=lambda kv: order.index(kv[0]) if kv[0] in order else len(order)))


def _score_and_feedback(score: Score, grades: dict[str, tuple[float, float]], executed, feedback_dir: Path) -> None:
    """Points from the gradebook's ``grades``, why each test failed from the executed notebook; write the
    feedback Markdown."""
    score.points = sum(points for points, _ in grades.values())
    score.max_points = sum(max_points for _, max_points in grades.values())
    errors = _errors(executed) if executed is not None else {}
    cells = executed.cells if executed is not None else []
    cell_of = {c.metadata.get("nbgrader", {}).get("grade_id"): i for i, c in enumerate(cells)}
    lines = [f"# {score.notebook}: {score.points:g} / {score.max_points:g} points ({score.student})", ""]
    lines += [f"**{why}**\n" for why in score.failures]
    lines += ["| test | points | result |", "|---|---|---|"] if grades else []
    for gid, (points, max_points) in grades.items():
        result = "passed"
        if points < max_points:
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
    feedback_dir.mkdir(parents=True, exist_ok=True)
    (feedback_dir / f"{score.notebook}.md").write_text("\n".join(lines) + "\n", encoding="utf-8")


def _grade_one(sub: Submission, tmp: Path, db: Path, cache: Path, order: list[str], profile: str,
               cell_timeout: int, out: Path) -> Score:
    start = time.perf_counter()
    score = Score(sub.student, sub.notebook)
    tmp.mkdir(parents=True, exist_ok=True)  # (an earlier submission may have deleted it)
    root = Path(tempfile.mkdtemp(prefix=f"{sub.student}-{sub.notebook}-", dir=tmp))
    submitted = root / "submitted" / sub.student / sub.notebook / f"{sub.notebook}.ipynb"
    executed = root / "autograded" / sub.student / sub.notebook / f"{sub.notebook}.ipynb"
    feedback_dir = out / "feedback" / sub.student
    for old in (feedback_dir / f"{sub.notebook}.md", feedback_dir / f"{sub.notebook}.html"):
        old.unlink(missing_ok=True)
    why = _copy_notebook(sub.path, submitted)
    if not why:
        if cache.is_dir():
            shutil.copytree(cache, root / "cache")
        api = _nbgrader(root, db, cell_timeout)
        with _environ(**_kernel_env(profile, root / "cache")):
            result = api.autograde(sub.notebook, sub.student)
        if executed.exists():
            html = root / "feedback" / sub.student / sub.notebook / f"{sub.notebook}.html"
            if api.generate_feedback(sub.notebook, sub.student).get("success") and html.exists():
                feedback_dir.mkdir(parents=True, exist_ok=True)
                shutil.copy(html, feedback_dir / html.name)
        else:
            log = result.get("log", "") + result.get("error", "")
            errors = re.findall(r"^\s*([\w.]+(?:Error|Exception): .*)$", log, flags=re.M)  # the traceback's last line
            why = "not graded: nbgrader autograde failed" + (f": {errors[-1][:300]}" if errors else "")
    if why:
        _zero(db, sub.notebook, sub.student)
        score.failures.append(why)
    _score_and_feedback(score, _grades(db, score, order),
                        nbformat.read(executed, as_version=4) if executed.exists() else None, feedback_dir)
    shutil.rmtree(root, ignore_errors=True)
    score.seconds = round(time.perf_counter() - start, 1)
    return score


def write_scores(scores: list[Score], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["student", "notebook", "points", "max_points", "failures", "seconds"])
        for s in scores:
            w.writerow([s.student, s.notebook, f"{s.points:g}", f"{s.max_points:g}", " | ".join(s.failures),
                        s.seconds])


def grade(submissions: str | Path, out: str | Path = GRADING_DIR, source_dir: str | Path = SOURCE_DIR,
          cell_timeout: int = 120, profile: str = "grade", work_dir: str | Path | None = None,
          warm_up: bool = True) -> list[Score]:
    """Autograde every notebook in ``submissions``; write ``out/gradebook.db``, ``out/scores.csv`` and
    ``out/feedback/<student>/<notebook>.md`` (+ ``.html``). Returns the rows of scores.csv.

    ``warm_up=False`` skips the instructor's run: each submission then trains from scratch
    (quicker for one or two submissions, slower for a class).
    """
    if profile not in PROFILES:
        raise GradingError(f"unknown profile {profile!r}: expected one of {sorted(PROFILES)}")
    sources = course_notebooks(source_dir)
    found, rejected = find_submissions(submissions, sources)
    if not found and not rejected:
        raise GradingError(f"no submitted notebooks in {submissions}: expected <student>/<notebook>.ipynb "
                           "or submitted/<student>/<assignment>/<notebook>.ipynb")
    orders = {name: _grade_ids(nbformat.read(sources[name], as_version=4)) for name in {s.notebook for s in found}}
    rejected += [Score(s.student, s.notebook, failures=[f"nothing to grade: {s.notebook} has no graded exercises"])
                 for s in found if not orders[s.notebook]]
    found = [s for s in found if orders[s.notebook]]
    out = Path(out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    db = out / "gradebook.db"
    if work_dir is not None:
        Path(work_dir).mkdir(parents=True, exist_ok=True)
    print(f"{'student':20s} {'notebook':32s} {'points':>9s} {'time':>6s}  failed", flush=True)
    scores = []
    with tempfile.TemporaryDirectory(prefix="course-grade-", dir=work_dir, ignore_cleanup_errors=True) as tmp, \
            _tools_on_path():
        tmp = Path(tmp)
        instructor = _nbgrader(tmp / "instructor", db)
        caches = {}
        for name in sorted({s.notebook for s in found}):
            (tmp / "instructor" / "source" / name).mkdir(parents=True)
            shutil.copy(sources[name], tmp / "instructor" / "source" / name / sources[name].name)
            _check(instructor.generate_assignment(name), f"nbgrader generate_assignment {name}")
            caches[name] = tmp / "warm-up" / name / "cache"
            if warm_up:
                _warm_up(name, sources[name], caches[name].parent, profile, max(cell_timeout, 900))
        for sub in found:
            try:
                score = _grade_one(sub, tmp, db, caches[sub.notebook], orders[sub.notebook], profile, cell_timeout,
                                   out)
            except Exception as e:  # the grader's own failure on this submission: say so, grade the others
                score = Score(sub.student, sub.notebook, failures=[f"not graded: {type(e).__name__}: {e}"])
            scores.append(score)
            print(f"{score.student:20s} {score.notebook:32s} {score.points:>4g}/{score.max_points:<4g} "
                  f"{score.seconds:5.1f}s  {', '.join(f.split(':')[0] for f in score.failures)}", flush=True)
    for score in rejected:
        if STUDENT_ID.fullmatch(score.student):
            _score_and_feedback(score, {}, None, out / "feedback" / score.student)
    scores = sorted(scores + rejected, key=lambda s: (s.student, s.notebook))
    write_scores(scores, out / "scores.csv")
    print(f"scores in {out / 'scores.csv'}, feedback in {out / 'feedback'}, gradebook {db}")
    return scores
