"""The drift command (course_lib.tools.drift): what it pins for --lowest, and how it reads and reports a run.
The installs themselves are too large for a unit test: `make drift` runs them (README, "Versions")."""

from pathlib import Path

from packaging.requirements import Requirement

from course_lib.tools import drift
from course_lib.tools.cli import main

ROOT = Path(__file__).resolve().parents[1]

JUNIT = """<?xml version="1.0" encoding="utf-8"?>
<testsuites><testsuite name="pytest" errors="1" failures="1" skipped="1" tests="5" time="12.5">
<testcase classname="tests.test_hangs" name="test_widget_cells_never_hang" time="100"/>
<testcase classname="tests.test_browser" name="test_lab" time="1"><skipped message="no chromium"/></testcase>
<testcase classname="tests.test_config" name="test_a" time="0.1"><failure message="assert 1 == 2">long</failure></testcase>
<testcase classname="tests.test_config" name="test_b" time="0.1"><error message="fixture broke"/></testcase>
<testcase classname="tests.test_hangs_more.TestX" name="test_c" time="0.1"/>
</testsuite></testsuites>
"""


def test_the_project_requirements_are_every_dependency_and_extra_once_without_itself():
    reqs = drift.direct_requirements(ROOT / "pyproject.toml")
    names = [r.name for r in reqs]
    assert "torch" in names and "nbgrader" in names and "pytest" in names and "playwright" in names
    assert "ssl-course" not in names
    assert len(names) == len(set(names))


def test_lowest_pins_each_lower_bound_and_keeps_what_it_is_told():
    reqs = [Requirement(r) for r in ("torch>=2.4,<2.15", "numpy>=1.24", "jupyterlab>=4,<5", "anything", "x~=1.2")]
    assert drift.lowest_constraints(reqs) == ["torch==2.4", "numpy==1.24", "jupyterlab==4", "x==1.2"]
    assert drift.lowest_constraints(reqs, keep=("Torch",)) == ["numpy==1.24", "jupyterlab==4", "x==1.2"]
    assert drift.lower_bound(Requirement("anything")) is None


def test_every_lower_bound_of_the_project_is_pinned_in_the_lowest_run():
    reqs = drift.direct_requirements(ROOT / "pyproject.toml")
    pinned = drift.lowest_constraints(reqs)
    assert len(pinned) == len(reqs), "every requirement should have a lower bound, or --lowest does not try it"


def test_a_junit_report_is_counted_with_the_hang_and_browser_tests_named(tmp_path):
    (tmp_path / "j.xml").write_text(JUNIT)
    r = drift.read_junit(tmp_path / "j.xml")
    assert (r.passed, r.failed, r.errors, r.skipped, r.seconds) == (2, 1, 1, 1, 12.5)
    assert r.focus == {"tests/test_hangs.py": ["test_widget_cells_never_hang: passed"],
                       "tests/test_browser.py": ["test_lab: skipped"]}
    assert "tests.test_config::test_a: failed (assert 1 == 2)" in r.problems
    assert "tests.test_config::test_b: error (fixture broke)" in r.problems


def test_the_report_shows_ranges_lock_and_installed_versions(tmp_path):
    reqs = [Requirement("numpy>=1.24"), Requirement("ipykernel>=6.29,<8"), Requirement("ruff>=0.6")]
    text = drift.report("newest", reqs, {"numpy": "2.5.0", "ipykernel": "6.31.0"}, {"numpy": "2.4.6", "ipykernel":
                        "6.31.0", "ruff": "0.17.6"}, drift.Results(passed=3, seconds=61), "3.11.7", 42.0, "cmd")
    assert "| numpy | >=1.24 | 2.4.6 | 2.5.0 | newer than the lock |" in text
    assert "| ipykernel | <8,>=6.29 | 6.31.0 | 6.31.0 |  |" in text
    assert "| ruff | >=0.6 | 0.17.6 | not installed |  |" in text
    assert "tests: 3 passed, 0 failed, 0 errors, 0 skipped in 61 s" in text
    assert "hang stress test (`tests/test_hangs.py`): not run" in text


def test_drift_is_a_command_with_its_options(monkeypatch):
    seen = {}
    monkeypatch.setattr(drift, "main", lambda args: seen.update(vars(args)) or 0)
    assert main(["drift", "--lowest", "--keep", "torch", "torchvision", "--", "tests/test_config.py"]) == 0
    assert seen["lowest"] and seen["keep"] == ["torch", "torchvision"]
    assert seen["pytest_args"] == ["tests/test_config.py"]
