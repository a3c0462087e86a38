"""A watchdog for executed notebooks that does not depend on the kernel answering.

Whatever executes a notebook (``make course``, ``make bench``, nbval in ``make test``,
grading) sends a cell to the kernel and waits for the reply. Two different things
can make that wait long:

* a **slow or endless cell**: the kernel is *busy* with the cell past its time
  limit -- the student's or the author's problem;
* a **hang of the machinery**: the kernel is *idle* -- it finished the cell, or
  never picked the request up -- while the program still waits for the reply
  (a lost wake-up on a ZeroMQ socket, in the client or in the kernel). Nobody's
  code is wrong; waiting longer never helps.

The watchdog tells them apart by listening, on its own socket in its own thread,
to the kernel's IOPub status messages (``busy``/``idle``, each naming the request
it belongs to); it never sends the kernel anything. Once the kernel has been idle
for ``idle_grace_s`` while a cell is still waited for (or never started the cell
within that time), it calls ``on_hang`` with a message naming the cell; a busy
kernel is left to the executor's own cell time limit, with ``hard_limit_s`` as a
last resort so that nothing waits forever.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

IDLE_GRACE_ENV = "COURSE_IDLE_GRACE_S"
DEFAULT_IDLE_GRACE_S = 30.0  # a finished cell's reply arrives in milliseconds; 30 s is generous


def default_idle_grace_s() -> float:
    """How long a kernel may sit idle while its reply is waited for: ``$COURSE_IDLE_GRACE_S`` or 30 s."""
    text = os.environ.get(IDLE_GRACE_ENV, "")
    try:
        value = float(text) if text else DEFAULT_IDLE_GRACE_S
    except ValueError:
        value = -1.0
    if not value > 0:
        raise ValueError(f"${IDLE_GRACE_ENV} must be a positive number of seconds, got {text!r}")
    return value


def kill_kernel(km) -> None:
    """SIGKILL a kernel manager's kernel process and reap it (a waiting client then sees a dead kernel)."""
    process = getattr(getattr(km, "provisioner", None), "process", None)
    if process is not None and process.poll() is None:
        process.kill()
        process.wait(10)


class NotebookHang(RuntimeError):
    """The machinery executing a notebook hung: the kernel is idle, the cell's reply never arrived."""


@dataclass
class _Cell:
    index: int
    started: float
    limit_s: float | None
    request: str = ""  # msg_id of the execute_request the kernel picked up for this cell
    kernel_done: float | None = None  # when the kernel went idle after it


