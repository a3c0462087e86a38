"""Executing one submission: a fresh folder, an isolated and limited kernel, nbgrader's autograde, one retry.

:func:`execute_submission` reads a submitted notebook and runs it with nbgrader's autograde in a folder of its own,
built from :class:`Inputs`, the copies the grader holds in memory (the source notebook, nbgrader's gradebook of the
assignment before any student, the warm-up's cache), so that no submission can change what the next one is graded
with. Its kernel runs isolated (``course_lib.tools.sandbox``: bubblewrap; it sees the system, the Python environment
and the course's code and data, read-only, and nothing else: no answers, no gradebook, no other submission, no
network) when the OS allows, and under limits of memory, processes, CPU time and disk (``course_lib.tools.limits``)
when cgroups can be made. Without isolation, the Python environment is compared after every student, and grading
stops if it changed. A failure of the grader itself (a kernel that hangs idle, nbgrader crashing) is retried once,
then reported as "not graded: grader error", never as a student's 0. It writes nothing shared: what it returns
(:class:`Executed`) is recorded by the grading process (``grading.py``), whether it ran there, in a worker process
(``--jobs``) or on a cluster's worker (``cluster.py``).

:func:`warm_up_cache` runs the instructor's notebook once, before the students: its cache (checkpoints, baselines)
seeds every submission's, so that training cells reload instead of retrain, and a test that the solution itself
fails is reported.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import nbformat
from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel
from jupyter_core.paths import jupyter_path
from nbclient import NotebookClient
from nbclient.exceptions import DeadKernelError

from course_lib.config import PROFILE_ENV, environ
from course_lib.tools import sandbox
from course_lib.tools.limits import CpuWatch, KernelCgroup, Limits, launcher, reasons
from course_lib.tools.nbgrader_setup import Gradebook, cell_errors, nbgrader_api
from course_lib.tools.submissions import NOT_GRADED, Submission, read_submission
from course_lib.tools.watchdog import ClientWatch
from course_lib.widgets import HEADLESS_ENV


class GraderFailure(RuntimeError):
    """The grading machinery failed on one submission (a hang, nbgrader crashing): retried, never the student's 0."""


def _kernel_env(profile: str, cache: Path, home: Path) -> dict[str, str]:
    """A kernel's environment: the profile, its own cache, and its own home and IPython/matplotlib folders
    (``home``) and no user site-packages, so that nothing a former kernel wrote in the user's home folder is read."""
    # One thread per kernel: on a shared CPU, torch's thread pool is many times slower than one thread.
    # JUPYTER_PATH: the kernel specs of this machine stay found with the kernel's own home
    return {PROFILE_ENV: profile, "COURSE_CACHE": str(cache), "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
            "JUPYTER_PATH": os.pathsep.join(jupyter_path()),
            HEADLESS_ENV: "1",  # the course's widgets draw plain figures
            "MPLBACKEND": "Agg", "HOME": str(home), "IPYTHONDIR": str(home / "ipython"),
            "MPLCONFIGDIR": str(home / "matplotlib"), "XDG_CACHE_HOME": str(home / "cache"), "TMPDIR": str(home / "tmp"), "PYTHONNOUSERSITE": "1"}


DEFAULT_KERNEL = "python3"


def kernel_of(nb) -> str:
    """The kernel a notebook runs in: its kernelspec's name, else ``python3``."""
    return nb.metadata.get("kernelspec", {}).get("name") or DEFAULT_KERNEL


def kernel_problem(name: str) -> str:
    """'' if the kernel ``name`` is installed here, else why it cannot run."""
    try:
        KernelSpecManager().get_kernel_spec(name)
    except NoSuchKernel:
        found = sorted(KernelSpecManager().find_kernel_specs())
        return (f"no kernel named {name!r} is installed here (installed: {', '.join(found) or 'none'}); install it "
                f"(python -m ipykernel install --user --name {name}) or name another (--kernel)")
    return ""


