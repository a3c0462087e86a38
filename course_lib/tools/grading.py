"""Homework grading: :func:`grade` autogrades every submitted notebook with nbgrader, one process recording.

Exercises live in the course notebooks themselves, in nbgrader's format (see ``docs/exercises.md``): solution
regions, visible test cells, hidden tests, points. Every notebook is one nbgrader *assignment*, named after its file.
The jobs of grading, one module each:

* ``release.py``: the course notebooks as assignments, and the student versions (``make release``);
* ``submissions.py``: the submitted notebooks, found and checked; a :class:`Score` per notebook;
* ``nbgrader_setup.py``: nbgrader, hardened (a dead or looping kernel costs cells, not the notebook; outputs cut;
  feedback without the hidden tests);
* ``execute.py``: one submission executed in a fresh folder, its kernel isolated and limited, retried once when the
  machinery fails; the instructor's warm-up;
* ``gradebook.py``: the gradebook, feedback, ``scores.csv``, ``grading.json``, and the grades given by hand;
* here: :func:`grade`, the run: it checks the options, decides isolation and limits (and says loudly when it cannot
  have them), runs the warm-ups, has the submissions executed (here, in ``jobs`` worker processes, or on a Dask
  cluster: ``cluster.py``) and records each result as it comes, this process alone writing the gradebook.

:func:`grade` runs ``nbgrader autograde`` on every submitted notebook under the ``grade`` profile, with a per-cell
timeout, and keeps the scores in nbgrader's gradebook (SQLite, in ``grades/``, kept between runs and by
``make clean``); it writes ``scores.csv`` (every student ever graded) and per-student feedback beside it. Written
answers (nbgrader's manually graded cells) wait for a person: ``gradebook.record_manual_grades`` records their points.

One submission cannot change another's grade: each is executed from the grader's in-memory copies, its kernel
isolated when the OS allows (``execute.py``). Before the students, the instructor's notebook runs once under the same
profile: its cache seeds every submission's.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import multiprocessing
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import nbformat

from course_lib.config import PROFILES
from course_lib.tools import sandbox
from course_lib.tools.execute import (
    Executed,
    Inputs,
    Run,
    execute_submission,
    not_executed,
    shout,
    warm_up_cache,
    write_tree,
)
from course_lib.tools.extras import require
from course_lib.tools.gradebook import (
    GRADING_DIR,
    load_log,
    maximum_points,
    one_run_at_a_time,
    record_points,
    save_log,
    score_and_feedback,
    stored_grades,
    write_feedback,
    write_scores,
    written_answers,
)
from course_lib.tools.limits import MODES as LIMIT_MODES
from course_lib.tools.limits import Limits, cgroup_problem
from course_lib.tools.nbgrader_setup import check_success, nbgrader_api, tools_on_path
from course_lib.tools.release import SOURCE_DIR, course_notebooks
from course_lib.tools.submissions import (
    NOT_GRADED,
    STUDENT_ID,
    GradingError,
    Score,
    Submission,
    find_submissions,
    grade_ids,
    manual_ids,
)

ISOLATION = ("auto", "bwrap", "none")


def _grade_one(sub: Submission, inputs: Inputs, run: Run, previous: dict | None = None,
               done: Executed | None = None) -> Score:
    """Grade one submission (or record ``done``, executed by a worker): gradebook, feedback, Score. ``previous``:
    its last entry in the grading log (the written answers graded before)."""
    start = time.perf_counter()
    score = Score(sub.student, sub.notebook, grader=["isolated (bwrap)" if run.sandbox else "NOT isolated"])
    feedback_dir = run.out / "feedback" / sub.student
    for old in (feedback_dir / f"{sub.notebook}.md", feedback_dir / f"{sub.notebook}.html"):
        old.unlink(missing_ok=True)
    maxima = maximum_points(run.db, sub.notebook)
    order = {gid: i for i, gid in enumerate(inputs.order)}
    kept = run.db.read_bytes()  # without isolation a kernel can reach the gradebook: compared after it
    ran = time.perf_counter()
    result = done or execute_submission(sub, inputs, run)
    ran = time.perf_counter() - ran
    points, executed, page, why = result.points, result.executed, result.page, result.why
    score.grader += result.notes
    score.usage = result.usage
    if run.db.read_bytes() != kept:
        run.db.write_bytes(kept)
        why = (why + "; " if why.startswith("refused") else "refused: ") + \
            "the submission changed the gradebook (restored as it was before it)"
    if why.startswith(NOT_GRADED):  # never a 0: the gradebook keeps what it had, the CSV says why
        score.points, score.failures = None, [why]
        score.max_points = sum(maxima.values())
        write_feedback(feedback_dir, sub.notebook, f"# {sub.notebook} ({sub.student}): not graded yet\n\n"
                       "The grader failed on this submission (not your work's fault); it will be graded again.\n")
    else:
        if why:
            score.failures.append(why)
            points = {}
        score.failures += result.limits  # (the points earned before a limit stopped the kernel stay)
        score.answers = written_answers(executed, inputs.manual) if executed is not None and not why else {}
        before = (previous or {}).get("answers", {})
        changed = {q for q, text in score.answers.items() if q in before and before[q] != text}
        record_points(run.db, sub.notebook, sub.student, points, changed)
        stored = stored_grades(run.db, sub.notebook, sub.student)
        grades = {gid: stored.get(gid, (0.0, m, False))
                  for gid, m in sorted(maxima.items(), key=lambda kv: order.get(kv[0], len(order)))}
        score_and_feedback(score, grades, executed, feedback_dir)
        if page is not None:
            (feedback_dir / f"{sub.notebook}.html").write_bytes(page)
    score.seconds = round(time.perf_counter() - start - ran + result.seconds, 1)
    return score


_WORKER: dict = {}  # in a worker process: what every submission needs (sent once, when the worker starts)


def _pool(jobs: int, initializer=None, initargs=()) -> concurrent.futures.ProcessPoolExecutor:
    """``jobs`` worker processes, started fresh (spawn: no copy of this process's threads or open gradebook)."""
    return concurrent.futures.ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn"),
                                                  initializer=initializer, initargs=initargs)


