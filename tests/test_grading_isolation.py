"""Grading cannot be turned against other students, the grader or the machine: hostile submissions,
hangs of the machinery, links to instructor files, `make clean`, scores.csv from the whole gradebook.

Hostile submissions run only where they cannot damage the machine the tests run on: isolated by
bubblewrap after a canary proved the isolation works, or, without isolation, rewriting nothing but
a disposable folder made by the test.
"""

import csv
import html
import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import textwrap
import uuid
import warnings
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell
from test_grading import NAME, RIGHT, _meta, answer, tiny_notebook

from course_lib.config import REPO_ROOT
from course_lib.tools import bundle, gradebook, grading, nbgrader_setup, sandbox
from course_lib.tools.cli import main as cli_main
from course_lib.tools.grading import check_cell_timeout, grade
from course_lib.tools.release import release
from course_lib.tools.submissions import GradingError, find_submissions

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


SPY = textwrap.dedent("""\
    import json, os, subprocess, sys
    words = [w[::-1] for w in json.loads(WORDS)]  # (reversed in this cell: its own source holds none of them)
    pats = [p[::-1] for p in json.loads(LINES)] + ["BEGIN " + "HIDDEN TESTS", "BEGIN " + "SOLUTION"] + words
    with open("/tmp/spy-patterns", "w") as f:
        f.write("\\n".join(p for p in pats if p) + "\\n")
    tops = sorted("/" + d for d in os.listdir("/") if d not in ("proc", "sys", "dev"))
    grep = subprocess.run(["grep", "-r", "-l", "-I", "-s", "-F", "-D", "skip", "-f", "/tmp/spy-patterns", *tops],
                          capture_output=True, text=True)
    # a course line may be a common one ('for i in range(len(counts)):'): found in the system, the Python
    # environment (nbgrader's own package spells the markers) or the course's code, it is no answer; anywhere
    # else it is one, and the two words of the test's own answers are answers anywhere
    expected = ["/usr/", "/etc/", "/lib", "/bin/", "/sbin/", sys.prefix + "/", sys.base_prefix + "/", *KEEP]
    found = []
    for path in grep.stdout.splitlines():
        if path == "/tmp/spy-patterns":
            continue
        with open(path, errors="replace") as f:
            text = f.read()
        if any(w in text for w in words) or not any(path.startswith(e) for e in expected):
            found.append(path)
    searched, repos = 0, {CHECKOUT + "/.git"}
    for top in tops:
        for folder, dirs, files in os.walk(top):
            searched += len(files)
            repos.update(os.path.join(folder, d) for d in dirs if d == ".git")
    for repo in sorted(repos):
        log = subprocess.run(["git", "--git-dir", repo, "log", "-p", "--all"], capture_output=True, text=True,
                             errors="replace")
        print("GIT", repo, "exit", log.returncode)
        found += [f"git log -p of {repo}: {p[:30]}" for p in pats if p in log.stdout]
    print("TOP", json.dumps(tops))
    print("SEARCHED", searched, "HITS", len(grep.stdout.splitlines()), "READS-COURSE", os.path.exists(COURSE_FILE),
          os.path.exists(DATA_FILE))
    print("FOUND-" + ("NOTHING" if not found else "SOMETHING " + repr(found[:30])))

    def square(x):
        return x * x""")


def _text(path: Path) -> str:
    """What a person reads in a feedback file: tags stripped, entities unescaped, white space collapsed."""
    return bundle.normalize(html.unescape(re.sub(r"<[^>]+>", " ", path.read_text(encoding="utf-8"))))


