"""Resource limits for one submission's kernel: memory, processes, CPU time and rate, file size.

A submission that allocates 12 GB, forks hundreds of processes or spins in a background thread must cost
its own points and nothing else: not the grader, not the student graded beside it (``--jobs``), not the
machine. Each kernel therefore runs in cgroups of its own (Linux control groups, version 1, the
hierarchies of the ``memory``, ``pids``, ``cpu`` and ``cpuacct`` controllers), made by the grader below its
own cgroup:

* ``memory``: ``memory.limit_in_bytes`` (and ``memory.memsw.limit_in_bytes``, memory + swap). Past it the
  kernel's out-of-memory killer stops a process *of that cgroup*, never the grader or another kernel.
  Files in a tmpfs (the sandbox's writable folders, ``/dev/shm``) count too.
* ``pids``: ``pids.max`` processes and threads at once; a ``fork`` past it fails (``BlockingIOError``).
  ``RLIMIT_NPROC`` cannot do this: it does not bind root, and it counts all of a user's processes.
* ``cpu``: ``cpu.cfs_quota_us``, the number of cores the kernel may use at once (1 by default: a
  kernel runs torch on one thread; a spinner in eight threads still gets one core).
* ``cpuacct``: the CPU time used by all its processes, polled by :class:`CpuWatch`, which stops every
  process of the cgroup past ``cpu_seconds``: the cell timeout stops a busy cell, this stops work that
  runs beside the cells (a background thread or process).

The launcher (:func:`launcher`) joins the cgroups, then sets ``RLIMIT_FSIZE`` (no file larger than the
disk limit) and ``RLIMIT_CORE`` 0 before it starts the sandbox and the kernel, so every process the
kernel starts inherits them. The writable folders' sizes are set by the sandbox (``bwrap --size``).

Where the cgroups cannot be made (not root, cgroup v2 only, a container without them),
:func:`cgroup_problem` says why, and the grader says so loudly, as it does without isolation.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

CONTROLLERS = ("memory", "pids", "cpu", "cpuacct")
MODES = ("auto", "required", "off")


@dataclass(frozen=True)
class Limits:
    """What one kernel may use. Defaults fit the ``grade`` profile with room to spare (docs/exercises.md: the
    course's notebooks measured under it)."""

    memory_mb: int = 3072  # memory + swap of all its processes, tmpfs files included
    processes: int = 128  # processes and threads at once
    cpu_seconds: float = 600  # CPU time of all its processes over the whole notebook
    cpu_cores: float = 1.0  # cores it may use at once
    disk_mb: int = 512  # each writable folder (working folder, /tmp, /dev/shm); also the largest file

    def __post_init__(self) -> None:
        for name, low in (("memory_mb", 64), ("processes", 8), ("cpu_seconds", 1), ("cpu_cores", 0.01),
                          ("disk_mb", 1)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value < float("inf"):
                raise ValueError(f"limits: {name} must be a number >= {low}, got {value!r}")

    def describe(self) -> str:
        return (f"memory {self.memory_mb} MB, {self.processes} processes, {self.cpu_seconds:g} s of CPU time on "
                f"{self.cpu_cores:g} core(s), {self.disk_mb} MB per writable folder")


# ------------------------------------------------------------------ where the cgroups are


def _own_cgroups() -> dict[str, Path]:
    """Controller -> the folder of this process's cgroup in its (version 1) hierarchy, for CONTROLLERS."""
    mounts: dict[str, Path] = {}
    with open("/proc/self/mounts", encoding="utf-8") as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 4 and parts[2] == "cgroup":
                for option in parts[3].split(","):
                    if option in CONTROLLERS:
                        mounts.setdefault(option, Path(parts[1]))
    found: dict[str, Path] = {}
    with open("/proc/self/cgroup", encoding="utf-8") as f:
        for line in f:
            _, controllers, path = line.rstrip("\n").split(":", 2)
            for controller in controllers.split(","):
                if controller in mounts:
                    inside = mounts[controller] / path.lstrip("/")
                    found[controller] = inside if inside.is_dir() else mounts[controller]  # (a cgroup namespace)
    return found


def cgroup_problem() -> str:
    """'' if a kernel's cgroups can be made here, else why not."""
    if not sys.platform.startswith("linux"):
        return f"cgroups are Linux's; this is {sys.platform}"
    try:
        own = _own_cgroups()
    except OSError as e:
        return f"cannot read this process's cgroups: {e}"
    missing = [c for c in CONTROLLERS if c not in own]
    if missing:
        return (f"no writable cgroup (version 1) hierarchy for {', '.join(missing)} (cgroup v2 alone, or a container "
                "without them)")
    try:
        probe = KernelCgroup(Limits(), prefix="course-probe")
    except OSError as e:
        return f"cannot make a cgroup here ({e}; the grader must run as root, or be given a cgroup it may write)"
    probe.close()
    return ""


class KernelCgroup:
    """The cgroups of one kernel (one per controller), made with ``limits`` written in. :meth:`close` stops what
    still runs in them and removes them."""

    def __init__(self, limits: Limits, prefix: str = "course-kernel"):
        self.limits = limits
        name = f"{prefix}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self.dirs: dict[str, Path] = {}
        try:
            for controller, parent in _own_cgroups().items():
                path = parent / name
                if path not in self.dirs.values():  # (cpu and cpuacct may share one hierarchy)
                    path.mkdir()
                self.dirs[controller] = path
            mem = limits.memory_mb * 2**20
            self._write("memory", "memory.limit_in_bytes", mem)
            if (self.dirs["memory"] / "memory.memsw.limit_in_bytes").exists():  # (memory + swap; after the first)
                self._write("memory", "memory.memsw.limit_in_bytes", mem)
            self._write("pids", "pids.max", limits.processes)
            period = int((self.dirs["cpu"] / "cpu.cfs_period_us").read_text())
            self._write("cpu", "cpu.cfs_quota_us", max(1000, round(limits.cpu_cores * period)))
        except (OSError, KeyError, ValueError) as e:
            self.close()
            raise OSError(f"{type(e).__name__}: {e}") from None

    def _write(self, controller: str, file: str, value) -> None:
        (self.dirs[controller] / file).write_text(str(value))

    def _read(self, controller: str, file: str) -> str:
        try:
            return (self.dirs[controller] / file).read_text()
        except (OSError, KeyError):
            return ""

    @property
    def procs_files(self) -> list[Path]:
        return [d / "cgroup.procs" for d in self.dirs.values()]

    def pids(self) -> list[int]:
        found: set[int] = set()
        for file in self.procs_files:
            with contextlib.suppress(OSError, ValueError):
                found.update(int(p) for p in file.read_text().split())
        return sorted(found)

    def cpu_seconds(self) -> float:
        value = self._read("cpuacct", "cpuacct.usage").strip()
        return int(value) / 1e9 if value else 0.0

    def peak_memory_mb(self) -> float:
        value = self._read("memory", "memory.max_usage_in_bytes").strip()
        return int(value) / 2**20 if value else 0.0

    def processes(self) -> int:
        value = self._read("pids", "pids.current").strip()
        return int(value) if value else 0

    def out_of_memory(self) -> bool:
        """Did the out-of-memory killer stop a process of this kernel (or an allocation fail at the limit)?"""
        stats = dict(line.split() for line in self._read("memory", "memory.oom_control").splitlines() if " " in line)
        if "oom_kill" in stats:  # Linux 4.13 and newer
            return int(stats["oom_kill"]) > 0
        return int(self._read("memory", "memory.memsw.failcnt").strip() or 0) > 0

    def forks_refused(self) -> int:
        """How many times a fork (or a new thread) failed at ``pids.max``."""
        stats = dict(line.split() for line in self._read("pids", "pids.events").splitlines() if " " in line)
        return int(stats.get("max", 0))

    def kill(self) -> None:
        """SIGKILL every process of the kernel, until none is left (new ones may have been forked meanwhile)."""
        for _ in range(100):
            pids = self.pids()
            if not pids:
                return
            for pid in pids:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.02)

    def close(self) -> None:
        """Stop what is left and remove the cgroups (a process that dies a little later: tried for 5 s)."""
        self.kill()
        deadline = time.monotonic() + 5
        for path in set(self.dirs.values()):
            while True:
                try:
                    path.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        print(f"warning: could not remove the cgroup {path}", file=sys.stderr)
                        break
                    self.kill()
                    time.sleep(0.05)
        self.dirs = {}


class CpuWatch:
    """A thread that polls the kernel's CPU time (and its process count, for the record) and stops every process of
    the kernel once it used more than ``limits.cpu_seconds``: :attr:`stopped` then says so."""

    def __init__(self, cgroup: KernelCgroup, interval_s: float = 0.25):
        self.cgroup, self.interval_s = cgroup, interval_s
        self.stopped = False
        self.peak_processes = 0
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, name="cpu-watch", daemon=True)

    def start(self) -> CpuWatch:
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._done.wait(self.interval_s):
            self.peak_processes = max(self.peak_processes, self.cgroup.processes())
            if self.cgroup.cpu_seconds() > self.cgroup.limits.cpu_seconds:
                self.stopped = True
                self.cgroup.kill()

    def stop(self) -> None:
        self._done.set()
        self._thread.join(timeout=5)


