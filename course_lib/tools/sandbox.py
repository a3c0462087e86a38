"""Where a submission's kernel runs: isolated with bubblewrap when the OS allows it, checked when not.

**Isolated** (``bwrap``, Debian's ``bubblewrap``): the kernel sees the whole file system
read-only (the course, the Python environment), gets writable folders of its own (its working
folder, its cache, ``/tmp`` and ``/dev/shm`` as fresh tmpfs), no network, no other processes,
and does not see at all the folders the grader names as hidden (the gradebook's folder, the other
submissions, the grader's work folder, the source notebooks with the hidden tests). The kernel
runs without capabilities, even when the grader runs as root, and dies with the grader.

The kernel talks to the grader over Unix sockets (``ipc`` transport) in a folder of its own,
since a kernel without network cannot use TCP to the host. ``SIGINT`` (the cell timeout's
interrupt) reaches the kernel only: bubblewrap is started with it ignored.

**Not isolated**: the kernel runs as the grader's user. Then :func:`fingerprint` and
:func:`changes` tell whether it changed the Python environment and the course's code.
"""

from __future__ import annotations

import os
import shutil
import site
import subprocess
import sys
import sysconfig
from pathlib import Path

from jupyter_client import AsyncKernelManager
from traitlets import List, Unicode

import course_lib
from course_lib.config import REPO_ROOT

# ``trap "" INT``: bubblewrap and its init ignore SIGINT (dispositions set to "ignore" survive exec), so the
# interrupt that jupyter_client sends to the kernel's process group reaches the kernel and kills nothing.
_IGNORE_SIGINT = ["/bin/sh", "-c", 'trap "" INT; exec "$@"', "sh"]


def bwrap_problem() -> str:
    """'' if bubblewrap can isolate a process on this machine, else why it cannot."""
    exe = shutil.which("bwrap")
    if exe is None:
        return "bubblewrap (bwrap) is not installed (Debian/Ubuntu: apt-get install bubblewrap)"
    try:
        run = subprocess.run([exe, *bwrap_args([], [], Path("/")), "--", "true"], capture_output=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"bwrap does not run: {e}"
    if run.returncode:
        return f"bwrap cannot make a sandbox here: {run.stderr.decode(errors='replace').strip()[:300]}"
    return ""


def needed() -> list[Path]:
    """What a kernel must see: the Python environment, the course (its code and data), ``PYTHONPATH``."""
    paths = [sys.prefix, sys.base_prefix, REPO_ROOT, Path(course_lib.__file__).parent,
             *[p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]]
    return [Path(p).resolve() for p in paths]


def bwrap_args(writable: list[Path], hidden: list[Path], cwd: Path) -> list[str]:
    """bwrap's options: ``/`` read-only, ``hidden`` folders replaced by empty ones, ``writable`` folders bound
    read-write (after the hiding, so they may lie inside a hidden folder), no network, no other processes.
    ``/tmp`` is a fresh tmpfs too, unless the course or the environment lives there (a clone in /tmp): then
    it stays visible read-only, and only the ``hidden`` folders in it are emptied."""
    args = ["--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc"]
    hide_tmp = not any(p.is_relative_to("/tmp") for p in needed())
    if hide_tmp:
        args += ["--tmpfs", "/tmp"]
    for path in hidden:
        if not (hide_tmp and Path(path).is_relative_to("/tmp")):
            args += ["--tmpfs", str(path)]
    for path in writable:
        args += ["--bind", str(path), str(path)]
    # JPY_PARENT_PID=1: the kernel's parent is the sandbox's init (pid 1), which ipykernel would take for the
    # sign of an orphaned kernel and quit; with 1 it does not watch its parent (--die-with-parent does).
    return [*args, "--unshare-all", "--die-with-parent", "--cap-drop", "ALL", "--setenv", "JPY_PARENT_PID", "1",
            "--chdir", str(cwd)]


def hideable(paths: list[Path]) -> list[Path]:
    """The folders of ``paths`` that can be hidden from a kernel: existing folders that hold nothing it needs
    (:func:`needed`), most general first (resolved, no duplicates)."""
    keep = needed()
    out: list[Path] = []
    for path in sorted({Path(p).resolve() for p in paths}, key=lambda p: len(p.parts)):
        if not path.is_dir() or path == Path("/") or any(n.is_relative_to(path) for n in keep):
            continue
        if not any(path.is_relative_to(o) for o in out):
            out.append(path)
    return out


class IsolatedKernelManager(AsyncKernelManager):
    """A kernel manager that starts the kernel inside ``bwrap`` when :attr:`sandbox` is set."""

    sandbox = List(Unicode(), help="bwrap and its options (empty: start the kernel as usual)").tag(config=True)

    def format_kernel_cmd(self, extra_arguments=None):
        cmd = super().format_kernel_cmd(extra_arguments)
        return [*_IGNORE_SIGINT, *self.sandbox, "--", *cmd] if self.sandbox else cmd


# ------------------------------------------------------------------ checks when not isolated


def environment_roots() -> list[Path]:
    """What a kernel must not change for the next student: the Python environment (the venv, the standard
    library, site-packages, the user's site-packages), the course's code and data, and the kernel specs."""
    from jupyter_core.paths import jupyter_path

    paths = [sys.prefix, sysconfig.get_paths()["stdlib"], sysconfig.get_paths()["purelib"],
             sysconfig.get_paths()["platlib"], site.getusersitepackages(), Path(course_lib.__file__).parent,
             REPO_ROOT / "data", *jupyter_path("kernels")]
    roots = sorted({Path(p).resolve() for p in paths if Path(p).exists()}, key=lambda p: len(p.parts))
    return [r for i, r in enumerate(roots) if not any(r.is_relative_to(o) for o in roots[:i])]


def fingerprint(roots: list[Path]) -> dict[str, tuple[int, ...]]:
    """Path -> (size, mtime, ctime, inode) of every file and folder under ``roots``. ``ctime`` changes with any
    write and cannot be set back by a program, so a rewritten file shows even with its size and mtime restored.
    About a second for a virtual environment with torch (100,000 files)."""
    found: dict[str, tuple[int, ...]] = {}

    def walk(folder: str) -> None:
        try:
            entries = list(os.scandir(folder))
        except OSError:
            return
        for entry in entries:
            try:
                st = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            found[entry.path] = (st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)
            if entry.is_dir(follow_symlinks=False):
                walk(entry.path)

    for root in roots:
        walk(str(root))
    return found


def changes(before: dict[str, tuple[int, ...]], after: dict[str, tuple[int, ...]]) -> list[str]:
    """Paths added, removed or changed between two fingerprints (folders whose entries merely changed are left
    out: the changed entry is listed)."""
    changed = [p for p in before.keys() | after.keys() if before.get(p) != after.get(p)]
    files = [p for p in changed if not (p in after and os.path.isdir(p))]
    return sorted(files or changed)