def _worker_init(inputs: dict[str, Inputs], run: Run) -> None:
    _WORKER.update(inputs=inputs, run=run)


def _worker_execute(sub: Submission) -> Executed:
    return execute_submission(sub, _WORKER["inputs"][sub.notebook], _WORKER["run"])


def _pooled(subs: list[Submission], inputs: dict[str, Inputs], run: Run, jobs: int) \
        -> Iterator[tuple[Submission, Executed]]:
    """Execute ``subs`` in ``jobs`` worker processes; yield each with what its worker returned, as they finish."""
    with _pool(jobs, _worker_init, (inputs, run)) as pool:
        futures = {pool.submit(_worker_execute, sub): sub for sub in subs}
        for future in concurrent.futures.as_completed(futures):
            try:
                done = future.result()
            except Exception as e:  # the worker process itself failed
                done = not_executed(f"{type(e).__name__}: {e}")
            yield futures[future], done


def _warm_up_args(args: tuple) -> dict[str, bytes]:
    return warm_up_cache(*args)


def _warm_ups(args: dict[str, tuple], jobs: int) -> dict[str, dict[str, bytes]]:
    """Every notebook's warm-up (name -> cache), ``jobs`` at a time."""
    if jobs == 1 or len(args) < 2:
        return {name: warm_up_cache(*a) for name, a in args.items()}
    with _pool(min(jobs, len(args))) as pool:
        return dict(zip(args, pool.map(_warm_up_args, args.values()), strict=True))


def _isolation(isolation: str) -> tuple[bool, str]:
    """(isolate kernels?, why not) for ``isolation`` in ISOLATION."""
    if isolation == "none":
        return False, "isolation turned off (--isolation none)"
    problem = sandbox.bwrap_problem()
    if problem and isolation == "bwrap":
        raise GradingError(f"--isolation bwrap: {problem}")
    return not problem, problem


def _limits(mode: str) -> tuple[bool, str]:
    """(set memory, process and CPU limits with cgroups?, why not) for ``mode`` in LIMIT_MODES."""
    if mode == "off":
        return False, "limits turned off (--limits off)"
    problem = cgroup_problem()
    if problem and mode == "required":
        raise GradingError(f"--limits required: {problem}")
    return not problem, problem


def check_cell_timeout(cell_timeout) -> float:
    """``cell_timeout`` as seconds > 0 (nbclient reads 0 or less as 'no timeout': never accepted)."""
    if isinstance(cell_timeout, bool) or not isinstance(cell_timeout, (int, float)):
        raise TypeError(f"cell_timeout: expected a number of seconds, got {type(cell_timeout).__name__}")
    if not 0 < cell_timeout < float("inf"):
        raise ValueError(f"cell_timeout: expected seconds > 0 (0 or less would mean no timeout at all), "
                         f"got {cell_timeout}")
    return cell_timeout


