"""Grading on a Dask cluster: workers execute the submissions, this process alone records them.

``grade(..., cluster="local:N")`` starts a scheduler and N worker processes (one thread each) on this
machine, on the loopback interface; ``cluster="tcp://HOST:PORT"`` uses a running Dask scheduler, whatever
started it and its workers (``dask-jobqueue`` on Slurm or PBS, ``dask-kubernetes``, ``dask worker`` by
hand): the code here is the same. See ``docs/exercises.md`` ("Grading on several machines").

* What every submission needs (per notebook: the instructor's source, a pristine gradebook, the warm-up
  cache; and how kernels run) goes to each worker **once**, as a worker plugin: the scheduler hands it to
  every worker, including one that joins or restarts later.
* A task carries one submitted file (read here: a worker need not see the submissions) and executes it with
  the grader's own ``execute.execute_submission`` (the same code as ``--jobs``): a fresh folder from those inputs, the kernel
  isolated with bubblewrap, nothing shared written. It returns what ``grading._grade_one`` records. Each
  worker is given one task at a time (see :func:`execute`).
* This process records each result as its task completes (gradebook, ``grading.json``, ``scores.csv``,
  feedback): one writer, and each student once, whatever the engine ran twice.
* A worker lost mid-run: the scheduler runs its task again on another worker. A task it gives up on
  (``KilledWorker``: its workers died ``distributed.scheduler.allowed-failures`` + 1 times), a worker that
  cannot isolate or limit kernels as the grader does, a task that fails: that student is "not graded: grader error", never a 0.
* Nothing waits forever: the scheduler must answer and a first worker join within ``timeout`` seconds;
  a cluster left without any worker for ``timeout`` seconds, or without its scheduler, ends the run (the
  students not graded yet are "not graded: grader error").
"""

from __future__ import annotations

import contextlib
import dataclasses
import re
import socket
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import distributed
from distributed.diagnostics.plugin import WorkerPlugin

from course_lib.tools import sandbox
from course_lib.tools.execute import Executed, Inputs, Run, execute_submission, not_executed
from course_lib.tools.limits import cgroup_problem
from course_lib.tools.submissions import GradingError, Submission

LOCAL = re.compile(r"local:(\d+)")
ADDRESS = re.compile(r"tcp://(?P<host>[A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\]):(?P<port>\d+)")
EXPECTED = ("'local:N' (a scheduler and N worker processes on this machine, N >= 1) or 'tcp://HOST:PORT' (a "
            "running Dask scheduler)")
POLL_S = 2.0  # how often the run checks that the cluster still has workers while nothing completes


@dataclass(frozen=True)
class Cluster:
    """Where submissions run: ``workers`` local worker processes, or the scheduler at ``address``."""

    spec: str
    workers: int = 0
    address: str = ""
    timeout: float = 120.0  # seconds: the scheduler answers and a worker joins, or the run stops


def parse(spec, timeout: float = 120.0) -> Cluster:
    """``spec`` ('local:N' or 'tcp://HOST:PORT') checked; a ValueError or TypeError says what was expected."""
    if not isinstance(spec, str):
        raise TypeError(f"cluster: expected {EXPECTED}, got {type(spec).__name__}")
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not 0 < timeout < float("inf"):
        raise ValueError(f"cluster timeout: expected seconds > 0, got {timeout!r}")
    local = LOCAL.fullmatch(spec)
    if local:
        if int(local.group(1)) < 1:
            raise ValueError(f"cluster: expected {EXPECTED}, got {spec!r}: at least 1 worker")
        return Cluster(spec, workers=int(local.group(1)), timeout=timeout)
    address = ADDRESS.fullmatch(spec)
    if address:
        if not 0 < int(address.group("port")) < 65536:
            raise ValueError(f"cluster: expected {EXPECTED}, got {spec!r}: a port is 1 to 65535")
        return Cluster(spec, address=spec, timeout=timeout)
    raise ValueError(f"cluster: expected {EXPECTED}, got {spec!r}")


@contextlib.contextmanager
def connect(where: Cluster) -> Iterator[distributed.Client]:
    """A client of the cluster ``where`` (a local one is started, and closed after), with a worker ready."""
    local = None
    try:
        if where.workers:
            # loopback only, no dashboard; one thread per worker: one kernel at a time each, as with --jobs
            local = distributed.LocalCluster(n_workers=where.workers, threads_per_worker=1, processes=True,
                                             host="127.0.0.1", dashboard_address=None)
        client = distributed.Client(local or where.address, timeout=where.timeout, set_as_default=False)
    except Exception as e:  # refused, timed out, a local cluster that could not start
        if local is not None:
            local.close()
        what = f"start a local cluster ({where.spec})" if where.workers else \
            f"reach the scheduler at {where.address} within {where.timeout:g} s"
        raise GradingError(f"cannot {what}: {type(e).__name__}: {e}") from None
    try:
        try:
            client.wait_for_workers(max(1, where.workers), timeout=where.timeout)
        except TimeoutError:
            raise GradingError(f"no worker joined the scheduler at {client.scheduler.address} within "
                               f"{where.timeout:g} s: start workers (docs/exercises.md), or give more time "
                               "(--cluster-timeout)") from None
        workers = client.nthreads()
        print(f"cluster {where.spec}: scheduler {client.scheduler.address}, {len(workers)} workers, "
              f"{sum(workers.values())} threads", flush=True)
        yield client
    finally:
        client.close()
        if local is not None:
            local.close()


