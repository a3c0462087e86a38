"""make demo (course_lib/tools/demo.py): which profile it warms, what it reports as cached, and the warm run."""

import os
import re

import pytest
import torch

from course_lib.tools import demo
from course_lib.tools.cli import main


def test_default_profile_is_the_shell_s_then_full_on_a_gpu_then_fast(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert demo.default_profile() == "full"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert demo.default_profile() == "fast"
    monkeypatch.setenv("COURSE_PROFILE", "grade")
    assert demo.default_profile() == "grade"


def test_cache_change_sorts_new_and_rewritten_files_and_ignores_unchanged_ones():
    before = {"checkpoints/rotation-aaaa.pt": (100, 1), "checkpoints/baselines-bbbb.json": (10, 1),
              "results-fast.json": (50, 1), "results-fast.json.lock": (0, 1)}
    after = {**before, "checkpoints/rotation-aaaa.pt": (120, 2),  # rewritten: retrained
             "checkpoints/exemplar-cccc.pt": (300, 3), "checkpoints/probe_rotation-dddd.json": (7, 3),
             "results-fast.json": (60, 3), "results-fast.json.lock": (0, 3), "stray.txt": (4, 3)}
    change = demo.cache_change(before, after)
    assert change.models == ["exemplar", "rotation"]
    assert demo.cache_change({}, {"checkpoints/simclr-1.pt": (1, 1), "checkpoints/simclr-2.pt": (1, 1),
                                  "checkpoints/rotation-3.pt": (1, 1)}).describe().startswith(
        "3 models (rotation, simclr x2); ")
    assert change.evaluations == ["probe_rotation"]
    assert change.other == ["stray.txt"]
    assert change.results and change.trained()
    assert change.bytes == 120 + 300 + 7 + 4  # the results store and its lock are not counted
    assert demo.cache_change(after, dict(after)).describe() == "nothing new"
    only_rows = demo.cache_change(before, {**before, "results-fast.json": (70, 9)})
    assert not only_rows.trained() and only_rows.describe() == "nothing new (results rows rewritten)"


def test_snapshot_lists_every_file_with_size(tmp_path):
    assert demo.snapshot(tmp_path / "missing") == {}
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "m-1.pt").write_bytes(b"abc")
    snap = demo.snapshot(tmp_path)
    assert list(snap) == ["checkpoints/m-1.pt"] and snap["checkpoints/m-1.pt"][0] == 3


def notebook(path, *sources):
    import nbformat

    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(s) for s in sources]), path)
    return str(path)


CACHED = """import os
from course_lib.config import cache_dir
assert os.environ["COURSE_TIME_BUDGETS"] == "off", "demo trains complete runs"
p = cache_dir() / "checkpoints" / "toy-0123.pt"
p.parent.mkdir(exist_ok=True)
if not p.exists():
    p.write_bytes(b"w" * 2000)  # trained once, then loaded"""

NOT_CACHED = """import time
from course_lib.config import cache_dir
(cache_dir() / "checkpoints").mkdir(exist_ok=True)
(cache_dir() / "checkpoints" / "again-4567.pt").write_bytes(str(time.time_ns()).encode())  # every run"""


def test_demo_warms_the_cache_and_flags_a_notebook_that_computes_again(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("COURSE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("COURSE_PROFILE", "fast")  # restored after the test: prepare sets it for the kernels
    good = notebook(tmp_path / "01_good.ipynb", CACHED)
    again = notebook(tmp_path / "02_again.ipynb", NOT_CACHED)
    assert demo.prepare([good, again], profile="fast", out_dir=tmp_path / "out") == 0
    printed = capsys.readouterr().out
    report = printed[printed.index("Prepared for a live lecture"):]
    assert re.search(r"01_good\.ipynb\s+\d+\.\ds\s+\d+\.\ds\s+1 model \(toy\); 2 kB", report)
    assert re.search(r"02_again\.ipynb\s+\d+\.\ds\s+\d+\.\ds\s+1 model \(again\)", report)
    assert "note: 02_again.ipynb: the second run wrote to the cache again" in report
    assert "01_good.ipynb: the second run" not in report
    assert "Ready. Start the lecture with: COURSE_CACHE=" in report and report.rstrip().endswith("make lab")
    assert "COURSE_TIME_BUDGETS" not in os.environ  # restored: the caller's session keeps its budgets
    assert (tmp_path / "out" / "warm-up" / "01_good.ipynb").exists()
    assert (tmp_path / "out" / "second-run" / "02_again.ipynb").exists()


def test_demo_of_a_failing_notebook_fails_without_a_second_run(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("COURSE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("COURSE_PROFILE", "fast")
    bad = notebook(tmp_path / "01_bad.ipynb", "assert False, 'not ready'")
    assert demo.prepare([bad], profile="fast", out_dir=tmp_path / "out") == 1
    out, err = capsys.readouterr()
    assert "FAILED: AssertionError: not ready" in out and "not ready for the lecture" in err
    assert "Second run" not in out and not (tmp_path / "out" / "second-run").exists()


def test_demo_refuses_an_unknown_profile_or_notebook_before_running_anything(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("COURSE_PROFILE", "fast")
    with pytest.raises(ValueError, match="unknown profile 'lecture'"):
        demo.prepare([str(tmp_path / "x.ipynb")], profile="lecture", out_dir=tmp_path / "out")
    assert demo.prepare([str(tmp_path / "nope.ipynb")], profile="fast", out_dir=tmp_path / "out") == 2
    assert "no such notebook" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_cli_demo_passes_its_options(monkeypatch):
    seen = {}

    def fake_prepare(notebooks, profile=None, out_dir=None, warm_check=True):
        seen.update(notebooks=notebooks, profile=profile, out=out_dir, warm_check=warm_check)
        return 0

    monkeypatch.setattr(demo, "prepare", fake_prepare)
    assert main(["demo", "--profile", "full", "--no-warm-check", "--out", "o", "a.ipynb"]) == 0
    assert seen == {"notebooks": ["a.ipynb"], "profile": "full", "out": "o", "warm_check": False}
    assert main(["demo"]) == 0
    assert seen["notebooks"] == [] and seen["profile"] is None and seen["warm_check"] is True
