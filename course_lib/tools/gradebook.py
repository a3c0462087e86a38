"""The gradebook and what is written from it: points, feedback, ``scores.csv``, ``grading.json``, grades by hand.

Everything is kept in the output folder (``grades/`` by default: outside ``build/``, so that ``make clean`` never
deletes grades), by one process, the grading process:

* ``gradebook.db``: nbgrader's gradebook (SQLite), kept between runs: :func:`record_points` stores a student's points,
  and keeps a score given by hand unless the written answer changed.
* ``feedback/<student>/<notebook>.md``: :func:`score_and_feedback`, the points per test and why each failed.
* ``grading.json``: the log behind ``scores.csv`` (failures, times, what the grader did, written answers):
  :func:`load_log`, :func:`save_log`.
* ``scores.csv`` and ``manual_grading.csv``: :func:`write_scores`, rebuilt from the gradebook and the log, each
  written atomically.
* :func:`record_manual_grades` records the points an instructor gave written answers.

One grading run at a time per output folder (:func:`one_run_at_a_time`).
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
from pathlib import Path

from course_lib.config import REPO_ROOT
from course_lib.files import atomic_write, locked
from course_lib.tools.nbgrader_setup import Gradebook, cell_errors, tools_on_path
from course_lib.tools.submissions import GradingError, Score

GRADING_DIR = REPO_ROOT / "grades"  # not in build/: `make clean` must never delete grades


def record_points(db: Path, name: str, student: str, points: dict[str, float | None], changed: set[str] = frozenset()) \
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


def stored_grades(db: Path, name: str, student: str) -> dict[str, tuple[float, float, bool]]:
    """A student's grades in the gradebook: id -> (points, max points, waiting for a person)."""
    with Gradebook(f"sqlite:///{db}") as gb:
        return {g.name: (0.0 if g.needs_manual_grade else g.score or 0.0, g.max_score, bool(g.needs_manual_grade))
                for g in gb.find_submission_notebook(name, name, student).grades}


def maximum_points(db: Path, name: str) -> dict[str, float]:
    with Gradebook(f"sqlite:///{db}") as gb:
        return {g.name: g.max_score for nb in gb.find_assignment(name).notebooks for g in nb.grade_cells}


def written_answers(executed, manual: set[str]) -> dict[str, str]:
    """The student's written answers (question id -> text) in the executed notebook."""
    return {c.metadata["nbgrader"]["grade_id"]: c.source for c in executed.cells
            if c.metadata.get("nbgrader", {}).get("grade_id") in manual}


def score_and_feedback(score: Score, grades: dict[str, tuple], executed, feedback_dir: Path) -> None:
    """Points from ``grades`` (test id -> (points, max points[, waiting for a person])), why each test failed
    from the executed notebook; write the feedback Markdown."""
    score.points = sum(g[0] for g in grades.values())
    score.max_points = sum(g[1] for g in grades.values())
    score.manual = [f"{gid} ({g[1]:g} points)" for gid, g in grades.items() if len(g) > 2 and g[2]]
    errors = cell_errors(executed) if executed is not None else {}
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
    write_feedback(feedback_dir, score.notebook, "\n".join(lines) + "\n")


def write_feedback(feedback_dir: Path, notebook: str, text: str) -> None:
    feedback_dir.mkdir(parents=True, exist_ok=True)
    (feedback_dir / f"{notebook}.md").write_text(text, encoding="utf-8")


def load_log(path: Path) -> dict[str, dict]:
    try:
        return json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
    except (ValueError, OSError) as e:
        raise GradingError(f"{path} is not readable JSON ({e}); it holds the failures behind scores.csv: restore it "
                           "or delete it (the points are in the gradebook)") from None


def save_log(path: Path, log: dict[str, dict]) -> None:
    """Write the grading log (``grading.json``) atomically."""
    atomic_write(path, lambda tmp: tmp.write_text(json.dumps(log, indent=1, sort_keys=True), encoding="utf-8"))


def one_run_at_a_time(out: Path) -> contextlib.AbstractContextManager[None]:
    """One grading run at a time per output folder (separate runs, e.g. one container per student, queue up)."""
    return locked(out / ".grading.lock")


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
    scores = text.getvalue()
    atomic_write(path, lambda tmp: tmp.write_text(scores, encoding="utf-8"))
    text = io.StringIO()
    w = csv.DictWriter(text, MANUAL_HEADER, lineterminator="\n")
    w.writeheader()
    w.writerows(sorted(manual, key=lambda r: (r["notebook"], r["question"], r["student"])))
    manual_rows = text.getvalue()
    atomic_write(path.with_name("manual_grading.csv"), lambda tmp: tmp.write_text(manual_rows, encoding="utf-8"))
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
    with one_run_at_a_time(out), tools_on_path():
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
        write_scores(db, load_log(out / "grading.json"), out / "scores.csv")
    return len(found)
