"""Instructor mode: ``make demo`` prepares a live lecture.

Every notebook is executed once by the course runner (:func:`runner.run_course`), which fills the
cache that JupyterLab's kernels then read (``build/cache``, or ``$COURSE_CACHE``): pre-trained
models and cached evaluations. Opened in JupyterLab afterwards, a notebook loads them instead of
training, so a lecture can run it live in seconds. The runs have time budgets off, as under ``make test``:
every model is trained to its last step (the numbers the notebooks assert), and a complete run is
reused by the lecture's budgeted kernels too -- a run cut by a budget would depend on the machine's
load. The profile is the one the lecture will use:
``--profile``, else ``$COURSE_PROFILE``, else ``full`` when a CUDA GPU is present and ``fast``
otherwise.

Printed at the end, per notebook: the time of the warming run, what it added to the cache, and
(unless ``--no-warm-check``) the time of a second run on the warm cache -- what the lecture will
wait -- with a warning if that second run trained or evaluated anything again.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

from course_lib.config import BUDGETS_ENV, PROFILE_ENV, REPO_ROOT, cache_dir, get_profile

WARM_SLOW_S = 60.0  # a warm notebook slower than this is pointed out (kernel start and imports alone: 5-20 s)


def default_profile() -> str:
    """``$COURSE_PROFILE`` if set, else ``full`` on a machine with a CUDA GPU, else ``fast``."""
    name = os.environ.get(PROFILE_ENV)
    if name:
        return name
    import torch

    return "full" if torch.cuda.is_available() else "fast"


def snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    """Every file under ``folder``: relative path -> (size, mtime in ns)."""
    if not folder.is_dir():
        return {}
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in folder.rglob("*") if p.is_file()}


@dataclass
class CacheChange:
    """What one notebook run wrote to the cache: new or rewritten models, evaluations, results rows."""
    models: list[str] = field(default_factory=list)  # checkpoints/<name>-<key>.pt
    evaluations: list[str] = field(default_factory=list)  # checkpoints/<name>-<key>.json (load_or_compute)
    other: list[str] = field(default_factory=list)  # anything else but the results store and its lock
    results: bool = False  # the results store (results-<profile>.json), rewritten by every run
    bytes: int = 0  # size of the new or rewritten files, results store excluded

    def trained(self) -> bool:
        """True if the run trained or evaluated something (the results store alone is rewritten every run)."""
        return bool(self.models or self.evaluations or self.other)

    def describe(self) -> str:
        if not self.trained():
            return "nothing new" + (" (results rows rewritten)" if self.results else "")
        parts = []
        if self.models:
            names = [n if self.models.count(n) == 1 else f"{n} x{self.models.count(n)}"
                     for n in dict.fromkeys(self.models)]
            parts.append(f"{len(self.models)} model{'s' * (len(self.models) != 1)} ({', '.join(names)})")
        if self.evaluations:
            parts.append(f"{len(self.evaluations)} evaluation{'s' * (len(self.evaluations) != 1)}")
        if self.other:
            parts.append(f"{len(self.other)} other file{'s' * (len(self.other) != 1)}")
        if self.results:
            parts.append("results rows")
        size = f"{self.bytes / 1e6:.1f} MB" if self.bytes >= 1e5 else f"{self.bytes / 1e3:.0f} kB"
        return ", ".join(parts) + f"; {size}"


def _stem(name: str) -> str:
    """``checkpoints/rotation-3f2a....pt`` -> ``rotation`` (the key is a hash, of no use to a reader)."""
    base = Path(name).name.rsplit(".", 1)[0]
    return base.rsplit("-", 1)[0] if "-" in base else base


def cache_change(before: dict[str, tuple[int, int]], after: dict[str, tuple[int, int]]) -> CacheChange:
    """The files of ``after`` that are new or changed since ``before`` (two :func:`snapshot` results)."""
    change = CacheChange()
    for name, stat in sorted(after.items()):
        if before.get(name) == stat:
            continue
        base = Path(name).name
        if base.startswith("results-") and (base.endswith(".json") or base.endswith(".json.lock")):
            change.results = change.results or base.endswith(".json")
            continue
        change.bytes += stat[0]
        if name.startswith("checkpoints") and base.endswith(".pt"):
            change.models.append(_stem(name))
        elif name.startswith("checkpoints") and base.endswith(".json"):
            change.evaluations.append(_stem(name))
        else:
            change.other.append(name)
    return change


def _run(notebooks: list[Path], out: Path, cache: Path) -> tuple[int, list[tuple[dict, CacheChange]]]:
    """``run_course`` on ``notebooks``, with what each notebook wrote to ``cache``."""
    from course_lib.tools.runner import run_course

    rows: list[tuple[dict, CacheChange]] = []
    state = {"before": snapshot(cache)}

    def after_each(record: dict) -> None:
        now = snapshot(cache)
        rows.append((record, cache_change(state["before"], now)))
        state["before"] = now

    status = run_course([str(p) for p in notebooks], out_dir=out, html=False, after_each=after_each)
    return status, rows


def prepare(notebooks: list[str] | None = None, profile: str | None = None, out_dir: str | Path | None = None,
            warm_check: bool = True) -> int:
    """Warm the cache for every notebook (and time a second, warm run); print what was prepared.

    Returns 0 when every notebook ran, 1 if one failed (the runner's exit code), 2 for a missing notebook.
    """
    name = profile or default_profile()
    get_profile(name)  # an unknown name fails here, naming the profiles there are
    os.environ[PROFILE_ENV] = name  # the notebooks' kernels inherit it
    paths = [Path(p) for p in notebooks] if notebooks else sorted((REPO_ROOT / "notebooks").glob("[0-9]*.ipynb"))
    missing = [str(p) for p in paths if not p.exists()]
    if missing or not paths:
        print(f"no such notebook(s): {', '.join(missing)}" if missing else "no notebooks found", file=sys.stderr)
        return 2
    out = Path(out_dir or REPO_ROOT / "build" / "demo")
    cache = cache_dir()
    print(f"Warming the cache {cache} for the {name!r} profile ({len(paths)} notebooks, time budgets off):",
          flush=True)
    budgets = os.environ.get(BUDGETS_ENV)
    os.environ[BUDGETS_ENV] = "off"  # the notebooks' kernels inherit it; restored below
    try:
        status, cold = _run(paths, out / "warm-up", cache)
        warm: dict[str, tuple[dict, CacheChange]] = {}
        if warm_check and status == 0:
            print("\nSecond run on the warm cache (what the lecture will wait):", flush=True)
            status, rows = _run(paths, out / "second-run", cache)
            warm = {rec["notebook"]: (rec, change) for rec, change in rows}
    finally:
        if budgets is None:
            os.environ.pop(BUDGETS_ENV, None)
        else:
            os.environ[BUDGETS_ENV] = budgets

    print(f"\nPrepared for a live lecture ({name!r} profile, cache {cache}):")
    print(f"{'notebook':32s} {'warm-up':>8s} {'2nd run':>8s}  cached")
    for rec, change in cold:
        second = warm.get(rec["notebook"])
        second_s = "-" if second is None else ("FAILED" if second[0]["error"] else f"{second[0]['seconds']:.1f}s")
        what = f"FAILED: {rec['error']}" if rec["error"] else change.describe()
        print(f"{rec['notebook']:32s} {rec['seconds']:7.1f}s {second_s:>8s}  {what}")
    notes = []
    for nb, (rec, change) in warm.items():
        if change.trained():
            notes.append(f"{nb}: the second run wrote to the cache again ({change.describe()}): "
                         "something it computes is not cached, so the lecture will wait for it too")
        elif not rec["error"] and rec["seconds"] > WARM_SLOW_S:
            notes.append(f"{nb}: {rec['seconds']:.0f} s even on the warm cache")
    for note in notes:
        print(f"note: {note}")
    if status:
        print("Some notebooks did not run (above): they are not ready for the lecture.", file=sys.stderr)
        return status
    lab = "make lab" if name == "fast" else f"{PROFILE_ENV}={name} make lab"  # the kernels read the profile there
    if "COURSE_CACHE" in os.environ:
        lab = f"COURSE_CACHE={cache} {lab}"
    print(f"Ready. Start the lecture with: {lab}")
    return 0
