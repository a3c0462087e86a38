"""A watchdog for executing notebooks: tell a hang of the machinery from a slow cell, quickly.

``nbclient`` waits for a cell's ``execute_reply`` on the shell channel for up to the cell's
timeout. Two very different things look the same from there:

* **a slow or looping cell**: the kernel is *busy* running it. That is the notebook's fault
  (a student's infinite loop): the cell times out, is interrupted, and fails.
* **a hang of the machinery**: the kernel is *idle* (it has finished the cell, or never got it)
  while the client still waits for the reply, e.g. a reply lost between the kernel and the
  client. Waiting longer does not help and the notebook is not at fault.

:class:`WatchdogMixin` (for a ``NotebookClient`` subclass) decides by the kernel's state, with
timers of its own that need no answer from the kernel:

1. the client saw the kernel publish ``idle`` for the cell on IOPub, and the reply is still
   missing ``hang_grace`` seconds later -> :class:`KernelHangError`, at once, whatever the cell's
   timeout;
2. the cell's timeout is reached with no ``idle`` seen: the kernel is interrupted. A running
   cell then fails and its reply comes: the cell was slow or looping (``CellTimeoutError``, as
   nbclient reports it). No reply within ``interrupt_grace`` seconds: a kernel that burns CPU
   is looping past the interrupt (the cell's fault again); one that uses no CPU is stuck in the
   machinery -> :class:`KernelHangError`. (No question is sent to the kernel: a second client's
   request would queue behind the cell, and ipykernel 7 answers ``kernel_info`` even while busy.)
   :attr:`WatchdogMixin.timeout_states` records ``"busy"`` for the cells that timed out.

A caller catches :class:`KernelHangError` and retries, or reports it as the machinery's failure.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from queue import Empty

import psutil
from jupyter_core.utils import run_sync
from nbclient.exceptions import CellTimeoutError
from nbclient.util import ensure_async
from traitlets import Float
from traitlets.config import LoggingConfigurable


class KernelHangError(RuntimeError):
    """The kernel is idle but the client still waits for a cell's reply: the machinery hangs, not the cell."""

    def __init__(self, cell_index: int, how: str):
        self.cell_index = cell_index
        super().__init__(f"cell {cell_index}: {how}")


class WatchdogMixin(LoggingConfigurable):
    """Put before ``NotebookClient`` (or nbconvert's/nbgrader's Execute) in the bases."""

    hang_grace = Float(10.0, help="seconds to wait for a cell's reply once the kernel went idle").tag(config=True)
    interrupt_grace = Float(5.0, help="seconds to wait for the reply after the timeout's interrupt").tag(config=True)
    busy_cpu = Float(0.2, help="share of a CPU core above which a kernel counts as busy").tag(config=True)
    watch_every = Float(0.5, help="seconds between the watchdog's checks").tag(config=True)

    @property
    def timeout_states(self) -> dict[int, str]:
        """Cell index -> kernel state ('busy') found when that cell timed out."""
        if not hasattr(self, "_timeout_states"):
            self._timeout_states = {}
        return self._timeout_states

    async def async_execute_cell(self, cell, cell_index, execution_count=None, store_history=True):
        self._watched_cell = cell_index
        return await super().async_execute_cell(cell, cell_index, execution_count, store_history)

    execute_cell = run_sync(async_execute_cell)  # (NotebookClient binds its own coroutine here)

    async def _async_poll_for_reply(self, msg_id, cell, timeout, task_poll_output_msg, task_poll_kernel_alive):
        index, self._watched_msg, self._watched_output = getattr(self, "_watched_cell", -1), msg_id, task_poll_output_msg
        reply = asyncio.ensure_future(super()._async_poll_for_reply(
            msg_id, cell, timeout, task_poll_output_msg, task_poll_kernel_alive))
        idle_since = None
        try:
            while True:
                done, _ = await asyncio.wait({reply}, timeout=self.watch_every)
                if done:
                    return reply.result()
                if idle_since is None and _went_idle(task_poll_output_msg):
                    idle_since = time.monotonic()  # the kernel published 'idle' for this cell
                if idle_since is not None and time.monotonic() - idle_since > self.hang_grace:
                    raise KernelHangError(index, f"the kernel finished the cell (idle) but its reply did not come "
                                                 f"within {self.hang_grace:g} s")
        except BaseException:
            reply.cancel()
            task_poll_kernel_alive.cancel()
            raise

    async def _async_handle_timeout(self, timeout, cell=None):
        """The cell's timeout: interrupt the kernel. A cell that was running fails at once (its reply comes); a
        kernel that does not reply but burns CPU is looping past the interrupt; both are the cell's fault
        (CellTimeoutError, as nbclient does). A kernel that neither replies nor uses CPU is stuck in the
        machinery: KernelHangError."""
        index, msg_id = getattr(self, "_watched_cell", -1), getattr(self, "_watched_msg", None)
        if _went_idle(getattr(self, "_watched_output", None)):
            raise KernelHangError(index, f"the kernel finished the cell (idle) but its reply did not come within "
                                         f"the cell's {timeout} s")
        before = self._kernel_cpu()
        await ensure_async(self.km.interrupt_kernel())
        deadline = time.monotonic() + self.interrupt_grace
        while (left := deadline - time.monotonic()) > 0:
            try:
                msg = await ensure_async(self.kc.shell_channel.get_msg(timeout=left))
            except Empty:
                break
            if msg["parent_header"].get("msg_id") == msg_id:  # the running cell was interrupted
                return self._busy_timeout(index, timeout, cell, msg)
        if self._kernel_cpu() - before <= self.busy_cpu * self.interrupt_grace:
            raise KernelHangError(index, f"no reply after the cell's {timeout} s nor after an interrupt, and the "
                                         "kernel used no CPU (idle)")
        return self._busy_timeout(index, timeout, cell, None)  # a loop that ignores the interrupt

    def _busy_timeout(self, index, timeout, cell, reply):
        """What nbclient does at a timeout once the kernel was found busy (it has been interrupted already)."""
        self.timeout_states[index] = "busy"
        if not self.interrupt_on_timeout:
            raise CellTimeoutError.error_from_timeout_and_cell("Cell execution timed out", timeout, cell)
        if self.error_on_timeout:
            return {"content": {**self.error_on_timeout, "status": "error"}}
        return reply

    def _kernel_cpu(self) -> float:
        """CPU seconds used so far by the kernel's processes (the launcher, a sandbox, the kernel, its children)."""
        process = getattr(getattr(self.km, "provisioner", None), "process", None)
        if process is None:
            return 0.0
        try:
            root = psutil.Process(process.pid)
            total = 0.0
            for p in [root, *root.children(recursive=True)]:
                with contextlib.suppress(psutil.Error):
                    t = p.cpu_times()
                    total += t.user + t.system
            return total
        except psutil.Error:
            return 0.0


def _went_idle(task) -> bool:
    """Whether nbclient's IOPub task for the cell ended as it does on the kernel's 'idle' status."""
    return task is not None and task.done() and not task.cancelled() and task.exception() is None
