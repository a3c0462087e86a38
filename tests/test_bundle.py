"""The student bundle (course_lib.tools.bundle): no solution and no hidden test anywhere in it, and it sets up a
working student environment on its own."""

import html
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell
from packaging.requirements import Requirement
from test_grading import NAME, _meta, tiny_notebook

from course_lib.tools.bundle import (
    INSTALL_FILES,
    LIBRARY_ANSWER,
    find_leaks,
    make_bundle,
    secret_lines,
    visible_answers,
    write_bundle,
)
from course_lib.tools.cli import main as cli_main
from course_lib.tools.release import release

ROOT = Path(__file__).resolve().parents[1]
HIDDEN_LINE = 'assert square(v) == v ** 2, f"square({v})"'  # from tiny_notebook's hidden test
SOLUTION_LINE = "return math.fsum(xs) / len(xs)"  # mean's solution, not a library answer


def course_with_exercises(base: Path) -> nbformat.NotebookNode:
    """tiny_notebook plus a library-answer exercise (``cube``) and a hand-graded written answer."""
    nb = tiny_notebook()
    nb.cells += [
        new_code_cell(f"def cube(x):\n    {LIBRARY_ANSWER}: mylib.cube\n    ### BEGIN SOLUTION\n"
                      "    return mylib_cube_reference(x)\n    ### END SOLUTION", metadata=_meta("cube")),
        new_code_cell("assert cube(2) == 8", metadata=_meta("test_cube", 1)),
        new_markdown_cell("Why is the square never negative? Because a product of equal signs is positive.",
                          metadata={"nbgrader": {"grade": True, "solution": True, "locked": False, "task": False,
                                                 "schema_version": 3, "grade_id": "why_square", "points": 2}}),
    ]
    (base / "source").mkdir(parents=True)
    nbformat.write(nb, base / "source" / f"{NAME}.ipynb")
    return nb


def fake_course_root(base: Path, library_text: str = '"""A library."""\n') -> Path:
    """A course root as make_bundle reads it: course_lib/, data/ and the install files."""
    (base / "course_lib").mkdir(parents=True)
    (base / "course_lib" / "__init__.py").write_text(library_text)
    (base / "data").mkdir()
    (base / "data" / "images.npz").write_bytes(b"\x00\x01binary")
    for name in INSTALL_FILES:
        (base / name).write_text(f"# {name}\n")
    return base


def test_secret_lines_cover_hidden_tests_and_solutions_but_not_library_answers(tmp_path):
    course_with_exercises(tmp_path)
    secrets = secret_lines([tmp_path / "source" / f"{NAME}.ipynb"], fake_course_root(tmp_path / "root"))
    assert secrets[HIDDEN_LINE] == f"{NAME}: test_square_hidden (hidden test)"
    assert secrets[SOLUTION_LINE] == f"{NAME}: mean (solution)"
    assert secrets["raise AssertionError(\"mean([]) should raise ValueError\")"].endswith("(hidden test)")
    # the written answer of a hand-graded cell is a solution too
    assert any("product of equal signs" in line for line in secrets)
    # a library answer, short lines (return x * x), comments, bare imports and visible lines are not secrets
    assert not any("mylib_cube_reference" in line for line in secrets)
    assert "return x * x" not in secrets and not any(line.startswith("#") for line in secrets)
    assert "except ValueError:" not in secrets  # plain Python
    assert not any("import" in line.split()[:1] for line in secrets)


def test_the_lines_of_every_training_step_are_idioms_not_answers(tmp_path):
    nb = tiny_notebook()
    nb.cells.append(new_code_cell("def fit(model, batches):\n    ### BEGIN SOLUTION\n    for x, y in batches:\n"
                                  "        loss = my_special_loss(model(x), y)\n        optimizer.zero_grad()\n"
                                  "        loss.backward()\n        optimizer.step()\n    ### END SOLUTION",
                                  metadata=_meta("fit")))
    (tmp_path / "source").mkdir()
    nbformat.write(nb, tmp_path / "source" / f"{NAME}.ipynb")
    secrets = secret_lines([tmp_path / "source" / f"{NAME}.ipynb"], fake_course_root(tmp_path / "root"))
    assert "loss = my_special_loss(model(x), y)" in secrets  # the answer's own line is a secret
    assert not {"optimizer.zero_grad()", "loss.backward()", "optimizer.step()"} & set(secrets)


