"""Checks that the project's files agree with each other: packages, README, Makefile, command line."""

import ast
import contextlib
import io
import json
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import Version

from course_lib.config import get_device
from course_lib.tools import runner
from course_lib.tools.cli import main

ROOT = Path(__file__).resolve().parents[1]
COMMANDS = ["test", "course", "lab", "demo", "build-data", "bench", "release", "site", "grade", "grade-manual", "drift",
            "tune-supervised", "compare"]
PROJECT = "ssl-course"
INSTRUCTOR_ONLY = {"nbgrader"}  # the grading tools: never in a student's install
TEST_ONLY = {"pytest", "pytest-xdist", "nbval", "ruff", "pyyaml", "playwright"}


def pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def extra(name: str) -> list[Requirement]:
    return [Requirement(r) for r in pyproject()["project"]["optional-dependencies"][name]]


def declared_requirements() -> list[Requirement]:
    """pyproject's dependencies plus every extra's, without the project's references to its own extras."""
    project = pyproject()["project"]
    reqs = [Requirement(r) for r in project["dependencies"]]
    reqs += [r for name in project["optional-dependencies"] for r in extra(name) if canonicalize_name(r.name) != PROJECT]
    return reqs


def normalised(reqs: list[Requirement]) -> list[tuple[str, str]]:
    return sorted((canonicalize_name(r.name), str(r.specifier)) for r in reqs)


# ---------------------------------------------------------------- packages


def test_the_student_install_has_neither_the_grading_nor_the_test_tools():
    """The core dependencies are what the student bundle installs: nbgrader would put its instructor extensions
    in every student's JupyterLab."""
    core = {canonicalize_name(Requirement(r).name) for r in pyproject()["project"]["dependencies"]}
    assert not core & (INSTRUCTOR_ONLY | TEST_ONLY)
    assert {canonicalize_name(r.name) for r in extra("instructor")} >= INSTRUCTOR_ONLY
    dev = {canonicalize_name(r.name): r for r in extra("dev")}
    assert dev.keys() >= TEST_ONLY
    assert dev[PROJECT].extras == {"instructor", "site"}, "the tests grade notebooks and build the course site"
    site = {canonicalize_name(r.name): r for r in extra("site")}
    assert site.keys() >= {"sphinx", "myst-nb"} and site[PROJECT].extras == {"instructor"}, \
        "the site is built from the student versions: the instructor tools"


def test_environment_yml_installs_the_student_install_at_the_lock_versions():
    """conda's pip: section is a requirements file: the lock as constraints, the course itself (no version of its
    own beside the lock's)."""
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip_lists = [d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d]
    assert len(pip_lists) == 1, "environment.yml should have one pip: section"
    assert pip_lists[0] == ["-c requirements-lock.txt", "-e ."]
    assert "pip" in env["dependencies"]


def test_environment_python_satisfies_requires_python():
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    python = [d for d in env["dependencies"] if isinstance(d, str) and re.match(r"python\s*[=<>]", d)]
    assert len(python) == 1
    version = re.sub(r"^python\s*=*", "", python[0]).strip()
    assert Version(version) in SpecifierSet(pyproject()["project"]["requires-python"])


def test_requires_python_is_what_installs_and_what_the_docs_say():
    """nbgrader 0.9.6 and the lock's numpy, scipy, matplotlib and scikit-learn need Python 3.11: the project, its
    classifiers, the README and the student bundle's README say 3.11, nowhere 3.10."""
    from course_lib.tools.bundle import STUDENT_README

    project = pyproject()["project"]
    assert project["requires-python"] == ">=3.11"
    versions = [c.rsplit("::", 1)[1].strip() for c in project["classifiers"]
                if re.fullmatch(r"Programming Language :: Python :: 3\.\d+", c)]
    assert versions and all(Version(v) in SpecifierSet(project["requires-python"]) for v in versions)
    assert pyproject()["tool"]["ruff"]["target-version"] == "py311"
    for name, text in [("README.md", (ROOT / "README.md").read_text()), ("the bundle's README", STUDENT_README)]:
        assert "Python 3.11" in text and not re.search(r"Python 3\.10\b", text), name


