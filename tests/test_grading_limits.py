"""Resource limits per kernel: a submission that takes memory, processes, disk or CPU costs its own points and
nothing else, and its feedback says which limit it hit; a correct student graded beside it gets full marks.

Every hostile cell here bounds itself (it stops at a size or a count well above the test's limit), so that a
broken limit costs the test, not the machine."""

import subprocess
import sys
import textwrap
import warnings

import pytest
from test_grading import MEAN_DEF, NAME, RIGHT, answer, tiny_notebook
from test_grading_isolation import make_course, needs_bwrap, rows, submit

from course_lib.tools import limits as L
from course_lib.tools.cli import main as cli_main
from course_lib.tools.grading import grade
from course_lib.tools.submissions import GradingError

CGROUP_PROBLEM = L.cgroup_problem()
if CGROUP_PROBLEM:
    warnings.warn(f"GRADING LIMITS NOT TESTED: {CGROUP_PROBLEM}. CI runs as root, where they can be set.",
                  stacklevel=1)
needs_cgroups = pytest.mark.skipif(bool(CGROUP_PROBLEM), reason=f"GRADING LIMITS NOT TESTED: {CGROUP_PROBLEM}")

# small enough for a test, large enough for a kernel that imports math (measured: about 60 MB, 10 threads)
TEST_LIMITS = L.Limits(memory_mb=320, processes=40, cpu_seconds=12, cpu_cores=1, disk_mb=48)

def cell(code: str) -> str:
    """A solution cell: ``code`` (the hostile part), then the right ``mean``: a limit that stops ``code`` costs
    the mean's points, one that does not stop it costs nothing."""
    return "CELL:" + textwrap.dedent(code) + "\n" + MEAN_DEF


HOG = cell("""\
    blocks = []
    for _ in range(40):  # 40 x 64 MB = 2.5 GB, written (not just reserved), at most
        blocks.append(b"x" * (64 * 2**20))
    """)
FORKS = cell("""\
    import os, time
    children = []
    for _ in range(120):  # at most 120 children, each sleeping 20 s
        pid = os.fork()
        if pid == 0:
            time.sleep(20)
            os._exit(0)
        children.append(pid)
    """)
DISK = cell("""\
    with open("filler.bin", "wb") as f:
        for _ in range(256):  # 256 MB at most
            f.write(b"x" * 2**20)
    """)
SPIN = cell("""\
    import subprocess, sys, time
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])  # beside the cells, not in one
    time.sleep(30)  # the CPU-time limit (12 s) stops everything before this ends
    """)


@needs_bwrap
@needs_cgroups
def test_each_limit_costs_its_submission_alone(tmp_path):
    """Four hostile submissions and a correct one, graded two at a time: the correct one gets 6/6, each hostile one
    the 3 points of ``square`` (before its hostile cell) and a reason naming its limit."""
    student_version = make_course(tmp_path / "course", tiny_notebook())
    subs, out = tmp_path / "subs", tmp_path / "out"
    for student, mean in [("a_correct", RIGHT["mean"]), ("m_memory", HOG), ("f_forks", FORKS), ("d_disk", DISK),
                          ("s_spinner", SPIN)]:
        submit(subs, student, answer(student_version, square=RIGHT["square"], mean=mean))
    scores = {s.student: s for s in grade(subs, out, source_dir=tmp_path / "course" / "source", warm_up=False,
                                          cell_timeout=60, isolation="bwrap", jobs=2, limits=TEST_LIMITS,
                                          enforce_limits="required")}
    correct = scores.pop("a_correct")
    assert (correct.points, correct.max_points, correct.failures) == (6, 6, []), correct
    assert 0 < correct.usage["peak_memory_mb"] < TEST_LIMITS.memory_mb and correct.usage["cpu_seconds"] > 0
    expected = {"m_memory": f"more than its {TEST_LIMITS.memory_mb} MB of memory",
                "f_forks": f"more than {TEST_LIMITS.processes} processes and threads",
                "d_disk": f"a writable folder (its working folder, /tmp or /dev/shm) was full: each holds at most "
                          f"{TEST_LIMITS.disk_mb} MB",
                "s_spinner": f"more than {TEST_LIMITS.cpu_seconds:g} s of CPU time"}
    for student, reason in expected.items():
        score = scores[student]
        assert (score.points, score.max_points) == (3, 6), (student, score)
        said = [f for f in score.failures if f.startswith("limit:")]
        assert len(said) == 1 and reason in said[0], (student, score.failures)
        feedback = (out / "feedback" / student / f"{NAME}.md").read_text()
        assert reason in feedback, (student, feedback)
        assert reason in rows(out)[student]["failures"]
    assert scores["m_memory"].usage["peak_memory_mb"] <= TEST_LIMITS.memory_mb + 1
    assert scores["f_forks"].usage["peak_processes"] <= TEST_LIMITS.processes
    # stopped once past the limit (the usage is rounded to 0.1 s), within the watch's few polls
    assert TEST_LIMITS.cpu_seconds - 0.1 <= scores["s_spinner"].usage["cpu_seconds"] < TEST_LIMITS.cpu_seconds + 5
    print({s: sc.usage for s, sc in {**scores, "a_correct": correct}.items()})