def test_a_clean_bundle_passes_and_holds_what_a_student_needs(tmp_path):
    course_with_exercises(tmp_path)
    [student] = release(tmp_path / "source", tmp_path / "release")
    root = fake_course_root(tmp_path / "root", '"""Cubes: mylib_cube_reference(x) is x ** 3."""\n')  # library answer
    folder, archive = make_bundle([student], [tmp_path / "source" / f"{NAME}.ipynb"], tmp_path / "out", root)
    files = sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())
    assert files == sorted(["README.md", f"notebooks/{NAME}.ipynb", "course_lib/__init__.py", "data/images.npz",
                            *INSTALL_FILES])
    with zipfile.ZipFile(archive) as z:
        assert sorted(z.namelist()) == sorted(f"ssl-course/{f}" for f in files)
    readme = (folder / "README.md").read_text()
    assert "pip install -c requirements-lock.txt -e ." in readme and "python -m course_lib lab" in readme


@pytest.mark.parametrize("where, text", [
    ("course_lib/__init__.py", f'"""Example:\n\n    {HIDDEN_LINE}\n"""\n'),  # a hidden test pasted in a docstring
    ("course_lib/__init__.py", "def mean(xs):\n    return math.fsum(xs) / len(xs)  # the answer\n"),  # a solution
    ("course_lib/__init__.py", "def mean(xs):\n    return math.fsum(xs) / len(xs)\n"),  # its comment dropped
    ("pyproject.toml", "# Why is the square never negative? Because a product of equal signs is positive.\n"),
])
def test_a_leaky_bundle_is_refused_and_deleted(tmp_path, where, text):
    course_with_exercises(tmp_path)
    [student] = release(tmp_path / "source", tmp_path / "release")
    root = fake_course_root(tmp_path / "root")
    (root / where).write_text(text)
    with pytest.raises(ValueError, match=f"(?s)give away .*{where}") as e:
        make_bundle([student], [tmp_path / "source" / f"{NAME}.ipynb"], tmp_path / "out", root)
    assert f"{NAME}: " in str(e.value)
    assert not (tmp_path / "out" / "ssl-course").exists() and not (tmp_path / "out" / "ssl-course.zip").exists()


def test_leaks_are_found_in_notebooks_and_inside_the_zip(tmp_path):
    """The instructor's notebook shipped by mistake (a JSON string with escaped quotes) is found, in the folder
    and in the zip."""
    course_with_exercises(tmp_path)
    source = tmp_path / "source" / f"{NAME}.ipynb"
    [student] = release(tmp_path / "source", tmp_path / "release")
    folder, archive = write_bundle([source], tmp_path / "out", fake_course_root(tmp_path / "root"))
    secrets = secret_lines([source], tmp_path / "root")
    for bundle in (folder, archive):
        leaks = find_leaks(bundle, secrets)
        assert any(HIDDEN_LINE in leak and f"{NAME}.ipynb" in leak for leak in leaks), leaks
        assert any(SOLUTION_LINE in leak for leak in leaks)
    assert find_leaks(write_bundle([student], tmp_path / "ok", tmp_path / "root")[1], secrets) == []


def test_the_lines_of_the_instructors_cells_are_secrets(tmp_path):
    """An instructors' cell is left out of every student version: a line of it in the bundle or the site is a leak."""
    nb = tiny_notebook()
    nb.cells += [new_markdown_cell("**For instructors**\nMeasured on a quiet machine with seeds 0-2 and one thread."),
                 new_code_cell("timings = measure_every_notebook(seeds=3)", metadata={"course": {"instructors": True}})]
    (tmp_path / "source").mkdir()
    nbformat.write(nb, tmp_path / "source" / f"{NAME}.ipynb")
    secrets = secret_lines([tmp_path / "source" / f"{NAME}.ipynb"], fake_course_root(tmp_path / "root"))
    assert secrets["Measured on a quiet machine with seeds 0-2 and one thread."] == f"{NAME}: instructors' cell"
    assert secrets["timings = measure_every_notebook(seeds=3)"] == f"{NAME}: instructors' cell"


def highlighted(line: str) -> str:
    """``line`` as a highlighter writes it into an HTML page: one tag per token, quotes and operators as entities."""
    tokens = re.findall(r"\w+|\s+|[^\w\s]", line)
    return "".join(t if t.isspace() else f'<span class="n">{html.escape(t, quote=True)}</span>' for t in tokens)


