"""What the grader grades and what each submission gets: the submitted notebooks, found and checked.

* :func:`find_submissions` finds the submitted notebooks of a folder, in ``<student>/<notebook>.ipynb`` or nbgrader's
  ``[submitted/]<student>/<assignment>/<notebook>.ipynb``, and refuses, with the reason, the files it cannot take:
  wrong names, a notebook submitted twice, links (symbolic, or hard to an instructor's file), files outside the folder.
* :func:`read_submission` reads one (a file that is not a notebook is not graded, and says why).
* :class:`Score` is one student's result for one notebook (a row of ``scores.csv``).

Nothing here needs nbgrader.
"""

from __future__ import annotations

import contextlib
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

STUDENT_ID = re.compile(r"[A-Za-z0-9][\w.@+-]*")


class GradingError(RuntimeError):
    """The grader cannot go on (broken source notebooks, no submissions): not a student's fault."""


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


def read_submission(src: Path):
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


def grade_ids(nb) -> list[str]:
    return [c.metadata["nbgrader"]["grade_id"] for c in nb.cells
            if c.metadata.get("nbgrader", {}).get("grade") and "grade_id" in c.metadata["nbgrader"]]


def manual_ids(nb) -> set[str]:
    """Cells graded by hand: nbgrader's manually graded answers (``grade`` and ``solution`` both true)."""
    return {c.metadata["nbgrader"]["grade_id"] for c in nb.cells
            if c.metadata.get("nbgrader", {}).get("grade") and c.metadata["nbgrader"].get("solution")}
