"""nbgrader's own workflow on the course: release, fetch, submit, collect through its exchange, the course's grader on
the collected folder, feedback released and fetched.

Every user has a home of their own and the exchange is a temporary folder; each nbgrader command runs as its own
process, as on a hub. The assignment is the tiny homework of the grading tests, with one word in a hidden test and
one in a solution that no feedback may ever show.
"""

import csv
import html
import os
import re
import shutil
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import nbformat
import pytest
from test_grading import NAME, RIGHT, answer, tiny_notebook
from test_grading_isolation import needs_bwrap

from course_lib.tools.cli import main as cli_main
from course_lib.tools.course_folder import CONFIG_FILE, find_course, late_penalty
from course_lib.tools.grading import grade
from course_lib.tools.nbgrader_setup import Gradebook, NbGraderAPI
from course_lib.tools.submissions import GradingError

COURSE = "test-course"
HIDDEN_WORD = "pangolinhiddenword"
SOLUTION_WORD = "axolotlsolutionword"
WRONG_MEAN = {"square": RIGHT["square"], "mean": "return sum(xs) / len(xs)"}  # mean([]) fails a hidden test: 4 of 6


def secret_notebook() -> nbformat.NotebookNode:
    nb = tiny_notebook()
    for cell in nb.cells:
        if "### BEGIN HIDDEN TESTS" in cell.source and "mean" in cell.source:
            cell.source = cell.source.replace("### BEGIN HIDDEN TESTS\n", f"### BEGIN HIDDEN TESTS\n# {HIDDEN_WORD}\n")
        if "### BEGIN SOLUTION" in cell.source and "def mean" in cell.source:
            cell.source = cell.source.replace("### BEGIN SOLUTION\n", f"### BEGIN SOLUTION\n    # {SOLUTION_WORD}\n")
    return nb


class User:
    """One user of the hub: a home of their own (nbgrader's config and cache there), nbgrader's commands run from
    ``cwd`` as separate processes."""

    def __init__(self, base: Path, name: str, exchange: Path, cwd: Path | None = None):
        self.home = base / "home" / name
        (self.home / ".jupyter").mkdir(parents=True)
        (self.home / ".jupyter" / "nbgrader_config.py").write_text(
            f"c = get_config()\nc.Exchange.root = {str(exchange)!r}\nc.Exchange.path_includes_course = True\n"
            f"c.CourseDirectory.course_id = {COURSE!r}\n")
        self.cwd = cwd or self.home
        self.env = {**os.environ, "HOME": str(self.home), "JUPYTER_CONFIG_DIR": str(self.home / ".jupyter"),
                    "JUPYTER_DATA_DIR": str(self.home / ".local" / "share" / "jupyter"),
                    "JUPYTER_RUNTIME_DIR": str(self.home / ".local" / "share" / "jupyter" / "runtime")}

    def nbgrader(self, *args: str, cwd: Path | None = None) -> str:
        run = subprocess.run([sys.executable, "-m", "nbgrader", *args], cwd=cwd or self.cwd, env=self.env,
                             capture_output=True, text=True, timeout=120)
        assert run.returncode == 0, f"nbgrader {' '.join(args)}:\n{run.stdout}\n{run.stderr}"
        return run.stdout + run.stderr


def readable(path: Path) -> str:
    """What a person reads in a feedback file: tags stripped, entities unescaped."""
    return html.unescape(re.sub(r"<[^>]+>", " ", path.read_text(encoding="utf-8", errors="replace")))


def assert_no_secret(folders: list[Path]) -> int:
    files = [p for folder in folders for p in folder.rglob("*") if p.is_file()]
    for path in files:
        text = readable(path)
        assert HIDDEN_WORD not in text and SOLUTION_WORD not in text, f"{path} quotes a hidden test or a solution"
        assert "BEGIN HIDDEN TESTS" not in text and "mean([5])" not in text, path
    return len(files)


