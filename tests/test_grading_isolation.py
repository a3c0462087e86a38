"""Grading cannot be turned against other students, the grader or the machine: hostile submissions,
hangs of the machinery, links to instructor files, `make clean`, scores.csv from the whole gradebook.

Hostile submissions run only where they cannot damage the machine the tests run on: isolated by
bubblewrap after a canary proved the isolation works, or, without isolation, rewriting nothing but
a disposable folder made by the test.
"""

import csv
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell
from test_grading import NAME, RIGHT, _meta, answer, tiny_notebook

from course_lib.config import REPO_ROOT
from course_lib.tools import grading, sandbox
from course_lib.tools.cli import main as cli_main
from course_lib.tools.grading import check_cell_timeout, find_submissions, grade, release

CELL_TIMEOUT = 5
BWRAP_PROBLEM = sandbox.bwrap_problem()
if BWRAP_PROBLEM:  # loud: the isolation tests are skipped, and say why in the warnings summary too
    warnings.warn(f"GRADING ISOLATION NOT TESTED: {BWRAP_PROBLEM}. CI installs bubblewrap (.ci/run).", stacklevel=1)
needs_bwrap = pytest.mark.skipif(bool(BWRAP_PROBLEM), reason=f"GRADING ISOLATION NOT TESTED: {BWRAP_PROBLEM}")

CACHE_CELL = textwrap.dedent("""\
    import json, os, pathlib
    _w = pathlib.Path(os.environ["COURSE_CACHE"]) / "weights.json"  # the warm-up writes it, submissions read it
    if not _w.exists():
        _w.parent.mkdir(parents=True, exist_ok=True)
        _w.write_text(json.dumps({"w": 2}))
    W = json.loads(_w.read_text())["w"]""")


def cached_notebook() -> nbformat.NotebookNode:
    """The tiny homework, plus a cell that reads the warm-up's cache and a test of it (1 point): 7 points."""
    nb = tiny_notebook()
    nb.cells[2:2] = [new_code_cell(CACHE_CELL)]
    nb.cells.insert(5, new_code_cell('assert square(W) == 4, "the cached weight"', metadata=_meta("test_cache", 1)))
    return nb


def rewrite_everything(roots: list[str], also_db: bool = True) -> str:
    """A solution cell that defines ``square`` correctly, then rewrites every .json, .pt (and .db) file under
    ``roots`` that it can write, until its cell timeout stops it."""
    return "CELL:" + textwrap.dedent(f"""\
        def square(x):
            return x * x
        import os
        suffixes = (".json", ".pt") + ((".db",) if {also_db!r} else ())
        denied = 0
        for root in {roots!r}:
            for folder, dirs, files in os.walk(root):
                dirs[:] = [d for d in dirs if d not in ("proc", "sys", "dev")]
                for f in files:
                    if f.endswith(suffixes):
                        try:
                            with open(os.path.join(folder, f), "w") as out:
                                out.write("{{}}")
                        except OSError:
                            denied += 1
                            if denied == 100:
                                print("WRITES-" + "DENIED-100", flush=True)
        """)


