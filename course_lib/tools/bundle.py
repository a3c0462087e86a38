"""The student bundle: everything a student needs to do the homework, and nothing that gives it away.

``make release`` writes it next to nbgrader's per-notebook release (``build/release/``):

* ``ssl-course/`` and ``ssl-course.zip`` (the same folder, zipped): the student notebooks (solutions
  replaced by stubs, hidden tests removed, outputs cleared), ``course_lib`` (source), ``data/``, the
  install files (``pyproject.toml``, ``requirements-lock.txt``, ``environment.yml``, ``LICENSE``) and a short
  ``README.md`` whose two commands set everything up and open the notebooks.

Students get this bundle, never the repository: the repository's ``notebooks/`` hold every solution
and every hidden test, its ``docs/`` and ``tests/`` quote some of them.

Before the bundle is handed out, :func:`find_leaks` searches every file of it (and of the zip) for
every non-trivial line of every hidden-test region, of every solution (except the solutions of
exercises whose answer is in ``course_lib`` by design, :func:`is_library_answer`) and of every cell for
instructors only (:func:`is_instructors_cell`), and the release
stops if one is found. The course site (``tools/site.py``) is searched the same way: in an HTML page also its
text as a reader sees it (:func:`html_text`: highlighted code splits a line into many tags).
"""

from __future__ import annotations

import builtins
import html
import json
import keyword
import re
import shutil
import zipfile
from pathlib import Path

import nbformat

from course_lib.config import REPO_ROOT

BUNDLE_NAME = "ssl-course"
LIBRARY_ANSWER = "# answer in course_lib by design"  # in a solution cell: its solution is not a secret
INSTALL_FILES = ("pyproject.toml", "requirements-lock.txt", "environment.yml", "LICENSE")
MIN_CHARS = 15  # shorter lines (``return x``, ``k = 3``) occur anywhere: not evidence of a leak
REGIONS = {"solution": ("### BEGIN SOLUTION", "### END SOLUTION"),
           "hidden": ("### BEGIN HIDDEN TESTS", "### END HIDDEN TESTS")}
_IMPORT = re.compile(r"(from\s+[\w.]+\s+)?import\s+[\w., ()]+(\s+as\s+\w+)?")
_COMMENT = re.compile(r"\s+#[^\"']*$")  # a trailing comment (no quote after the #): not part of the line's code
_PLAIN = set(keyword.kwlist) | set(dir(builtins))  # a line of these words only (``except ValueError:``) is Python
INSTRUCTORS = "For instructors"  # the opening words of a cell for instructors only
IDIOM_FILES = 3  # a line that course_lib's own code has in this many files is an idiom, not an answer
# The lines of every PyTorch training step: no exercise's answer, though course_lib (one loop) has them in few files.
TORCH_IDIOMS = frozenset({"optimizer.zero_grad()", "loss.backward()", "optimizer.step()"})