@needs_bwrap
def test_nbgrader_exchange_release_submit_collect_grade_feedback(tmp_path):
    exchange, course = tmp_path / "exchange", tmp_path / "course"
    (tmp_path / "notebooks").mkdir()
    nbformat.write(secret_notebook(), tmp_path / "notebooks" / f"{NAME}.ipynb")

    # the instructor makes the course folder and releases the assignment
    assert cli_main(["nbgrader-course", str(course), "--course-id", COURSE, "--source", str(tmp_path / "notebooks")]) == 0
    config = (course / CONFIG_FILE).read_text()
    assert f'course_id = "{COURSE}"' in config and 'penalty_method = "none"' in config
    (course / CONFIG_FILE).write_text(config.replace('penalty_method = "none"', 'penalty_method = "zero"'))
    instructor = User(tmp_path, "instructor", exchange, cwd=course)
    instructor.nbgrader("release_assignment", NAME)

    # alice fetches and submits before the due date; bob after it
    students = {name: User(tmp_path, name, exchange) for name in ("alice", "bob")}
    for name, cells in (("alice", RIGHT), ("bob", WRONG_MEAN)):
        student = students[name]
        student.nbgrader("fetch_assignment", NAME)
        mine = student.home / COURSE / NAME / f"{NAME}.ipynb"
        assert HIDDEN_WORD not in mine.read_text() and SOLUTION_WORD not in mine.read_text()
        nbformat.write(answer(nbformat.read(mine, as_version=4), **cells), mine)
        if name == "bob":
            due = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S.%f UTC")
            instructor.nbgrader("db", "assignment", "add", NAME, f"--duedate={due}")
            time.sleep(0.1)
        student.nbgrader("submit", NAME, f"--student={name}")

    instructor.nbgrader("collect", NAME)
    for name in students:
        assert (course / "submitted" / name / NAME / f"{NAME}.ipynb").is_file()
        assert (course / "submitted" / name / NAME / "timestamp.txt").is_file()

    # the course's grader on the collected course folder: into itself, in nbgrader's layout
    start = time.perf_counter()
    scores = {s.student: s for s in grade(course, cell_timeout=5, warm_up=False, isolation="bwrap")}
    graded_in = time.perf_counter() - start
    assert (scores["alice"].points, scores["alice"].max_points, scores["alice"].seconds_late) == (6, 6, 0)
    assert scores["bob"].seconds_late > 0 and scores["bob"].late_penalty == 4 and scores["bob"].points == 0
    with open(course / "scores.csv", newline="") as f:
        rows = {r["student"]: r for r in csv.DictReader(f)}
    assert (rows["alice"]["points"], rows["alice"]["late_penalty"]) == ("6", "")
    assert (rows["bob"]["points"], rows["bob"]["late_penalty"]) == ("0", "4") and float(rows["bob"]["seconds_late"]) >= 0
    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gb:  # as nbgrader's own autograde records it
        bob = gb.find_submission(NAME, "bob")
        assert bob.total_seconds_late > 0 and bob.late_submission_penalty == 4 and bob.score == 4
        assert gb.find_submission(NAME, "alice").late_submission_penalty == 0
    assert "4 points taken off (late penalty)" in (course / "feedback" / "bob" / NAME / f"{NAME}.md").read_text()

    # formgrader's view: both submissions autograded (their copies in autograded/, timestamps as submitted)
    folder = find_course(course)
    folder.config.Exchange.root = str(exchange)
    api = NbGraderAPI(folder.coursedir, config=folder.config)
    assert api.get_autograded_students(NAME) == {"alice", "bob"}
    for name in students:
        kept = course / "autograded" / name / NAME / f"{NAME}.ipynb"
        assert HIDDEN_WORD in kept.read_text()  # the instructor's copy: every test, as nbgrader keeps it
        folder = course / "feedback" / name / NAME
        assert sorted(p.name for p in folder.iterdir()) == [f"{NAME}.html", f"{NAME}.md", "submission_secret.txt",
                                                          "timestamp.txt"]
    assert "ZeroDivisionError" in readable(course / "feedback" / "bob" / NAME / f"{NAME}.html")  # the failure shows
    assert_no_secret([course / "feedback"])

    # the grader's feedback, released through the exchange as it is, and fetched by each student
    instructor.nbgrader("release_feedback", NAME)
    for name, student in students.items():
        student.nbgrader("fetch_feedback", NAME)
        [page] = (student.home / COURSE / NAME / "feedback").glob(f"*/{NAME}.html")
        text = " ".join(readable(page).split())
        assert f"{NAME} (Score: {6.0 if name == 'alice' else 0.0} / 6.0)" in text, text[-3000:]  # after the penalty
        assert ("Late submission penalty (Score: -4.0)" in text) == (name == "bob")
    assert assert_no_secret([exchange, *(s.home / COURSE for s in students.values())]) >= 6
    # nbgrader's own generate_feedback, with the course folder's configuration, hides them too; in a copy of the
    # folder without that configuration nbgrader would copy the hidden test into the feedback
    shutil.copytree(course, tmp_path / "unconfigured", ignore=shutil.ignore_patterns(CONFIG_FILE, "feedback"))
    instructor.nbgrader("generate_feedback", NAME, f"--CourseDirectory.root={tmp_path / 'unconfigured'}",
                        cwd=tmp_path)
    assert HIDDEN_WORD in readable(tmp_path / "unconfigured" / "feedback" / "bob" / NAME / f"{NAME}.html")
    instructor.nbgrader("generate_feedback", NAME, "--force")
    assert_no_secret([course / "feedback"])

    print(f"graded 2 students in {graded_in:.1f} s")


def test_late_penalty_follows_nbgrader_plugin():
    assert late_penalty(None, "ann", 6.0, 3600) == 0  # nbgrader's default: lateness recorded, no penalty
    assert late_penalty({"LateSubmissionPlugin": {"penalty_method": "zero"}}, "ann", 6.0, 3600) == 6
    assert late_penalty({"LateSubmissionPlugin": {"penalty_method": "zero"}}, "ann", 6.0, 0) == 0


def test_a_kernel_that_does_not_exist_stops_grading_before_any_student(tmp_path):
    nb = tiny_notebook()
    nb.metadata["kernelspec"] = {"name": "no-such-kernel-here", "display_name": "x", "language": "python"}
    (tmp_path / "source").mkdir()
    nbformat.write(nb, tmp_path / "source" / f"{NAME}.ipynb")
    (tmp_path / "subs" / "ann").mkdir(parents=True)
    nbformat.write(nb, tmp_path / "subs" / "ann" / f"{NAME}.ipynb")
    with pytest.raises(GradingError, match="no kernel named 'no-such-kernel-here' is installed here"):
        grade(tmp_path / "subs", tmp_path / "out", tmp_path / "source", warm_up=False)
    with pytest.raises(GradingError, match="no kernel named 'other-missing'"):
        grade(tmp_path / "subs", tmp_path / "out", tmp_path / "source", warm_up=False, kernel="other-missing")


def test_a_course_folder_is_graded_into_itself_with_its_own_notebooks(tmp_path, capsys):
    (tmp_path / CONFIG_FILE).write_text(f"c = get_config()\nc.CourseDirectory.course_id = {COURSE!r}\n")
    assert cli_main(["grade", str(tmp_path), "--out", str(tmp_path / "elsewhere")]) == 2
    assert "graded into itself" in capsys.readouterr().err
    with pytest.raises(GradingError, match="its source/ folder"):
        grade(tmp_path, source_dir=tmp_path)
    with pytest.raises(GradingError, match="no assignments in"):
        grade(tmp_path)
