"""Grade one made-up class twice, with ``--jobs 1`` and on a Dask cluster, and compare the scores.

    python scripts/compare_grading.py                                   # 8 students x notebooks 01 and 08, local:2
    python scripts/compare_grading.py --students 4 --notebooks 01 --cluster tcp://login1:8786

The class is made from the course itself, in ``<out>/submissions``: a third of the students hand in the
instructor's notebooks (solutions and written answers), a third the untouched student versions (from
``release.release``), the rest the student versions with the first half of the solution cells answered.
Each run is the command line an instructor would type (``python -m course_lib grade ...``) into its own
output folder, timed; then ``scores.csv`` and ``manual_grading.csv`` of both are compared, all but
``seconds``. The timings and the verdict go to ``<out>/compare.md``; the exit status is 1 if they differ.
"""

from __future__ import annotations

import argparse
import csv
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout without installing

from course_lib.tools.release import course_notebooks, release  # noqa: E402


def _solutions(nb) -> dict[str, int]:
    """Code cells that hold a solution (not a test, not a written answer): grade id -> cell index."""
    return {c.metadata["nbgrader"]["grade_id"]: i for i, c in enumerate(nb.cells) if c.cell_type == "code"
            and c.metadata.get("nbgrader", {}).get("solution") and not c.metadata["nbgrader"].get("grade")}


def make_class(notebooks: dict[str, Path], students: int, folder: Path) -> dict[str, str]:
    """``students`` submissions of each notebook in ``folder/<student>/<notebook>.ipynb``; student -> kind."""
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "source").mkdir()
        for path in notebooks.values():
            shutil.copy(path, Path(tmp) / "source" / path.name)
        released = {p.stem: nbformat.read(p, as_version=4) for p in release(Path(tmp) / "source", Path(tmp) / "out")}
    kinds = {}
    for n in range(students):
        kind = ("solutions", "untouched", "half")[n % 3]
        student = f"{kind}{n}"
        kinds[student] = kind
        (folder / student).mkdir(parents=True, exist_ok=True)
        for name, path in notebooks.items():
            source = nbformat.read(path, as_version=4)
            nb = source if kind == "solutions" else nbformat.from_dict(released[name])
            if kind == "half":
                answers, blanks = _solutions(source), _solutions(nb)
                for gid in list(blanks)[:len(blanks) // 2]:
                    nb.cells[blanks[gid]].source = source.cells[answers[gid]].source
            nbformat.write(nb, folder / student / path.name)
    return kinds


def table(out: Path, name: str) -> dict[tuple[str, ...], dict[str, str]]:
    with open(out / name, newline="") as f:
        rows = list(csv.DictReader(f))
    for r in rows:
        r.pop("seconds", None)
    return {tuple(r[k] for k in ("student", "notebook", "question") if k in r): r for r in rows}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--students", type=int, default=8, help="students in the class (default 8)")
    parser.add_argument("--notebooks", nargs="+", default=["01", "08"], help="notebook numbers (default 01 08)")
    parser.add_argument("--cluster", default="local:2", help="the --cluster of the second run (default local:2)")
    parser.add_argument("--out", type=Path, default=ROOT / "build" / "compare-grading", help="output folder")
    args = parser.parse_args(argv)
    every = course_notebooks()
    notebooks = {name: path for name, path in every.items() if name.split("_")[0] in args.notebooks}
    if len(notebooks) != len(args.notebooks):
        parser.error(f"--notebooks: expected numbers among {sorted(n.split('_')[0] for n in every)}")
    shutil.rmtree(args.out, ignore_errors=True)
    kinds = make_class(notebooks, args.students, args.out / "submissions")
    runs = {"--jobs 1": ["--jobs", "1"], f"--cluster {args.cluster}": ["--cluster", args.cluster]}
    seconds, outs = {}, {}
    for label, options in runs.items():
        outs[label] = args.out / ("jobs1" if label == "--jobs 1" else "cluster")
        command = [sys.executable, "-m", "course_lib", "grade", str(args.out / "submissions"), "--out",
                   str(outs[label]), *options]
        print("+", " ".join(command), flush=True)
        start = time.perf_counter()
        if subprocess.call(command, cwd=ROOT):
            print(f"{label}: grading failed", file=sys.stderr)
            return 2
        seconds[label] = time.perf_counter() - start
    first, second = outs.values()
    same = {name: table(first, name) == table(second, name) for name in ("scores.csv", "manual_grading.csv")}
    lines = [f"# {args.students} students x notebooks {', '.join(notebooks)}",
             "", f"students: {', '.join(f'{s} ({k})' for s, k in kinds.items())}", "",
             "| run | wall time |", "|---|---|", *(f"| `{label}` | {s:.0f} s |" for label, s in seconds.items()), "",
             *(f"{name} (all but seconds): {'identical' if ok else 'DIFFERENT'}" for name, ok in same.items())]
    (args.out / "compare.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0 if all(same.values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