STUDENT_README = """\
# Self-supervised learning for images: the course notebooks (student version)

Set everything up (Python 3.11 or newer), then open the notebooks in JupyterLab:

```bash
python3 -m venv .venv && .venv/bin/python -m pip install -c requirements-lock.txt -e .
.venv/bin/python -m course_lib lab
```

On Windows: `py -m venv .venv && .venv\\Scripts\\python -m pip install -c requirements-lock.txt -e .`,
then `.venv\\Scripts\\python -m course_lib lab`. (`ssl-course lab`, in the activated environment, does the same.)

The install downloads PyTorch and JupyterLab. On Linux the default PyTorch is the CUDA build: 3.2 GB to
download with its CUDA libraries, 6 GB on disk. Without an NVIDIA GPU, install PyTorch's CPU build first (about
0.4 GB to download in all), then the rest:

```bash
.venv/bin/python -m pip install -c requirements-lock.txt torch torchvision --index-url https://download.pytorch.org/whl/cpu
.venv/bin/python -m pip install -c requirements-lock.txt -e .
```

PyPI's PyTorch for macOS and Windows is a CPU build (macOS: with Apple's GPU, MPS): there the plain install is small.

* `notebooks/`: one notebook per lecture. The exercises are in the notebooks: replace
  `# YOUR CODE HERE` / `raise NotImplementedError()` with your code and `YOUR ANSWER HERE` with your
  written answer. Run the cell below an exercise: it checks the example from the text. More tests,
  not shown, run when your homework is graded; the comment in the test cell says what they check.
  Hand in the notebook file under its own name (e.g. `01_learning_paradigms.ipynb`).
* `course_lib/`: the library behind the notebooks, one file per method. Read it next to the papers.
* `data/`: the images the notebooks use (a Fashion-MNIST subset).
* `results/`: the comparison over training seeds, recorded (`python -m course_lib compare --seeds 0 1 2`); notebook 10 reads it.

The notebooks run on a laptop CPU in a few minutes each. Checkpoints are cached in `build/cache/`.
"""


# ------------------------------------------------------------------ what must not leak


def is_library_answer(cell) -> bool:
    """A solution cell whose answer is in ``course_lib`` by design (a re-implementation exercise, practice
    worth few points): its source holds the comment ``# answer in course_lib by design``, or its metadata
    ``"course": {"library_answer": true}``. Its solution may appear in the bundle; its hidden tests may not."""
    return LIBRARY_ANSWER in cell.source or bool(cell.metadata.get("course", {}).get("library_answer"))


def is_instructors_cell(cell) -> bool:
    """A cell for instructors only (how the notebook's numbers were measured, ...): metadata
    ``"course": {"instructors": true}``, or a Markdown cell whose first line reads "For instructors" (as a heading or
    in bold), so that an unmarked one never reaches students either."""
    if cell.metadata.get("course", {}).get("instructors"):
        return True
    lines = cell.source.strip().splitlines()
    return cell.cell_type == "markdown" and bool(lines) and lines[0].lstrip("#*_ ").startswith(INSTRUCTORS)


def normalize(text: str) -> str:
    """Whitespace collapsed to single spaces: indentation and line breaks do not hide a line."""
    return " ".join(text.split())


def _code(line: str) -> str:
    """A secret line as it is searched for: normalized, without its trailing comment (a copy may drop it)."""
    return normalize(_COMMENT.sub("", line))


def _regions(source: str, begin: str, end: str) -> tuple[list[str], str]:
    """(lines between ``begin`` and ``end`` markers, the source without them)."""
    inside, outside, secret = False, [], []
    for line in source.splitlines():
        if begin in line:
            inside = True
        elif end in line:
            inside = False
        elif inside:
            secret.append(line)
        else:
            outside.append(line)
    return secret, "\n".join(outside)


def _plain_python(line: str) -> bool:
    """No name of its own and no string: only Python's keywords and builtins (``except ValueError:``)."""
    return not re.search("[\"']", line) and set(re.findall(r"[A-Za-z_]\w*", line)) <= _PLAIN


def _library_texts(library_root: Path) -> list[str]:
    return [normalize(p.read_text(encoding="utf-8")) for p in sorted((library_root / "course_lib").rglob("*.py"))]


def _telling(line: str, library: list[str]) -> bool:
    """A normalized code line that would say something if found: long enough, not a comment, an import, plain
    Python or an idiom (a training step's line, or a line ``course_lib`` has in ``IDIOM_FILES`` files or more)."""
    return (len(line) >= MIN_CHARS and not line.startswith("#") and not _IMPORT.fullmatch(line)
            and not _plain_python(line) and line not in TORCH_IDIOMS
            and sum(line in text for text in library) < IDIOM_FILES)


