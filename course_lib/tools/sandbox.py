"""Where a submission's kernel runs: isolated with bubblewrap when the OS allows it, checked when not.

**Isolated** (``bwrap``, Debian's ``bubblewrap``): the kernel sees **only what the notebook needs to run**,
chosen by a list of what it may see (:func:`visible`), not a list of what to hide:

* read-only: the operating system's folders (``/usr``, ``/etc``, ``/lib*``, ``/bin``, ``/sbin``, ``/sys``),
  the Python environment (the virtual environment and the Python it was made from), the course's code
  (the ``course_lib`` package) and its data (``data/``), and what the grader passes in (the warm-up's cache);
* writable: fresh tmpfs folders of a bounded size (``/tmp``, ``/dev/shm``, and the kernel's own folder with
  its working folder, cache and home), and the folder of the sockets it talks to the grader through;
* nothing else: not the rest of the course's checkout (its git history, the source notebooks with the
  hidden tests, the instructor's executed copies in ``build/``, the student bundle), not the gradebook,
  the other submissions or nbgrader's folders, not the home folders, ``/srv``, ``/var``, ``/opt``, ``/work``
  or whatever else the machine holds; the root folder itself is read-only;
* no network, no other processes, no capabilities even when the grader runs as root; the kernel dies with
  the grader.

The kernel talks to the grader over Unix sockets (``ipc`` transport) in a folder of its own, since a kernel
without network cannot use TCP to the host. Resource limits (memory, processes, CPU) are set around the
sandbox by ``course_lib.tools.limits``.

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
from course_lib.config import REPO_ROOT, data_dir

# The operating system's folders a program needs (links such as /bin -> usr/bin stay links).
SYSTEM = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc", "/sys")

# Inside the sandbox, before the kernel: its folders in the tmpfs ``box`` (cache, home, working folder), the
# warm-up's cache copied in from ``seed`` (read-only), then the kernel itself, in ``box/work``.
_PREPARE = 'mkdir -p "$1/cache" "$1/home/tmp" "$1/work" && { [ ! -d "$2" ] || cp -R -p "$2/." "$1/cache/"; } ' \
           '&& cd "$1/work" && shift 2 && exec "$@"'


def bwrap_problem() -> str:
    """'' if bubblewrap can isolate a process on this machine, else why it cannot."""
    exe = shutil.which("bwrap")
    if exe is None:
        return "bubblewrap (bwrap) is not installed (Debian/Ubuntu: apt-get install bubblewrap)"
    try:
        run = subprocess.run([exe, *bwrap_args(Path("/tmp"), size_mb=16), "--", "true"], capture_output=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"bwrap does not run: {e}"
    if run.returncode:
        return f"bwrap cannot make a sandbox here: {run.stderr.decode(errors='replace').strip()[:300]}"
    return ""


def visible() -> list[Path]:
    """What a kernel may read besides the operating system: the Python environment, the course's code and data,
    and ``PYTHONPATH`` (of a course checkout on it, its code alone). Resolved, most general first, none inside
    another."""
    code = Path(course_lib.__file__).resolve().parent
    paths = [Path(sys.prefix), Path(sys.base_prefix), code, data_dir()]
    for entry in filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep)):
        if Path(entry).resolve() not in (code.parent, REPO_ROOT):  # the checkout: its code is in already
            paths.append(Path(entry))
    found = sorted({p.resolve() for p in paths if p.exists()}, key=lambda p: len(p.parts))
    return [p for i, p in enumerate(found) if not any(p.is_relative_to(o) for o in found[:i])]


def bwrap_args(cwd: Path, scratch: list[Path] = (), writable: list[Path] = (), readable: list[Path] = (),
               size_mb: int | None = None) -> list[str]:
    """bwrap's options for a sandbox that shows the system folders (:data:`SYSTEM`), :func:`visible` and
    ``readable`` read-only; fresh tmpfs folders at ``/tmp``, ``/dev/shm`` and ``scratch`` (each at most
    ``size_mb`` MB); the host folders ``writable`` read-write; nothing else. No network, no other processes,
    no capabilities; the working folder is ``cwd``."""
    size = ["--size", str(size_mb * 2**20)] if size_mb else []
    args = []
    for folder in SYSTEM:
        if os.path.islink(folder):
            args += ["--symlink", os.readlink(folder), folder]
        elif os.path.isdir(folder):
            args += ["--ro-bind", folder, folder]
    args += ["--proc", "/proc", "--dev", "/dev", *size, "--tmpfs", "/tmp", *size, "--tmpfs", "/dev/shm"]
    for path in [*visible(), *readable]:  # (after /tmp: a course cloned into /tmp stays visible)
        args += ["--ro-bind", str(path), str(path)]
    for path in scratch:
        args += [*size, "--tmpfs", str(path)]
    for path in writable:
        args += ["--bind", str(path), str(path)]
    # JPY_PARENT_PID=1: the kernel's parent is the sandbox's init (pid 1), which ipykernel would take for the
    # sign of an orphaned kernel and quit; with 1 it does not watch its parent (--die-with-parent does).
    return [*args, "--remount-ro", "/", "--unshare-all", "--die-with-parent", "--cap-drop", "ALL",
            "--setenv", "JPY_PARENT_PID", "1", "--chdir", str(cwd)]


def kernel_sandbox(box: Path, seed: Path, sockets: Path, size_mb: int | None) -> list[str]:
    """The command before a kernel's: bwrap (:func:`bwrap_args`) with ``box`` a fresh tmpfs holding the kernel's
    ``cache`` (the warm-up's cache ``seed`` copied in), ``home`` and working folder ``work``, and the folder of
    its ``sockets``."""
    return [shutil.which("bwrap") or "bwrap",
            *bwrap_args(box, scratch=[box], writable=[sockets], readable=[seed], size_mb=size_mb),
            "--", "/bin/sh", "-c", _PREPARE, "sh", str(box), str(seed)]


class IsolatedKernelManager(AsyncKernelManager):
    """A kernel manager that starts the kernel behind :attr:`launcher` (resource limits) inside :attr:`sandbox`."""

    launcher = List(Unicode(), help="what starts the sandbox: limits.launcher(...) (empty: nothing)").tag(config=True)
    sandbox = List(Unicode(), help="kernel_sandbox(...) (empty: start the kernel as usual)").tag(config=True)

    def format_kernel_cmd(self, extra_arguments=None):
        return [*self.launcher, *self.sandbox, *super().format_kernel_cmd(extra_arguments)]


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
