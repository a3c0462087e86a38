"""Compare two results stores row by row, to the last digit: did a change keep every saved number?

    python scripts/compare_results.py BEFORE.json AFTER.json

Each store is a ``results-<profile>.json`` that the notebooks write (``course_lib/results.py``). Every
field of every row is compared exactly (floats as stored, no tolerance), except the ones a clock
writes: ``saved`` (when the row was saved) and ``compute.seconds`` (wall time of the training run).
Prints one line per row (``same`` or the fields that differ, with both values) and exits 1 if any row
differs or is missing on one side, 0 if every row is identical.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

CLOCK_FIELDS = {("saved",), ("compute", "seconds")}


def _flatten(value, path: tuple = ()) -> dict[tuple, object]:
    """Every leaf of a JSON value by its path; lists keep their order (a path holds the index)."""
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            out.update(_flatten(v, (*path, k)))
        return out
    if isinstance(value, list):
        out = {(*path, "#len"): len(value)}
        for i, v in enumerate(value):
            out.update(_flatten(v, (*path, i)))
        return out
    return {path: value}


def differences(before: dict, after: dict) -> dict[str, list[str]]:
    """Per row name: the fields that differ (empty list: identical, clock fields aside)."""
    out = {}
    for name in sorted(set(before) | set(after)):
        if name not in before or name not in after:
            out[name] = [f"row only in {'after' if name not in before else 'before'}"]
            continue
        a, b = _flatten(before[name]), _flatten(after[name])
        diffs = []
        for path in sorted(set(a) | set(b), key=str):
            if path in CLOCK_FIELDS:
                continue
            if path not in a or path not in b or type(a[path]) is not type(b[path]) or a[path] != b[path]:
                where = ".".join(str(p) for p in path)
                diffs.append(f"{where}: {a.get(path, '<absent>')!r} -> {b.get(path, '<absent>')!r}")
        out[name] = diffs
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("before", type=Path)
    parser.add_argument("after", type=Path)
    args = parser.parse_args(argv)
    stores = []
    for path in (args.before, args.after):
        try:
            stores.append(json.loads(path.read_text()))
        except (OSError, ValueError) as e:
            parser.error(f"{path}: expected a results store (JSON of rows by method name): {e}")
        if not isinstance(stores[-1], dict):
            parser.error(f"{path}: expected a JSON object of rows by method name")
    diffs = differences(*stores)
    for name, fields in diffs.items():
        print(f"{name}: " + ("same" if not fields else "DIFFERS\n    " + "\n    ".join(fields)))
    changed = sum(bool(f) for f in diffs.values())
    print(f"{len(diffs) - changed} of {len(diffs)} rows identical (clock fields {sorted('.'.join(p) for p in CLOCK_FIELDS)} aside)")
    return 1 if changed else 0


if __name__ == "__main__":
    sys.exit(main())
