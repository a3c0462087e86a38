"""Release: the course notebooks as nbgrader assignments, and the student version of each.

Every notebook in ``notebooks/`` (``[0-9]*.ipynb``) is one nbgrader *assignment*, named after its file
(:func:`course_notebooks`). :func:`release` runs ``nbgrader generate_assignment`` on each: the student version
(the instructors' cells dropped, solutions -> ``raise NotImplementedError()``, hidden tests removed) lands in
``build/release/<notebook>/<notebook>.ipynb``, and a solution or hidden test left in it (markers in a cell without
nbgrader metadata) stops the release. ``make release`` then writes the student bundle from them
(``course_lib/tools/bundle.py``).

The student version of an *executed* notebook (the course site, ``tools/site.py``) is its release with the
executed outputs that give nothing away (:func:`student_outputs`): none of an exercise's cells, none of a cell that
uses what an exercise's answer computed (:func:`answer_dependent_cells`).
"""

from __future__ import annotations

import ast
import copy
import re
import shutil
import tempfile
from pathlib import Path

import nbformat

from course_lib.config import REPO_ROOT
from course_lib.tools.bundle import REGIONS, is_instructors_cell
from course_lib.tools.nbgrader_setup import check_success, nbgrader_api, tools_on_path
from course_lib.tools.submissions import GradingError

SOURCE_DIR = REPO_ROOT / "notebooks"
RELEASE_DIR = REPO_ROOT / "build" / "release"
LEAK_MARKERS = tuple(begin for begin, _ in REGIONS.values())  # a solution or hidden test left in a student version
def course_notebooks(source_dir: str | Path = SOURCE_DIR) -> dict[str, Path]:
    """The course notebooks (``[0-9]*.ipynb``) by assignment name (the file's stem)."""
    paths = sorted(Path(source_dir).glob("[0-9]*.ipynb"))
    if not paths:
        raise GradingError(f"no notebooks ([0-9]*.ipynb) in {source_dir}")
    return {p.stem: p for p in paths}


def release(source_dir: str | Path = SOURCE_DIR, out: str | Path = RELEASE_DIR, gradebook: str | Path | None = None,
            course_id: str = "") -> list[Path]:
    """Student versions of every notebook in ``out/<name>/<name>.ipynb``, made by nbgrader generate_assignment;
    ``gradebook``: register the assignments there (an nbgrader course folder's, with its ``course_id``), else in a
    throwaway one."""
    sources, out = course_notebooks(source_dir), Path(out)
    written = []
    with tempfile.TemporaryDirectory(prefix="course-release-") as tmp, tools_on_path():
        root = Path(tmp)
        api = nbgrader_api(root, Path(gradebook) if gradebook else root / "gradebook.db", course_id=course_id)
        for name, path in sources.items():
            (root / "source" / name).mkdir(parents=True)
            nb = nbformat.read(path, as_version=4)
            nb.cells = [cell for cell in nb.cells if not is_instructors_cell(cell)]
            nb.metadata.pop("widgets", None)  # the widget state of the instructor's run (progress text, an Output's)
            nbformat.write(nb, root / "source" / name / path.name)
            check_success(api.generate_assignment(name), f"nbgrader generate_assignment {name}")
            student_version = root / "release" / name / path.name
            leaks = [m for m in LEAK_MARKERS if m in student_version.read_text(encoding="utf-8")]
            if leaks:  # markers in a cell without nbgrader metadata are not removed: the answer would leak
                raise GradingError(f"{path}: {leaks} left in the student version; is the cell marked as a "
                                   "solution/test cell (docs/exercises.md)?")
            shutil.rmtree(out / name, ignore_errors=True)
            shutil.copytree(root / "release" / name, out / name)
            written.append(out / name / path.name)
    return written


def student_bundle(source_dir: str | Path = SOURCE_DIR, out: str | Path = RELEASE_DIR,
                   root: str | Path = REPO_ROOT) -> tuple[list[Path], Path, Path]:
    """``make release``: the student version of every notebook of ``source_dir`` (:func:`release`) in ``out``, and
    the student bundle from them and the course at ``root``, checked for leaks (``bundle.make_bundle``). Returns
    (the student versions, the bundle's folder, its zip). The course site's download is this bundle."""
    from course_lib.tools.bundle import make_bundle

    written = release(source_dir, out)
    folder, archive = make_bundle(written, list(course_notebooks(source_dir).values()), Path(out), Path(root))
    return written, folder, archive