def reasons(cgroup: KernelCgroup | None, watch: CpuWatch | None, limits: Limits, outputs_text: str,
            disk_bounded: bool) -> list[str]:
    """Why the kernel was stopped or refused something, one sentence per limit it hit (for the student's
    feedback); ``outputs_text``: the text of the executed notebook's outputs (a full folder shows as an error)."""
    found = []
    if cgroup is not None and cgroup.out_of_memory():
        found.append(f"limit: the notebook used more than its {limits.memory_mb} MB of memory; the process that "
                     "asked for more was stopped (a DeadKernelError if it was the kernel)")
    if cgroup is not None and cgroup.forks_refused():
        found.append(f"limit: the notebook tried to run more than {limits.processes} processes and threads at once; "
                     f"{cgroup.forks_refused()} more were refused")
    if watch is not None and watch.stopped:
        found.append(f"limit: the notebook's processes used more than {limits.cpu_seconds:g} s of CPU time; all "
                     "were stopped (later cells: NotRun)")
    if "No space left on device" in outputs_text or "File too large" in outputs_text:
        where = "a writable folder (its working folder, /tmp or /dev/shm) was full" if disk_bounded else \
            "a file reached the largest size allowed"
        found.append(f"limit: {where}: each holds at most {limits.disk_mb} MB")
    return found


