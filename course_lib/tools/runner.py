"""Execute notebooks as a course run: time, peak memory and headline number per notebook.

Each notebook runs in its own process (and kernel), so its peak memory is its
own. A notebook states its headline with :func:`headline`, which prints a line
``Headline: ...`` that the runner picks out of the executed notebook.
"""

from __future__ import annotations

import json
import re
import resource
import subprocess
import sys
import time
from pathlib import Path

from course_lib.config import REPO_ROOT

HEADLINE_PREFIX = "Headline: "


def headline(text: str) -> None:
    """Print the notebook's headline result (shown by ``make course``)."""
    print(HEADLINE_PREFIX + text)


def _find_headline(nb) -> str:
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            for line in out.get("text", "").splitlines():
                if line.startswith(HEADLINE_PREFIX):
                    return line[len(HEADLINE_PREFIX):]
    return ""


def execute_notebook_here(path: str, out_dir: str, html: bool = True, timeout: int = 1800) -> int:
    """Execute one notebook in a fresh kernel; write the executed copy (+ HTML) and a JSON record."""
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    path, out = Path(path), Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    nb = nbformat.read(path, as_version=4)
    start = time.perf_counter()
    error = ""
    try:
        NotebookClient(nb, timeout=timeout, kernel_name="python3",
                       resources={"metadata": {"path": str(path.parent)}}).execute()
    except CellExecutionError as e:
        text = re.sub(r"\x1b\[[0-9;]*m", "", str(e)).strip()  # drop terminal colours
        error = text.splitlines()[-1][:300] if text else "cell failed"
    seconds = time.perf_counter() - start
    peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024  # the kernel, reaped at shutdown
    nbformat.write(nb, out / path.name)
    if html:
        from nbconvert import HTMLExporter
        body, _ = HTMLExporter().from_notebook_node(nb)
        (out / path.with_suffix(".html").name).write_text(body, encoding="utf-8")
    record = {"notebook": path.name, "seconds": round(seconds, 1), "peak_rss_mb": round(peak_mb),
              "headline": _find_headline(nb), "error": error}
    (out / (path.stem + ".json")).write_text(json.dumps(record))
    return 1 if error else 0


def run_course(notebooks: list[str] | None = None, profile: str | None = None,
               out_dir: str | Path | None = None, html: bool = True) -> int:
    """Execute every notebook (in order) and print one line each; returns 1 if any failed."""
    out = Path(out_dir or REPO_ROOT / "build" / "course")
    paths = [Path(p) for p in notebooks] if notebooks else sorted((REPO_ROOT / "notebooks").glob("[0-9]*.ipynb"))
    if not paths:
        print("no notebooks found", file=sys.stderr)
        return 1
    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        print(f"no such notebook(s): {', '.join(missing)}", file=sys.stderr)
        return 2
    records = []
    print(f"{'notebook':44s} {'time':>7s} {'peak RSS':>9s}  headline", flush=True)
    for p in paths:
        cmd = [sys.executable, "-m", "course_lib.tools.runner", str(p), str(out)] + ([] if html else ["--no-html"])
        log = out / (p.stem + ".log")  # the kernel's chatter; shown only when a notebook did not run
        out.mkdir(parents=True, exist_ok=True)
        with open(log, "w") as stderr:
            subprocess.call(cmd, cwd=REPO_ROOT, stdout=subprocess.DEVNULL, stderr=stderr)
        rec_path = out / (p.stem + ".json")
        rec = json.loads(rec_path.read_text()) if rec_path.exists() else {"notebook": p.name, "seconds": float("nan"),
                                                                         "peak_rss_mb": 0, "headline": "",
                                                                         "error": "did not run"}
        records.append(rec)
        if not rec_path.exists():
            print(log.read_text()[-2000:], file=sys.stderr)
        status = f"FAILED: {rec['error']}" if rec["error"] else rec["headline"]
        print(f"{rec['notebook']:44s} {rec['seconds']:6.1f}s {rec['peak_rss_mb']:6d} MB  {status}", flush=True)
    total = sum(r["seconds"] for r in records)
    print(f"{'total':44s} {total:6.1f}s {max(r['peak_rss_mb'] for r in records):6d} MB", flush=True)
    lines = ["| notebook | time (s) | peak RSS (MB) | headline |", "|---|---|---|---|"]
    lines += [f"| {r['notebook']} | {r['seconds']} | {r['peak_rss_mb']} | {r['error'] or r['headline']} |"
              for r in records]
    (out / "summary.md").write_text("\n".join(lines) + "\n")
    print(f"executed notebooks and summary.md in {out}")
    return 1 if any(r["error"] for r in records) else 0


if __name__ == "__main__":  # one notebook in this process: python -m course_lib.tools.runner NOTEBOOK OUT [--no-html]
    sys.exit(execute_notebook_here(sys.argv[1], sys.argv[2], html="--no-html" not in sys.argv[3:]))