# ------------------------------------------------------------------ the student version of an executed notebook


def _magic_arguments(node: ast.AST) -> list[str]:
    """The string arguments of IPython's magics in ``node`` (``%time f(x)`` becomes
    ``get_ipython().run_line_magic('time', 'f(x)')``): code the analysis must see too."""
    found = []
    for call in ast.walk(node):
        if (isinstance(call, ast.Call) and isinstance(call.func, ast.Attribute)
                and call.func.attr in ("run_line_magic", "run_cell_magic")):
            found += [a.value for a in call.args[1:] if isinstance(a, ast.Constant) and isinstance(a.value, str)]
    return found


def _statements(source: str) -> list[ast.stmt] | None:
    """The top-level statements of a code cell, IPython's syntax translated, and for a magic that runs code
    (``%time y = f(x)``, a ``%%time`` cell) the statements it runs; None when it is not Python."""
    from IPython.core.inputtransformer2 import TransformerManager

    try:
        tree = ast.parse(TransformerManager().transform_cell(source))
    except SyntaxError:
        return None
    statements = []
    for stmt in tree.body:
        statements.append(stmt)
        magic = stmt.value.func.attr if isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Call) \
            and isinstance(stmt.value.func, ast.Attribute) else ""
        if magic in ("run_line_magic", "run_cell_magic"):
            code = _magic_arguments(stmt)[-1] if _magic_arguments(stmt) else ""
            statements += _statements(code) or []  # what the magic runs, when it is Python
    return statements


def _scopes(node: ast.AST):
    """``node`` and what it contains, except the bodies of the functions, lambdas and classes it defines."""
    todo = [node]
    while todo:
        current = todo.pop()
        yield current
        nested = (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef)
        todo += [c for c in ast.iter_child_nodes(current) if current is node or not isinstance(current, nested)]


def _stored(nodes) -> set[str]:
    """The names that ``nodes`` (statements or targets) bind in their own scope."""
    return {n.id for node in nodes for n in _scopes(node) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)}


def _reads(node: ast.AST) -> set[str]:
    """The names ``node`` reads from the notebook's namespace: not what a function, lambda or comprehension reads
    of its own parameters and local names, nor what a loop's or a ``with``'s body reads of the names they bind."""
    if isinstance(node, ast.Name):
        return {node.id} if isinstance(node.ctx, ast.Load) else set()
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
        args = node.args
        params = {a.arg for a in [*args.posonlyargs, *args.args, *args.kwonlyargs, args.vararg, args.kwarg] if a}
        body = node.body if isinstance(node.body, list) else [node.body]
        outside = [*args.defaults, *(d for d in args.kw_defaults if d), *getattr(node, "decorator_list", [])]
        return set().union(*map(_reads, outside)) | (set().union(*map(_reads, body)) - params - _stored(body))
    if isinstance(node, (ast.ListComp, ast.SetComp, ast.GeneratorExp, ast.DictComp)):
        targets = _stored(g.target for g in node.generators)
        return _reads(node.generators[0].iter) | (set().union(*map(_reads, ast.iter_child_nodes(node))) - targets)
    if isinstance(node, (ast.For, ast.AsyncFor)):
        body = set().union(*map(_reads, [*node.body, *node.orelse]))
        return _reads(node.iter) | (body - _stored([node.target]))
    if isinstance(node, (ast.With, ast.AsyncWith)):
        bound = _stored([item.optional_vars for item in node.items if item.optional_vars])
        return set().union(*(_reads(item.context_expr) for item in node.items),
                           set().union(*map(_reads, node.body)) - bound)
    return set().union(*map(_reads, ast.iter_child_nodes(node)))


