"""A small JSON results store: each notebook saves its evaluation, notebook 10 reads them all.

One file per profile (``build/cache/results-<profile>.json``), rewritten
atomically so an interrupted notebook never corrupts it, under a lock so that two
notebooks saving at once both keep their rows.

Also how results are shown: :func:`markdown_table` (every table a notebook shows),
:func:`format_table` and :func:`show_table` (the protocol's table) and :func:`headline` (a notebook's
one-line result).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Sequence
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
                 source: str = "", code: dict[str, str] | None = None) -> Path:
    """Add or replace rows (by method name), keeping every other row as it was; returns the file written.
    ``code``: by method name, the code a row was computed with (``comparison.row_code``), stored with it."""
    if isinstance(evaluations, Evaluation):
        evaluations = [evaluations]
    if not all(isinstance(e, Evaluation) for e in evaluations):
        raise TypeError("save_results expects an Evaluation or a list of them (from course_lib.evaluate)")
    path = results_path(profile_name, folder)
    with locked(path.with_name(path.name + ".lock")):  # (a no-op on Windows: two saves at one instant may race)
        rows = load_rows(profile_name, folder)
        for e in evaluations:
            rows[e.method] = {**e.as_dict(), "source": source, "saved": time.strftime("%Y-%m-%d %H:%M:%S"),
                              **({"code": code[e.method]} if code and e.method in code else {})}
        atomic_write(path, lambda tmp: tmp.write_text(json.dumps(rows, indent=1, sort_keys=True)))
    return path


def drop_rows(names: list[str], profile_name: str, folder: Path | None = None) -> None:
    """Remove the rows ``names`` from the store (those it holds), keeping every other row as it was."""
    path = results_path(profile_name, folder)
    with locked(path.with_name(path.name + ".lock")):
        rows = load_rows(profile_name, folder)
        if any(n in rows for n in names):
            kept = {n: r for n, r in rows.items() if n not in names}
            atomic_write(path, lambda tmp: tmp.write_text(json.dumps(kept, indent=1, sort_keys=True)))


HEADLINE_PREFIX = "Headline: "  # the line `make course` looks for in a notebook's outputs


def headline(text: str) -> None:
    """Print the notebook's headline result, one line (``make course`` shows it beside the notebook's run time)."""
    if not isinstance(text, str):
        raise TypeError(f"a headline is a line of text, got {type(text).__name__}")
    if "\n" in text:
        raise ValueError(f"a headline is one line of text, got {text!r}")
    print(HEADLINE_PREFIX + text)


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A Markdown table: ``header`` (column names), then one line per row, each cell written with ``str``
    (format numbers before passing them). A ``|`` inside a cell is escaped, so it never splits a column."""
    if isinstance(header, str) or not isinstance(header, Sequence) or not header:
        raise ValueError(f"header must be a non-empty sequence of column names, got {header!r}")
    if isinstance(rows, str) or not isinstance(rows, Sequence):
        raise TypeError(f"rows must be a sequence of rows (each a sequence of cells), got {type(rows).__name__}")

    def line(cells: Sequence[object]) -> str:
        return "| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |"

    for i, r in enumerate(rows):
        if isinstance(r, str) or not isinstance(r, Sequence):
            raise TypeError(f"row {i} must be a sequence of cells, got {type(r).__name__}")
        if len(r) != len(header):
            raise ValueError(f"row {i} has {len(r)} cells for {len(header)} columns {list(header)}: {list(r)}")
    return "\n".join([line(header), "|---" * len(header) + "|", *(line(r) for r in rows)])


def format_table(evaluations: list[Evaluation], percent: bool = True,
                 extra: dict[str, dict[str, str]] | None = None) -> str:
    """A Markdown table: one row per method; probe accuracy per label budget and the LP-FT fine-tune
    column as mean ± std over the label draws; kNN; and what pre-training cost (images, steps, seconds).
    ``extra``: more columns, as {method: {column: text}} ('–' where a method has none). Rows trained with
    labels (``kind == "supervised"``) are marked † and explained below the table."""
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

    def cost(e: Evaluation) -> list[str]:
        c = e.compute
        if not c or not c.get("steps"):
            return ["–", "–", "–"]
        return [f"{int(c.get('images', 0)):,}", f"{int(c['steps']):,}", f"{float(c.get('seconds', 0)):.0f}"]

    header = ["method", *(f"probe {b}/class" for b in budgets), "kNN", f"LP-FT, {FINETUNE_LABELS} labels/class",
              "images seen", "steps", "seconds", *columns]
    rows = [[e.method + (" †" if e.with_labels else ""), *(fmt(e.probe.get(b, [])) for b in budgets), fmt([e.knn]),
             fmt(e.finetune), *cost(e), *(extra.get(e.method, {}).get(c, "–") for c in columns)] for e in evaluations]
    table = markdown_table(header, rows)
    if any(e.with_labels for e in evaluations):
        table += ("\n\n† trained with labels: not a self-supervised result. "
                  "For the supervised baseline each probe column is the test accuracy of the network trained "
                  "from scratch on that many labels per class (no probe, no kNN).")
    return table


def show_table(evaluations: list[Evaluation], extra: dict[str, dict[str, str]] | None = None) -> None:
    """Show :func:`format_table` in a notebook, rendered as Markdown (printed as text outside one)."""
    from IPython.display import Markdown, display

    display(Markdown(format_table(evaluations, extra=extra)))


def row_line(row: Evaluation, budget: str, knn: bool = False) -> str:
    """One row at one label budget, as the notebooks print it: "SimCLR       probe 100/class: 82.7 ± 0.5 %"
    (mean ± std over label draws; ``knn``: and its kNN). A row trained with labels (the supervised baseline)
    has no probe and no kNN: its figure is the trained network's own accuracy, and the line says so."""
    what = "trained" if row.with_labels and math.isnan(row.knn) else "probe"
    line = f"{row.method:12s} {what} {budget}/class: {100 * row.mean(budget):.1f} ± {100 * row.std(budget):.1f} %"
    if what == "trained":
        return line + " (trained on those labels alone)"
    return line + (f"   kNN {100 * row.knn:.1f} %" if knn else "")


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
