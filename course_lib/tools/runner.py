"""Execute notebooks as a course run: time, peak memory and headline number per notebook.

Each notebook runs in its own process (and kernel), so its peak memory is its
own. A notebook states its headline with ``course_lib.results.headline``, which prints
a line ``Headline: ...`` that the runner picks out of the executed notebook.

A notebook that does not finish -- a failing cell, a cell past its time limit, a
dead kernel, a hang of the machinery (see ``watchdog.py``) -- is reported as
FAILED with the reason, and the run's exit code is non-zero. Each record also says what produced
the notebook's numbers (:func:`run_facts`: profile, device, torch, when, the course's commit), which the
course site shows on every page (``tools/site.py``). Nothing waits
forever: every cell has a time limit (the profile's ``cell_timeout_s``), the
watchdog ends a hang within ``idle_grace_s``, and the process executing a notebook
has a limit of its own.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import torch

from course_lib.config import REPO_ROOT, get_device, get_profile, git_revision
from course_lib.results import HEADLINE_PREFIX
from course_lib.tools.watchdog import ClientWatch, NotebookHang
from course_lib.widgets import HEADLESS_ENV

try:
    import resource
except ImportError:  # Windows has no resource module
    resource = None

def course_commit(root: Path = REPO_ROOT) -> str:
    """The course's git commit (short), with ``+changes`` when tracked files differ from it; "" outside a git
    checkout (e.g. the student bundle) or without git."""
    return git_revision(root, short=True)


RUN_FACTS = ("profile", "device", "torch", "started", "commit")  # what a notebook's record says about its run


def run_facts() -> dict:
    """What produces a notebook's numbers in this process (``RUN_FACTS``): the profile (``$COURSE_PROFILE``), the
    device, torch's version, the time (UTC) and the course's commit."""
    facts = {"profile": get_profile().name, "device": str(get_device()), "torch": torch.__version__,
             "started": datetime.now(UTC).isoformat(timespec="seconds"), "commit": course_commit()}
    return {fact: facts[fact] for fact in RUN_FACTS}


def _find_headline(nb) -> str:
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            for line in out.get("text", "").splitlines():
                if line.startswith(HEADLINE_PREFIX):
                    return line[len(HEADLINE_PREFIX):]
    return ""


def execute_watched(nb, cwd: str | Path, timeout: float, idle_grace_s: float | None = None,
                    name: str = "notebook") -> None:
    """Execute ``nb`` in place in a fresh, headless kernel, with a per-cell time limit and a hang watchdog.

    Raises nbclient's ``CellExecutionError`` (a cell failed), ``CellTimeoutError`` (a cell ran past
    ``timeout`` seconds with the kernel busy), ``DeadKernelError`` (the kernel died) or
    :class:`NotebookHang` (the kernel was idle while its reply was still waited for).
    """
    from nbclient import NotebookClient
    from nbclient.exceptions import DeadKernelError

    if not timeout > 0:
        raise ValueError(f"timeout must be a positive number of seconds, got {timeout!r}")
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(cwd)}})
    watch = ClientWatch(client, name, idle_grace_s)  # also drops nbclient's Output-widget stand-in
    try:
        client.execute(env={**os.environ, HEADLESS_ENV: "1"})  # widgets in the kernel draw plain figures
    except DeadKernelError as e:
        if watch.verdict:
            raise NotebookHang(watch.verdict) from e
        raise
    finally:
        watch.stop()


def describe_failure(e: BaseException, timeout: float) -> str:
    """One line saying why a notebook did not finish."""
    from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError

    if isinstance(e, NotebookHang):
        return str(e)
    if isinstance(e, CellTimeoutError):
        return f"a cell ran longer than its limit of {timeout:.0f} s (the kernel was busy): a slow or endless cell"
    if isinstance(e, DeadKernelError):
        return "the kernel died (a crash, os._exit or out of memory)"
    if isinstance(e, CellExecutionError):
        text = re.sub(r"\x1b\[[0-9;]*m", "", str(e)).strip()  # drop terminal colours
        return text.splitlines()[-1][:300] if text else "a cell failed"
    return f"{type(e).__name__}: {e}"[:300]


def execute_notebook_here(path: str, out_dir: str, html: bool = True, timeout: float | None = None,
                          idle_grace_s: float | None = None) -> int:
    """Execute one notebook in a fresh kernel; write the executed copy (+ HTML) and a JSON record.

    The record is written whatever happens (``error`` says why the notebook did not finish).
    """
    import nbformat

    path, out = Path(path), Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    timeout = timeout or get_profile().cell_timeout_s
    nb = nbformat.read(path, as_version=4)
    facts = run_facts()
    start = time.perf_counter()
    error = ""
    try:
        execute_watched(nb, path.parent, timeout, idle_grace_s, name=path.name)
    except Exception as e:
        error = describe_failure(e, timeout)
    seconds = time.perf_counter() - start
    peak_mb = (resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024  # the kernel, reaped at shutdown
               if resource is not None else 0.0)
    nbformat.write(nb, out / path.name)
    if html:
        try:
            from nbconvert import HTMLExporter
            body, _ = HTMLExporter().from_notebook_node(nb)
            (out / path.with_suffix(".html").name).write_text(body, encoding="utf-8")
        except Exception as e:  # a copy for reading; never the reason a run fails
            print(f"HTML copy of {path.name} not written: {e}", file=sys.stderr)
    record = {"notebook": path.name, "seconds": round(seconds, 1), "peak_rss_mb": round(peak_mb),
              "headline": _find_headline(nb), "error": error, **facts}
    (out / (path.stem + ".json")).write_text(json.dumps(record))
    return 1 if error else 0


def _process_limit(path: Path, cell_timeout: float) -> float:
    """An upper bound for one notebook's process: every code cell at its limit, plus the watchdog's slack."""
    import nbformat

    cells = sum(c.cell_type == "code" for c in nbformat.read(path, as_version=4).cells)
    return max(1, cells) * (cell_timeout + 120) + 300


def run_course(notebooks: list[str] | None = None, profile: str | None = None,
               out_dir: str | Path | None = None, html: bool = True,
               after_each: Callable[[dict], None] | None = None) -> int:
    """Execute every notebook (in order) and print one line each; returns 1 if any did not finish.

    ``after_each(record)``, if given, is called after each notebook with its record (``notebook``,
    ``seconds``, ``peak_rss_mb``, ``headline``, ``error``), e.g. to see what it wrote to the cache.
    """
    out = Path(out_dir or REPO_ROOT / "build" / "course")
    paths = [Path(p) for p in notebooks] if notebooks else sorted((REPO_ROOT / "notebooks").glob("[0-9]*.ipynb"))
    if not paths:
        print("no notebooks found", file=sys.stderr)
        return 1
    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        print(f"no such notebook(s): {', '.join(missing)}", file=sys.stderr)
        return 2
    cell_timeout = get_profile(profile).cell_timeout_s
    records = []
    print(f"{'notebook':44s} {'time':>7s} {'peak RSS':>9s}  headline", flush=True)
    for p in paths:
        cmd = [sys.executable, "-m", "course_lib.tools.runner", str(p), str(out)] + ([] if html else ["--no-html"])
        log = out / (p.stem + ".log")  # the kernel's chatter; shown only when a notebook did not run
        rec_path = out / (p.stem + ".json")
        out.mkdir(parents=True, exist_ok=True)
        rec_path.unlink(missing_ok=True)  # never report an earlier run's record as this one's
        start = time.perf_counter()
        reason = "the process executing it stopped without a record"
        with open(log, "w") as stderr:
            try:
                subprocess.run(cmd, cwd=REPO_ROOT, stdout=subprocess.DEVNULL, stderr=stderr,
                               timeout=_process_limit(p, cell_timeout))
            except subprocess.TimeoutExpired as e:
                reason = f"stopped after {e.timeout:.0f} s, the limit of the process executing it"
        rec = json.loads(rec_path.read_text()) if rec_path.exists() else {
            "notebook": p.name, "seconds": round(time.perf_counter() - start, 1), "peak_rss_mb": 0, "headline": "",
            "error": reason}
        records.append(rec)
        if after_each is not None:
            after_each(rec)
        if not rec_path.exists():
            print(log.read_text()[-2000:], file=sys.stderr)
        status = f"FAILED: {rec['error']}" if rec["error"] else rec["headline"]
        print(f"{rec['notebook']:44s} {rec['seconds']:6.1f}s {rec['peak_rss_mb']:6d} MB  {status}", flush=True)
    total = sum(r["seconds"] for r in records)
    print(f"{'total':44s} {total:6.1f}s {max(r['peak_rss_mb'] for r in records):6d} MB", flush=True)
    lines = ["| notebook | time (s) | peak RSS (MB) | headline |", "|---|---|---|---|"]
    lines += [f"| {r['notebook']} | {r['seconds']} | {r['peak_rss_mb']} | "
              f"{'FAILED: ' + r['error'] if r['error'] else r['headline']} |" for r in records]
    (out / "summary.md").write_text("\n".join(lines) + "\n")
    failed = [r["notebook"] for r in records if r["error"]]
    print(f"executed notebooks and summary.md in {out}" + (f"; FAILED: {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":  # one notebook in this process: python -m course_lib.tools.runner NOTEBOOK OUT [--no-html]
    sys.exit(execute_notebook_here(sys.argv[1], sys.argv[2], html="--no-html" not in sys.argv[3:]))
