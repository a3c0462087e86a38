"""Command line of the course: ``python -m course_lib <command>``.

The Makefile's targets call these, so everything also works without make:

    python -m course_lib course        # execute every notebook, write build/course/
    python -m course_lib test          # unit tests + every notebook under nbval
    python -m course_lib lab           # JupyterLab on notebooks/
    python -m course_lib build-data    # rebuild data/fashion_mnist_subset.npz
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys

from course_lib.config import PROFILE_ENV, REPO_ROOT


def _test(args: argparse.Namespace) -> int:
    cmd = [sys.executable, "-m", "pytest", "--nbval-lax", "--nbval-current-env", "--nbval-cell-timeout=900",
           "-p", "no:cacheprovider", *(args.pytest_args or ["tests", "notebooks"])]
    print("+", " ".join(cmd), flush=True)
    return subprocess.call(cmd, cwd=REPO_ROOT)


def _lab(args: argparse.Namespace) -> int:
    return subprocess.call([sys.executable, "-m", "jupyter", "lab", str(REPO_ROOT / "notebooks")])


def _course(args: argparse.Namespace) -> int:
    from course_lib.runner import run_course
    return run_course(args.notebooks, profile=args.profile, out_dir=args.out, html=not args.no_html)


def _execute_one(args: argparse.Namespace) -> int:
    from course_lib.runner import execute_notebook_here
    return execute_notebook_here(args.notebook, args.out, html=not args.no_html)


def _build_data(args: argparse.Namespace) -> int:
    from course_lib.datasets import main
    return main(args.rest)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m course_lib", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("test", help="run the unit tests and execute every notebook under nbval")
    p.add_argument("pytest_args", nargs="*", help="passed to pytest (default: tests notebooks)")
    p.set_defaults(fn=_test)

    p = sub.add_parser("course", help="execute every notebook; write executed copies, HTML and a summary")
    p.add_argument("notebooks", nargs="*", help="notebook files (default: notebooks/*.ipynb)")
    p.add_argument("--profile", default=None, help=f"profile name (default: ${PROFILE_ENV} or 'fast')")
    p.add_argument("--out", default=str(REPO_ROOT / "build" / "course"), help="output folder")
    p.add_argument("--no-html", action="store_true", help="skip the HTML copies")
    p.set_defaults(fn=_course)

    p = sub.add_parser("execute", help=argparse.SUPPRESS)  # one notebook in this process (used by 'course')
    p.add_argument("notebook")
    p.add_argument("--out", required=True)
    p.add_argument("--no-html", action="store_true")
    p.set_defaults(fn=_execute_one)

    p = sub.add_parser("lab", help="start JupyterLab on notebooks/")
    p.set_defaults(fn=_lab)

    p = sub.add_parser("build-data", help="rebuild the embedded Fashion-MNIST subset in data/")
    p.add_argument("rest", nargs=argparse.REMAINDER, help="see: python -m course_lib build-data --help")
    p.set_defaults(fn=_build_data)

    args = parser.parse_args(argv)
    if getattr(args, "profile", None):
        os.environ[PROFILE_ENV] = args.profile
    return args.fn(args)


if __name__ == "__main__":
    sys.exit(main())
