"""A small JSON results store: each notebook saves its evaluation, notebook 10 reads them all.

One file per profile (``build/cache/results-<profile>.json``), rewritten
atomically so an interrupted notebook never corrupts it, under a lock so that two
notebooks saving at once both keep their rows.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

try:
    import fcntl
except ImportError:  # Windows: no advisory locks; saves from two notebooks at the same instant may race
    fcntl = None

from course_lib.checkpoints import atomic_write
from course_lib.config import cache_dir
from course_lib.evaluate import Evaluation


def results_path(profile_name: str, folder: Path | None = None) -> Path:
    return Path(folder or cache_dir()) / f"results-{profile_name}.json"


def load_rows(profile_name: str, folder: Path | None = None) -> dict[str, dict]:
    """The stored rows as saved, by method name: the evaluation plus ``source`` (the notebook that
    saved it) and ``saved`` (when). Empty if nothing was saved yet."""
    path = results_path(profile_name, folder)
    if not path.exists():
        return {}
    try:
        rows = json.loads(path.read_text())
        for row in rows.values():
            Evaluation.from_dict(row)  # every row must be a valid evaluation
        return rows
    except (ValueError, AttributeError, KeyError, TypeError) as e:  # not JSON, or not {method: row}
        raise ValueError(f"results file {path} is not a valid results file ({type(e).__name__}: {e}); "
                         "delete it to start afresh") from e


def load_results(profile_name: str, folder: Path | None = None) -> dict[str, Evaluation]:
    """Every saved evaluation of a profile, by method name (empty if none yet)."""
    return {method: Evaluation.from_dict(row) for method, row in load_rows(profile_name, folder).items()}


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``<path>.lock`` (read-modify-write of the results file)."""
    if fcntl is None:
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def save_results(evaluations: list[Evaluation] | Evaluation, profile_name: str, folder: Path | None = None,
                 source: str = "") -> Path:
    """Add or replace rows (by method name), keeping every other row as it was; returns the file written."""
    if isinstance(evaluations, Evaluation):
        evaluations = [evaluations]
    if not all(isinstance(e, Evaluation) for e in evaluations):
        raise TypeError("save_results expects an Evaluation or a list of them (from course_lib.evaluate)")
    path = results_path(profile_name, folder)
    with _locked(path):
        rows = load_rows(profile_name, folder)
        for e in evaluations:
            rows[e.method] = {**e.as_dict(), "source": source, "saved": time.strftime("%Y-%m-%d %H:%M:%S")}
        atomic_write(path, lambda tmp: tmp.write_text(json.dumps(rows, indent=1, sort_keys=True)))
    return path


def format_table(evaluations: list[Evaluation], percent: bool = True) -> str:
    """A Markdown table: one row per method, probe accuracy per label budget, then kNN."""
    if not evaluations:
        return "(no results)"
    budgets = list(evaluations[0].probe)
    head = "| method | " + " | ".join(f"probe {b}/class" for b in budgets) + " | kNN |"
    sep = "|---" * (len(budgets) + 2) + "|"

    def fmt(v: float) -> str:
        return f"{100 * v:.1f}" if percent else f"{v:.3f}"

    rows = [f"| {e.method} | " + " | ".join(fmt(e.probe.get(b, float('nan'))) for b in budgets)
            + f" | {fmt(e.knn)} |" for e in evaluations]
    return "\n".join([head, sep, *rows])
