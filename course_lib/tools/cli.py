"""Command line of the course: ``python -m course_lib <command>``, or ``ssl-course <command>`` once installed.

The Makefile's targets call these, so everything also works without make:

    python -m course_lib course        # execute every notebook, write build/course/
    python -m course_lib test          # unit tests + every notebook under nbval
    python -m course_lib lab           # JupyterLab on notebooks/
    python -m course_lib build-data    # rebuild data/fashion_mnist_subset.npz
    python -m course_lib release       # student versions of every notebook + the student bundle, in build/release/
    python -m course_lib site          # the course site in build/site/, from the notebooks `course` executed
    python -m course_lib grade DIR     # autograde submissions: scores.csv, feedback, gradebook in grades/
    python -m course_lib grade-manual CSV  # record the points given by hand to written answers
    python -m course_lib nbgrader-course DIR  # an nbgrader course folder for nbgrader's exchange (docs/exercises.md)
    python -m course_lib bench         # time the input pipeline (--notebooks: the course table too)
    python -m course_lib demo          # prepare a live lecture: warm every notebook's cache, time a warm run
    python -m course_lib drift         # the tests on the newest versions pyproject.toml allows (--lowest: the oldest)
    python -m course_lib tune --seeds 0 1 2  # the tuning pass of the self-supervised methods, on the validation split
    python -m course_lib tune --seeds 3 --add  # one more seed, added to the recorded pass
    python -m course_lib tune-supervised  # choose the supervised baseline's length and rate on the validation split

release, grade, grade-manual and nbgrader-course need the instructor extra (nbgrader), site the site extra (Sphinx),
test the dev extra; without it they say which extra to install.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

from course_lib.config import BUDGETS_ENV, PROFILE_ENV, REPO_ROOT, SEED_ENV, get_profile, seed_cache_dir
from course_lib.tools.extras import MissingExtra, require
from course_lib.tools.limits import MODES as LIMIT_MODES
from course_lib.tools.limits import Limits
from course_lib.widgets import HEADLESS_ENV

SCRIPT = "ssl-course"  # the console script ([project.scripts] in pyproject.toml)


def _test(args: argparse.Namespace) -> int:
    """Unit tests + every notebook under nbval, always on the fast profile, with its claims checked.

    The notebooks run headless (widgets draw plain figures), with time budgets off (every asserted
    claim sees a complete run), each cell limited to the profile's ``cell_timeout_s`` and watched
    for hangs (``tools/nbval_watchdog.py``).
    """
    require({"pytest": "pytest", "nbval": "nbval"}, "running the tests", "dev")
    shell_profile = os.environ.get(PROFILE_ENV)
    if shell_profile and shell_profile != "fast":
        print(f"note: ${PROFILE_ENV}={shell_profile} in your shell is ignored: the tests run the 'fast' profile, "
              "whose notebooks check their claims", flush=True)
    if os.environ.get(SEED_ENV):
        print(f"note: ${SEED_ENV} in your shell is ignored: the notebooks assert their claims on seed 0", flush=True)
    env = {k: v for k, v in os.environ.items() if k != SEED_ENV}
    env = {**env, PROFILE_ENV: "fast", HEADLESS_ENV: "1", BUDGETS_ENV: "off"}
    timeout = get_profile("fast").cell_timeout_s
    cmd = [sys.executable, "-m", "pytest", "--nbval-lax", "--nbval-current-env", f"--nbval-cell-timeout={timeout:.0f}",
           "-p", "no:cacheprovider", "-p", "course_lib.tools.nbval_watchdog",
           *test_workers_args(args.workers), *(args.pytest_args or ["tests", "notebooks"])]
    print("+", " ".join(cmd), flush=True)
    return subprocess.call(cmd, cwd=REPO_ROOT, env=env)


def test_workers_args(workers: int | None) -> list[str]:
    """pytest-xdist's arguments for ``workers`` processes (None: two where the machine has two cores or more and
    pytest-xdist is installed, else one): the notebooks in one worker, in course order, the unit tests in the
    other (``nbval_watchdog.pytest_collection_modifyitems``). One worker: no xdist at all."""
    if workers is None:
        try:
            import xdist  # noqa: F401
        except ImportError:
            return []
        workers = 2 if (os.cpu_count() or 1) >= 2 else 1
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers must be a whole number >= 1, got {workers!r}")
    return [] if workers == 1 else ["-n", str(min(workers, 2)), "--dist", "loadgroup"]


def _lab(args: argparse.Namespace) -> int:
    return subprocess.call([sys.executable, "-m", "jupyter", "lab", str(REPO_ROOT / "notebooks")])


def _compare(args: argparse.Namespace) -> int:
    from course_lib.sweep import load_sweep, run_sweep, seed_summary

    name = get_profile(args.profile).name
    path = run_sweep(name, args.seeds, Path(args.out) if args.out else None, add=args.add)
    sweep = load_sweep(path, name)
    print(sweep.describe())
    for budget in ("10", "100"):
        print(seed_summary(sweep, budget))
    return 0


def _tune(args: argparse.Namespace) -> int:
    from course_lib.tuning import load_tuning, run_tuning, tuning_table

    name = get_profile(args.profile).name
    path = run_tuning(name, args.seeds, args.methods, Path(args.out) if args.out else None, add=args.add)
    print(tuning_table(load_tuning(path)))
    return 0


def _course(args: argparse.Namespace) -> int:
    from course_lib.tools.runner import run_course
    return run_course(args.notebooks, profile=args.profile, out_dir=args.out, html=not args.no_html)


def _demo(args: argparse.Namespace) -> int:
    from course_lib.tools.demo import prepare
    return prepare(args.notebooks, profile=args.profile, out_dir=args.out, warm_check=not args.no_warm_check)


def _build_data(args: argparse.Namespace) -> int:
    from course_lib.datasets import main
    return main(args.rest)


def _bench(args: argparse.Namespace) -> int:
    from course_lib.tools.bench import main
    return main(args)


def _tune_supervised(args: argparse.Namespace) -> int:
    """The supervised baseline's grid (``supervised.GRID`` unless values are given) for each label budget, on the
    validation split of the training images (the test split is not loaded): a table per budget and the choice."""
    from course_lib import supervised
    from course_lib.config import seed_everything
    from course_lib.datasets import load_dataset
    from course_lib.results import markdown_table

    profile = get_profile(args.profile)
    seed_everything(profile.seed, threads=args.threads or profile.num_threads)
    train = profile.limit(load_dataset(profile.dataset, "train"))  # training images only: never the test set
    given = {k: v for k, v in (("steps", args.steps), ("lr", args.lr), ("crop_padding", args.crop_padding),
                               ("flip_p", args.flip_p)) if v}
    for budget in args.labels:
        n = None if budget == "all" else int(budget)
        grid = supervised.grid_of(**{**supervised.GRID[supervised.recipe_budget(n)], **given})
        print(f"# {budget} labels per class, profile {profile.name!r}: {len(grid)} recipes, validation accuracy "
              f"(first label draw)", flush=True)
        results = supervised.tune(train, profile, n, grid)
        names = list(grid[0])
        rows = [[*(r["overrides"][k] for k in names), f"{100 * r['validation']:.1f}", f"{r['seconds']:.0f}"]
                for r in results]
        print(markdown_table([*names, "validation %", "seconds"], rows))
        chosen = supervised.best(results)
        print(f"chosen for {budget}: {chosen['overrides']} ({100 * chosen['validation']:.1f} % on validation)\n",
              flush=True)
    return 0


def _release(args: argparse.Namespace) -> int:
    from course_lib.tools.release import student_bundle
    from course_lib.tools.submissions import GradingError
    try:
        written, folder, archive = student_bundle(args.source, args.out)
    except (GradingError, ValueError) as e:
        print(f"release failed: {e}", file=sys.stderr)
        return 2
    print("\n".join(["student versions (nbgrader's release layout, e.g. for its exchange):",
                      *(f"  {p}" for p in written),
                      f"the student bundle (give students this, never the repository): {folder}", f"  zipped: {archive}"]))
    return 0


def _site(args: argparse.Namespace) -> int:
    import time

    from course_lib.tools.site import build_site
    from course_lib.tools.submissions import GradingError
    start = time.perf_counter()
    try:
        site = build_site(**{k: v for k, v in (("course_dir", args.course), ("out", args.out)) if v},
                          allow_stale=args.allow_stale)
    except (GradingError, ValueError) as e:
        print(f"site not built: {e}", file=sys.stderr)
        return 2
    files = [p for p in site.rglob("*") if p.is_file()]
    print(f"the course site: {sum(p.suffix == '.html' for p in files)} pages, "
          f"{sum(p.stat().st_size for p in files) / 1e6:.0f} MB, built in {time.perf_counter() - start:.0f} s\n"
          f"  {site / 'index.html'}\nopen it as a file, or publish the folder on any static host (README, 'The course site')")
    return 0


def _drift(args: argparse.Namespace) -> int:
    from course_lib.tools.drift import main
    return main(args)


def _seconds(text: str) -> float:
    """argparse type: a number of seconds > 0 (0 or less would mean no timeout at all)."""
    from course_lib.tools.grading import check_cell_timeout
    try:
        return check_cell_timeout(float(text))
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"expected seconds > 0, got {text!r} (0 or less would mean no timeout)") from e


def _grade(args: argparse.Namespace) -> int:
    from course_lib.tools.grading import grade
    from course_lib.tools.submissions import GradingError
    try:
        limits = Limits(args.memory_mb, args.max_processes, args.cpu_seconds, args.cpu_cores, args.disk_mb)
    except ValueError as e:
        print(f"grading refused: {e}", file=sys.stderr)
        return 2
    try:
        grade(args.submissions, args.out, args.source, args.cell_timeout, args.profile, warm_up=not args.no_warm_up,
              isolation=args.isolation, jobs=args.jobs, limits=limits, enforce_limits=args.limits,
              cluster=args.cluster, cluster_timeout=args.cluster_timeout, kernel=args.kernel)
    except GradingError as e:
        print(f"grading failed: {e}", file=sys.stderr)
        return 2
    return 0


def _nbgrader_course(args: argparse.Namespace) -> int:
    from course_lib.tools.course_folder import CONFIG_FILE, write_course_folder
    from course_lib.tools.submissions import GradingError
    try:
        written = write_course_folder(args.folder, args.source, args.course_id)
    except (GradingError, ValueError) as e:
        print(f"nbgrader-course failed: {e}", file=sys.stderr)
        return 2
    folder = Path(args.folder).resolve()
    names = [p.stem for p in written]
    print("\n".join([
        f"nbgrader course folder {folder} ({CONFIG_FILE}, source/, release/, gradebook.db): {', '.join(names)}",
        f"next, from {folder} (docs/exercises.md, 'nbgrader exchange on JupyterHub'):",
        f"  nbgrader db assignment add {names[0]} --duedate='2027-01-15 17:00:00 UTC'   # a due date (optional)",
        f"  nbgrader release_assignment {names[0]}",
        f"  nbgrader collect {names[0]}",
        f"  {program_name()} grade {folder}",
        f"  nbgrader release_feedback {names[0]}"]))
    return 0


def _grade_manual(args: argparse.Namespace) -> int:
    from course_lib.tools.gradebook import record_manual_grades
    from course_lib.tools.submissions import GradingError
    try:
        n = record_manual_grades(args.table, args.out)
    except (GradingError, ValueError, OSError) as e:
        print(f"recording manual grades failed: {e}", file=sys.stderr)
        return 2
    print(f"{n} written answers graded by hand recorded; scores in {args.out}/scores.csv")
    return 0


def _jobs(text: str) -> int:
    """argparse type: a number of processes >= 1."""
    try:
        jobs = int(text)
    except ValueError:
        jobs = 0
    if jobs < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of processes >= 1, got {text!r}")
    return jobs


def _cluster(text: str) -> str:
    """argparse type: 'local:N' or 'tcp://HOST:PORT' (checked here when Dask is installed, else by grade)."""
    try:
        from course_lib.tools.cluster import parse
    except ModuleNotFoundError:
        return text
    try:
        parse(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from e
    return text


def program_name(argv0: str | None = None) -> str:
    """How the user called us: ``ssl-course`` (the console script) or ``python -m course_lib``."""
    argv0 = sys.argv[0] if argv0 is None else argv0
    return SCRIPT if Path(argv0).stem == SCRIPT else "python -m course_lib"


def main(argv: list[str] | None = None) -> int:
    prog = program_name() if argv is None else "python -m course_lib"
    try:
        return _main(argv, prog)
    except MissingExtra as e:
        print(f"{prog}: {e}", file=sys.stderr)
        return 2


def _main(argv: list[str] | None, prog: str) -> int:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("test", help="run the unit tests and execute every notebook under nbval")
    p.add_argument("pytest_args", nargs="*", help="passed to pytest (default: tests notebooks)")
    p.add_argument("--workers", type=int, default=None,
                   help="pytest processes: 1, or 2 (notebooks in one, unit tests in the other; the default "
                        "with two cores or more and pytest-xdist installed; more is the same as 2)")
    p.set_defaults(fn=_test)

    p = sub.add_parser("course", help="execute every notebook; write executed copies, HTML and a summary")
    p.add_argument("notebooks", nargs="*", help="notebook files (default: notebooks/*.ipynb)")
    p.add_argument("--profile", default=None, help=f"profile name (default: ${PROFILE_ENV} or 'fast')")
    p.add_argument("--out", default=str(REPO_ROOT / "build" / "course"), help="output folder")
    p.add_argument("--no-html", action="store_true", help="skip the HTML copies")
    p.add_argument("--seed", type=int, default=None,
                   help="training seed of every notebook (default: $COURSE_SEED or the profile's, 0); a seed other "
                        "than 0 keeps its own cache, seed-N inside the cache ($COURSE_CACHE or build/cache)")
    p.set_defaults(fn=_course)

    p = sub.add_parser("compare", help="the comparison over training seeds, recorded in results/seeds-<profile>.json "
                                       "(resumable: every row is saved as it is computed)")
    p.add_argument("--seeds", nargs="+", type=int, required=True, help="training seeds, e.g. 0 1 2")
    p.add_argument("--profile", default=None, help=f"profile name (default: ${PROFILE_ENV} or 'fast')")
    p.add_argument("--out", default=None, help="the recorded file (default: results/seeds-<profile>.json)")
    p.add_argument("--add", action="store_true", help="keep the rows the recorded file holds under today's code and "
                                                      "compute only the others (after a change to one method)")
    p.set_defaults(fn=_compare)

    p = sub.add_parser("tune", help="the tuning pass: every configuration of tuning.GRIDS (at most 8 per method) "
                                    "scored on the validation split for each training seed, recorded in "
                                    "results/tuning-<profile>.json (resumable: every run and score is cached)")
    p.add_argument("--seeds", nargs="+", type=int, required=True, help="training seeds, e.g. 0 1 2")
    p.add_argument("--methods", nargs="+", default=None, help="rows to tune, e.g. rotation 'patch position' "
                                                              "(default: every self-supervised method)")
    p.add_argument("--profile", default=None, help=f"profile name (default: ${PROFILE_ENV} or 'fast')")
    p.add_argument("--out", default=None, help="the recorded file (default: results/tuning-<profile>.json)")
    p.add_argument("--add", action="store_true", help="add these seeds to the recorded file, keeping the seeds it "
                                                      "holds (refused where a grid or the code its scores depend on "
                                                      "has changed)")
    p.set_defaults(fn=_tune)

    p = sub.add_parser("demo", help="prepare a live lecture: warm every notebook's cache so each runs in seconds")
    p.add_argument("notebooks", nargs="*", help="notebook files (default: notebooks/*.ipynb)")
    p.add_argument("--profile", default=None,
                   help=f"profile name (default: ${PROFILE_ENV}, else 'full' with a CUDA GPU, else 'fast')")
    p.add_argument("--out", default=str(REPO_ROOT / "build" / "demo"), help="folder of the executed copies")
    p.add_argument("--no-warm-check", action="store_true", help="skip the second, timed run on the warm cache")
    p.set_defaults(fn=_demo)

    p = sub.add_parser("lab", help="start JupyterLab on notebooks/")
    p.set_defaults(fn=_lab)

    p = sub.add_parser("build-data", help="rebuild the embedded Fashion-MNIST subset in data/")
    p.add_argument("rest", nargs=argparse.REMAINDER, help="see: python -m course_lib build-data --help")
    p.set_defaults(fn=_build_data)

    p = sub.add_parser("bench", help="time the course's input pipeline against a DataLoader (and the notebooks)")
    p.add_argument("--quick", action="store_true", help="short timing windows (about 1-2 minutes on 2 CPU cores)")
    p.add_argument("--notebooks", action="store_true",
                   help="also execute every notebook with a fresh cache (the course run table)")
    p.add_argument("--warm", action="store_true", help="with --notebooks: reuse the usual cache (no training)")
    p.add_argument("--out", default=str(REPO_ROOT / "build" / "bench"), help="output folder")
    p.add_argument("--device", default="cpu", help="device of the course pipeline and the model (default: cpu)")
    p.add_argument("--num-images", type=int, default=None, help="number of images (default 5000)")
    p.add_argument("--batch-size", type=int, default=None, help="images per batch (default 256)")
    p.add_argument("--workers", type=int, nargs="+", default=None, help="DataLoader num_workers to try (default 0 1 2)")
    p.add_argument("--threads", type=int, nargs="+", default=None,
                   help="torch threads of the main process to try (default: 1 and the number of CPUs)")
    p.add_argument("--data", choices=["photos", "random"], default=None, help="image source (default photos)")
    p.add_argument("--no-train", action="store_true", help="time the pipelines alone, not the training step")
    p.add_argument("--efficiency", action="store_true",
                   help="only print each method's training GFLOP/s against the machine's peak (from the results store)")
    p.set_defaults(fn=_bench)

    p = sub.add_parser("release", help="student versions of every notebook (solutions and hidden tests removed)")
    p.add_argument("--source", default=str(REPO_ROOT / "notebooks"), help="folder of the course notebooks")
    p.add_argument("--out", default=str(REPO_ROOT / "build" / "release"), help="output folder")
    p.set_defaults(fn=_release)

    p = sub.add_parser("site", help="the course site (static HTML) from the notebooks `course` executed; executes nothing")
    p.add_argument("--course", default=None, help="folder of the executed notebooks and their run records (default: "
                                                  "build/course, what `course` writes)")
    p.add_argument("--out", default=None, help="the site's folder (default: build/site), replaced by the new site; "
                                               "an existing folder that `site` did not build is refused")
    p.add_argument("--allow-stale", action="store_true",
                   help="build even where a notebook changed since `course` executed it (refused otherwise): its page "
                        "shows it as it is now, without the outputs of the cells that changed")
    p.set_defaults(fn=_site)

    p = sub.add_parser("grade", help="autograde a folder of submissions: scores.csv, feedback, gradebook")
    p.add_argument("submissions", help="folder of <student>/<notebook>.ipynb, or nbgrader's "
                                       "submitted/<student>/<assignment>/<notebook>.ipynb, or an nbgrader course "
                                       "folder (with nbgrader_config.py: graded into itself; docs/exercises.md)")
    p.add_argument("--out", default=None,
                   help="output folder: gradebook.db (kept between runs and by make clean), scores.csv, feedback/ "
                        "(default grades/; an nbgrader course folder: itself)")
    p.add_argument("--source", default=None,
                   help="folder of the course notebooks (default notebooks/; an nbgrader course folder: its source/)")
    p.add_argument("--kernel", default=None,
                   help="the kernel every notebook runs in (default: the notebook's kernelspec, else python3)")
    p.add_argument("--cell-timeout", type=_seconds, default=120, help="seconds a cell may run, > 0 (default 120)")
    p.add_argument("--isolation", choices=["auto", "bwrap", "none"], default="auto",
                   help="run each kernel isolated with bubblewrap: auto (when it works here, saying loudly when not), "
                        "bwrap (refuse to grade without it), none (default auto; docs/exercises.md)")
    p.add_argument("--profile", default="grade", help="profile the submissions run under (default 'grade')")
    p.add_argument("--no-warm-up", action="store_true",
                   help="skip the instructor's run that seeds every submission's cache (fine for 1-2 submissions)")
    p.add_argument("--jobs", type=_jobs, default=1,
                   help="students graded at once, each in its own process (default 1; needs isolated kernels); "
                        "with --cluster: how many warm-ups run at once here")
    p.add_argument("--cluster", type=_cluster, default=None,
                   help="execute the submissions on a Dask cluster: local:N (N worker processes here) or "
                        "tcp://HOST:PORT (a running scheduler, e.g. on Slurm; docs/exercises.md). Needs isolated "
                        "kernels and the instructor extra")
    p.add_argument("--cluster-timeout", type=_seconds, default=120,
                   help="seconds the scheduler and a first worker may take, and the longest the cluster may be "
                        "without a worker (default 120)")
    default = Limits()
    p.add_argument("--limits", choices=LIMIT_MODES, default="auto",
                   help="memory, process and CPU limits per kernel (cgroups): auto (where they can be set, saying "
                        "loudly when not), required (refuse to grade without them), off (default auto)")
    p.add_argument("--memory-mb", type=int, default=default.memory_mb,
                   help=f"memory of one kernel and its processes, tmpfs files included (default {default.memory_mb})")
    p.add_argument("--max-processes", type=int, default=default.processes,
                   help=f"processes and threads of one kernel at once (default {default.processes})")
    p.add_argument("--cpu-seconds", type=float, default=default.cpu_seconds,
                   help=f"CPU time of one kernel's processes over the whole notebook (default {default.cpu_seconds:g})")
    p.add_argument("--cpu-cores", type=float, default=default.cpu_cores,
                   help=f"cores one kernel may use at once (default {default.cpu_cores:g})")
    p.add_argument("--disk-mb", type=int, default=default.disk_mb,
                   help=f"size of each writable folder of a kernel, and of its largest file (default {default.disk_mb})")
    p.set_defaults(fn=_grade)

    p = sub.add_parser("nbgrader-course", help="make or update an nbgrader course folder (nbgrader_config.py, "
                                               "source/, release/, gradebook.db) for nbgrader's exchange")
    p.add_argument("folder", help="the course folder (made if missing; an existing nbgrader_config.py is kept)")
    p.add_argument("--course-id", default="ssl-course", help="nbgrader's course id (default ssl-course)")
    p.add_argument("--source", default=str(REPO_ROOT / "notebooks"), help="folder of the course notebooks")
    p.set_defaults(fn=_nbgrader_course)

    p = sub.add_parser("grade-manual", help="record the points given by hand to written answers (a CSV)")
    p.add_argument("table", help="CSV with columns student, notebook, question, points: a filled copy of "
                                 "grades/manual_grading.csv")
    p.add_argument("--out", default=str(REPO_ROOT / "grades"), help="the grading output folder (gradebook.db)")
    p.set_defaults(fn=_grade_manual)

    p = sub.add_parser("drift", help="the tests in a fresh environment with the newest versions pyproject.toml allows "
                                     "(no lock), or --lowest: every requirement at its lower bound")
    p.add_argument("pytest_args", nargs="*", help="passed to pytest (default: tests, i.e. the unit tests, the hang "
                                                  "stress test and the browser test)")
    p.add_argument("--lowest", action="store_true", help="pin every direct requirement to its lower bound")
    p.add_argument("--keep", nargs="+", default=[], metavar="PACKAGE",
                   help="with --lowest: leave these to the resolver (e.g. torch torchvision: their old builds "
                        "download several GB)")
    p.add_argument("--notebooks", action="store_true", help="also execute every notebook under nbval")
    p.add_argument("--python", default=sys.executable, help="the Python that makes the environment (default: this one)")
    p.add_argument("--name", default=None, help="folder name under --out (default: newest or lowest)")
    p.add_argument("--out", default=str(REPO_ROOT / "build" / "drift"), help="where the environments go")
    p.add_argument("--reuse", action="store_true", help="install into the existing environment instead of a fresh one")
    p.set_defaults(fn=_drift)

    p = sub.add_parser("tune-supervised", help="choose the supervised baseline's length and peak rate per label budget "
                                               "on the validation split (the grid of supervised.GRID)")
    p.add_argument("--profile", default=None, help=f"profile name (default: ${PROFILE_ENV} or 'fast')")
    p.add_argument("--labels", nargs="+", default=["10", "100", "all"], help="label budgets (default: 10 100 all)")
    p.add_argument("--steps", nargs="+", type=int, help="steps to try (default: the budget's grid)")
    p.add_argument("--lr", nargs="+", type=float, help="peak learning rates to try")
    p.add_argument("--crop-padding", nargs="+", type=int, help="crop paddings to try (0: no crop)")
    p.add_argument("--flip-p", nargs="+", type=float, help="flip probabilities to try (0: no flip)")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: the profile's)")
    p.set_defaults(fn=_tune_supervised)

    args = parser.parse_args(argv)
    if args.command == "course" and args.profile:
        os.environ[PROFILE_ENV] = args.profile  # the notebooks' kernels inherit it
    if args.command == "course" and args.seed is not None:
        if args.seed < 0:
            parser.error(f"--seed must be a non-negative integer, got {args.seed}")
        os.environ[SEED_ENV] = str(args.seed)
        os.environ["COURSE_CACHE"] = str(seed_cache_dir(args.seed))  # never two seeds' rows in one results store
    return args.fn(args)


if __name__ == "__main__":
    sys.exit(main())