def _parts(cell) -> tuple[list[tuple[str, str]], str]:
    """([(line, kind)] a student must not see, the text the student version shows) of one cell that is not an
    instructors' cell: hidden-test lines, and the solution's lines (kind "library answer" for
    :func:`is_library_answer`); a written answer (a Markdown solution cell) is replaced whole."""
    hidden, rest = _regions(cell.source, *REGIONS["hidden"])
    secret = [(line, "hidden test") for line in hidden]
    if cell.metadata.get("nbgrader", {}).get("solution"):
        solution, rest = _regions(rest, *REGIONS["solution"])
        if REGIONS["solution"][0] not in cell.source:  # no markers: nbgrader replaces the whole cell
            solution, rest = rest.splitlines(), ""
        kind = "library answer" if is_library_answer(cell) else "written answer" if cell.cell_type == "markdown" \
            else "solution"
        secret += [(line, kind) for line in solution]
    return secret, rest


def secret_lines(notebooks: list[Path], library_root: Path = REPO_ROOT) -> dict[str, str]:
    """Normalized line -> where it comes from (``notebook: grade_id (hidden test | solution)``, ``notebook:
    instructors' cell``), for every line of every hidden-test region, every solution of ``notebooks`` except library
    answers and every instructors' cell (:func:`is_instructors_cell`), without trailing comments; minus trivial lines
    (:func:`_telling`: shorter than ``MIN_CHARS``, comments, bare imports, plain Python such as ``except
    ValueError:``, idioms: lines that ``library_root/course_lib`` has in ``IDIOM_FILES`` files or more, e.g. a
    seeded ``torch.Generator``, and the lines of every training step, ``TORCH_IDIOMS``) and lines the student sees
    anyway (in a visible cell or outside the regions, in any of the notebooks, also as part of a longer line:
    :func:`visible_answers` is the check that keeps answers out of those)."""
    found: dict[str, str] = {}
    visible: list[str] = []
    for path in notebooks:
        for cell in nbformat.read(path, as_version=4).cells:
            where = f"{path.stem}: {cell.metadata.get('nbgrader', {}).get('grade_id', 'cell')}"
            if is_instructors_cell(cell):  # left out of every student version: all of it is a secret
                for line in cell.source.splitlines():
                    found.setdefault(_code(line), f"{path.stem}: instructors' cell")
                continue
            secret, rest = _parts(cell)
            visible.append(normalize(rest))
            for line, kind in secret:
                if kind != "library answer":
                    found.setdefault(_code(line), f"{where} ({kind})")
    library = _library_texts(library_root)
    shown = "\n".join(visible)
    return {line: where for line, where in found.items() if _telling(line, library) and line not in shown}


ANSWER_SENTENCE_CHARS = 40  # a model answer's sentence this long, found in a visible cell, states the answer
_SENTENCE_END = re.compile(r"(?<=[.!?;:])\s+")
_EXERCISE = re.compile(r"\bExercise\b", re.IGNORECASE)


def _function_lines(lines: list[str]) -> list[str]:
    """The lines of ``lines`` inside a ``def`` (its signature and its indented body)."""
    out, indent = [], None
    for line in lines:
        depth = len(line) - len(line.lstrip())
        if indent is not None and line.strip() and depth <= indent:
            indent = None
        if indent is None and line.lstrip().startswith("def "):
            indent = depth
        if indent is not None:
            out.append(line)
    return out


