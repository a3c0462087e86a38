"""Release: the course notebooks as nbgrader assignments, and the student version of each.

Every notebook in ``notebooks/`` (``[0-9]*.ipynb``) is one nbgrader *assignment*, named after its file
(:func:`course_notebooks`). :func:`release` runs ``nbgrader generate_assignment`` on each: the student version
(solutions -> ``raise NotImplementedError()``, hidden tests removed) lands in
``build/release/<notebook>/<notebook>.ipynb``, and a solution or hidden test left in it (markers in a cell without
nbgrader metadata) stops the release. ``make release`` then writes the student bundle from them
(``course_lib/tools/bundle.py``).
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from course_lib.config import REPO_ROOT
from course_lib.tools.bundle import REGIONS
from course_lib.tools.nbgrader_setup import check_success, nbgrader_api, tools_on_path
from course_lib.tools.submissions import GradingError

SOURCE_DIR = REPO_ROOT / "notebooks"
RELEASE_DIR = REPO_ROOT / "build" / "release"
LEAK_MARKERS = tuple(begin for begin, _ in REGIONS.values())  # a solution or hidden test left in a student version


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
    with tempfile.TemporaryDirectory(prefix="course-release-") as tmp, tools_on_path():
        root = Path(tmp)
        api = nbgrader_api(root, root / "gradebook.db")
        for name, path in sources.items():
            (root / "source" / name).mkdir(parents=True)
            shutil.copy(path, root / "source" / name / path.name)
            check_success(api.generate_assignment(name), f"nbgrader generate_assignment {name}")
            student_version = root / "release" / name / path.name
            leaks = [m for m in LEAK_MARKERS if m in student_version.read_text(encoding="utf-8")]
            if leaks:  # markers in a cell without nbgrader metadata are not removed: the answer would leak
                raise GradingError(f"{path}: {leaks} left in the student version; is the cell marked as a "
                                   "solution/test cell (docs/exercises.md)?")
            shutil.rmtree(out / name, ignore_errors=True)
            shutil.copytree(root / "release" / name, out / name)
            written.append(out / name / path.name)
    return written
