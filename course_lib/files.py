"""Files written whole or not at all, and read-modify-write under a lock: the package's one way to do each.

* :func:`atomic_write`: a reader, or a crash, never sees half a file. The new content goes to a temporary file in
  the same folder, which then replaces the old file in one rename (``os.replace``); a writer that fails leaves the
  old file as it was and no temporary file behind.
* :func:`locked`: one process at a time inside ``with locked(lock_file):``, e.g. two notebooks saving results at
  once, or two grading runs into one folder (the second waits until the first is done). An advisory lock
  (``fcntl.flock``) between processes, and threads, of one machine; on Windows (no ``fcntl``) it does nothing.

Nothing else of ``course_lib`` is imported here, so that any module may use it.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

try:
    import fcntl
except ImportError:  # Windows: no advisory locks; two writers at the same instant may race
    fcntl = None


def atomic_write(path: str | Path, write: Callable[[Path], None]) -> None:
    """Call ``write(tmp)`` to write a temporary file next to ``path``, then rename it into place.

    The temporary file is created by ``write`` itself, so it gets the permissions of any new file (not the private
    ones of ``tempfile.mkstemp``); its name is unique to this call. If ``write`` raises, ``path`` is left as it was
    and the temporary file is removed.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:12]}.tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


@contextmanager
def locked(lock_file: str | Path) -> Iterator[None]:
    """Hold an exclusive lock on ``lock_file`` (made, with its folder, if missing) until the block ends.

    Another holder waits until then, as long as it takes (the lock is released when its holder's process ends, even
    if it crashes). Does nothing on Windows, which has no ``fcntl``.
    """
    if fcntl is None:
        yield
        return
    lock_file = Path(lock_file)
    lock_file.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_file, "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)
