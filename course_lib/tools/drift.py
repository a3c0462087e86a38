"""Does the course still work on other versions than the lock's? ``python -m course_lib drift``.

CI installs ``requirements-lock.txt``, so it never sees what a student gets who installs without the lock,
nor the oldest versions ``pyproject.toml`` still accepts. This command makes a fresh virtual environment under
``build/drift/``, installs the course with its ``dev`` and ``instructor`` extras there

* without the lock: the newest versions the ranges of ``pyproject.toml`` allow (the default), or
* ``--lowest``: every direct requirement pinned to its lower bound (``numpy>=1.24`` -> ``numpy==1.24``);
  ``--keep torch torchvision`` leaves those to the resolver (their old CUDA builds download several GB),

then runs the tests there (default: ``tests/``, which holds the unit tests, the hang stress test
``tests/test_hangs.py`` and the browser test ``tests/test_browser.py``; ``--notebooks`` adds every notebook) and
prints a table: each direct requirement's range, the lock's version and the version installed, then what passed.
The same table is written to ``build/drift/<name>/report.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

from course_lib.config import REPO_ROOT

CACHE_ENV = "COURSE_CACHE"

EXTRAS = "dev,instructor"
FOCUS = {"tests/test_hangs.py": "hang stress test", "tests/test_browser.py": "browser test"}


def direct_requirements(pyproject: Path) -> list:
    """The requirements of ``pyproject``: its dependencies and every extra's (``packaging`` Requirements), without
    the project's references to its own extras."""
    import tomllib

    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    project = tomllib.loads(Path(pyproject).read_text(encoding="utf-8"))["project"]
    own = canonicalize_name(project["name"])
    found, seen = [], set()
    for text in [*project.get("dependencies", []),
                 *(r for reqs in project.get("optional-dependencies", {}).values() for r in reqs)]:
        req = Requirement(text)
        name = canonicalize_name(req.name)
        if name != own and name not in seen:
            seen.add(name)
            found.append(req)
    return found


def lower_bound(req) -> str | None:
    """The version of ``req``'s ``>=`` (or ``==``/``~=``) bound, None if it has none."""
    for spec in req.specifier:
        if spec.operator in (">=", "==", "~="):
            return spec.version
    return None


def lowest_constraints(requirements: list, keep: tuple[str, ...] = ()) -> list[str]:
    """``name==lower-bound`` for every requirement that has a lower bound, except those named in ``keep``."""
    from packaging.utils import canonicalize_name

    kept = {canonicalize_name(k) for k in keep}
    lines = []
    for req in requirements:
        bound = lower_bound(req)
        if bound is not None and canonicalize_name(req.name) not in kept:
            lines.append(f"{req.name}=={bound}")
    return lines


def lock_versions(lock: Path) -> dict[str, str]:
    """Normalized name -> pinned version, from a ``pip freeze``-style lock (comments allowed)."""
    from packaging.utils import canonicalize_name

    pins = {}
    for line in Path(lock).read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        name, sep, version = line.partition("==")
        if sep:
            pins[canonicalize_name(name.strip())] = version.strip()
    return pins


@dataclass
class Results:
    """What a pytest run reported (from its JUnit XML)."""

    passed: int = 0
    failed: int = 0
    errors: int = 0
    skipped: int = 0
    seconds: float = 0.0
    problems: list[str] = field(default_factory=list)  # "nodeid: failed|error|skipped (first line)"
    focus: dict[str, list[str]] = field(default_factory=dict)  # FOCUS file -> its tests' outcomes


def read_junit(path: Path) -> Results:
    """The counts, the tests that did not pass and the FOCUS files' outcomes of a pytest ``--junitxml`` report."""
    results = Results()
    root = ET.parse(path).getroot()
    for suite in ([root] if root.tag == "testsuite" else root.iter("testsuite")):
        results.seconds += float(suite.get("time", 0) or 0)
    outcomes = {"failure": "failed", "error": "errors", "skipped": "skipped"}
    for case in root.iter("testcase"):
        classname = case.get("classname", "")
        outcome, detail = "passed", ""
        for tag, counter in outcomes.items():
            child = case.find(tag)
            if child is not None:
                outcome = counter
                first = (child.get("message") or child.text or "").strip().splitlines()
                detail = first[0][:200] if first else ""
                break
        setattr(results, outcome, getattr(results, outcome) + 1)
        word = {"errors": "error"}.get(outcome, outcome)
        if outcome != "passed":
            results.problems.append(f"{classname}::{case.get('name')}: {word}" + (f" ({detail})" if detail else ""))
        for file in FOCUS:
            if classname == file.removesuffix(".py").replace("/", ".") or classname.startswith(
                    file.removesuffix(".py").replace("/", ".") + "."):
                results.focus.setdefault(file, []).append(f"{case.get('name')}: {word}")
    return results


