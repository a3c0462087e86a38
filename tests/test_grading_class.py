"""Written answers graded by hand (nbgrader's manually graded answer cells), and grading in parallel processes."""

import csv
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_markdown_cell
from test_grading import NAME, RIGHT, answer, tiny_notebook
from test_grading_isolation import needs_bwrap

from course_lib.tools.cli import main as cli_main
from course_lib.tools.gradebook import record_manual_grades
from course_lib.tools.grading import grade
from course_lib.tools.release import release

CELL_TIMEOUT = 5
QUESTION = "why_square"


def manual_notebook() -> nbformat.NotebookNode:
    """The tiny homework (6 points of tests) and a written answer worth 2 points, graded by hand: 8 points."""
    nb = tiny_notebook()
    nb.cells += [new_markdown_cell("**Question (2 points).** Why is a square never negative?"),
                 new_markdown_cell("A product of two numbers of the same sign is positive.", metadata={"nbgrader": {
                     "grade": True, "solution": True, "locked": False, "task": False, "schema_version": 3,
                     "grade_id": QUESTION, "points": 2}})]
    return nb


def write_answer(nb: nbformat.NotebookNode, text: str) -> nbformat.NotebookNode:
    nb = nbformat.from_dict(nb)
    [cell] = [c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") == QUESTION]
    assert "YOUR ANSWER HERE" in cell.source  # the released stub
    cell.source = text
    return nb


def course(base: Path) -> tuple[Path, nbformat.NotebookNode]:
    (base / "source").mkdir(parents=True)
    nbformat.write(manual_notebook(), base / "source" / f"{NAME}.ipynb")
    [released] = release(base / "source", base / "release")
    return base / "source", nbformat.read(released, as_version=4)


def submit(subs: Path, student: str, nb: nbformat.NotebookNode) -> None:
    (subs / student).mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, subs / student / f"{NAME}.ipynb")


def rows(out: Path, name: str = "scores.csv") -> dict[str, dict[str, str]]:
    with open(out / name, newline="") as f:
        return {r["student"]: r for r in csv.DictReader(f)}


def fill(out: Path, table: Path, points: dict[str, str]) -> Path:
    """A filled copy of out/manual_grading.csv: ``points`` by student."""
    with open(out / "manual_grading.csv", newline="") as f:
        lines = list(csv.DictReader(f))
    for r in lines:
        r["points"] = points.get(r["student"], r["points"])
    with open(table, "w", newline="") as f:
        w = csv.DictWriter(f, list(lines[0]))
        w.writeheader()
        w.writerows(lines)
    return table


def test_a_written_answer_waits_for_a_person_and_keeps_the_score_given(tmp_path):
    source, student_version = course(tmp_path)
    subs, out = tmp_path / "subs", tmp_path / "out"
    submit(subs, "ann", write_answer(answer(student_version, **RIGHT), "Equal signs multiply to a positive."))
    submit(subs, "bob", student_version)  # untouched: the answer left as released scores 0 without a person

    def run():
        return {s.student: s for s in grade(subs, out, source_dir=source, cell_timeout=CELL_TIMEOUT, warm_up=False)}

    scores = run()
    assert (scores["ann"].points, scores["ann"].max_points, scores["ann"].manual) == (6, 8, [f"{QUESTION} (2 points)"])
    assert (scores["bob"].points, scores["bob"].max_points, scores["bob"].manual) == (0, 8, [])
    table = rows(out)
    assert (table["ann"]["points"], table["ann"]["max_points"]) == ("6", "8")
    assert table["ann"]["needs_manual_grading"] == f"{QUESTION} (2 points)"
    assert table["bob"]["needs_manual_grading"] == ""
    feedback = (out / "feedback" / "ann" / f"{NAME}.md").read_text()
    assert f"| `{QUESTION}` | 0 / 2 | written answer: to be graded by hand |" in feedback
    manual = rows(out, "manual_grading.csv")
    assert manual["ann"]["answer"] == "Equal signs multiply to a positive." and manual["ann"]["status"] == "to grade"
    assert manual["bob"]["status"] == "left blank: 0"

    # the instructor grades ann's answer (bob's row, blank, is skipped)
    assert cli_main(["grade-manual", str(fill(out, tmp_path / "graded.csv", {"ann": "1.5"})), "--out", str(out)]) == 0
    table = rows(out)
    assert (table["ann"]["points"], table["ann"]["needs_manual_grading"]) == ("7.5", "")
    assert rows(out, "manual_grading.csv")["ann"]["status"] == "graded by hand"

    # grading again (the same answer) keeps the score given by hand
    assert run()["ann"].points == 7.5 and rows(out)["ann"]["points"] == "7.5"

    # a new answer: the score given to the old one is dropped, the new one waits for a person
    submit(subs, "ann", write_answer(answer(student_version, **RIGHT), "Because of the signs."))
    scores = run()
    assert (scores["ann"].points, scores["ann"].manual) == (6, [f"{QUESTION} (2 points)"])
    assert rows(out)["ann"]["needs_manual_grading"] == f"{QUESTION} (2 points)"


