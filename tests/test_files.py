"""The package's one atomic write and one lock (course_lib.files): a file is replaced whole or not at all, and
holders of the lock take turns, between threads and between processes."""

import contextlib
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from course_lib.files import atomic_write, locked

ROOT = Path(__file__).resolve().parents[1]


def test_atomic_write_replaces_the_file_only_once_it_is_written(tmp_path):
    target = tmp_path / "scores.csv"
    target.write_text("old\n")
    seen = []

    def write(tmp):
        tmp.write_text("new, half")
        seen.append(target.read_text())  # while the new content is written, a reader sees the old file
        with open(tmp, "a") as f:
            f.write(" and whole\n")

    atomic_write(target, write)
    assert seen == ["old\n"]
    assert target.read_text() == "new, half and whole\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scores.csv"]  # no temporary file left


def test_atomic_write_keeps_the_old_file_and_removes_the_temporary_one_when_the_writer_raises(tmp_path):
    target = tmp_path / "sub" / "f.txt"
    target.parent.mkdir()
    target.write_text("complete")

    def fail(tmp):
        tmp.write_text("partial")
        raise ValueError("bad")

    with pytest.raises(ValueError, match="bad"):
        atomic_write(target, fail)
    assert target.read_text() == "complete"
    assert list(target.parent.iterdir()) == [target]

    def fail_at_once(tmp):
        raise ValueError("early")

    with pytest.raises(ValueError, match="early"):  # before writing anything, into a folder not there yet
        atomic_write(tmp_path / "new" / "g.txt", fail_at_once)
    assert list((tmp_path / "new").iterdir()) == []


@pytest.mark.skipif(os.name != "posix", reason="file modes and umask are POSIX")
def test_atomic_write_gives_the_permissions_of_any_new_file(tmp_path):
    """Not the private 0600 of tempfile.mkstemp: a scores.csv is as readable as a file written in place."""
    plain = tmp_path / "plain.txt"
    plain.write_text("x")
    atomic_write(tmp_path / "atomic.txt", lambda tmp: tmp.write_text("x"))
    assert (tmp_path / "atomic.txt").stat().st_mode == plain.stat().st_mode


def _increment(counter: Path, lock: Path | None, times: int, start: threading.Barrier) -> None:
    """Read the number in ``counter``, wait a little, write it plus one (atomically, as results.py does): a
    read-modify-write that loses updates unlocked."""
    start.wait()
    for _ in range(times):
        with locked(lock) if lock is not None else contextlib.nullcontext():
            value = int(counter.read_text())
            time.sleep(0.002)
            atomic_write(counter, lambda tmp, value=value: tmp.write_text(str(value + 1)))


def _race(tmp_path: Path, lock: Path | None, threads: int = 4, times: int = 10) -> int:
    counter = tmp_path / "counter"
    counter.write_text("0")
    start = threading.Barrier(threads)
    workers = [threading.Thread(target=_increment, args=(counter, lock, times, start)) for _ in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(timeout=60)
    return int(counter.read_text())


@pytest.mark.skipif(os.name != "posix", reason="the lock does nothing without fcntl")
def test_threads_holding_the_lock_take_turns_and_lose_no_update(tmp_path):
    assert _race(tmp_path, None) < 40  # the same threads without the lock lose updates: the race is real
    assert _race(tmp_path, tmp_path / "counter.lock") == 40


HOLDER = """
import sys, time
from pathlib import Path
from course_lib.files import locked
with locked(sys.argv[1]):
    print("held", flush=True)
    time.sleep(1.0)
    Path(sys.argv[2]).write_text("written by the holder")
"""


@pytest.mark.skipif(os.name != "posix", reason="the lock does nothing without fcntl")
def test_a_second_process_waits_until_the_holder_is_done(tmp_path):
    lock, data = tmp_path / "out" / ".lock", tmp_path / "data"
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(lock), str(data)], stdout=subprocess.PIPE, text=True,
                              env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        assert holder.stdout.readline().strip() == "held"
        start = time.perf_counter()
        with locked(lock):
            waited = time.perf_counter() - start
            assert data.read_text() == "written by the holder"  # its whole read-modify-write came first
        assert waited > 0.3
    finally:
        holder.wait(timeout=60)
    assert holder.returncode == 0