class KernelWatchdog:
    """Watch one kernel's IOPub status; call ``on_hang(message)`` (once) on a hang of the machinery.

    Args:
        connection_info: the kernel's connection info (``kernel_manager.get_connection_info()``).
        on_hang: called from the watchdog's thread with a message; it should stop the wait
            (kill the kernel, signal the waiting thread).
        idle_grace_s: how long the kernel may sit idle while a cell is waited for (None: :func:`default_idle_grace_s`).
        hard_limit_s: seconds added to a cell's own limit after which the wait is ended anyway.
        name: the notebook, for messages.
    """

    def __init__(self, connection_info: dict, on_hang: Callable[[str], None], idle_grace_s: float | None = None,
                 hard_limit_s: float = 120.0, name: str = "notebook", poll_s: float = 0.2) -> None:
        idle_grace_s = default_idle_grace_s() if idle_grace_s is None else idle_grace_s
        if not idle_grace_s > 0 or not hard_limit_s > 0:
            raise ValueError(f"idle_grace_s and hard_limit_s must be positive, got {idle_grace_s!r}, {hard_limit_s!r}")
        self.connection_info = dict(connection_info)
        self.on_hang = on_hang
        self.idle_grace_s = float(idle_grace_s)
        self.hard_limit_s = float(hard_limit_s)
        self.name = name
        self.poll_s = poll_s
        self.verdict: str | None = None  # set once, when on_hang is called
        self.kernel_state = "unknown"  # last status seen: starting, busy, idle
        self._cell: _Cell | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"watchdog {name}", daemon=True)

    # ------------------------------------------------------------------ the executor's side

    def start(self) -> KernelWatchdog:
        self._thread.start()
        self._ready.wait(10)  # subscribed (a SUB socket misses what is published before it connects)
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)

    def __enter__(self) -> KernelWatchdog:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def cell_started(self, index: int, limit_s: float | None = None) -> None:
        with self._lock:
            self._cell = _Cell(index, time.monotonic(), limit_s)

    def cell_finished(self) -> None:
        with self._lock:
            self._cell = None

    # ------------------------------------------------------------------ the watching thread

    def _observe(self, msg: dict) -> None:
        if msg.get("msg_type") != "status":
            return
        state = msg["content"].get("execution_state", "unknown")
        parent = msg.get("parent_header") or {}
        with self._lock:
            self.kernel_state = state
            cell = self._cell
            if cell is None or parent.get("msg_type") != "execute_request":
                return
            if state == "busy" and parent.get("msg_id") != cell.request:
                cell.request, cell.kernel_done = parent.get("msg_id", ""), None  # the kernel took up this cell
            elif state == "idle" and cell.request and parent.get("msg_id") == cell.request:
                cell.kernel_done = time.monotonic()

    def check(self, now: float | None = None) -> str | None:
        """The hang message if the waited-for cell is hung now, else None (also used by the tests)."""
        now = time.monotonic() if now is None else now
        with self._lock:
            cell = self._cell
            if cell is None:
                return None
            where = f"{self.name}, cell {cell.index}"
            if cell.kernel_done is not None and now - cell.kernel_done > self.idle_grace_s:
                return (f"hang of the notebook machinery in {where}: the kernel finished the cell and has been idle "
                        f"for {now - cell.kernel_done:.0f} s, but its reply never reached the program executing it")
            if not cell.request and self.kernel_state == "idle" and now - cell.started > self.idle_grace_s:
                return (f"hang of the notebook machinery in {where}: the kernel stayed idle for "
                        f"{now - cell.started:.0f} s and never started the cell")
            if cell.limit_s is not None and now - cell.started > cell.limit_s + self.hard_limit_s:
                return (f"{where} still waited for after {now - cell.started:.0f} s (its limit is {cell.limit_s:.0f} s; "
                        f"kernel {self.kernel_state}): stopped by the watchdog")
            return None

    def _run(self) -> None:
        from jupyter_client import BlockingKernelClient

        client = BlockingKernelClient()
        client.load_connection_info(self.connection_info)
        client.start_channels(shell=False, iopub=True, stdin=False, hb=False, control=False)
        try:
            time.sleep(0.2)  # let the subscription reach the kernel
            self._ready.set()
            last_check = 0.0
            while not self._stop.is_set():
                try:
                    self._observe(client.get_iopub_msg(timeout=self.poll_s))
                except Exception:  # queue.Empty, or a message we cannot parse
                    pass
                if time.monotonic() - last_check < self.poll_s:
                    continue  # judge every poll_s, also while output streams in
                last_check = time.monotonic()
                verdict = self.check()
                if verdict and self.verdict is None:
                    self.verdict = verdict
                    self.on_hang(verdict)
        finally:
            self._ready.set()
            client.stop_channels()


class ClientWatch:
    """A :class:`KernelWatchdog` wired into an nbclient ``NotebookClient`` through its hooks (set on the
    instance): started with the kernel, told when each cell starts and ends; a hang kills the kernel, so the
    client raises ``DeadKernelError`` within a second and :attr:`verdict` says it was a hang. Also removes
    nbclient's stand-in for the Output widget, which sends on the shell socket while the client waits there
    for the cell's reply (the cause of the course's hangs)."""

    def __init__(self, client, name: str = "notebook", idle_grace_s: float | None = None) -> None:
        self.watchdog: KernelWatchdog | None = None
        client.widget_registry = {}

        def start(notebook) -> None:
            self.watchdog = KernelWatchdog(client.km.get_connection_info(), lambda _msg: kill_kernel(client.km),
                                           idle_grace_s=idle_grace_s, name=name).start()

        client.on_notebook_start = start
        client.on_cell_execute = lambda cell, cell_index: self.watchdog and self.watchdog.cell_started(
            cell_index, client.timeout)
        client.on_cell_executed = lambda cell, cell_index, execute_reply: self.watchdog and self.watchdog.cell_finished()

    @property
    def verdict(self) -> str | None:
        """The hang message, if the watchdog found one."""
        return self.watchdog.verdict if self.watchdog is not None else None

    def stop(self) -> None:
        if self.watchdog is not None:
            self.watchdog.stop()