@needs_bwrap
def test_a_submission_finds_no_answer_anywhere_it_can_read(tmp_path):
    """A spy searches every file its kernel can read, and the git history of every repository it finds (and of the
    course's checkout), for the markers of solutions and hidden tests, this course's answers and hidden tests
    (every secret line of notebooks/, as the bundle's leak check knows them) and two words that exist only in the
    test's own solution and hidden test, also left in an instructor's copy in build/. On this machine all of them
    are there to be found (checked first); from inside the kernel, none is found outside the system, the Python
    environment and the course's code (where a common line or nbgrader's own markers are no answer), and the two
    words nowhere. No feedback file of any student quotes a hidden test or a solution."""
    words = {"solution": f"sol{uuid.uuid4().hex}", "hidden": f"hid{uuid.uuid4().hex}"}
    nb = tiny_notebook()
    nb.cells[2].source = nb.cells[2].source.replace("return x * x", f"_ = '{words['solution']}'\n    return x * x")
    nb.cells[4].source = nb.cells[4].source.replace("for v in", f"_ = '{words['hidden']}'\nfor v in")
    student_version = make_course(tmp_path / "course", nb)
    assert all(w not in json.dumps(student_version) for w in words.values())
    course = sorted((REPO_ROOT / "notebooks").glob("[0-9]*.ipynb"))
    lines = list(bundle.secret_lines(course))
    lines += [json.dumps(s)[1:-1] for s in lines if json.dumps(s)[1:-1] != s]  # as they stand in a .ipynb
    copy = REPO_ROOT / "build" / f"leak-probe-{uuid.uuid4().hex}.ipynb"  # an executed instructor's copy
    copy.parent.mkdir(exist_ok=True)
    reverse = lambda texts: repr(json.dumps([t[::-1] for t in texts]))  # noqa: E731
    keep = [str(p) + "/" for p in sandbox.visible()]
    spy = SPY.replace("WORDS", reverse(words.values())).replace("LINES", reverse(lines)).replace(
        "KEEP", repr(keep)[1:-1]).replace("CHECKOUT", repr(str(REPO_ROOT))).replace(
        "COURSE_FILE", repr(str(Path(grading.__file__)))).replace(
        "DATA_FILE", repr(str(next((REPO_ROOT / "data").glob("*.npz")))))
    subs, out = tmp_path / "subs", tmp_path / "out"
    submit(subs, "spy", answer(student_version, square="CELL:" + spy, mean=RIGHT["mean"]))
    submit(subs, "wrong", answer(student_version, square="return x + x", mean="return 0"))  # hidden tests fail
    submit(subs, "right", answer(student_version, **RIGHT))
    try:
        nbformat.write(nb, copy)
        # the answers are on this machine: in the source notebooks, the copy in build/ and (a clone's) git history
        assert words["hidden"] in copy.read_text() and course and bundle.secret_lines(course)
        if (REPO_ROOT / ".git").is_dir():
            log = subprocess.run(["git", "-C", str(REPO_ROOT), "log", "-p", "--all", "--", "notebooks"],
                                 capture_output=True, text=True).stdout
            assert "BEGIN " + "HIDDEN TESTS" in log
        scores = {s.student: s for s in grade(subs, out, source_dir=tmp_path / "course" / "source", warm_up=False,
                                              cell_timeout=240, isolation="bwrap")}
    finally:
        copy.unlink(missing_ok=True)
    assert (scores["spy"].points, scores["right"].points, scores["wrong"].points) == (6, 6, 0), scores
    page = _text(out / "feedback" / "spy" / f"{NAME}.html")
    assert "FOUND-NOTHING" in page, page[page.find("FOUND-"):][:3000]
    assert "READS-COURSE True True" in page  # it could read the course: the search was not blind
    assert int(re.search(r"SEARCHED (\d+)", page).group(1)) > 1000
    allowed = {*sandbox.SYSTEM, "/proc", "/dev", "/tmp"} | {"/" + p.parts[1] for p in sandbox.visible()}
    tops = json.loads(re.search(r"TOP (\[.*?\])", page).group(1))
    assert set(tops) <= allowed and "/tmp" in tops, tops
    # the feedback quotes no hidden test and no solution (the wrong student's hidden tests failed)
    test_secrets = bundle.secret_lines([tmp_path / "course" / "source" / f"{NAME}.ipynb"])
    assert test_secrets
    for path in out.glob("feedback/*/*"):
        text = _text(path)
        leaked = [s for s in [*test_secrets, *words.values()] if s in text]
        assert not leaked, (path, leaked)
    assert "AssertionError" in _text(out / "feedback" / "wrong" / f"{NAME}.html")  # it did fail, visibly


def test_the_sandbox_shows_only_what_it_lists(monkeypatch):
    """The kernel's file system is built from a list: the system folders, the Python environment and the course's
    code and data read-only (a checkout on PYTHONPATH: its code alone), then bounded tmpfs folders and the
    sockets' folder; /tmp and the course cloned into it work together; the root itself is read-only."""
    monkeypatch.setattr(sandbox, "visible", lambda: [Path("/opt/venv"), Path("/tmp/ci/course/course_lib")])
    args = sandbox.bwrap_args(Path("/w/box"), scratch=[Path("/w/box")], writable=[Path("/dev/shm/k-1")],
                              readable=[Path("/w/seed")], size_mb=8)
    mounts = [(a, args[i + 1]) for i, a in enumerate(args) if a in ("--ro-bind", "--tmpfs", "--bind")]
    assert mounts == [*[("--ro-bind", d) for d in sandbox.SYSTEM if os.path.isdir(d) and not os.path.islink(d)],
                      ("--tmpfs", "/tmp"), ("--tmpfs", "/dev/shm"), ("--ro-bind", "/opt/venv"),
                      ("--ro-bind", "/tmp/ci/course/course_lib"), ("--ro-bind", "/w/seed"), ("--tmpfs", "/w/box"),
                      ("--bind", "/dev/shm/k-1")]
    assert args.count("--size") == 3 and args[args.index("--size") + 1] == str(8 * 2**20)
    assert args[args.index("--remount-ro") + 1] == "/" and "--unshare-all" in args and args[-2:] == ["--chdir", "/w/box"]


def test_visible_is_the_environment_and_the_course_code_and_data(monkeypatch, tmp_path):
    code = Path(grading.__file__).resolve().parents[1]
    other = tmp_path / "site"
    other.mkdir()
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(code.parent), str(other)]))
    seen = sandbox.visible()
    assert code in seen and other in seen and code.parent not in seen  # the checkout: its code, not all of it
    assert not any(REPO_ROOT.is_relative_to(p) for p in seen)  # neither the checkout nor a folder above it
    assert (REPO_ROOT / "data").resolve() in seen
    assert any(Path(sys.prefix).resolve().is_relative_to(p) for p in seen)
    assert not any((REPO_ROOT / name).resolve().is_relative_to(p) for p in seen
                   for name in (".git", "notebooks", "build"))


def test_isolation_bwrap_refused_when_unavailable(tmp_path, monkeypatch):
    monkeypatch.setattr(sandbox, "bwrap_problem", lambda: "bubblewrap (bwrap) is not installed")
    student_version = make_course(tmp_path / "course", tiny_notebook())
    submit(tmp_path / "subs", "b", student_version)
    with pytest.raises(GradingError, match="--isolation bwrap: bubblewrap"):
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

    class HangsOnce(nbgrader_setup._Execute):
        def preprocess_cell(self, cell, resources, index):
            if cell.metadata.get("nbgrader", {}).get("grade_id") == "test_square":
                tries.append(index)
                if len(tries) == 1:
                    cell.source = DROP_REPLY + cell.source
            return super().preprocess_cell(cell, resources, index)

    monkeypatch.setattr(nbgrader_setup, "_Execute", HangsOnce)
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
    assert gradebook.GRADING_DIR == REPO_ROOT / "grades"  # the default: outside build/


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