def test_license_metadata_and_build_requirements():
    """An SPDX license expression with its file (the table form is deprecated) and a bounded setuptools that
    reads it (PEP 639 needs setuptools 77)."""
    project = pyproject()["project"]
    assert project["license"] == "MIT"
    assert project["license-files"] == ["LICENSE"]
    assert (ROOT / "LICENSE").read_text().startswith("MIT License")
    assert not any(c.startswith("License ::") for c in project["classifiers"]), "no license classifier beside SPDX"
    [setuptools] = [Requirement(r) for r in pyproject()["build-system"]["requires"]]
    assert setuptools.name == "setuptools"
    assert Version("77") in setuptools.specifier and Version("76.1") not in setuptools.specifier
    assert any(s.operator == "<" for s in setuptools.specifier), "an upper bound: the next major is untested"


def test_console_script_is_the_command_line():
    """ssl-course <command> is python -m course_lib <command>, and says so in its usage line."""
    from course_lib.tools import cli

    assert pyproject()["project"]["scripts"] == {"ssl-course": "course_lib.tools.cli:main"}
    assert cli.program_name("/home/s/.venv/bin/ssl-course") == "ssl-course"
    assert cli.program_name("/c/course/.venv/Scripts/ssl-course.exe") == "ssl-course"
    assert cli.program_name("/x/course_lib/__main__.py") == "python -m course_lib"


STUDENT_SESSION = """
import sys
for name in ("nbgrader", "pytest", "nbval", "xdist", "playwright", "sphinx", "myst_nb"):
    sys.modules[name] = None  # as if not installed: importing it raises ModuleNotFoundError
import course_lib, course_lib.tools.bundle, course_lib.tools.runner, course_lib.widgets
from course_lib.tools.cli import main
codes = [main(argv) for argv in (["grade", "nowhere"], ["grade", "nowhere", "--cell-timeout", "5"], ["release"],
                                 ["grade-manual", "x.csv"], ["test"], ["site"])]
print("CODES", codes)
"""


