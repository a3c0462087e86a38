"""A small JSON results store: each notebook saves its evaluation, notebook 10 reads them all.

One file per profile (``build/cache/results-<profile>.json``), rewritten
atomically so an interrupted notebook never corrupts it.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from course_lib.checkpoints import atomic_write
from course_lib.config import cache_dir
from course_lib.evaluate import Evaluation


def results_path(profile_name: str, folder: Path | None = None) -> Path:
    return Path(folder or cache_dir()) / f"results-{profile_name}.json"


def load_results(profile_name: str, folder: Path | None = None) -> dict[str, Evaluation]:
    """Every saved evaluation of a profile, by method name (empty if none yet)."""
    path = results_path(profile_name, folder)
    if not path.exists():
        return {}
    try:
        rows = json.loads(path.read_text())
        return {method: Evaluation.from_dict(row) for method, row in rows.items()}
    except (ValueError, AttributeError, KeyError, TypeError) as e:  # not JSON, or not {method: row}
        raise ValueError(f"results file {path} is not a valid results file ({type(e).__name__}: {e}); "
                         "delete it to start afresh") from e


def save_results(evaluations: list[Evaluation] | Evaluation, profile_name: str, folder: Path | None = None,
                 source: str = "") -> Path:
    """Add or replace rows (by method name); returns the file written."""
    if isinstance(evaluations, Evaluation):
        evaluations = [evaluations]
    path = results_path(profile_name, folder)
    rows = {m: e.as_dict() for m, e in load_results(profile_name, folder).items()}
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
