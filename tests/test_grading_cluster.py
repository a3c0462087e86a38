"""Grading on a Dask cluster (``grade(..., cluster=...)``, ``course_lib/tools/cluster.py``): a scheduler and two
worker processes on loopback grade like ``jobs=1``; a worker killed mid-run has its student graded again elsewhere,
once; bad cluster strings, an unreachable scheduler and a cluster without workers are clear errors, quickly.

The submissions are the tiny homework of ``test_grading_class.py`` (6 points of tests and a written answer)."""

import contextlib
import csv
import glob
import json
import os
import re
import signal
import socket
import tempfile
import threading
import time
from pathlib import Path

import nbformat
import pytest
from test_grading import NAME, RIGHT, answer, tiny_notebook
from test_grading_class import QUESTION, course, rows, submit, write_answer
from test_grading_isolation import needs_bwrap

from course_lib.tools.cli import main as cli_main
from course_lib.tools.grading import grade
from course_lib.tools.submissions import NOT_GRADED, GradingError

try:
    import distributed
    import psutil  # a dependency of distributed
except ModuleNotFoundError as e:  # the instructor extra is not installed: skipped, except in CI
    if os.environ.get("CI", "").strip().lower() in ("true", "1", "yes"):
        raise ModuleNotFoundError(f"{e}: CI installs the instructor extra (make test), whose tests must run") from e
    pytest.skip(f"CLUSTER GRADING NOT TESTED: {e} (pip install -e '.[instructor]')", allow_module_level=True)

from course_lib.tools import cluster as engine

CELL_TIMEOUT = 10
# a correct answer to `square` whose cell says it started, then takes a while: a file beside the kernel's connection
# file (the one folder of the grader's that a sandboxed kernel may write: its sockets' folder)
SLOW = ("CELL:import pathlib, sys, time\npathlib.Path(sys.argv[sys.argv.index('-f') + 1]).with_name('started')"
        ".write_text('')\ntime.sleep(2)\ndef square(x):\n    return x * x")
KINDS = {  # student -> (submission, points of the 6 of tests)
    "a_correct": (lambda v: write_answer(answer(v, **RIGHT), "Equal signs multiply to a positive."), "6"),
    "a_slow": (lambda v: answer(v, square=SLOW, mean=RIGHT["mean"]), "6"),
    "b_wrong": (lambda v: answer(v, square="return x * x", mean="return sum(xs) / len(xs)"), "4"),
    "d_untouched": (lambda v: v, "0"),
}


def unreleased(base: Path) -> tuple[Path, Path]:
    """A source folder with the tiny homework and a folder of one submission (a copy of it), for grading runs
    that stop before any submission is executed: no release needed."""
    (base / "source").mkdir(parents=True)
    nbformat.write(tiny_notebook(), base / "source" / f"{NAME}.ipynb")
    submit(base / "subs", "ann", tiny_notebook())
    return base / "source", base / "subs"


def graded(out: Path) -> tuple[dict, dict]:
    """scores.csv (without the seconds) and manual_grading.csv, by student."""
    table = rows(out)
    for r in table.values():
        r.pop("seconds")
    return table, rows(out, "manual_grading.csv")


def recorded_once(out: Path, printed: str, students: list[str]) -> None:
    """Each student has one row in scores.csv, one entry in grading.json, one line printed as recorded."""
    with open(out / "scores.csv", newline="") as f:
        assert sorted(r["student"] for r in csv.DictReader(f)) == students
    assert sorted(json.loads((out / "grading.json").read_text())) == [f"{s}/{NAME}" for s in students]
    lines = [line.split()[0] for line in printed.splitlines() if line.split()[:1] in [[s] for s in students]]
    assert sorted(lines) == students


def _kill_workers(work: Path, budget: dict[str, int], killed: dict[str, int], timeout: float = 180) -> None:
    """Each time a slow submission graded under ``work`` says it started, SIGKILL the worker process executing it
    (the test process's child above the sandbox whose options name the marker's folder), up to ``budget`` times
    each."""
    me, seen, end = os.getpid(), set(), time.monotonic() + timeout
    folders = {"/dev/shm", tempfile.gettempdir()}  # where the grader makes the sockets' folders
    while killed != budget and time.monotonic() < end:
        for marker in {Path(m) for f in folders for m in glob.glob(f"{f}/k-*/started")} - seen:
            seen.add(marker)
            for proc in psutil.Process(me).children(recursive=True):
                with contextlib.suppress(psutil.Error):
                    command = proc.cmdline()
                    if str(marker.parent) not in command or not any(a.startswith(str(work)) for a in command):
                        continue
                    # the student: the kernel's folder is <work>/course-grade-*/<student>-<notebook>-*/box
                    [student] = {m.group(1) for a in command if (m := re.search(rf"/([^/]+)-{NAME}-[^/]*/box$", a))}
                    if killed.get(student, 0) >= budget.get(student, 0):
                        break
                    while proc.ppid() != me:
                        proc = proc.parent()
                    os.kill(proc.pid, signal.SIGKILL)
                    killed[student] = killed.get(student, 0) + 1
                    break
        time.sleep(0.1)