def version_table(requirements: list, installed: dict[str, str], lock: dict[str, str]) -> list[str]:
    """Markdown rows: each direct requirement, its range, the lock's version, the version installed."""
    from packaging.utils import canonicalize_name
    from packaging.version import Version

    rows = ["| package | pyproject range | lock | installed | |", "|---|---|---|---|---|"]
    for req in requirements:
        name = canonicalize_name(req.name)
        got, pinned = installed.get(name), lock.get(name)
        note = ""
        if got and pinned and Version(got) != Version(pinned):
            note = "newer than the lock" if Version(got) > Version(pinned) else "older than the lock"
        rows.append(f"| {req.name} | {req.specifier or 'any'} | {pinned or '-'} | {got or 'not installed'} | {note} |")
    return rows


def report(name: str, requirements: list, installed: dict[str, str], lock: dict[str, str], results: Results | None,
           python: str, install_s: float, command: str) -> str:
    lines = [f"## drift run `{name}`", "", f"`{command}`, Python {python}, install {install_s:.0f} s", "",
             *version_table(requirements, installed, lock), ""]
    if results is None:
        lines.append("tests not run (the install failed)")
        return "\n".join(lines) + "\n"
    lines += [f"tests: {results.passed} passed, {results.failed} failed, {results.errors} errors, "
              f"{results.skipped} skipped in {results.seconds:.0f} s", ""]
    for file, what in FOCUS.items():
        outcomes = results.focus.get(file)
        lines.append(f"* {what} (`{file}`): " + ("; ".join(outcomes) if outcomes else "not run"))
    if results.problems:
        lines += ["", "not passed:", *(f"* {p}" for p in results.problems)]
    return "\n".join(lines) + "\n"


def _run(cmd: list[str], log, **kwargs) -> int:
    print("+", " ".join(cmd), flush=True)
    log.write(f"+ {' '.join(cmd)}\n")
    log.flush()
    return subprocess.call(cmd, stdout=log, stderr=subprocess.STDOUT, **kwargs)


def main(args: argparse.Namespace) -> int:
    name = args.name or ("lowest" if args.lowest else "newest")
    out = Path(args.out) / name
    venv = out / "venv"
    if out.exists() and not args.reuse:
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    requirements = direct_requirements(REPO_ROOT / "pyproject.toml")
    lock = lock_versions(REPO_ROOT / "requirements-lock.txt")
    log_path = out / "log.txt"
    python = venv / ("Scripts" if os.name == "nt" else "bin") / "python"
    with open(log_path, "a", encoding="utf-8") as log:
        start = time.perf_counter()
        if not python.exists():
            if _run([args.python, "-m", "venv", str(venv)], log) != 0:
                print(f"could not create {venv}; see {log_path}", file=sys.stderr)
                return 2
        install = [str(python), "-m", "pip", "install", "-e", f".[{EXTRAS}]"]
        if args.lowest:
            constraints = out / "lowest-constraints.txt"
            constraints.write_text("\n".join(lowest_constraints(requirements, tuple(args.keep))) + "\n")
            install[4:4] = ["-c", str(constraints)]
        print(f"installing into {venv} (log: {log_path}); the newest allowed versions can take a while to download",
              flush=True)
        installed_ok = _run(install, log, cwd=REPO_ROOT) == 0
        install_s = time.perf_counter() - start
        listing = subprocess.run([str(python), "-m", "pip", "list", "--format", "json"], capture_output=True,
                                 text=True) if python.exists() else None
        from packaging.utils import canonicalize_name

        installed = {canonicalize_name(p["name"]): p["version"] for p in json.loads(listing.stdout or "[]")} \
            if listing and listing.returncode == 0 else {}
        (out / "freeze.txt").write_text(subprocess.run([str(python), "-m", "pip", "freeze", "--exclude-editable"],
                                                       capture_output=True, text=True).stdout
                                        if python.exists() else "")
        results = None
        if installed_ok:
            junit = out / "junit.xml"
            tests = args.pytest_args or ["tests", *(["notebooks"] if args.notebooks else [])]
            cmd = [str(python), "-m", "course_lib", "test", "--workers", "1", "--", f"--junitxml={junit}", *tests]
            print(f"running the tests in {venv} (log: {log_path})", flush=True)
            # a cache of its own: models trained with these versions, not reloaded from the lock's runs
            _run(cmd, log, cwd=REPO_ROOT, env={**os.environ, CACHE_ENV: str(out / "cache")})
            results = read_junit(junit) if junit.exists() else Results(problems=["pytest wrote no report"])
    version = subprocess.run([str(python), "-c", "import platform; print(platform.python_version())"],
                             capture_output=True, text=True).stdout.strip() if python.exists() else "?"
    command = "python -m course_lib drift" + (" --lowest" if args.lowest else "") + \
        (f" --keep {' '.join(args.keep)}" if args.keep else "")
    text = report(name, requirements, installed, lock, results, version, install_s, command)
    (out / "report.md").write_text(text, encoding="utf-8")
    print(text + f"\n(written to {out / 'report.md'}; pip freeze of the environment in {out / 'freeze.txt'})")
    if not installed_ok:
        return 2
    return 0 if results and not (results.failed or results.errors) and results.passed else 1