def test_leaks_are_found_in_a_web_page_as_its_reader_sees_it(tmp_path):
    """In HTML a line of code is split into tags with entities in between (the course site's highlighted code): the
    leak check reads the page's text, and its attributes (an alt text), as well as its bytes."""
    course_with_exercises(tmp_path)
    secrets = secret_lines([tmp_path / "source" / f"{NAME}.ipynb"], fake_course_root(tmp_path / "root"))
    page = tmp_path / "site" / "page.html"
    page.parent.mkdir()
    page.write_text(f"<html><body><pre>{highlighted('x = 1')}</pre></body></html>")
    assert find_leaks(page.parent, secrets) == []
    assert HIDDEN_LINE not in highlighted(HIDDEN_LINE) and "&quot;" in highlighted(HIDDEN_LINE)
    for planted in (f"<pre>{highlighted(HIDDEN_LINE)}</pre>", f'<img alt="{html.escape(HIDDEN_LINE)}">'):
        page.write_text(f"<html><body>{planted}</body></html>")
        leaks = find_leaks(page.parent, secrets)
        assert len(leaks) == 1 and leaks[0].startswith("page.html: "), leaks


def test_the_course_bundle_holds_no_solution_and_no_hidden_test(tmp_path, capsys):
    """`make release` on the course itself: every notebook, course_lib, data and the install files, and no line
    of a hidden test or of a solution (other than library answers) in any file (make_bundle refuses otherwise)."""
    assert cli_main(["release", "--out", str(tmp_path)]) == 0, capsys.readouterr().err
    folder = tmp_path / "ssl-course"
    notebooks = sorted(p.name for p in (ROOT / "notebooks").glob("[0-9]*.ipynb"))
    assert sorted(p.name for p in (folder / "notebooks").iterdir()) == notebooks
    assert (folder / "course_lib" / "evaluate.py").exists() and (folder / "data" / "fashion_mnist_subset.npz").exists()
    assert not (folder / "tests").exists() and not (folder / "docs").exists() and not (folder / "scripts").exists()
    secrets = secret_lines(sorted((ROOT / "notebooks").glob("[0-9]*.ipynb")))
    assert len(secrets) > 50  # the check has something to look for
    assert find_leaks(folder, secrets) == [] and find_leaks(tmp_path / "ssl-course.zip", secrets) == []


def lock_mismatches() -> list[str]:
    """The lock's pins that this environment does not satisfy (``name==installed (lock: pinned)``)."""
    from importlib.metadata import PackageNotFoundError, version

    from packaging.specifiers import SpecifierSet

    found = []
    for line in (ROOT / "requirements-lock.txt").read_text().splitlines():
        name, sep, pinned = line.split("#", 1)[0].strip().partition("==")
        if not sep:
            continue
        try:
            installed = version(name)
        except PackageNotFoundError:
            continue
        if not SpecifierSet(f"=={pinned}").contains(installed, prereleases=True):
            found.append(f"{name}=={installed} (lock: {pinned})")
    return found


