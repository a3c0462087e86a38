"""What grading costs: a small class of submissions per course notebook, graded as `make grade` does, and a table of
seconds, memory, CPU time and processes per notebook and student, with students per hour per core.

    python scripts/grading_cost.py                      # notebooks 01-09, 2 students each, 1 job
    python scripts/grading_cost.py 01 08 --students 4 --jobs 2

The class is ``compare_grading.make_class``'s: the instructor's notebooks (the grader puts the tests back from its
gradebook, so they score what the solutions earn), the untouched student versions (every test fails at once), and
student versions with half the solutions answered, in turn. The numbers size the limits of `course_lib/tools/limits.py` (each kernel's peak memory,
CPU time and processes) and a class's grading time (docs/exercises.md). Prints the table and writes it to
``--out``/cost.md.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import time
from pathlib import Path

from compare_grading import make_class  # (this folder)

from course_lib.config import REPO_ROOT
from course_lib.tools.grading import grade
from course_lib.tools.release import course_notebooks


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("notebooks", nargs="*", help="notebook numbers or names (default: 01-09)")
    parser.add_argument("--students", type=int, default=2, help="students per notebook (default 2)")
    parser.add_argument("--jobs", type=int, default=1, help="students graded at once (default 1)")
    parser.add_argument("--out", default=str(REPO_ROOT / "build" / "grading-cost"), help="work and output folder")
    args = parser.parse_args(argv)
    if args.students < 1:
        parser.error(f"--students: expected 1 or more, got {args.students}")
    sources = course_notebooks()
    wanted = args.notebooks or [f"{i:02d}" for i in range(1, 10)]
    names = []
    for key in wanted:
        match = [n for n in sources if n == key or n.startswith(f"{key}_")]
        if len(match) != 1:
            parser.error(f"notebook {key!r}: expected one of {', '.join(sorted(sources))} (or its number)")
        names += match
    out = Path(args.out)
    shutil.rmtree(out, ignore_errors=True)
    kinds = make_class({name: sources[name] for name in names}, args.students, out / "submissions")
    start = time.perf_counter()
    scores = grade(out / "submissions", out / "grades", jobs=args.jobs)
    wall = time.perf_counter() - start
    log = json.loads((out / "grades" / "grading.json").read_text())
    lines = [f"{len(names)} notebooks x {args.students} students, --jobs {args.jobs}, {os.cpu_count()} cores, "
             f"load average before {os.getloadavg()[0]:.1f}: {wall:.0f} s in all", "",
             f"| notebook | points ({' / '.join(dict.fromkeys(kinds.values()))}) | s per student (mean, range) | "
             "peak memory MB | CPU s | peak processes |", "|---|---|---|---|---|---|"]
    per_student = 0.0
    for name in names:
        rows = [e for e in log.values() if e["notebook"] == name]
        secs = [e["seconds"] for e in rows]
        usage = [e.get("usage") or {} for e in rows]
        points = {kinds[e["student"]]: f"{e['points']:g}/{e['max_points']:g}" if e["points"] is not None
                  else "-" for e in rows}
        per_student += statistics.mean(secs)

        most = {key: max((u[key] for u in usage if key in u), default=None)
                for key in ("peak_memory_mb", "cpu_seconds", "peak_processes")}
        most = {key: "not measured" if v is None else f"{v:g}" for key, v in most.items()}
        lines.append(f"| {name} | {' / '.join(points.get(k, '-') for k in dict.fromkeys(kinds.values()))} | "
                     f"{statistics.mean(secs):.1f} ({min(secs):.1f}-{max(secs):.1f}) | {most['peak_memory_mb']} | "
                     f"{most['cpu_seconds']} | {most['peak_processes']} |")
    warm = wall - sum(s.seconds for s in scores) / args.jobs
    lines += ["", f"One student's {len(names)} notebooks: {per_student:.0f} s of one job, so about "
              f"{3600 / per_student:.1f} students per hour per core (warm-ups apart: about {warm:.0f} s for the "
              "run, once per class)."]
    text = "\n".join(lines) + "\n"
    (out / "cost.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