# ------------------------------------------------------------------ starting a kernel under them

# Run by a bare Python (-I -S: nothing imported but the standard library) before the sandbox: joins the cgroups,
# sets the file-size and core-dump limits, ignores SIGINT (the cell timeout's interrupt must reach the kernel,
# which installs its own handler, and kill nothing on the way), restores the signals Python ignores, and execs.
_LAUNCH = """\
import os, resource, signal, sys
cut = sys.argv.index("--")
fsize, procs, cmd = int(sys.argv[1]), sys.argv[2:cut], sys.argv[cut + 1:]
for path in procs:
    with open(path, "w") as f:
        f.write(str(os.getpid()))
if fsize:
    resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))
resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
for sig in (signal.SIGPIPE, signal.SIGXFSZ):
    signal.signal(sig, signal.SIG_DFL)
signal.signal(signal.SIGINT, signal.SIG_IGN)
os.execvp(cmd[0], cmd)
"""


def launcher(cgroup: KernelCgroup | None, limits: Limits | None) -> list[str]:
    """The command that goes before the sandbox's: ``[*launcher(...), "bwrap", ...]``."""
    fsize = limits.disk_mb * 2**20 if limits is not None else 0
    return [sys.executable, "-I", "-S", "-c", _LAUNCH, str(fsize),
            *[str(p) for p in (cgroup.procs_files if cgroup is not None else [])], "--"]