def test_a_student_environment_from_the_bundle_alone_runs_notebook_01(tmp_path):
    """The bundle, unzipped in an empty folder, installed into a new virtual environment (its dependencies from
    this environment: no network here, with the instructor's and the tests' tools hidden there as if not
    installed) and notebook 01 answered with the instructor's solutions, executed there under the grade profile:
    no error, and the kernel imports the bundle's course_lib, not this repository's. The install requires neither
    nbgrader nor the test tools."""
    mismatches = lock_mismatches()
    if mismatches:  # e.g. python -m course_lib drift, which installs without the lock
        pytest.skip("the bundle installs with the lock and without network, from this environment's packages, "
                    "which are not the lock's: " + ", ".join(mismatches[:8]))
    name = "01_learning_paradigms"
    (tmp_path / "source").mkdir()
    shutil.copy(ROOT / "notebooks" / f"{name}.ipynb", tmp_path / "source")
    [student] = release(tmp_path / "source", tmp_path / "release")
    _, archive = write_bundle([student], tmp_path / "out")
    home = tmp_path / "student"
    with zipfile.ZipFile(archive) as z:
        z.extractall(home)
    bundle = home / "ssl-course"
    venv = home / ".venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          check=True, capture_output=True, text=True).stdout.strip()
    Path(site, "course-dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")  # torch, jupyter...
    hidden = ("nbgrader", "pytest", "nbval", "xdist", "playwright")  # what a student does not install
    Path(site, "not-installed.pth").write_text(f"import sys; sys.modules.update(dict.fromkeys({hidden!r}))\n")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "COURSE_CACHE", "COURSE_DATA",
                                                            "VIRTUAL_ENV", "JUPYTER_PATH")}
    env.update(PYTHONNOUSERSITE="1", COURSE_PROFILE="grade", MPLBACKEND="Agg", OMP_NUM_THREADS="1",
               HOME=str(home), JUPYTER_DATA_DIR=str(home / "jupyter"), IPYTHONDIR=str(home / "ipython"))
    install = subprocess.run([str(python), "-m", "pip", "install", "--no-index", "--no-build-isolation",
                              "-c", "requirements-lock.txt", "-e", "."], cwd=bundle, env=env,
                             capture_output=True, text=True)
    assert install.returncode == 0, install.stdout[-3000:] + install.stderr[-3000:]
    where = subprocess.run([str(python), "-c", "import course_lib; print(course_lib.__file__)"], cwd=home, env=env,
                           check=True, capture_output=True, text=True).stdout.strip()
    assert Path(where).resolve() == (bundle / "course_lib" / "__init__.py").resolve()
    requires = subprocess.run([str(python), "-c", "import importlib.metadata as m; print(*m.requires('ssl-course'), "
                               "sep='\\n')"], env=env, check=True, capture_output=True, text=True).stdout.splitlines()
    core = {Requirement(r).name for r in requires if "extra ==" not in r}
    assert "torch" in core and not core & {"nbgrader", "pytest", "nbval", "pytest-xdist", "playwright"}, core
    hidden_check = subprocess.run([str(python), "-c", "import nbgrader"], env=env, capture_output=True, text=True)
    assert hidden_check.returncode != 0 and "ModuleNotFoundError" in hidden_check.stderr

    nb = nbformat.read(bundle / "notebooks" / f"{name}.ipynb", as_version=4)
    source = nbformat.read(ROOT / "notebooks" / f"{name}.ipynb", as_version=4)
    solutions = {c.metadata["nbgrader"]["grade_id"]: c.source for c in source.cells
                 if c.cell_type == "code" and c.metadata.get("nbgrader", {}).get("solution")}
    for cell in nb.cells:
        gid = cell.metadata.get("nbgrader", {}).get("grade_id")
        if gid in solutions:
            cell.source = "\n".join(line for line in solutions[gid].splitlines() if " SOLUTION" not in line)
    nb.cells.append(new_code_cell("import sys, course_lib\nprint('WHERE', course_lib.__file__, sys.executable)"))
    nbformat.write(nb, bundle / "notebooks" / "answered.ipynb")
    run = subprocess.run([str(python), "-m", "nbconvert", "--to", "notebook", "--execute",
                          "--ExecutePreprocessor.kernel_name=python3", "--ExecutePreprocessor.timeout=600",
                          "--output", "executed.ipynb", "answered.ipynb"], cwd=bundle / "notebooks", env=env,
                         capture_output=True, text=True, timeout=1200)
    assert run.returncode == 0, run.stderr[-5000:]
    executed = nbformat.read(bundle / "notebooks" / "executed.ipynb", as_version=4)
    errors = [o for c in executed.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    assert errors == [], errors[0]
    text = "".join(o.get("text", "") for o in executed.cells[-1].outputs)
    assert text.split()[:3] == ["WHERE", str((bundle / "course_lib" / "__init__.py").resolve()), str(python)], text
    assert (bundle / "build" / "cache").is_dir()  # the bundle's own cache: its course_lib found its root


# ------------------------------------------------------------- answers in the notebook's own visible cells


def answers_in(tmp_path, *cells, library_text='"""A library."""\n'):
    """visible_answers of course_with_exercises plus ``cells`` (inserted before the exercises when a cell is a
    (position, cell) pair, appended otherwise)."""
    base = tmp_path / f"call{len(list(tmp_path.iterdir()))}"  # a fresh folder for every call of a test
    nb = course_with_exercises(base / "nb")
    for cell in cells:
        if isinstance(cell, tuple):
            nb.cells.insert(*cell)
        else:
            nb.cells.append(cell)
    path = base / "nb" / "source" / f"{NAME}.ipynb"
    nbformat.write(nb, path)
    return visible_answers(path, fake_course_root(base / "root", library_text))


def test_a_clean_notebook_shows_no_answer(tmp_path):
    assert answers_in(tmp_path) == []


def test_a_solution_line_in_a_visible_cell_is_an_answer_shown(tmp_path):
    """Anywhere: in a later cell's code, or in Markdown prose (a code block), also as part of a longer line."""
    found = answers_in(tmp_path, new_markdown_cell(f"The mean is just `{SOLUTION_LINE}` here."))
    assert found == [f"{NAME}: mean (solution): {SOLUTION_LINE}"]
    assert answers_in(tmp_path, (2, new_code_cell(f"    {SOLUTION_LINE}  # spoiler"))) == found


def test_a_line_the_exercise_text_prescribes_is_given_not_shown(tmp_path):
    task = new_markdown_cell(f"### Exercise 2: the mean\nEnd with `{SOLUTION_LINE}`.")
    assert answers_in(tmp_path, (5, task)) == []  # the task statement right above the solution gives it
    other = new_markdown_cell("### Exercise 3: the mean, again")  # the mean's own task, after the first one
    assert answers_in(tmp_path, (2, task), (6, other)) == [f"{NAME}: mean (solution): {SOLUTION_LINE}"]


def test_a_library_answer_printed_above_its_exercise_is_copied_not_written(tmp_path):
    shown = new_code_cell("return mylib_cube_reference(x)  # course_lib's cube, printed")
    above = answers_in(tmp_path, (8, shown))
    assert above == [f"{NAME}: cube (library answer): return mylib_cube_reference(x)"]
    assert answers_in(tmp_path, shown) == []  # after the exercise it is the library's code, by design


def test_a_sentence_of_a_model_answer_in_the_prose_states_it(tmp_path):
    said = new_markdown_cell("Notice: because a product of equal signs is positive.")
    assert answers_in(tmp_path, said) == []  # shorter than ANSWER_SENTENCE_CHARS: too common to be evidence
    long = ("The square is never negative, because a product of two factors of equal sign is positive, "
            "whatever x is.")
    nb_cells = [new_markdown_cell(f"Why? {long}"),
                new_markdown_cell(long, metadata={"nbgrader": {"grade": True, "solution": True, "locked": False,
                                                               "task": False, "schema_version": 3,
                                                               "grade_id": "why_again", "points": 1}})]
    assert answers_in(tmp_path, *nb_cells) == [f"{NAME}: why_again (written answer): {long}"]


def test_a_hidden_reference_function_shown_is_an_answer_but_its_inputs_are_not(tmp_path):
    hidden = new_code_cell("# hidden tests of cube\n### BEGIN HIDDEN TESTS\ndef reference_cube(x):\n"
                           "    return x * x * x * 1\nvalues = list(range(-3, 4))\nfor v in values:\n"
                           "    assert cube(v) == reference_cube(v)\n### END HIDDEN TESTS",
                           metadata=_meta("test_cube_hidden", 2))
    inputs = new_code_cell("values = list(range(-3, 4))  # the notebook's own inputs")
    assert answers_in(tmp_path, hidden, inputs) == []
    shown = new_code_cell("print(x * x * x * 1)\ndef reference_cube(x):\n    return x * x * x * 1")
    assert answers_in(tmp_path, hidden, shown) == [
        f"{NAME}: test_cube_hidden (hidden test): def reference_cube(x):",
        f"{NAME}: test_cube_hidden (hidden test): return x * x * x * 1"]


def test_an_instructors_line_repeated_in_a_visible_cell_is_shown(tmp_path):
    note = new_markdown_cell("**For instructors**\nThe margins held on seeds 0-5 at 2.5 points.")
    assert answers_in(tmp_path, note) == []
    again = new_markdown_cell("The margins held on seeds 0-5 at 2.5 points.")
    assert answers_in(tmp_path, note, again) == [
        f"{NAME}: cell {len(tiny_notebook().cells) + 3} (instructors' cell): "
        "The margins held on seeds 0-5 at 2.5 points."]


@pytest.mark.parametrize("notebook", sorted((ROOT / "notebooks").glob("*.ipynb")), ids=lambda p: p.stem)
def test_no_course_notebook_shows_an_answer_in_its_visible_cells(notebook):
    """The student version drops solutions, hidden tests and the instructors' cells; this keeps what it shows
    from stating them (line rules: visible_answers). Prose that restates an answer in other words is for review."""
    assert visible_answers(notebook) == []