def test_manual_grades_are_checked_before_anything_is_recorded(tmp_path):
    source, student_version = course(tmp_path)
    subs, out = tmp_path / "subs", tmp_path / "out"
    submit(subs, "ann", write_answer(answer(student_version, **RIGHT), "Signs."))
    grade(subs, out, source_dir=source, cell_timeout=CELL_TIMEOUT, warm_up=False)
    bad = tmp_path / "bad.csv"
    bad.write_text(f"student,notebook,question,points\nann,{NAME},{QUESTION},3\nann,{NAME},test_square,1\n"
                   f"zoe,{NAME},{QUESTION},1\nann,{NAME},{QUESTION},many\n")
    with pytest.raises(ValueError) as e:
        record_manual_grades(bad, out)
    text = str(e.value)
    assert "nothing recorded, 4 row(s)" in text and "outside 0..2" in text and "not a written answer" in text
    assert "no such graded answer" in text and "is not a number" in text
    assert rows(out)["ann"]["needs_manual_grading"] == f"{QUESTION} (2 points)"  # unchanged
    (tmp_path / "cols.csv").write_text("student,score\nann,1\n")
    with pytest.raises(ValueError, match="expected the columns"):
        record_manual_grades(tmp_path / "cols.csv", out)


# ------------------------------------------------------------------ parallel grading


def submissions(subs: Path, student_version) -> None:
    for i in range(2):
        submit(subs, f"a_correct{i}", write_answer(answer(student_version, **RIGHT), f"Answer {i}."))
        submit(subs, f"b_wrong{i}", answer(student_version, square="return x * x", mean="return sum(xs) / len(xs)"))
        submit(subs, f"c_raises{i}", answer(student_version, square="CELL:raise RuntimeError('my bug')",
                                            mean=RIGHT["mean"]))
        submit(subs, f"d_untouched{i}", student_version)


@needs_bwrap
def test_parallel_grading_gives_the_serial_scores(tmp_path):
    """The same submissions graded with jobs=1 and jobs=2 (the warm-ups too, 2 at a time): the same scores.csv and
    manual_grading.csv, but for the seconds."""
    source, student_version = course(tmp_path)
    submissions(tmp_path / "subs", student_version)
    tables = {}
    for jobs in (1, 2):
        out = tmp_path / f"out{jobs}"
        scores = grade(tmp_path / "subs", out, source_dir=source, cell_timeout=CELL_TIMEOUT, jobs=jobs,
                       isolation="bwrap")
        assert len(scores) == 8
        table = rows(out)
        for r in table.values():
            r.pop("seconds")
        tables[jobs] = (table, rows(out, "manual_grading.csv"))
    assert tables[1] == tables[2]
    table = tables[2][0]
    assert [table[f"{k}0"]["points"] for k in ("a_correct", "b_wrong", "c_raises", "d_untouched")] == ["6", "4", "3", "0"]
    assert table["a_correct1"]["needs_manual_grading"] == f"{QUESTION} (2 points)"


def test_parallel_grading_needs_isolation_else_one_at_a_time(tmp_path, capsys):
    source, student_version = course(tmp_path)
    submit(tmp_path / "subs", "ann", answer(student_version, **RIGHT))
    [score] = grade(tmp_path / "subs", tmp_path / "out", source_dir=source, cell_timeout=CELL_TIMEOUT, jobs=2,
                    isolation="none", warm_up=False)
    assert score.points == 6
    assert "--jobs 2 needs isolated kernels; grading one student at a time" in capsys.readouterr().err


@pytest.mark.parametrize("jobs, error", [(0, ValueError), (-1, ValueError), (1.5, TypeError), (True, TypeError)])
def test_jobs_must_be_a_whole_number_of_processes(tmp_path, jobs, error):
    with pytest.raises(error, match="jobs"):
        grade(tmp_path / "no-such-folder", tmp_path / "out", jobs=jobs)
    assert not (tmp_path / "out").exists()


def test_cli_refuses_zero_jobs(capsys):
    with pytest.raises(SystemExit) as e:
        cli_main(["grade", "anywhere", "--jobs", "0"])
    assert e.value.code == 2 and "--jobs" in capsys.readouterr().err


def test_two_grading_runs_at_once_into_one_folder_queue_up_and_keep_every_row(tmp_path):
    """Two grading runs started together with the same --out (as two containers sharing the folder would): the
    second waits for the first (the lock), and scores.csv holds both students with their own scores."""
    import os
    import subprocess
    import sys

    source, student_version = course(tmp_path)
    submit(tmp_path / "ann", "ann", answer(student_version, **RIGHT))
    submit(tmp_path / "bob", "bob", answer(student_version, square=RIGHT["square"]))
    runs = [subprocess.Popen([sys.executable, "-m", "course_lib", "grade", str(tmp_path / who), "--out",
                              str(tmp_path / "out"), "--source", str(source), "--cell-timeout", str(CELL_TIMEOUT),
                              "--no-warm-up"], env=os.environ, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             text=True) for who in ("ann", "bob")]
    outputs = [run.communicate(timeout=600)[0] for run in runs]
    assert [run.returncode for run in runs] == [0, 0], outputs
    table = rows(tmp_path / "out")
    assert {s: (r["points"], r["max_points"]) for s, r in table.items()} == {"ann": ("6", "8"), "bob": ("3", "8")}