def test_without_the_extras_course_lib_imports_and_the_commands_name_the_extra_to_install():
    """A student install (no nbgrader, no pytest, no Sphinx): course_lib and the runner import; release, grade and
    grade-manual stop with exit code 2 and a message naming the instructor extra, test naming the dev extra, site
    the site extra."""
    run = subprocess.run([sys.executable, "-c", STUDENT_SESSION], cwd=ROOT, capture_output=True, text=True,
                         timeout=300, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert run.returncode == 0, run.stderr[-3000:]
    assert "CODES [2, 2, 2, 2, 2, 2]" in run.stdout, run.stdout[-2000:] + run.stderr[-2000:]
    messages = [line for line in run.stderr.splitlines() if line.startswith("python -m course_lib: ")]
    assert len(messages) == 6 and "Traceback" not in run.stderr, run.stderr
    for line in messages[:4]:
        assert "needs nbgrader" in line and "'instructor' extra" in line, line
        assert "pip install -c requirements-lock.txt -e '.[instructor]'" in line, line
    assert "running the tests needs pytest" in messages[4] and "'dev' extra" in messages[4], messages[4]
    assert "building the course site needs sphinx" in messages[5] and "'site' extra" in messages[5], messages[5]


def lock_pins() -> dict[str, Version]:
    pins = {}
    for line in (ROOT / "requirements-lock.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        name, sep, version = line.partition("==")
        assert sep, f"requirements-lock.txt: {line!r} is not pinned with =="
        key = canonicalize_name(name.strip())
        assert key not in pins, f"requirements-lock.txt pins {name} twice"
        pins[key] = Version(version.strip())
    return pins


def test_lock_pins_satisfy_pyproject_ranges():
    pins = lock_pins()
    problems = []
    for req in declared_requirements():
        name = canonicalize_name(req.name)
        if name not in pins:
            problems.append(f"{req.name} is not pinned")
        elif not req.specifier.contains(pins[name], prereleases=True):
            problems.append(f"{req.name}=={pins[name]} is outside pyproject's {req.specifier}")
    assert not problems, "requirements-lock.txt: " + "; ".join(problems)


def test_lock_pins_are_found_whatever_the_spelling():
    pins = lock_pins()
    # the lock spells these as pip freeze does; pyproject uses lower case
    assert "pyyaml" in pins and "scikit-learn" in pins and "torch" in pins


# ---------------------------------------------------------------- README


def quick_start_lines(readme: str) -> list[str]:
    match = re.search(r"^#+\s*Quick start\s*$(.*?)(?=^#+\s|\Z)", readme, flags=re.M | re.S | re.I)
    assert match, "README.md has no 'Quick start' section"
    blocks = re.findall(r"^```[^\n]*\n(.*?)^```", match.group(1), flags=re.M | re.S)
    assert len(blocks) == 1, "the Quick start section should have exactly one code block"
    return [line.strip() for line in blocks[0].splitlines() if line.strip()]


def test_readme_quick_start_is_make_course_and_make_test():
    assert quick_start_lines((ROOT / "README.md").read_text()) == ["make course", "make test"]


def test_quick_start_parser_rejects_other_content():
    """The parser above must be able to fail: extra commands or a missing section are caught."""
    extra = "# x\n\n## Quick start\n\n```bash\nmake course\npip install foo\nmake test\n```\n\n## Next\n"
    assert quick_start_lines(extra) == ["make course", "pip install foo", "make test"]
    with pytest.raises(AssertionError, match="no 'Quick start'"):
        quick_start_lines("# x\n\n## Install\n\n```\nmake course\n```\n")


# ---------------------------------------------------------------- Makefile


def make_rules() -> dict[str, tuple[list[str], list[str]]]:
    """target -> (prerequisites, recipe lines) of every rule in the Makefile."""
    rules: dict[str, tuple[list[str], list[str]]] = {}
    current = None
    for line in (ROOT / "Makefile").read_text().splitlines():
        if line.startswith("\t") and current is not None:
            rules[current][1].append(line.strip())
            continue
        m = re.match(r"^([^\s:=#][^:=]*?)\s*:(?!=)\s*([^#]*)", line)
        if m:
            current = m.group(1).strip()
            rules[current] = (m.group(2).split(), [])
        elif line.strip() and not line.startswith("#"):
            current = None
    return rules


def phony_targets() -> list[str]:
    rules = make_rules()
    return rules.get(".PHONY", ([], []))[0]


SUBCOMMAND = re.compile(r"^\$\(PY\) -m course_lib ([\w-]+)\b")
HOUSEKEEPING = {"clean"}  # removes build/; needs no Python


def command_targets() -> list:
    rules = make_rules()
    targets = [t for t, (_, recipe) in rules.items() if recipe and not t.startswith((".", "$("))]
    return [t for t in targets if t not in HOUSEKEEPING]


def test_makefile_has_the_user_facing_targets():
    rules = make_rules()
    for target in ["course", "test", "lab"]:
        assert target in rules and target in phony_targets()


@pytest.mark.parametrize("target", command_targets())
def test_make_target_wraps_python_m_course_lib(target):
    prerequisites, recipe = make_rules()[target]
    assert len(recipe) == 1, f"make {target} should be one call of $(PY) -m course_lib, got {recipe}"
    m = SUBCOMMAND.match(recipe[0])
    assert m, f"make {target} runs {recipe[0]!r}, not $(PY) -m course_lib <command>"
    assert m.group(1) in COMMANDS
    assert "$(STAMP)" in prerequisites, f"make {target} should install the environment first"


@pytest.mark.parametrize("target", phony_targets())
def test_every_phony_target_has_a_rule(target):
    assert target in make_rules()


def test_makefile_venv_python_is_py():
    text = (ROOT / "Makefile").read_text()
    assert re.search(r"^PY\s*:?=\s*\$\(VENV\)/bin/python\s*$", text, flags=re.M)


# ---------------------------------------------------------------- command line


@pytest.fixture(scope="module")
def cli_help() -> str:
    """What `python -m course_lib --help` prints (the same parser, run in-process: no second torch import)."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit) as exit_:
        main(["--help"])
    assert exit_.value.code == 0
    assert out.getvalue().startswith("usage: python -m course_lib")
    return out.getvalue()


@pytest.mark.parametrize("command", COMMANDS)
def test_cli_help_lists_the_command(cli_help, command):
    assert re.search(rf"^\s+{re.escape(command)}\s+\S", cli_help, flags=re.M), f"'{command}' missing from --help"


def test_cli_help_shows_no_internal_command(cli_help):
    assert "==SUPPRESS==" not in cli_help
    assert not re.search(r"^\s+execute\s", cli_help, flags=re.M)


def test_cli_without_a_command_is_an_error(capsys):
    with pytest.raises(SystemExit) as exit_:
        main([])
    assert exit_.value.code == 2
    assert "required" in capsys.readouterr().err


def test_cli_profile_option_sets_the_environment_variable(monkeypatch):
    monkeypatch.delenv("COURSE_PROFILE", raising=False)
    seen = {}

    def fake_run_course(notebooks, profile=None, out_dir=None, html=True):
        seen.update(notebooks=notebooks, profile=profile, env=os.environ.get("COURSE_PROFILE"), html=html)
        return 0

    monkeypatch.setattr(runner, "run_course", fake_run_course)
    assert main(["course", "--profile", "grade", "--no-html", "a.ipynb"]) == 0
    assert seen == {"notebooks": ["a.ipynb"], "profile": "grade", "env": "grade", "html": False}


def tiny_notebook(path: Path, *sources: str) -> Path:
    import nbformat

    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(s) for s in sources]), path)
    return path


def test_course_run_times_each_notebook_and_reports_a_failure(tmp_path, capfd):
    ok = tiny_notebook(tmp_path / "01_ok.ipynb", "from course_lib.results import headline",
                       "headline('probe 12.5%')")
    bad = tiny_notebook(tmp_path / "02_bad.ipynb", "x = 1", "assert x == 2, 'x should be 2'")
    out = tmp_path / "out"
    assert runner.run_course([str(ok), str(bad)], out_dir=out, html=False) == 1
    printed, errors = capfd.readouterr()  # capfd: what the notebook subprocesses write to the terminal, too
    assert re.search(r"01_ok\.ipynb\s+\d+\.\ds\s+\d+ MB  probe 12\.5%", printed)
    assert re.search(r"02_bad\.ipynb\s+\d+\.\ds\s+\d+ MB  FAILED: AssertionError: x should be 2", printed)
    assert "IPKernelApp" not in printed + errors  # the kernels' chatter goes to a log, not the terminal
    summary = (out / "summary.md").read_text().splitlines()
    assert summary[2].startswith("| 01_ok.ipynb |") and summary[2].endswith("| probe 12.5% |")
    assert "AssertionError: x should be 2" in summary[3]
    assert (out / "01_ok.ipynb").exists() and (out / "01_ok.log").exists()
    record = json.loads((out / "01_ok.json").read_text())  # what produced its numbers, for the course site's pages
    assert record["profile"] == "fast" and record["device"] == str(get_device()) and record["torch"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00", record["started"])
    assert re.fullmatch(r"[0-9a-f]{4,40}(\+changes)?", record["commit"]), record["commit"]


def test_course_run_of_a_missing_notebook_is_an_error(tmp_path, capsys):
    assert runner.run_course([str(tmp_path / "nope.ipynb")], out_dir=tmp_path) == 2
    assert "no such notebook" in capsys.readouterr().err


def test_make_test_runs_the_fast_profile_headless_without_budgets_whatever_the_shell_says(monkeypatch, capsys):
    """COURSE_PROFILE=grade left in a shell would turn every notebook claim off: `test` ignores it, says so."""
    from course_lib.tools import cli

    monkeypatch.setenv("COURSE_PROFILE", "grade")
    seen = {}

    def fake_call(cmd, cwd=None, env=None):
        seen.update(cmd=cmd, env=env)
        return 0

    monkeypatch.setattr(cli.subprocess, "call", fake_call)
    assert main(["test"]) == 0
    assert "ignored" in capsys.readouterr().out
    env = seen["env"]
    assert env["COURSE_PROFILE"] == "fast" and env["COURSE_HEADLESS"] == "1" and env["COURSE_TIME_BUDGETS"] == "off"
    assert "course_lib.tools.nbval_watchdog" in seen["cmd"]
    assert "--nbval-cell-timeout=600" in seen["cmd"]
    assert os.environ["COURSE_PROFILE"] == "grade"  # the caller's own environment is left alone


def test_make_test_runs_two_workers_where_it_can(monkeypatch):
    from course_lib.tools.cli import test_workers_args

    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    assert test_workers_args(None) == ["-n", "2", "--dist", "loadgroup"]
    assert test_workers_args(5) == ["-n", "2", "--dist", "loadgroup"], "two groups: more workers would idle"
    assert test_workers_args(1) == [], "one worker: no xdist at all"
    monkeypatch.setattr(os, "cpu_count", lambda: 1)
    assert test_workers_args(None) == []
    for bad in (0, -1, 1.5, "2", True):
        with pytest.raises(ValueError, match="workers"):
            test_workers_args(bad)


def test_notebooks_run_in_one_worker_and_the_unit_tests_in_the_other():
    from course_lib.tools.nbval_watchdog import split_scope

    assert split_scope("notebooks/01_learning_paradigms.ipynb::Cell 0") == "notebooks"
    assert split_scope("notebooks/10_comparison.ipynb::Cell 12") == "notebooks"
    assert split_scope("tests/test_config.py::test_profiles[fast]") == "unit-tests"
    assert split_scope("tests/test_grading.py::TestX::test_y") == "unit-tests"


def test_the_xdist_method_the_scheduler_overrides_still_exists():
    """The two-worker scheduler overrides LoadScopeScheduling._split_scope (private; pyproject bounds pytest-xdist
    below 4): a pytest-xdist without it fails here, in the drift run, before make test would run out of order."""
    xdist_scheduler = pytest.importorskip("xdist.scheduler")
    assert callable(getattr(xdist_scheduler.LoadScopeScheduling, "_split_scope", None))


def test_the_notebooks_helpers_import_without_unix_only_modules():
    """Every notebook imports headline() from results.py: it must import where resource and fcntl do not exist
    (Windows), and so must the course runner that reads the headline."""
    # what runner and results import first: on Linux psutil (under ipykernel 6) needs resource itself
    code = ("import sys, course_lib.config, course_lib.widgets, course_lib.evaluate, course_lib.checkpoints\n"
            "sys.modules['resource'] = sys.modules['fcntl'] = None\n"
            "from course_lib.results import headline\nimport course_lib.tools.runner\nheadline('ok')\n")
    run = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert run.returncode == 0 and "Headline: ok" in run.stdout, run.stderr[-3000:]


# ---------------------------------------------------------------- architecture


def course_lib_imports() -> dict[str, set[str]]:
    """Every course_lib module -> the course_lib modules it imports, at the top or inside a function (a lazy
    import still ties the two modules together)."""
    package = ROOT / "course_lib"
    modules = {".".join(p.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__"): p
               for p in package.rglob("*.py")}
    graph = {}
    for name, path in modules.items():
        here = name if path.name == "__init__.py" else name.rpartition(".")[0]  # the package relative imports start at
        targets = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                candidates = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    base = ".".join([*here.split(".")[:len(here.split(".")) - node.level + 1], *filter(None, [base])])
                candidates = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base
                              for alias in node.names]
            else:
                continue
            for target in candidates:
                while target and target not in modules:  # `import course_lib.tools.x.y`: the module is the longest known
                    target = target.rpartition(".")[0]
                if target and target != name:
                    targets.add(target)
        graph[name] = targets
    return graph


def import_cycles(graph: dict[str, set[str]]) -> list[set[str]]:
    """The groups of modules of ``graph`` that import each other, directly or through others (each module in a
    group reaches every other)."""
    reach = {}
    for module in graph:
        seen, todo = set(), [module]
        while todo:
            for target in graph.get(todo.pop(), ()):
                if target not in seen:
                    seen.add(target)
                    todo.append(target)
        reach[module] = seen
    groups = []
    for module in sorted(graph):
        group = {module} | {other for other in reach[module] if module in reach.get(other, ())}
        if len(group) > 1 and group not in groups:
            groups.append(group)
    return groups




def test_import_cycle_finder_finds_a_lazy_cycle_and_passes_a_tree():
    assert import_cycles({"a": {"b"}, "b": {"c"}, "c": set()}) == []
    assert import_cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [{"a", "b", "c"}]


def test_no_two_course_lib_modules_import_each_other():
    """Directly or through others, at the top of a module or inside a function: a cycle means neither module can be
    read, or tested, without the other."""
    graph = course_lib_imports()
    assert "course_lib.files" in graph["course_lib.checkpoints"]  # the finder sees top-level imports,
    assert "course_lib.tools.runner" in graph["course_lib.tools.demo"]  # and imports inside functions
    assert import_cycles(graph) == []


def test_the_files_module_imports_nothing_else_of_course_lib():
    """Any module may take its atomic write and its lock from it."""
    assert course_lib_imports()["course_lib.files"] == set()


@pytest.mark.parametrize("notebook", sorted((ROOT / "notebooks").glob("*.ipynb")), ids=lambda p: p.stem)
def test_course_notebooks_are_stored_without_outputs_and_show_every_code_cell(notebook):
    """A notebook in git carries no outputs, and no code cell hides its source: JupyterLab then hides the cell's
    prompt too, so a reader cannot see that it ran (and the browser test, which counts the prompts, miscounts)."""
    cells = json.loads(notebook.read_text(encoding="utf-8"))["cells"]
    code = [(i, c) for i, c in enumerate(cells) if c["cell_type"] == "code"]
    assert [i for i, c in code if c.get("outputs") or c.get("execution_count") is not None] == []
    assert [i for i, c in code if c["metadata"].get("jupyter", {}).get("source_hidden")] == []