def make_course(base: Path, nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    (base / "source").mkdir(parents=True)
    nbformat.write(nb, base / "source" / f"{NAME}.ipynb")
    release(base / "source", base / "release")
    return nbformat.read(base / "release" / NAME / f"{NAME}.ipynb", as_version=4)


def submit(subs: Path, student: str, nb: nbformat.NotebookNode) -> None:
    (subs / student).mkdir(parents=True)
    nbformat.write(nb, subs / student / f"{NAME}.ipynb")


def rows(out: Path) -> dict[str, dict[str, str]]:
    with open(out / "scores.csv", newline="") as f:
        return {r["student"]: r for r in csv.DictReader(f)}


def students_in_gradebook(out: Path) -> set[str]:
    db = sqlite3.connect(out / "gradebook.db")
    return {s for (s,) in db.execute("select student.id from student join submitted_assignment "
                                      "on submitted_assignment.student_id = student.id")}


# ------------------------------------------------------------------ isolated (bubblewrap)


@needs_bwrap
def test_hostile_submission_isolated_changes_nothing_for_the_students_after_it(tmp_path):
    """A rewrites every .json/.pt/.db it can reach (the Python environment, the course, the grader's folders,
    then the whole file system); B (correct) and C (untouched), graded after it, get full marks and 0."""
    student_version = make_course(tmp_path / "course", cached_notebook())
    subs, out = tmp_path / "subs", tmp_path / "out"
    # a canary first: if the isolation did not hold, it writes two new files, which the test then removes
    canaries = [Path(sys.prefix) / "canary-grading-test", REPO_ROOT / "canary-grading-test"]
    submit(subs, "canary", answer(student_version, square="CELL:" + "".join(
        f"open({str(c)!r}, 'w').write('x')\n" for c in canaries) + "def square(x):\n    return x * x"))
    try:
        grade(subs, tmp_path / "canary-out", source_dir=tmp_path / "course" / "source", cell_timeout=CELL_TIMEOUT,
              isolation="bwrap")
    finally:
        escaped = [c for c in canaries if c.exists()]
        for c in escaped:
            c.unlink()
    assert not escaped, f"the sandbox let a submission write {escaped}: hostile test not run"
    shutil.rmtree(subs)

    # what A can see, printed as words that its source code does not contain (the HTML shows both)
    spy = "import os\n" + "".join(f"print('SEES-' + str(os.path.exists({str(p)!r})).upper())\n" for p in [
        out / "gradebook.db", subs / "b_correct" / f"{NAME}.ipynb",
        next((tmp_path / "course" / "source").rglob("*.ipynb"))])  # files: a hidden folder may show up empty
    spy += ("import socket\ntry:\n    socket.create_connection(('1.1.1.1', 53), timeout=2)\n    print('NET-' + 'OPEN')\n"
            "except OSError:\n    print('NET-' + 'CLOSED')\n")
    hostile = rewrite_everything([sys.prefix, str(REPO_ROOT), str(tmp_path), str(Path.home()), "/"])
    submit(subs, "a_hostile", answer(student_version, square=hostile, mean="CELL:" + spy + textwrap.dedent("""\
        def mean(xs):
            if not xs:
                raise ValueError('empty')
            return sum(xs) / len(xs)""")))
    submit(subs, "b_correct", answer(student_version, **RIGHT))
    submit(subs, "c_untouched", student_version)
    environment = sandbox.fingerprint(sandbox.environment_roots())
    kept = {p: p.read_bytes() for p in [*(tmp_path / "course").rglob("*"), *subs.rglob("*")] if p.is_file()}
    scores = {s.student: s for s in grade(subs, out, source_dir=tmp_path / "course" / "source",
                                          cell_timeout=CELL_TIMEOUT, isolation="bwrap")}
    assert sandbox.changes(environment, sandbox.fingerprint(sandbox.environment_roots())) == []
    assert [p for p, data in kept.items() if p.read_bytes() != data] == []
    assert (scores["b_correct"].points, scores["b_correct"].max_points) == (7, 7), scores["b_correct"]
    assert (scores["c_untouched"].points, scores["c_untouched"].max_points) == (0, 7)
    # A itself: its writes failed, its square was defined before the loop that the timeout stopped
    assert scores["a_hostile"].points == 7, scores["a_hostile"]
    assert all("isolated (bwrap)" in s.grader for s in scores.values())
    page = (out / "feedback" / "a_hostile" / f"{NAME}.html").read_text()
    assert page.count("SEES-FALSE") == 3 and "SEES-TRUE" not in page  # no gradebook, submissions, sources
    assert "NET-CLOSED" in page and "NET-OPEN" not in page
    assert "WRITES-DENIED-100" in page  # A did try: 100 writes failed before its timeout
    assert students_in_gradebook(out) == {"a_hostile", "b_correct", "c_untouched"}
    assert {s: r["points"] for s, r in rows(out).items()} == {"a_hostile": "7", "b_correct": "7", "c_untouched": "0"}


def test_sandbox_keeps_tmp_visible_when_the_course_lives_there(monkeypatch):
    """A clone in /tmp: /tmp cannot be replaced by an empty tmpfs (the kernel would lose the course), so the hidden
    folders in it are emptied one by one; otherwise /tmp is emptied as a whole."""
    hidden, writable = [Path("/tmp/grading-work"), Path("/srv/grades")], [Path("/tmp/grading-work/alice")]

    def mounts(args):
        return [(args[i], args[i + 1]) for i in range(len(args) - 1) if args[i] in ("--tmpfs", "--bind")]

    monkeypatch.setattr(sandbox, "needed", lambda: [Path("/opt/venv"), Path("/home/me/course")])
    assert mounts(sandbox.bwrap_args(writable, hidden, Path("/tmp/grading-work/alice"))) == [
        ("--tmpfs", "/tmp"), ("--tmpfs", "/srv/grades"), ("--bind", "/tmp/grading-work/alice")]
    monkeypatch.setattr(sandbox, "needed", lambda: [Path("/opt/venv"), Path("/tmp/ci/course")])
    assert mounts(sandbox.bwrap_args(writable, hidden, Path("/tmp/grading-work/alice"))) == [
        ("--tmpfs", "/tmp/grading-work"), ("--tmpfs", "/srv/grades"), ("--bind", "/tmp/grading-work/alice")]


def test_isolation_bwrap_refused_when_unavailable(tmp_path, monkeypatch):
    monkeypatch.setattr(sandbox, "bwrap_problem", lambda: "bubblewrap (bwrap) is not installed")
    student_version = make_course(tmp_path / "course", tiny_notebook())
    submit(tmp_path / "subs", "b", student_version)
    with pytest.raises(grading.GradingError, match="--isolation bwrap: bubblewrap"):
        grade(tmp_path / "subs", tmp_path / "out", source_dir=tmp_path / "course" / "source", isolation="bwrap")


# ------------------------------------------------------------------ not isolated: checked


def test_hostile_submission_without_isolation_cannot_change_the_next_grades(tmp_path, monkeypatch, capsys):
    """Without isolation A rewrites every .json/.pt/.db in the (disposable) course, grading and submission
    folders: the gradebook is restored, the warm-up cache and nbgrader's files come from memory, so B and C
    get 7 and 0, and A is refused. A second run where A also changes the (stand-in) Python environment:
    grading stops, B and C are 'not graded: grader error', never 0."""
    course = tmp_path / "course"
    student_version = make_course(course / "c", cached_notebook())
    env = tmp_path / "env"  # stands in for the Python environment: A must not reach the real one
    (env / "site-packages").mkdir(parents=True)
    (env / "site-packages" / "metaschema.json").write_text('{"type": "object"}')
    monkeypatch.setattr(sandbox, "environment_roots", lambda: [env])

    def run(name: str, roots: list[Path]):
        subs, out = course / name / "subs", course / name / "out"
        submit(subs, "a_hostile", answer(student_version, square=rewrite_everything([str(r) for r in roots])))
        submit(subs, "b_correct", answer(student_version, **RIGHT))
        submit(subs, "c_untouched", student_version)
        scores = grade(subs, out, source_dir=course / "c" / "source", cell_timeout=CELL_TIMEOUT,
                       work_dir=course / name / "work", isolation="none")
        return {s.student: s for s in scores}, out

    scores, out = run("first", [course])
    assert capsys.readouterr().err.count("NOT isolated") == 1  # said once per run, loudly
    assert (scores["b_correct"].points, scores["b_correct"].max_points) == (7, 7), scores["b_correct"]
    assert (scores["c_untouched"].points, scores["c_untouched"].max_points) == (0, 7)
    assert scores["a_hostile"].points == 0
    assert scores["a_hostile"].failures[0].startswith("refused: the submission changed the gradebook")
    assert {s: r["points"] for s, r in rows(out).items()} == {"a_hostile": "0", "b_correct": "7", "c_untouched": "0"}
    assert json.loads((out / "grading.json").read_text())["b_correct/01_homework"]["points"] == 7

    scores, out = run("second", [env, course / "second"])
    assert scores["a_hostile"].points == 0 and "changed files outside its folder" in scores["a_hostile"].failures[0]
    for student in ("b_correct", "c_untouched"):
        assert scores[student].points is None
        assert scores[student].failures[0].startswith("not graded: grader error: the Python environment")
    assert {s: r["points"] for s, r in rows(out).items()} == {"a_hostile": "0", "b_correct": "", "c_untouched": ""}
    assert students_in_gradebook(out) == {"a_hostile"}  # no 0 recorded for B and C
    assert "GRADING STOPPED" in capsys.readouterr().err


# ------------------------------------------------------------------ hangs of the machinery


# A cell that makes the client wait although the kernel is idle: the kernel drops this cell's execute_reply
# (and publishes 'idle' as usual), which is what a lost reply between kernel and client looks like.
DROP_REPLY = textwrap.dedent("""\
    _kernel = get_ipython().kernel
    _send = _kernel.session.send
    def _drop_reply(stream, msg_type, *args, **kwargs):
        if msg_type == "execute_reply":
            _kernel.session.send = _send
            return {"content": args[0] if args else kwargs["content"], "header": {}, "metadata": {}}
        return _send(stream, msg_type, *args, **kwargs)
    _kernel.session.send = _drop_reply
    """)


def test_a_machinery_hang_is_retried_and_costs_the_student_nothing(tmp_path, monkeypatch):
    """The first try of B's notebook hangs (the kernel idle, its reply to the first test cell lost): B is graded
    again and gets full marks, the CSV says what the grader did. A student's infinite loop in the same run costs
    that cell's points and is reported as a busy kernel."""
    tries = []

    class HangsOnce(grading._Execute):
        def preprocess_cell(self, cell, resources, index):
            if cell.metadata.get("nbgrader", {}).get("grade_id") == "test_square":
                tries.append(index)
                if len(tries) == 1:
                    cell.source = DROP_REPLY + cell.source
            return super().preprocess_cell(cell, resources, index)

    monkeypatch.setattr(grading, "_Execute", HangsOnce)
    student_version = make_course(tmp_path / "course", tiny_notebook())
    submit(tmp_path / "subs", "b_correct", answer(student_version, **RIGHT))
    submit(tmp_path / "subs", "d_loops", answer(student_version, square=RIGHT["square"], mean="CELL:while True:\n    pass"))
    scores = {s.student: s for s in grade(tmp_path / "subs", tmp_path / "out", warm_up=False, cell_timeout=CELL_TIMEOUT,
                                          source_dir=tmp_path / "course" / "source")}
    b, d = scores["b_correct"], scores["d_loops"]
    assert len(tries) == 3  # B twice, then D once
    assert (b.points, b.max_points, b.failures) == (6, 6, []), b
    assert any(g.startswith("try 1: hang of the notebook machinery in submission, cell 3: the kernel finished the "
                            "cell and has been idle") and g.endswith("graded again") for g in b.grader), b.grader
    assert b.seconds < 60
    assert d.points == 3 and d.grader == [d.grader[0]]  # no retry: the loop is the student's
    assert any("CellTimeoutError" in f and "the kernel was busy running it" in f
               for f in (tmp_path / "out" / "feedback" / "d_loops" / f"{NAME}.md").read_text().splitlines())
    assert "hang of the notebook machinery" in rows(tmp_path / "out")["b_correct"]["grader"]


def test_a_hang_on_both_tries_is_not_graded_never_zero(tmp_path, monkeypatch):
    """Both tries hang: 'not graded: grader error', no 0 in the gradebook. With a 120 s cell timeout, each hang is
    found within seconds of the kernel going idle (the watchdog's idle grace, here 3 s), not at the timeout."""
    monkeypatch.setenv("COURSE_IDLE_GRACE_S", "3")
    student_version = make_course(tmp_path / "course", tiny_notebook())
    submit(tmp_path / "subs", "h_hangs", answer(student_version, square="CELL:" + DROP_REPLY + "def square(x):\n"
                                                "    return x * x", mean=RIGHT["mean"]))
    [score] = grade(tmp_path / "subs", tmp_path / "out", source_dir=tmp_path / "course" / "source", warm_up=False,
                    cell_timeout=120)
    assert score.points is None and score.max_points == 6
    assert score.failures == [score.failures[0]] and score.failures[0].startswith(
        "not graded: grader error: hang of the notebook machinery in submission, cell 2: the kernel finished the cell "
        "and has been idle")
    assert score.seconds < 60
    assert [g.split(":")[0] for g in score.grader[1:]] == ["try 1", "try 2"]
    row = rows(tmp_path / "out")["h_hangs"]
    assert (row["points"], row["max_points"]) == ("", "6") and row["failures"].startswith("not graded: grader error")
    assert students_in_gradebook(tmp_path / "out") == set()
    assert "not graded yet" in (tmp_path / "out" / "feedback" / "h_hangs" / f"{NAME}.md").read_text()


# ------------------------------------------------------------------ links, arguments, clean, scores.csv


def test_a_link_to_an_instructor_file_is_refused(tmp_path):
    source = tmp_path / "source" / f"{NAME}.ipynb"
    source.parent.mkdir()
    nbformat.write(tiny_notebook(), source)
    for student in ("sym", "hard", "own"):
        (tmp_path / "subs" / student).mkdir(parents=True)
    (tmp_path / "subs" / "sym" / f"{NAME}.ipynb").symlink_to(source)
    os.link(source, tmp_path / "subs" / "hard" / f"{NAME}.ipynb")
    (tmp_path / "subs" / "dir_link").symlink_to(source.parent, target_is_directory=True)
    shutil.copy(source, tmp_path / "subs" / "own" / f"{NAME}.ipynb")
    found, rejected = find_submissions(tmp_path / "subs", {NAME: source})
    assert [s.student for s in found] == ["own"]
    why = {r.student: r.failures[0] for r in rejected}
    assert why["sym"].startswith("refused:") and "symbolic link" in why["sym"]
    assert why["hard"].startswith("refused:") and "the instructor's file" in why["hard"]
    assert why["dir_link"].startswith("refused:") and "symbolic link" in why["dir_link"]


@pytest.mark.parametrize("bad, error", [(0, ValueError), (-5, ValueError), (float("nan"), ValueError),
                                        ("5", TypeError), (True, TypeError)])
def test_cell_timeout_of_zero_or_less_is_refused(tmp_path, bad, error):
    with pytest.raises(error, match="cell_timeout"):
        check_cell_timeout(bad)
    with pytest.raises(error, match="cell_timeout"):  # before any work: the folder does not even exist
        grade(tmp_path / "no-such-folder", tmp_path / "out", cell_timeout=bad)
    assert not (tmp_path / "out").exists()


def test_cli_refuses_a_cell_timeout_of_zero(capsys):
    with pytest.raises(SystemExit) as e:
        cli_main(["grade", "anywhere", "--cell-timeout", "0"])
    assert e.value.code == 2 and "--cell-timeout" in capsys.readouterr().err


def test_make_clean_keeps_the_gradebook(tmp_path):
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    shutil.copy(REPO_ROOT / "Makefile", tmp_path)
    for path in ["build/cache/x.pt", "build/course/a.html", "grades/gradebook.db", "build/grading/gradebook.db",
                 "build/grading/scores.csv"]:
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text(path)
    subprocess.run(["make", "clean"], cwd=tmp_path, check=True, capture_output=True)
    assert sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_file()) == [
        "Makefile", "build/grading/gradebook.db", "build/grading/scores.csv", "grades/gradebook.db"]
    assert grading.GRADING_DIR == REPO_ROOT / "grades"  # the default: outside build/