@needs_cgroups
def test_a_kernel_cgroup_enforces_memory_and_processes_and_is_removed():
    """The launcher puts a process into its cgroups: past the memory limit it is killed (and the cgroup says so),
    past the process limit a fork fails; closing kills what is left and removes the cgroups."""
    cgroup = L.KernelCgroup(L.Limits(memory_mb=128, processes=12))
    try:
        hog = subprocess.run([*L.launcher(cgroup, None), sys.executable, "-c",
                              "b = [b'x' * 2**26 for _ in range(8)]"], capture_output=True, timeout=60)
        assert hog.returncode == -9 and cgroup.out_of_memory()
        forks = subprocess.run([*L.launcher(cgroup, None), sys.executable, "-c", textwrap.dedent("""\
            import os, time
            for n in range(40):
                try:
                    if os.fork() == 0:
                        os.closerange(0, 3)  # (the test reads the parent's output to its end)
                        time.sleep(30)
                        os._exit(0)
                except OSError:
                    print(n)
                    break""")], capture_output=True, text=True, timeout=60)
        assert 0 < int(forks.stdout) < 12 and cgroup.forks_refused() >= 1
        assert len(cgroup.pids()) >= 1  # the sleeping children, still there
        dirs = list(cgroup.dirs.values())
    finally:
        cgroup.close()
    assert dirs and not any(d.exists() for d in dirs)


@needs_cgroups
def test_the_launcher_bounds_file_size_and_ignores_sigint(tmp_path):
    big = subprocess.run([*L.launcher(None, L.Limits(disk_mb=1)), sys.executable, "-c",
                          f"open({str(tmp_path / 'f')!r}, 'wb').write(b'x' * 2**21)"],
                         capture_output=True, text=True, timeout=60)
    assert big.returncode == 1 and "File too large" in big.stderr
    ignored = subprocess.run([*L.launcher(None, None), sys.executable, "-c",
                              "import signal; print(signal.getsignal(signal.SIGINT) == signal.SIG_IGN)"],
                             capture_output=True, text=True, timeout=60)
    assert ignored.stdout.strip() == "True"


@pytest.mark.parametrize("field, bad", [("memory_mb", 0), ("processes", 2), ("cpu_seconds", float("inf")),
                                        ("cpu_cores", -1), ("disk_mb", "512"), ("memory_mb", True)])
def test_bad_limits_are_refused(field, bad):
    with pytest.raises(ValueError, match=f"limits: {field} must be a number"):
        L.Limits(**{field: bad})


def test_bad_limits_from_the_command_line_are_refused_before_any_work(tmp_path, capsys):
    assert cli_main(["grade", str(tmp_path / "nothing-here"), "--memory-mb", "0"]) == 2
    assert "grading refused: limits: memory_mb must be a number >= 64, got 0" in capsys.readouterr().err


def test_required_limits_refuse_to_grade_where_they_cannot_be_set(tmp_path, monkeypatch, capsys):
    """'required' refuses before any student; 'auto' grades and says loudly that nothing is limited."""
    monkeypatch.setattr("course_lib.tools.grading.cgroup_problem", lambda: "cgroup v2 alone")
    student_version = make_course(tmp_path / "course", tiny_notebook())
    submit(tmp_path / "subs", "b", answer(student_version, **RIGHT))
    with pytest.raises(GradingError, match="--limits required: cgroup v2 alone"):
        grade(tmp_path / "subs", tmp_path / "out", source_dir=tmp_path / "course" / "source",
              enforce_limits="required", warm_up=False)
    assert not (tmp_path / "out" / "scores.csv").exists()
    [score] = grade(tmp_path / "subs", tmp_path / "out", source_dir=tmp_path / "course" / "source", warm_up=False,
                    cell_timeout=30)
    assert (score.points, score.max_points) == (6, 6)
    assert "NO memory, process or CPU-time limits on the submissions' kernels: cgroup v2 alone" in \
        capsys.readouterr().err
    with pytest.raises(ValueError, match="enforce_limits: expected one of"):
        grade(tmp_path / "subs", tmp_path / "out", enforce_limits="yes")