def visible_answers(path: Path, library_root: Path = REPO_ROOT) -> list[str]:
    """Answers a student can read in the student version of the notebook ``path`` itself, one line each
    (``notebook: grade_id (kind): text``), found in the cells it shows (every cell but the instructors', with
    solution and hidden-test regions cut out):

    * a line of a solution anywhere in the notebook (the bundle's secret-line rule, :func:`secret_lines`,
      applied to the notebook's own visible cells, which that rule leaves out), except in the exercise's own
      task (the last Markdown cell above the solution that names an exercise: a line the task prescribes,
      "let ``x = images.float() / 255``", is given, not leaked);
    * a line of a function a hidden test defines (its reference: an answer written another way), outside the
      notebook's visible test cells and the exercise's task (the test's other lines build inputs from the
      notebook's own names: not answers);
    * a line of an exercise whose answer is in ``course_lib`` by design (:func:`is_library_answer`: exempt
      from the line rule) shown in a cell *above* it: printed right above the exercise, it is copied, not written;
    * a sentence of a written question's model answer (``ANSWER_SENTENCE_CHARS`` or longer), anywhere;
    * a line of an instructors' cell (which the student version drops) repeated in a visible cell."""
    library = _library_texts(library_root)
    cells = nbformat.read(path, as_version=4).cells
    shown: list[str] = []
    secrets: list[tuple[int, str, str, str]] = []  # (cell index, where, kind, normalized text)
    tests, task, tasks = set(), -1, {}  # visible test cells; the exercise text each cell follows
    for i, cell in enumerate(cells):
        meta = cell.metadata.get("nbgrader", {})
        where = f"{path.stem}: {meta.get('grade_id', f'cell {i}')}"
        if cell.cell_type == "markdown" and _EXERCISE.search(cell.source) and not meta.get("solution"):
            task = i
        tasks[i] = task
        if meta.get("grade") and not meta.get("solution"):
            tests.add(i)
        if is_instructors_cell(cell):
            secrets += [(i, where, "instructors' cell", _code(line)) for line in cell.source.splitlines()]
            shown.append("")
            continue
        secret, rest = _parts(cell)
        shown.append(normalize(rest))
        for line, kind in secret:
            if kind == "written answer":
                secrets += [(i, where, kind, normalize(s)) for s in _SENTENCE_END.split(line)
                            if len(normalize(s)) >= ANSWER_SENTENCE_CHARS]
            elif kind != "hidden test":
                secrets.append((i, where, kind, _code(line)))
        hidden = [line for line, kind in secret if kind == "hidden test"]  # of those, a reference function's lines
        secrets += [(i, where, "hidden test", _code(line)) for line in _function_lines(hidden)]
    leaks = []
    for i, where, kind, text in secrets:
        if kind != "written answer" and not _telling(text, library):
            continue
        places = {"library answer": set(range(i)), "hidden test": set(range(len(shown))) - tests - {i, tasks[i]},
                  "solution": set(range(len(shown))) - {i, tasks[i]}}.get(kind, set(range(len(shown))) - {i})
        if any(text in shown[j] for j in places):
            leaks.append(f"{where} ({kind}): {text}")
    return list(dict.fromkeys(leaks))


def _strings(value) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for v in value.values() for s in _strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return []


_TAG = re.compile(r"<!--.*?-->|<[^>]*>", re.S)  # a comment or a tag (its attributes' values escape < and >)
_ATTRIBUTE = re.compile(r"""=\s*(?:"([^"]*)"|'([^']*)')""")


def html_text(page: str) -> str:
    """What a reader of the HTML ``page`` sees as text: tags dropped without a space in their place (highlighted
    code is one tag per token), entities unescaped; then, one a line, the values of its tags' attributes (alt
    texts, titles), unescaped."""
    values = [a or b for tag in _TAG.findall(page) for a, b in _ATTRIBUTE.findall(tag)]
    return html.unescape(_TAG.sub("", page)) + "\n" + "\n".join(html.unescape(v) for v in values if v)