def _names(stmt: ast.stmt) -> tuple[set[str], set[str], set[str]]:
    """(names ``stmt`` reads from the notebook's namespace, magics' arguments included; names it binds; names it
    may change in place: ``x[i] = ...``, ``x.a = ...``, ``x.append(...)``)."""
    reads = _reads(stmt) | {word for text in _magic_arguments(stmt) for word in re.findall(r"[A-Za-z_]\w*", text)}
    binds, changes = _stored([stmt]), set()
    for node in _scopes(stmt):
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Del):
            binds.add(node.id)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and node is stmt:
            binds.add(node.name)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            binds |= {(a.asname or a.name).split(".")[0] for a in node.names if a.name != "*"}
        elif isinstance(node, (ast.Attribute, ast.Subscript)) and isinstance(node.ctx, (ast.Store, ast.Del)) \
                or isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            base = node.func if isinstance(node, ast.Call) else node
            while isinstance(base, (ast.Attribute, ast.Subscript, ast.Call)):
                base = base.func if isinstance(base, ast.Call) else base.value
            if isinstance(base, ast.Name):
                changes.add(base.id)
    return reads, binds, changes - {"get_ipython"}  # a magic's call changes no name of the notebook


def _is_exercise(cell) -> bool:
    meta = cell.metadata.get("nbgrader", {})
    return bool(meta.get("solution") or meta.get("grade"))


def answer_dependent_cells(nb: nbformat.NotebookNode) -> set[str]:
    """Ids of the code cells of an instructor's notebook whose outputs would show what an answer computes: the
    exercises' own cells (solutions and tests: nbgrader changes them, and what a test prints needs the answer) and
    every cell that reads a name one of them binds, directly or through names computed from them, or through a
    function (or class) that reads them when it is called later. Names bound again from clean values are clean;
    a cell that is not Python counts as dependent.

    What it does not see (a cell that uses an answer only in one of these ways keeps its outputs; the leak check
    on what is published still searches them for the answer's lines, but not for the numbers it computed): a
    module's attribute or a library function patched by an answer (``course_lib.x.f = f``) and called later under
    its module's name, an answer's result passed on through a file or the cache, and names reached through
    ``globals()``, ``eval``/``exec`` or ``get_ipython().user_ns``. An exercise written that way needs its dependent
    cells after it marked by hand: make them exercises too, or leave their outputs out of the executed notebook."""
    tainted: set[str] = set()
    reads_when_called: dict[str, set[str]] = {}  # function or class name -> the names its body reads
    modules: set[str] = set()  # names bound by imports: torch.cat(x) changes no module
    dependent = set()
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        statements = _statements(cell.source)
        if statements is None:
            dependent.add(cell.id)
            continue
        exercise = _is_exercise(cell)
        for stmt in statements:
            reads, binds, changes = _names(stmt)
            todo = list(reads)
            while todo:  # a call reads what the called function's body reads
                for name in reads_when_called.get(todo.pop(), ()):
                    if name not in reads:
                        reads.add(name)
                        todo.append(name)
            if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                reads_when_called[stmt.name] = reads - {stmt.name}
            imported = isinstance(stmt, (ast.Import, ast.ImportFrom))
            modules = modules | binds if imported else modules - binds
            if exercise or reads & tainted:
                dependent.add(cell.id)
                tainted |= binds | (changes - modules)
            else:
                tainted -= binds
    return dependent


def student_outputs(executed: nbformat.NotebookNode, student: nbformat.NotebookNode,
                    source: nbformat.NotebookNode | None = None) -> nbformat.NotebookNode:
    """The student version ``student`` (released from ``source``, the instructor's notebook, by default the
    executed notebook ``executed`` itself) with the outputs of ``executed`` that give nothing away. Cells are paired
    by id (nbgrader keeps them); a code cell keeps its outputs only where its source is the same in both and it
    depends on an answer neither in ``executed`` nor in ``source`` (:func:`answer_dependent_cells`). A cell whose
    outputs were withheld gets the metadata ``"course": {"outputs_withheld": true}``."""
    executed_cells = {cell.get("id"): cell for cell in executed.cells}
    if not {cell.get("id") for cell in student.cells} & set(executed_cells) - {None}:
        raise ValueError("no cell of the student version has the id of a cell of the executed notebook: cells are "
                         "paired by id (nbformat 4.5 or newer)")
    dependent = answer_dependent_cells(executed) | (answer_dependent_cells(source) if source is not None else set())
    nb = copy.deepcopy(student)
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        source = executed_cells.get(cell.get("id"))
        cell.outputs, cell.execution_count = [], None
        if source is None or not source.get("outputs"):
            continue
        if source.source == cell.source and source.id not in dependent:
            cell.outputs, cell.execution_count = copy.deepcopy(source.outputs), source.execution_count
        else:
            cell.metadata.setdefault("course", {})["outputs_withheld"] = True
    return nb