def killing(work: Path, budget: dict[str, int]) -> tuple[threading.Thread, dict[str, int]]:
    killed: dict[str, int] = {}
    killer = threading.Thread(target=_kill_workers, args=(work, budget, killed), daemon=True)
    killer.start()
    return killer, killed


@needs_bwrap
def test_a_two_worker_local_cluster_gives_the_serial_scores_though_a_worker_dies(tmp_path, capsys):
    """The same four submissions graded with jobs=1 and on a scheduler and two worker processes on loopback; on
    the cluster, the worker executing ``a_slow`` is SIGKILLed mid-run: the scheduler runs it again on a worker.
    The same scores.csv and manual_grading.csv (all but the seconds), each student recorded once."""
    source, student_version = course(tmp_path)
    for student, (make, _) in KINDS.items():
        submit(tmp_path / "subs", student, make(student_version))
    tables = {}
    for how in ({"jobs": 1}, {"cluster": "local:2"}):
        out, work = tmp_path / f"out-{next(iter(how.values()))}", tmp_path / f"work-{next(iter(how.values()))}"
        killer, killed = killing(work, {"a_slow": 1} if "cluster" in how else {})
        grade(tmp_path / "subs", out, source_dir=source, cell_timeout=CELL_TIMEOUT, isolation="bwrap",
              warm_up=False, work_dir=work, **how)
        killer.join(timeout=1)
        printed = capsys.readouterr().out
        assert killed == ({"a_slow": 1} if "cluster" in how else {})
        recorded_once(out, printed, sorted(KINDS))
        tables[str(how)] = graded(out)
    serial, clustered = tables.values()
    assert clustered == serial
    assert {s: r["points"] for s, r in clustered[0].items()} == {s: p for s, (_, p) in KINDS.items()}
    assert clustered[0]["a_correct"]["needs_manual_grading"] == f"{QUESTION} (2 points)"
    assert "cluster local:2: scheduler tcp://127.0.0.1:" in printed  # loopback only


# a correct `square` that first checks that the course's own notebooks (the hidden tests) are hidden from it: its
# cell fails, and 3 points are lost, if the kernel can list them
PEEKS = ("CELL:from course_lib.config import REPO_ROOT\n"
         "assert not (REPO_ROOT / 'notebooks').exists(), 'the course notebooks are visible'\n"
         "def square(x):\n    return x * x")


@needs_bwrap
def test_a_student_the_engine_gives_up_on_is_not_graded_never_zero(tmp_path, capsys):
    """No worker death allowed: the worker executing ``a_slow`` is killed, the scheduler gives up on it
    (KilledWorker): not graded, saying why. ``b_peeks``, next on the restarted worker, keeps its score, and its
    kernel does not see the worker's copy of the course notebooks (hidden though the grader's --source is
    another folder)."""
    import dask

    source, student_version = course(tmp_path)
    subs, out, work = tmp_path / "subs", tmp_path / "out", tmp_path / "work"
    submit(subs, "a_slow", KINDS["a_slow"][0](student_version))
    submit(subs, "b_peeks", answer(student_version, square=PEEKS, mean="return sum(xs) / len(xs)"))
    killer, killed = killing(work, {"a_slow": 1})
    with dask.config.set({"distributed.scheduler.allowed-failures": 0}):
        scores = grade(subs, out, source_dir=source, cell_timeout=CELL_TIMEOUT, isolation="bwrap", warm_up=False,
                       work_dir=work, cluster="local:1")
    killer.join(timeout=1)
    assert killed == {"a_slow": 1}
    recorded_once(out, capsys.readouterr().out, ["a_slow", "b_peeks"])
    assert [(s.student, s.points) for s in scores] == [("a_slow", None), ("b_peeks", 4)]
    table = rows(out)
    assert (table["a_slow"]["points"], table["b_peeks"]["points"]) == ("", "4")
    assert table["a_slow"]["failures"].startswith(f"{NOT_GRADED}: KilledWorker")
    assert "not graded yet" in (out / "feedback" / "a_slow" / f"{NAME}.md").read_text()