def _texts(name: str, data: bytes) -> list[str]:
    """What a file says, for the search: its text; for a notebook also every string in it (cell sources as one
    text), for an HTML page also its text as a reader sees it (:func:`html_text`)."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return [data.decode("latin-1")]  # binary: a secret typed into it would still show as its bytes
    texts = [text]
    if name.endswith(".ipynb"):
        try:
            texts.append("\n".join(_strings(json.loads(text))))
        except ValueError:
            pass
    if name.endswith((".html", ".htm")):
        texts.append(html_text(text))
    return texts


def bundle_files(bundle: Path) -> dict[str, bytes]:
    """Every file of a bundle folder or ``.zip`` (relative name -> bytes); a zip inside the folder is opened too."""
    bundle = Path(bundle)
    if bundle.is_file():
        with zipfile.ZipFile(bundle) as z:
            return {info.filename: z.read(info) for info in z.infolist() if not info.is_dir()}
    files = {}
    for path in sorted(p for p in bundle.rglob("*") if p.is_file()):
        rel = str(path.relative_to(bundle))
        files[rel] = path.read_bytes()
        if path.suffix == ".zip":
            files.update({f"{rel}/{name}": data for name, data in bundle_files(path).items()})
    return files


def find_leaks(bundle: Path, secrets: dict[str, str]) -> list[str]:
    """``file: line (from where)`` for every secret line found in a file of ``bundle`` (a folder or a .zip)."""
    leaks = []
    for name, data in bundle_files(bundle).items():
        texts = [normalize(t) for t in _texts(name, data)]
        leaks += [f"{name}: {line!r} ({where})" for line, where in secrets.items() if any(line in t for t in texts)]
    return leaks


# ------------------------------------------------------------------ the bundle


def _ignore(folder, names):
    return [n for n in names if n in ("__pycache__", ".ipynb_checkpoints") or n.endswith((".pyc", ".egg-info"))]


def write_bundle(student_notebooks: list[Path], out: Path, root: Path = REPO_ROOT,
                 name: str = BUNDLE_NAME) -> tuple[Path, Path]:
    """Write ``out/<name>/`` and ``out/<name>.zip`` (its files under ``<name>/``) from the student versions
    ``student_notebooks`` and the course at ``root`` (``course_lib``, ``data``, the install files), unchecked:
    :func:`make_bundle` checks. Returns (folder, zip)."""
    out = Path(out)
    folder, archive = out / name, out / f"{name}.zip"
    shutil.rmtree(folder, ignore_errors=True)
    archive.unlink(missing_ok=True)
    (folder / "notebooks").mkdir(parents=True)
    for nb in student_notebooks:
        shutil.copy(nb, folder / "notebooks" / Path(nb).name)
    shutil.copytree(root / "course_lib", folder / "course_lib", ignore=_ignore)
    shutil.copytree(root / "data", folder / "data", ignore=lambda d, names: [n for n in names if n == "cache"])
    if (root / "results").is_dir():  # the recorded sweeps over training seeds that notebook 10 reads
        shutil.copytree(root / "results", folder / "results")
    for file in INSTALL_FILES:
        shutil.copy(root / file, folder / file)
    (folder / "README.md").write_text(STUDENT_README, encoding="utf-8")
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as z:
        for path in sorted(p for p in folder.rglob("*") if p.is_file()):
            z.write(path, f"{name}/{path.relative_to(folder)}")
    return folder, archive


def make_bundle(student_notebooks: list[Path], sources: list[Path], out: Path, root: Path = REPO_ROOT,
                name: str = BUNDLE_NAME) -> tuple[Path, Path]:
    """:func:`write_bundle`, then check the folder and the zip against the secrets of the instructor's notebooks
    ``sources``. Returns (folder, zip); raises ``ValueError`` naming the leaks, and deletes both."""
    folder, archive = write_bundle(student_notebooks, out, root, name)
    secrets = secret_lines(sources, root)
    leaks = find_leaks(folder, secrets) + [f"{archive.name}/{leak}" for leak in find_leaks(archive, secrets)]
    if leaks:
        shutil.rmtree(folder, ignore_errors=True)
        archive.unlink(missing_ok=True)
        raise ValueError(f"the student bundle would give away {len(leaks)} line(s) of solutions or hidden tests "
                         "(deleted, not handed out):\n" + "\n".join(leaks[:40]))
    return folder, archive