def grade(submissions: str | Path, out: str | Path = GRADING_DIR, source_dir: str | Path = SOURCE_DIR,
          cell_timeout: float = 120, profile: str = "grade", work_dir: str | Path | None = None,
          warm_up: bool = True, isolation: str = "auto", jobs: int = 1, limits: Limits | None = None,
          enforce_limits: str = "auto", cluster: str | None = None, cluster_timeout: float = 120) -> list[Score]:
    """Autograde every notebook in ``submissions``; keep ``out/gradebook.db`` and ``out/grading.json`` (the
    failures), write ``out/scores.csv`` (every student ever graded into ``out``) and
    ``out/feedback/<student>/<notebook>.md`` (+ ``.html``). Returns this run's scores.

    ``isolation``: ``"auto"`` isolates each kernel with bubblewrap when it works here and says loudly when
    it does not; ``"bwrap"`` refuses to grade without it; ``"none"`` does not isolate (and says so).
    ``warm_up=False`` skips the instructor's run: each submission then trains from scratch
    (quicker for one or two submissions, slower for a class).
    ``jobs``: students graded at once, each in its own process (the warm-ups too); this process alone writes the
    gradebook, the log and ``scores.csv``. Needs isolated kernels: without, students are graded one at a time
    (said once), since the checks after every student must know whose kernel changed something.
    ``limits``: what each kernel may use (memory, processes, CPU time and cores, the size of its writable folders;
    default ``Limits()``); ``enforce_limits``: ``"auto"`` sets them where cgroups can be made here and says loudly
    when they cannot, ``"required"`` refuses to grade without them, ``"off"`` sets none (and says so).
    ``cluster``: execute the submissions on a Dask cluster instead (``course_lib.tools.cluster``): ``"local:N"``
    (N worker processes here) or ``"tcp://HOST:PORT"`` (a running scheduler); this process still records every
    result, and runs the warm-ups (``jobs`` at a time). Needs isolated kernels. ``cluster_timeout``: seconds the
    scheduler and a first worker may take, and the longest the cluster may be left without a worker.
    """
    cell_timeout = check_cell_timeout(cell_timeout)
    limits = Limits() if limits is None else limits
    if not isinstance(limits, Limits):
        raise TypeError(f"limits: expected a course_lib.tools.limits.Limits, got {type(limits).__name__}")
    if enforce_limits not in LIMIT_MODES:
        raise ValueError(f"enforce_limits: expected one of {LIMIT_MODES}, got {enforce_limits!r}")
    if isinstance(jobs, bool) or not isinstance(jobs, int):
        raise TypeError(f"jobs: expected a whole number of processes, got {type(jobs).__name__}")
    if jobs < 1:
        raise ValueError(f"jobs: expected 1 or more processes, got {jobs}")
    if profile not in PROFILES:
        raise GradingError(f"unknown profile {profile!r}: expected one of {sorted(PROFILES)}")
    if isolation not in ISOLATION:
        raise ValueError(f"isolation: expected one of {ISOLATION}, got {isolation!r}")
    where = None
    if cluster is not None:
        require({"distributed": "distributed (Dask)"}, "grading on a cluster (--cluster)", "instructor")
        from course_lib.tools import cluster as engine
        where = engine.parse(cluster, cluster_timeout)
    sources = course_notebooks(source_dir)
    found, rejected = find_submissions(submissions, sources)
    if not found and not rejected:
        raise GradingError(f"no submitted notebooks in {submissions}: expected <student>/<notebook>.ipynb "
                           "or submitted/<student>/<assignment>/<notebook>.ipynb")
    source_bytes = {name: sources[name].read_bytes() for name in sorted({s.notebook for s in found})}
    orders = {name: grade_ids(nbformat.reads(data.decode("utf-8"), as_version=4))
              for name, data in source_bytes.items()}
    rejected += [Score(s.student, s.notebook, failures=[f"nothing to grade: {s.notebook} has no graded exercises"])
                 for s in found if not orders[s.notebook]]
    found = [s for s in found if orders[s.notebook]]
    out = Path(out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    isolated, why_not = _isolation(isolation)
    if where is not None and not isolated:  # no per-student checks of a kernel on another machine
        raise GradingError(f"--cluster needs isolated kernels: {why_not}")
    cgroups, no_limits = _limits(enforce_limits)
    if not isolated and jobs > 1:
        print(f"note: --jobs {jobs} needs isolated kernels; grading one student at a time", file=sys.stderr)
        jobs = 1
    if not isolated:
        shout(f"WARNING: the submissions' kernels are NOT isolated: {why_not}.\nEach runs with your permissions "
              "and could change any file you can. Protected anyway: every student is graded from the grader's "
              "in-memory copies\n(source notebook, nbgrader files, warm-up cache), the gradebook is restored if a "
              "kernel changed it, and grading stops\n(not graded: grader error) if the Python environment changed. "
              "See docs/exercises.md.")
    if not cgroups:
        shout(f"WARNING: NO memory, process or CPU-time limits on the submissions' kernels: {no_limits}.\nA "
              "submission can then take all the memory (the system may kill the grader or another student's kernel) "
              "or start processes until the machine stops.\nRun the grader as root (or in a container with cgroups "
              "it may write): see docs/exercises.md.")
    else:
        print(f"limits per kernel: {limits.describe()}", flush=True)
    if work_dir is not None:
        Path(work_dir).mkdir(parents=True, exist_ok=True)
    print(f"{'student':20s} {'notebook':32s} {'points':>9s} {'time':>6s}  failed", flush=True)
    scores = []
    with one_run_at_a_time(out), tempfile.TemporaryDirectory(prefix="course-grade-", dir=work_dir,
                                                   ignore_cleanup_errors=True) as tmp, tools_on_path(), \
            (engine.connect(where) if where else contextlib.nullcontext()) as client:
        tmp, db, log_path = Path(tmp), out / "gradebook.db", out / "grading.json"
        log = load_log(log_path)
        template = tmp / "instructor"
        for gradebook in (db, template / "gradebook.db"):  # the real one, and a pristine one for every student
            api = nbgrader_api(template, gradebook)
            for name, data in source_bytes.items():
                write_tree(template / "source" / name, {f"{name}.ipynb": data})
                check_success(api.generate_assignment(name), f"nbgrader generate_assignment {name}")
        pristine = (template / "gradebook.db").read_bytes()
        caches = _warm_ups({name: (name, data, tmp / "warm-up" / name, profile, max(cell_timeout, 900))
                            for name, data in source_bytes.items()} if warm_up else {}, jobs)
        inputs = {name: Inputs(name, data, pristine, caches.get(name, {}), orders[name],
                               manual_ids(nbformat.reads(data.decode("utf-8"), as_version=4)))
                  for name, data in source_bytes.items()}
        too_big = {name: sum(map(len, cache.values())) for name, cache in caches.items()}
        too_big = {name: size for name, size in too_big.items() if isolated and size > limits.disk_mb * 2**20 / 2}
        if too_big:
            raise GradingError(f"the warm-up's cache of {', '.join(too_big)} ({max(too_big.values()) / 2**20:.0f} MB) "
                               f"takes more than half of a kernel's writable folder ({limits.disk_mb} MB): raise "
                               "the disk limit (--disk-mb)")
        run = Run(tmp, out, db, profile, cell_timeout, isolated, None if enforce_limits == "off" else limits,
                  cgroups, sandbox.environment_roots())
        run.env_before = {} if isolated else sandbox.fingerprint(run.env_roots)  # (checked only without isolation)
        def record(sub: Submission, done: Executed | None = None) -> None:
            key = f"{sub.student}/{sub.notebook}"
            try:
                score = _grade_one(sub, inputs[sub.notebook], run, log.get(key), done)
            except Exception as e:  # the grader's own failure on this submission: say so, grade the others
                score = Score(sub.student, sub.notebook, points=None, failures=[f"{NOT_GRADED}: {type(e).__name__}: {e}"])
            scores.append(score)
            log[key] = {**score.__dict__}  # (from memory: a kernel's edits are undone)
            save_log(log_path, log)
            write_scores(db, log, out / "scores.csv")
            points = "-" if score.points is None else f"{score.points:g}"
            print(f"{score.student:20s} {score.notebook:32s} {points:>4s}/{score.max_points:<4g} "
                  f"{score.seconds:5.1f}s  {', '.join(f.split(':')[0] for f in score.failures)}", flush=True)

        # who executes: this process, --jobs worker processes, or a cluster's workers; this process records
        workers_run = dataclasses.replace(run, env_before={})
        executions = engine.execute(client, found, inputs, workers_run, where.timeout) if client is not None \
            else _pooled(found, inputs, workers_run, jobs) if jobs > 1 else ((sub, None) for sub in found)
        for sub, done in executions:
            record(sub, done)
        for score in rejected:
            if STUDENT_ID.fullmatch(score.student):
                score_and_feedback(score, {}, None, out / "feedback" / score.student)
            log[f"{score.student}/{score.notebook}"] = {**score.__dict__}
        save_log(log_path, log)
        write_scores(db, log, out / "scores.csv")
        if not run.broken and not isolated and sandbox.changes(run.env_before, sandbox.fingerprint(run.env_roots)):
            shout("WARNING: the Python environment changed during grading")
        changed = [name for name, data in source_bytes.items() if sources[name].read_bytes() != data]
        if changed:
            shout(f"WARNING: source notebooks changed during grading: {changed}; graded with the versions read at "
                  "the start. Check them (git diff).")
    print(f"scores in {out / 'scores.csv'}, feedback in {out / 'feedback'}, gradebook {db}")
    return sorted(scores + rejected, key=lambda s: (s.student, s.notebook))
