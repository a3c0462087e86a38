"""A small JSON results store: each notebook saves its evaluation, notebook 10 reads them all.

One file per profile (``build/cache/results-<profile>.json``), rewritten
atomically so an interrupted notebook never corrupts it, under a lock so that two
notebooks saving at once both keep their rows.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

from course_lib.config import cache_dir
from course_lib.evaluate import FINETUNE_LABELS, Evaluation, mean_std
from course_lib.files import atomic_write, locked


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


def save_results(evaluations: list[Evaluation] | Evaluation, profile_name: str, folder: Path | None = None,
                 source: str = "") -> Path:
    """Add or replace rows (by method name), keeping every other row as it was; returns the file written."""
    if isinstance(evaluations, Evaluation):
        evaluations = [evaluations]
    if not all(isinstance(e, Evaluation) for e in evaluations):
        raise TypeError("save_results expects an Evaluation or a list of them (from course_lib.evaluate)")
    path = results_path(profile_name, folder)
    with locked(path.with_name(path.name + ".lock")):  # (a no-op on Windows: two saves at one instant may race)
        rows = load_rows(profile_name, folder)
        for e in evaluations:
            rows[e.method] = {**e.as_dict(), "source": source, "saved": time.strftime("%Y-%m-%d %H:%M:%S")}
        atomic_write(path, lambda tmp: tmp.write_text(json.dumps(rows, indent=1, sort_keys=True)))
    return path


def format_table(evaluations: list[Evaluation], percent: bool = True,
                 extra: dict[str, dict[str, str]] | None = None) -> str:
    """A Markdown table: one row per method; probe accuracy per label budget and the fine-tune column
    as mean ± std over the label draws; kNN; and what pre-training cost (images, steps, seconds).
    ``extra``: more columns, as {method: {column: text}} ('–' where a method has none)."""
    if not evaluations:
        return "(no results)"
    extra = extra or {}
    columns = list(dict.fromkeys(c for cells in extra.values() for c in cells))
    budgets = list(dict.fromkeys(b for e in evaluations for b in e.probe))
    scale = 100 if percent else 1
    digits = 1 if percent else 3

    def fmt(values: list[float]) -> str:
        m, s = mean_std(values)
        if math.isnan(m):
            return "–"
        return f"{scale * m:.{digits}f}" + (f" ± {scale * s:.{digits}f}" if len(values) > 1 else "")

    def cost(e: Evaluation) -> str:
        c = e.compute
        if not c or not c.get("steps"):
            return "– | – | –"
        return f"{int(c.get('images', 0)):,} | {int(c['steps']):,} | {float(c.get('seconds', 0)):.0f}"

    head = ("| method | " + " | ".join(f"probe {b}/class" for b in budgets)
            + f" | kNN | fine-tune {FINETUNE_LABELS}/class | images seen | steps | seconds |"
            + "".join(f" {c} |" for c in columns))
    sep = "|---" * (len(budgets) + 6 + len(columns)) + "|"
    rows = [f"| {e.method} | " + " | ".join(fmt(e.probe.get(b, [])) for b in budgets)
            + f" | {fmt([e.knn])} | {fmt(e.finetune)} | {cost(e)} |"
            + "".join(f" {extra.get(e.method, {}).get(c, '–')} |" for c in columns) for e in evaluations]
    return "\n".join([head, sep, *rows])


def gains(evaluations: list[Evaluation], method: str, over: str = "random init") -> dict[str, float]:
    """Mean accuracy of ``method`` minus that of ``over`` for every probe budget and the fine-tune column
    (key "fine-tune"), over the label draws of one training run."""
    rows = {e.method: e for e in evaluations}
    for name in (method, over):
        if name not in rows:
            raise KeyError(f"no row {name!r} among {sorted(rows)}")
    a, b = rows[method], rows[over]
    out = {budget: a.mean(budget) - b.mean(budget) for budget in a.probe if budget in b.probe}
    if a.finetune and b.finetune:
        out["fine-tune"] = mean_std(a.finetune)[0] - mean_std(b.finetune)[0]
    return out