def test_scores_csv_holds_every_student_ever_graded(tmp_path):
    """One student per run into the same output folder (as one container per student would): no row is lost."""
    student_version = make_course(tmp_path / "course", tiny_notebook())
    out = tmp_path / "out"
    for student, cells in [("ann", RIGHT), ("bob", {"square": RIGHT["square"]})]:
        submit(tmp_path / student, student, answer(student_version, **cells))
        grade(tmp_path / student, out, source_dir=tmp_path / "course" / "source", warm_up=False,
              cell_timeout=CELL_TIMEOUT)
    assert {s: (r["points"], r["max_points"]) for s, r in rows(out).items()} == {"ann": ("6", "6"), "bob": ("3", "6")}
    assert sorted(p.name for p in out.iterdir()) == [".grading.lock", "feedback", "gradebook.db", "grading.json",
                                                     "manual_grading.csv", "scores.csv"]  # (temporary files renamed)


def test_a_hang_in_the_instructors_warm_up_is_run_again(tmp_path, capsys, monkeypatch):
    """The warm-up's first run hangs (its cell's reply lost, the kernel idle): it is run again at once, not after
    the warm-up's 900 s limit, and the students are graded as usual."""
    monkeypatch.setenv("COURSE_IDLE_GRACE_S", "3")
    nb = tiny_notebook()
    nb.cells.insert(1, new_code_cell('import os\nif os.getcwd().endswith("run1"):  # the warm-up\'s first run\n'
                                     + textwrap.indent(DROP_REPLY, "    ")))
    student_version = make_course(tmp_path / "course", nb)
    submit(tmp_path / "subs", "b_correct", answer(student_version, **RIGHT))
    [score] = grade(tmp_path / "subs", tmp_path / "out", source_dir=tmp_path / "course" / "source",
                    cell_timeout=CELL_TIMEOUT)
    err = capsys.readouterr().err
    assert ("the instructor's 01_homework hung (grader machinery, hang of the notebook machinery in the instructor's "
            "notebook, cell 1: the kernel finished the cell") in err
    assert "running it again" in err and err.count("hung (grader machinery") == 1
    assert (score.points, score.max_points) == (6, 6)


def test_widget_cells_never_hang_through_the_grader(tmp_path):
    """The stress test of the course's hang, through the grader: 10 students, each notebook with 6 of the course's
    slider_plot cells (a 4-panel figure). No hang (no retry), every student full marks."""
    from test_hangs import DRAW

    nb = tiny_notebook()
    nb.cells[2:2] = [new_code_cell(DRAW)] + [new_code_cell("slider_plot(draw, n=(1, 10, 1));") for _ in range(6)]
    student_version = make_course(tmp_path / "course", nb)
    for i in range(10):
        submit(tmp_path / "subs", f"s{i}", answer(student_version, **RIGHT))
    scores = grade(tmp_path / "subs", tmp_path / "out", source_dir=tmp_path / "course" / "source", warm_up=False,
                   cell_timeout=60)
    retried = [(s.student, s.grader[1:]) for s in scores if len(s.grader) > 1]
    assert retried == [], f"{len(retried)} of 10 students hung: {retried[0]}"
    assert [(s.points, s.max_points) for s in scores] == [(6, 6)] * 10
    print(f"10 students, no hang, {min(s.seconds for s in scores)}-{max(s.seconds for s in scores)} s each")