class _NoBwrap:
    """course_lib.tools.sandbox as a worker without bubblewrap sees it."""

    @staticmethod
    def bwrap_problem() -> str:
        return "bubblewrap (bwrap) is not installed (test)"


@needs_bwrap
def test_a_worker_that_cannot_isolate_grades_nobody(tmp_path, monkeypatch):
    """A worker whose machine lacks bubblewrap (a worker in this process, told so) runs no submission: not
    graded, saying why, never a 0."""
    monkeypatch.setattr(engine, "sandbox", _NoBwrap)
    source, subs = unreleased(tmp_path)
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=False, protocol="tcp://",
                                  host="127.0.0.1", dashboard_address=None) as cluster:
        [score] = grade(subs, tmp_path / "out", source_dir=source, cell_timeout=CELL_TIMEOUT, isolation="bwrap",
                        warm_up=False, cluster=cluster.scheduler_address)
    assert score.points is None
    assert score.failures == [f"{NOT_GRADED}: the worker on {socket.gethostname()} cannot grade safely: "
                              "bubblewrap (bwrap) is not installed (test)"]
    assert rows(tmp_path / "out")["ann"]["points"] == ""


# ------------------------------------------------------------------ bad input, nothing to connect to


@pytest.mark.parametrize("spec", ["local:0", "local:", "local:two", "local: 2", "tcp://host", "tcp://:8786",
                                  "udp://host:8786", "tcp://host:70000", "host:8786", ""])
def test_a_malformed_cluster_is_refused_before_any_work(tmp_path, spec):
    with pytest.raises(ValueError, match=r"cluster: expected 'local:N' .* or 'tcp://HOST:PORT'"):
        grade(tmp_path / "no-such-folder", tmp_path / "out", cluster=spec)
    assert not (tmp_path / "out").exists()


def test_cluster_arguments_are_checked(tmp_path, capsys):
    with pytest.raises(TypeError, match="cluster: expected"):
        grade(tmp_path, tmp_path / "out", cluster=2)
    with pytest.raises(ValueError, match="cluster timeout: expected seconds > 0"):
        grade(tmp_path, tmp_path / "out", cluster="local:2", cluster_timeout=0)
    assert engine.parse("tcp://10.0.0.5:8786") == engine.Cluster("tcp://10.0.0.5:8786", address="tcp://10.0.0.5:8786")
    assert engine.parse("local:3", 5).workers == 3
    with pytest.raises(SystemExit) as e:
        cli_main(["grade", "anywhere", "--cluster", "local:zero"])
    assert e.value.code == 2 and "expected 'local:N'" in capsys.readouterr().err


def test_an_unreachable_scheduler_is_a_clear_error_within_the_timeout(tmp_path):
    source, subs = unreleased(tmp_path)
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        address = f"tcp://127.0.0.1:{s.getsockname()[1]}"
    start = time.monotonic()
    with pytest.raises(GradingError, match=f"cannot reach the scheduler at {address} within 2 s"):
        grade(subs, tmp_path / "out", source_dir=source, warm_up=False, cluster=address,
              cluster_timeout=2)
    assert time.monotonic() - start < 20
    assert not (tmp_path / "out" / "scores.csv").exists()


def test_a_scheduler_without_workers_is_a_clear_error_within_the_timeout(tmp_path):
    source, subs = unreleased(tmp_path)
    with distributed.LocalCluster(n_workers=0, processes=False, protocol="tcp://", host="127.0.0.1",
                                  dashboard_address=None) as cluster:
        start = time.monotonic()
        with pytest.raises(GradingError, match="no worker joined the scheduler at tcp://127.0.0.1:.* within 2 s"):
            grade(subs, tmp_path / "out", source_dir=source, warm_up=False,
                  cluster=cluster.scheduler_address, cluster_timeout=2)
        assert time.monotonic() - start < 20


def test_a_cluster_needs_isolated_kernels(tmp_path):
    source, subs = unreleased(tmp_path)
    with pytest.raises(GradingError, match="--cluster needs isolated kernels: isolation turned off"):
        grade(subs, tmp_path / "out", source_dir=source, isolation="none", cluster="local:1")