def warm_up_cache(name: str, source: bytes, folder: Path, profile: str, timeout: float,
                  kernel: str = DEFAULT_KERNEL) -> dict[str, bytes]:
    """Execute the instructor's notebook; return its cache (relative path -> bytes), which seeds every
    submission's. A hang of the machinery is retried once; then the students start from what was cached."""
    cache = folder / "cache"
    start = time.perf_counter()
    for attempt in (1, 2):
        nb = nbformat.reads(source.decode("utf-8"), as_version=4)
        run = folder / f"run{attempt}"
        run.mkdir(parents=True)
        (folder / f"home{attempt}" / "tmp").mkdir(parents=True)
        with environ(**_kernel_env(profile, cache, folder / f"home{attempt}")):
            client = NotebookClient(nb, timeout=timeout, kernel_name=kernel, allow_errors=True,
                                    resources={"metadata": {"path": str(run)}})
            watch = ClientWatch(client, "the instructor's notebook")
            try:
                client.execute()
                break
            except DeadKernelError as e:
                if not watch.verdict:
                    print(f"warning: the instructor's {name} stopped: {type(e).__name__}: {e}", file=sys.stderr)
                    break
                print(f"warning: the instructor's {name} hung (grader machinery, {watch.verdict}); "
                      f"{'running it again' if attempt == 1 else 'the students start from what it cached'}",
                      file=sys.stderr, flush=True)
            except Exception as e:  # a broken source notebook: the students' runs will show it too
                print(f"warning: the instructor's {name} stopped: {type(e).__name__}: {e}", file=sys.stderr)
                break
            finally:
                watch.stop()
    errors = cell_errors(nb)
    failed = [c.metadata["nbgrader"].get("grade_id", str(i)) for i, c in enumerate(nb.cells)
              if i in errors and c.metadata.get("nbgrader", {}).get("grade")]
    if failed:
        print(f"warning: the instructor's solution of {name} fails {', '.join(failed)} under the {profile!r} "
              "profile: every student loses these points", file=sys.stderr)
    print(f"{'(instructor)':20s} {name:32s} warm-up {time.perf_counter() - start:5.1f}s", flush=True)
    return {str(p.relative_to(cache)): p.read_bytes() for p in sorted(cache.rglob("*")) if p.is_file()} \
        if cache.is_dir() else {}


@dataclass
class Inputs:
    """What grading one notebook needs, held in memory so that no submission can change it for the next one."""

    name: str
    source: bytes  # the instructor's notebook
    gradebook: bytes  # nbgrader's gradebook with the assignments registered, before any student
    cache: dict[str, bytes]  # the warm-up's cache
    order: list[str]  # test ids in cell order
    manual: set[str] = field(default_factory=set)  # ids of the cells graded by hand (written answers)
    kernel: str = DEFAULT_KERNEL  # the kernel it runs in


@dataclass
class Run:
    """One grading run: where things are, how kernels run, and what is checked between students."""

    tmp: Path
    out: Path
    db: Path
    profile: str
    cell_timeout: float
    sandbox: bool  # kernels isolated with bwrap
    limits: Limits | None  # what one kernel may use (None: --limits off)
    cgroups: bool  # memory, process and CPU limits enforced (cgroups could be made)
    env_roots: list[Path]
    env_before: dict = field(default_factory=dict)
    broken: str = ""  # set once the environment changed under a kernel that was not isolated
    late: dict = field(default_factory=dict)  # the late-penalty configuration (an nbgrader course folder's)


def write_tree(root: Path, files: dict[str, bytes]) -> None:
    for rel, data in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)


def _attempt(sub: Submission, nb, inputs: Inputs, run: Run):
    """Grade one submission once, in a fresh folder built from ``inputs``. Returns (test id -> points, the executed
    notebook, the feedback HTML or None, the limits it hit, what it used); raises GraderFailure when the machinery
    failed."""
    root = Path(tempfile.mkdtemp(prefix=f"{sub.student}-{sub.notebook}-", dir=run.tmp))
    # the sockets: short (a Unix socket's path has at most 107 bytes), and in RAM where it can be, so that what a
    # kernel writes there counts towards its memory limit instead of filling a disk
    shm = Path("/dev/shm")
    ipc = Path(tempfile.mkdtemp(prefix="k-", dir=shm if shm.is_dir() and os.access(shm, os.W_OK) else None))
    cgroup = watch = None
    try:
        name, student = inputs.name, sub.student
        write_tree(root, {f"source/{name}/{name}.ipynb": inputs.source, "gradebook.db": inputs.gradebook})
        write_tree(root / "cache", inputs.cache)
        (root / "submitted" / student / name).mkdir(parents=True)
        nbformat.write(nb, root / "submitted" / student / name / f"{name}.ipynb")
        if sub.timestamp:  # nbgrader records it, and its late penalty against the due date, in the gradebook
            (root / "submitted" / student / name / "timestamp.txt").write_text(sub.timestamp, encoding="utf-8")
        for folder in ("autograded", "cache", "home", "home/tmp", "box/home"):  # (box/home: for the grader's IPython)
            (root / folder).mkdir(parents=True, exist_ok=True)
        if run.cgroups:
            cgroup = KernelCgroup(run.limits)
            watch = CpuWatch(cgroup).start()
        kernel = {"launcher": launcher(cgroup, run.limits)} if run.sandbox or cgroup else {}
        cache, home = root / "cache", root / "home"
        if run.sandbox:  # the kernel's cache, home and working folder live in a bounded tmpfs, ``box``
            cache, home = root / "box" / "cache", root / "box" / "home"
            kernel.update(transport="ipc", connection_file=str(ipc / "kernel.json"), sandbox=sandbox.kernel_sandbox(
                root / "box", root / "cache", ipc, run.limits.disk_mb if run.limits else None))
        api = nbgrader_api(root, root / "gradebook.db", run.cell_timeout, kernel, inputs.kernel, run.late)
        with environ(**_kernel_env(run.profile, cache, home)):
            result = api.autograde(name, student)
        if watch is not None:
            watch.stop()
        executed = root / "autograded" / student / name / f"{name}.ipynb"
        if not result.get("success") or not executed.exists():
            log = result.get("log", "") + result.get("error", "")
            hang = re.findall(r"NotebookHang: (.*)$", log, flags=re.M)
            if hang:
                raise GraderFailure(hang[-1][:300])
            errors = [e for e in re.findall(r"^\s*([\w.]+(?:Error|Exception): .*)$", log, flags=re.M)  # tracebacks'
                      if "NbGraderException" not in e] or re.findall(r"^\s*([\w.]+Exception: .*)$", log, flags=re.M)
            raise GraderFailure("nbgrader autograde failed" + (f": {errors[-1][:300]}" if errors else ""))
        html = root / "feedback" / student / name / f"{name}.html"
        page = html.read_bytes() if api.generate_feedback(name, student).get("success") and html.exists() else None
        with Gradebook(f"sqlite:///{root / 'gradebook.db'}") as gb:
            graded = gb.find_submission_notebook(name, name, student)
            # a written answer left as released: nbgrader scores it 0 itself; any other needs a person (None)
            points = {g.name: None if g.needs_manual_grade else (g.score or 0.0) for g in graded.grades}
        executed = nbformat.read(executed, as_version=4)
        hits = reasons(cgroup, watch, run.limits, _outputs_text(executed), run.sandbox) if run.limits else []
        usage = {"peak_memory_mb": round(cgroup.peak_memory_mb(), 1), "cpu_seconds": round(cgroup.cpu_seconds(), 1),
                 "peak_processes": watch.peak_processes} if cgroup is not None else {}
        return points, executed, page, hits, usage
    finally:
        if watch is not None:
            watch.stop()
        if cgroup is not None:
            cgroup.close()
        shutil.rmtree(root, ignore_errors=True)
        shutil.rmtree(ipc, ignore_errors=True)


