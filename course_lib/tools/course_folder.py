"""The nbgrader course folder: the folder nbgrader's own commands and its exchange work in, graded by the course's grader.

An instructor on JupyterHub keeps one folder per course, in nbgrader's layout::

    nbgrader_config.py                          the course id, the late-submission rule, feedback without hidden tests
    gradebook.db                                nbgrader's gradebook (due dates: nbgrader db assignment add)
    source/<notebook>/<notebook>.ipynb          the instructor's notebook (solutions, hidden tests)
    release/<notebook>/<notebook>.ipynb         the student version, for nbgrader release_assignment
    submitted/<student>/<notebook>/             what nbgrader collect wrote: the notebook, timestamp.txt
    autograded/<student>/<notebook>/            the executed copies the grader keeps, for formgrader
    feedback/<student>/<notebook>/              <notebook>.html (+ .md) for nbgrader release_feedback

:func:`write_course_folder` makes it from the course (``python -m course_lib nbgrader-course DIR``); :func:`find_course`
reads it when the grader is given such a folder (``python -m course_lib grade DIR``). :func:`late_penalty` applies
nbgrader's rule for late submissions (its ``LateSubmissionPlugin``, configured in ``nbgrader_config.py``).
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path

from traitlets.config import Config, PyFileConfigLoader

from course_lib.tools.nbgrader_setup import AssignLatePenalties, CourseDirectory
from course_lib.tools.submissions import GradingError

CONFIG_FILE = "nbgrader_config.py"
COURSE_ID = "ssl-course"

CONFIG_TEMPLATE = '''\
# nbgrader's configuration of this course folder (written by `python -m course_lib nbgrader-course`).
# nbgrader's commands read it when run from this folder; `python -m course_lib grade <this folder>` reads it too.
c = get_config()  # noqa: F821 (given by traitlets when it loads this file)

c.CourseDirectory.course_id = "{course_id}"

# nbgrader's own layout, spelled out: source/, release/, submitted/, autograded/, feedback/ and gradebook.db here.
c.CourseDirectory.source_directory = "source"
c.CourseDirectory.release_directory = "release"
c.CourseDirectory.submitted_directory = "submitted"
c.CourseDirectory.autograded_directory = "autograded"
c.CourseDirectory.feedback_directory = "feedback"

# Late submissions (nbgrader's LateSubmissionPlugin). A due date is set per assignment in the gradebook:
#     nbgrader db assignment add 01_learning_paradigms --duedate="2027-01-15 17:00:00 UTC"
# "none" (nbgrader's default): lateness is recorded, no points are taken; "zero": a late notebook scores 0.
# Another rule: a subclass of nbgrader.plugins.LateSubmissionPlugin, named in c.AssignLatePenalties.plugin_class.
c.LateSubmissionPlugin.penalty_method = "none"

# Feedback never shows a hidden test: nbgrader generate_feedback (and formgrader's feedback button) hide them the
# way the course's grader does. nbgrader's default would copy the hidden tests into every student's feedback.
c.GenerateFeedback.preprocessors = [
    "nbgrader.preprocessors.GetGrades",
    "course_lib.tools.nbgrader_setup.HideHiddenTests",
    "nbconvert.preprocessors.CSSHTMLHeaderPreprocessor",
]

# The exchange, usually set for every user of the hub in /etc/jupyter/nbgrader_config.py:
# c.Exchange.root = "/usr/local/share/nbgrader/exchange"
# c.Exchange.path_includes_course = True
'''


@dataclass
class CourseFolder:
    """An nbgrader course folder and its configuration (``nbgrader_config.py``)."""

    root: Path
    config: Config = field(default_factory=Config)

    @property
    def coursedir(self) -> CourseDirectory:
        return CourseDirectory(config=self.config, root=str(self.root))

    @property
    def course_id(self) -> str:
        return self.coursedir.course_id

    def folder(self, step: str, student: str, assignment: str) -> Path:
        """nbgrader's ``<step>/<student>/<assignment>`` (its ``directory_structure``); ``step`` is a trait of
        CourseDirectory: ``"submitted_directory"``, ``"autograded_directory"``, ``"feedback_directory"``, ..."""
        cd = self.coursedir
        return Path(cd.format_path(getattr(cd, step), student, assignment))

    @property
    def gradebook(self) -> Path:
        url = self.coursedir.db_url
        if not url.startswith("sqlite:///"):
            raise GradingError(f"{self.root / CONFIG_FILE}: the grader keeps its gradebook in SQLite; "
                               f"CourseDirectory.db_url is {url!r}")
        return Path(url.removeprefix("sqlite:///"))

    def sources(self) -> dict[str, Path]:
        """The assignments of ``source/``: one notebook each, named after its folder."""
        cd = self.coursedir
        found = {}
        for folder in sorted(Path(cd.format_path(cd.source_directory, ".", "*")).parent.glob("*")):
            if (folder / f"{folder.name}.ipynb").is_file():
                found[folder.name] = folder / f"{folder.name}.ipynb"
        if not found:
            raise GradingError(f"no assignments in {self.root / cd.source_directory}: expected "
                               "<assignment>/<assignment>.ipynb (python -m course_lib nbgrader-course writes them)")
        return found

    def late_config(self) -> dict:
        """The sections of the configuration that decide late penalties (for the grader's nbgrader runs)."""
        return {name: dict(section) for name, section in self.config.items()
                if name in ("AssignLatePenalties", "LateSubmissionPlugin") or name.endswith("Plugin")}


def find_course(folder: str | Path) -> CourseFolder | None:
    """The course folder ``folder`` if it holds an ``nbgrader_config.py``, else None."""
    root = Path(folder).resolve()
    if not (root / CONFIG_FILE).is_file():
        return None
    try:
        config = PyFileConfigLoader(CONFIG_FILE, path=str(root)).load_config()
    except Exception as e:
        raise GradingError(f"{root / CONFIG_FILE} does not load: {type(e).__name__}: {e}") from e
    return CourseFolder(root, config)


def late_penalty(config: Config | dict | None, student: str, score: float, seconds_late: float) -> float:
    """nbgrader's penalty for a notebook scoring ``score`` submitted ``seconds_late`` after its due date: the
    configured plugin's answer (``AssignLatePenalties.plugin_class``, default ``LateSubmissionPlugin`` with
    ``penalty_method``: ``none`` -> 0, ``zero`` -> the whole score), kept within 0..score as nbgrader keeps it."""
    if seconds_late <= 0:
        return 0.0
    assigner = AssignLatePenalties(config=Config(config or {}))
    assigner.init_plugin()
    penalty = assigner.plugin_inst.late_submission_penalty(student, score, seconds_late)
    return 0.0 if penalty is None else float(min(max(penalty, 0.0), score))


def write_course_folder(root: str | Path, source_dir: str | Path, course_id: str = COURSE_ID) -> list[Path]:
    """Make (or update) the nbgrader course folder ``root`` from the course notebooks in ``source_dir``: its
    ``nbgrader_config.py`` (kept if there is one), ``source/<name>/<name>.ipynb``, and the student versions in
    ``release/`` (checked for leaks), every assignment registered in its gradebook (due dates already set stay).
    Returns the student versions."""
    from course_lib.tools.release import course_notebooks, release

    root = Path(root).resolve()
    root.mkdir(parents=True, exist_ok=True)
    if not (root / CONFIG_FILE).exists():
        (root / CONFIG_FILE).write_text(CONFIG_TEMPLATE.format(course_id=course_id), encoding="utf-8")
    course = find_course(root)
    for name, path in course_notebooks(source_dir).items():
        folder = course.folder("source_directory", ".", name)
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, folder / f"{name}.ipynb")
    return release(source_dir, course.folder("release_directory", ".", "x").parent, gradebook=course.gradebook,
                   course_id=course.course_id)
