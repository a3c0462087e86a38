"""Same seed, same numbers: notebook 03 executed twice, each time with a fresh cache, saves identical rows.

Everything that could differ between the runs is fixed by the course itself: the seed, torch's
thread count (the profile's ``num_threads``), no time budget (``COURSE_TIME_BUDGETS=off``, as
under ``make test``), and the fast profile. Only timestamps and wall times may differ.

The supervised baseline's row (two minutes of training on labels) is computed by the first run only and
handed to the second run's otherwise empty cache: its own determinism is tested in ``test_supervised.py``.
"""

import json
import re
import shutil

from course_lib.config import REPO_ROOT
from course_lib.tools import runner

TIMING = re.compile(r"saved|seconds|wall|time")


def without_timing(value):
    if isinstance(value, dict):
        return {k: without_timing(v) for k, v in value.items() if not TIMING.search(k)}
    if isinstance(value, list):
        return [without_timing(v) for v in value]
    return value


def test_notebook_03_twice_with_fresh_caches_gives_identical_results(tmp_path, monkeypatch):
    monkeypatch.setenv("COURSE_PROFILE", "fast")
    monkeypatch.setenv("COURSE_TIME_BUDGETS", "off")
    rows = []
    for run in ("first", "second"):
        cache = tmp_path / run / "cache"
        if rows:  # the second run: only the supervised row is carried over
            handed = sorted((tmp_path / "first" / "cache").rglob("supervised-*.json"))
            assert handed, "the first run cached no supervised row"
            for path in handed:
                target = cache / path.relative_to(tmp_path / "first" / "cache")
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy(path, target)
        monkeypatch.setenv("COURSE_CACHE", str(cache))
        notebook = REPO_ROOT / "notebooks" / "03_rotation.ipynb"
        assert runner.run_course([str(notebook)], out_dir=tmp_path / run / "out", html=False) == 0
        rows.append(json.loads((cache / "results-fast.json").read_text()))
    assert rows[0], "notebook 03 saved no results"
    assert without_timing(rows[0]) == without_timing(rows[1])