def execute(client: distributed.Client, subs: list[Submission], inputs: dict[str, Inputs], run: Run,
            timeout: float) -> Iterator[tuple[Submission, Executed]]:
    """Execute ``subs`` on the cluster; yield each submission once, with what its task returned (or why it was
    not graded), as tasks complete.

    One task per worker at a time: the scheduler counts a worker's death against every task assigned to it,
    waiting ones too (``allowed-failures``), so a worker holds only the student it is executing."""
    plugin = _Grading(inputs, run)
    client.register_plugin(plugin, name=plugin.name)  # every worker, now and later, gets the inputs once
    waiting, pending = list(reversed(subs)), {}
    workers = _workers(client)

    def top_up() -> None:
        while waiting and len(pending) < max(1, len(workers or ())):
            sub = waiting.pop()
            pending[client.submit(_grade_on_worker, plugin.name, sub, _read(sub.path),
                                  key=f"grade-{sub.student}-{sub.notebook}-{plugin.name[-8:]}")] = sub

    try:
        alone_since = None
        while workers is not None and (waiting or pending):
            top_up()
            try:
                with client.as_current():  # (wait uses the current client)
                    done, _ = distributed.wait(list(pending), timeout=POLL_S, return_when="FIRST_COMPLETED")
            except TimeoutError:
                done = set()
            finished = [(pending.pop(future), _outcome(future)) for future in done]
            for future in done:
                future.release()
            workers = _workers(client)
            if finished:
                top_up()  # the next students start while this process records these
                yield from finished
            alone_since = None if workers else alone_since or time.monotonic()
            if alone_since is not None and time.monotonic() - alone_since > timeout:
                break
        if pending or waiting:  # the run ended without them: never a 0
            why = "lost the cluster's scheduler" if workers is None else \
                f"no worker left on the cluster for {timeout:g} s"
            for sub in [*pending.values(), *reversed(waiting)]:
                yield sub, not_executed(why)
    finally:
        with contextlib.suppress(Exception):
            client.cancel(list(pending))
        with contextlib.suppress(Exception):
            client.unregister_worker_plugin(plugin.name)


def _read(path: Path) -> bytes | None:
    """The submitted file, sent with its task (a worker on another machine need not see the submissions)."""
    try:
        return path.read_bytes()
    except OSError:  # the worker reads it, and says why it cannot, as --jobs 1 would
        return None


def _workers(client: distributed.Client) -> dict | None:
    """Worker address -> threads, or None when the scheduler is gone (its connection closed, or no answer)."""
    try:
        return client.nthreads() if client.status == "running" else None
    except Exception:
        return None


def _outcome(future: distributed.Future) -> Executed:
    try:
        if future.status == "finished":
            return future.result()
        error = future.exception() if future.status == "error" else RuntimeError(f"its task was {future.status}")
    except Exception as e:  # e.g. the result could not be read back
        error = e
    return not_executed(f"{type(error).__name__}: {error}")


# ------------------------------------------------------------------ on a worker

_GRADINGS: dict[str, tuple[dict[str, Inputs], Run, str]] = {}  # plugin name -> inputs, run, why not isolated
_ONE_AT_A_TIME = threading.Lock()  # a kernel's environment is set in os.environ: one submission per process


class _Grading(WorkerPlugin):
    """The inputs of one grading run, held by every worker from its setup to the run's end."""

    def __init__(self, inputs: dict[str, Inputs], run: Run):
        self.name = f"course-grading-{uuid.uuid4().hex}"
        self.inputs, self.run = inputs, run

    def setup(self, worker) -> None:
        run = self.run
        self.made = not run.tmp.is_dir()  # another machine: the grader's work folder, made at the same path
        run.tmp.mkdir(parents=True, exist_ok=True)
        # a kernel here sees what the sandbox lists (this machine's system, environment and course code and data),
        # so nothing of this machine's checkout (its notebooks with the hidden tests) needs hiding; but it must be
        # able to isolate kernels, and to limit them where the grader does
        problem = sandbox.bwrap_problem() if run.sandbox else ""
        if not problem and run.cgroups:
            no_limits = cgroup_problem()
            problem = f"cannot limit kernels as the grader does ({no_limits})" if no_limits else ""
        _GRADINGS[self.name] = (self.inputs, run, problem)

    def teardown(self, worker) -> None:
        _GRADINGS.pop(self.name, None)
        if getattr(self, "made", False):
            with contextlib.suppress(OSError):
                self.run.tmp.rmdir()


def _grade_on_worker(name: str, sub: Submission, data: bytes | None) -> Executed:
    """A task: execute one submission (``data``: the file's bytes) with the inputs the worker received once."""
    if name not in _GRADINGS:
        raise GradingError(f"worker on {socket.gethostname()} did not receive the grading inputs")
    inputs, run, problem = _GRADINGS[name]
    if problem:  # never a submission run without isolation on a worker
        return not_executed(f"the worker on {socket.gethostname()} cannot grade safely: {problem}")
    with _ONE_AT_A_TIME:
        if data is None:
            return execute_submission(sub, inputs[sub.notebook], run)
        with tempfile.TemporaryDirectory(prefix="submitted-", dir=run.tmp) as folder:  # (hidden from kernels)
            copy = Path(folder) / sub.path.name
            copy.write_bytes(data)
            return execute_submission(dataclasses.replace(sub, path=copy), inputs[sub.notebook], run)