def _outputs_text(nb) -> str:
    """Every text a notebook's cells printed or raised (streams, errors, plain-text results), joined."""
    texts = []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            texts += [str(out.get("text", "")), str(out.get("evalue", "")),
                      str(out.get("data", {}).get("text/plain", ""))]
    return "\n".join(texts)


@dataclass
class Executed:
    """A submission executed (or not): what ``grading._grade_one`` records. Made in a worker process with ``--jobs``."""

    points: dict[str, float | None]
    executed: object  # the executed notebook, or None
    page: bytes | None  # nbgrader's feedback HTML
    why: str  # '' or why it was not graded / was refused
    notes: list[str]  # what the machinery did (retries)
    seconds: float
    limits: list[str] = field(default_factory=list)  # the resource limits it hit, said for the student
    usage: dict[str, float] = field(default_factory=dict)  # what its kernel used


def not_executed(why: str) -> Executed:
    """A submission the grader could not execute (a worker failed, a cluster lost): never the student's 0."""
    return Executed({}, None, None, f"{NOT_GRADED}: {why}", [], 0.0)


def execute_submission(sub: Submission, inputs: Inputs, run: Run) -> Executed:
    """Read and execute one submission (a machinery failure is retried once); touches no gradebook but its own."""
    start = time.perf_counter()
    nb, why = read_submission(sub.path)
    executed, page, points, notes, hits, usage = None, None, {}, [], [], {}
    if not why:
        for attempt in (1, 2):
            if run.broken:
                why = f"{NOT_GRADED}: {run.broken}"
                break
            try:
                points, executed, page, hits, usage = _attempt(sub, nb, inputs, run)
                why = ""
            except GraderFailure as e:
                why = f"{NOT_GRADED}: {e}"
                notes.append(f"try {attempt}: {e}" + ("; graded again" if attempt == 1 else ""))
            refused = _check_environment(run, sub)
            if refused or not why:
                why = refused
                break
    return Executed(points, executed, page, why, notes, time.perf_counter() - start, hits, usage)


def _check_environment(run: Run, sub: Submission) -> str:
    """Without isolation: '' if the Python environment and the course's code are as before the student, else
    why grading cannot go on (and every later student is not graded)."""
    if run.sandbox or run.broken:
        return ""
    changed = sandbox.changes(run.env_before, sandbox.fingerprint(run.env_roots))
    if changed:
        run.broken = (f"the Python environment or the course's code changed while {sub.student}'s {sub.notebook} "
                      f"ran ({len(changed)} paths, e.g. {', '.join(changed[:3])}); reinstall it, then grade again")
        shout(f"GRADING STOPPED: {run.broken}")
        return f"refused: the submission changed files outside its folder ({', '.join(changed[:3])})"
    return ""


def shout(text: str) -> None:
    bar = "!" * 100
    print(f"{bar}\n{text}\n{bar}", file=sys.stderr, flush=True)
