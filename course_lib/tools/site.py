"""The course site: the executed notebooks as a static website that students read before installing anything.

``make site`` (``python -m course_lib site``) builds ``build/site/`` from what ``make course`` executed
(``build/course/``: every notebook executed, each with its run record), and executes nothing again:

* the landing page: what the course is and its notebooks (the README's opening and notebook table), the comparison
  (the outputs of the cells tagged ``landing``: notebook 10's table and its figure), how to install, and the student
  bundle to download;
* one page per notebook, in lecture order: its student version (``release.py``: no solution, no hidden test, no
  instructors' cell) with the executed outputs that give nothing away (``release.student_outputs``), saying which
  run produced its outputs (the run record: profile, device, torch, date, commit);
* the library map (the README's) with every file linked to a page of its source.

Sphinx with MyST-NB renders it (notebooks as they are: ``nb_execution_mode = "off"``), in the furo theme (one
layout for laptops and phones), with Sphinx's own search (its index is a file of the site: it works offline) and
a copy of MathJax in the site (formulas offline too). Before the site is written to its folder, the student
bundle's leak check (``bundle.find_leaks``) searches every file of it, each page's text as a reader sees it
included, for every line of every solution, hidden test and instructors' cell; a site with one is refused.

It shows what the notebooks say now, or nothing: a notebook changed since ``make course`` executed it (a cell's
source, or the metadata that makes it an exercise, an instructors' cell or the landing page's) is refused before
any work (``--allow-stale``: shown as it is now, with the outputs of its unchanged cells only). The pages are the
student versions of ``notebooks/`` and the download is ``make release``'s bundle, made by the same code. The site
is built beside its folder and renamed into place; a folder is replaced only if a build made it (``SITE_MARKER``).
"""

from __future__ import annotations

import base64
import copy
import hashlib
import importlib.util
import io
import json
import re
import shutil
import tempfile
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

from course_lib.config import REPO_ROOT
from course_lib.tools.extras import require
from course_lib.tools.runner import RUN_FACTS

COURSE_DIR = REPO_ROOT / "build" / "course"
SITE_DIR = REPO_ROOT / "build" / "site"
SITE_MARKER = ".course-site"  # in every site make site builds: the only non-empty folder a build replaces
MARKER_TEXT = "A course site built by `make site` (course_lib/tools/site.py), which replaces this folder.\n"
LANDING_TAG = "landing"  # a notebook cell whose outputs the landing page shows too (notebook 10's table and figure)
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"  # a live widget (a progress bar): nothing on a static page
IMAGE_TYPES = ("image/png", "image/jpeg")
WITHHELD = "*Output not shown on this site: this cell uses the answer to an exercise. Run the notebook to see yours.*"
FAVICON = """\
<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 16 16"><rect width="16" height="16" rx="3" fill="#2a5db0"/>\
<circle cx="8" cy="8" r="4" fill="#fff"/></svg>
"""  # the site's own icon: without one, a browser asks every host for /favicon.ico (a 404 in its console)
CSS = """\
/* figures fit the column at any width, a phone's too: scaled down, never cut */
.cell_output img { max-width: 100%; height: auto; }
/* wide text and tables scroll inside their own box, not the page (furo wraps a table in a .table-wrapper that
   scrolls). A table's numbers stay on one line ("69.0 ± 1.3" never breaks at its spaces), its row labels and
   headers may wrap, in a smaller font and tighter cells: notebook 10's comparison (12 columns) fits a laptop's
   column at 1280 px */
.cell_output pre, .cell_output .output { overflow-x: auto; }
.cell_output table { font-size: 0.75em; }
.cell_output table td { white-space: nowrap; }
.cell_output table td:first-child { white-space: normal; }
.cell_output table th, .cell_output table td { padding: 0.2em 0.3em; }
div.math, mjx-container[display="true"] { overflow-x: auto; overflow-y: hidden; }
"""


# ------------------------------------------------------------------ what the site is built from


def executed_course(course_dir: Path, root: Path = REPO_ROOT) -> dict[str, tuple[Path, dict]]:
    """Every course notebook (``root/notebooks``) in lecture order -> (its executed copy in ``course_dir``, its run
    record). ``ValueError`` saying to run ``make course`` when one is missing, did not finish or has a record that
    is not JSON or lacks the run's facts (``runner.RUN_FACTS``) or its run time (``seconds``)."""
    course_dir = Path(course_dir)
    names = [p.stem for p in sorted((Path(root) / "notebooks").glob("[0-9]*.ipynb"))]
    if not names:
        raise ValueError(f"no course notebooks ([0-9]*.ipynb) in {Path(root) / 'notebooks'}")
    if not course_dir.is_dir() or not any(course_dir.glob("[0-9]*.ipynb")):
        raise ValueError(f"no executed notebooks in {course_dir}: run `make course` first (it executes every notebook "
                         "and writes them there; the site shows their outputs and executes nothing)")
    found, problems = {}, []
    for name in names:
        notebook, record_path = course_dir / f"{name}.ipynb", course_dir / f"{name}.json"
        if not notebook.exists() or not record_path.exists():
            problems.append(f"{name}: not executed")
            continue
        try:
            record = json.loads(record_path.read_text(encoding="utf-8"))
        except (ValueError, UnicodeDecodeError) as e:
            problems.append(f"{name}: its run record {record_path} is not a JSON object ({e})")
            continue
        if not isinstance(record, dict):
            problems.append(f"{name}: its run record {record_path} is not a JSON object")
            continue
        missing = [fact for fact in RUN_FACTS if not isinstance(record.get(fact), str)]
        seconds = record.get("seconds")
        if isinstance(seconds, bool) or not isinstance(seconds, (int, float)):
            missing.append("seconds (a number)")
        if record.get("error"):
            problems.append(f"{name}: did not finish ({record['error']})")
        elif missing:
            problems.append(f"{name}: its run record {record_path} has no {', '.join(missing)} (written by an older or "
                            "another make course)")
        else:
            found[name] = (notebook, record)
    if problems:
        raise ValueError(f"{course_dir} does not hold a complete run of the course: run `make course` again\n"
                         + "\n".join(f"  {p}" for p in problems))
    return found


def read_notebook(path: Path) -> nbformat.NotebookNode:
    """The notebook at ``path``; ``ValueError`` naming the file when it is not one."""
    try:
        return nbformat.read(path, as_version=4)
    except Exception as e:  # nbformat raises JSON, validation and reader errors of several kinds
        raise ValueError(f"{path} is not a readable notebook ({type(e).__name__}: {str(e)[:300]}): run `make course` "
                         "again") from e


def _as_released(nb: nbformat.NotebookNode) -> list[tuple]:
    """What decides a notebook's student version and its outputs on the site, cell by cell: its id (outputs are
    paired by it), type and source, and the metadata that the release reads (nbgrader's: exercises; ``course``:
    instructors' cells, library answers, alt texts; tags: the landing page's cells)."""
    return [(cell.get("id"), cell.cell_type, cell.source, cell.metadata.get("nbgrader"), cell.metadata.get("course"),
             cell.metadata.get("tags", [])) for cell in nb.cells]


def stale_notebooks(executed: dict[str, nbformat.NotebookNode], current: dict[str, nbformat.NotebookNode]) -> list[str]:
    """The notebooks whose executed copy was made from another version of the course's notebook: a cell, its type,
    source, nbgrader or ``course`` metadata or tags differ (:func:`_as_released`)."""
    return [name for name, nb in executed.items() if _as_released(nb) != _as_released(current[name])]


def check_landing(executed: dict[str, nbformat.NotebookNode], current: dict[str, nbformat.NotebookNode]) -> None:
    """``ValueError`` unless some course notebook has a cell tagged ``landing`` whose executed copy shows outputs on
    the site: the same source, outputs, and no answer used (``release.answer_dependent_cells``)."""
    from course_lib.tools.release import answer_dependent_cells

    tagged = [(name, cell) for name, nb in current.items() for cell in nb.cells
              if LANDING_TAG in cell.metadata.get("tags", [])]
    if not tagged:
        raise ValueError(f"no notebook cell is tagged '{LANDING_TAG}': the landing page shows the outputs of those "
                         "(notebook 10's comparison table and its figure). Tag the cell in notebooks/ and run "
                         "`make course` again")
    problems = []
    for name, cell in tagged:
        ran = {c.get("id"): c for c in executed[name].cells}.get(cell.get("id"))
        if cell.cell_type != "code" or ran is None or ran.source != cell.source or not ran.get("outputs"):
            problems.append(f"{name}: the cell tagged '{LANDING_TAG}' has no outputs in its executed copy")
        elif cell.id in answer_dependent_cells(executed[name]) | answer_dependent_cells(current[name]):
            problems.append(f"{name}: the cell tagged '{LANDING_TAG}' uses an exercise's answer: the site withholds its "
                            "outputs")
    if problems:
        raise ValueError("the landing page has no comparison to show: run `make course` again (after fixing the "
                         "notebook)\n" + "\n".join(f"  {p}" for p in problems))


def readme_parts(readme: str) -> tuple[str, str]:
    """(the README's title, its opening: the text before the first section)."""
    match = re.match(r"\s*#\s+(.+?)\n(.*?)(?=^##\s)", readme, flags=re.S | re.M)
    if not match:
        raise ValueError("README.md should open with a '# title' and a few lines before its first '## ' section")
    return match.group(1).strip(), match.group(2).strip()


def readme_section(readme: str, heading: str) -> str:
    """The body of the README's ``## heading...`` section (up to the next ``## `` heading)."""
    match = re.search(rf"^##\s+{re.escape(heading)}[^\n]*\n(.*?)(?=^##\s|\Z)", readme, flags=re.S | re.M)
    if not match:
        raise ValueError(f"README.md has no '## {heading}' section, which the course site shows")
    return match.group(1).strip()


def run_note(record: dict) -> str:
    """The sentence that says which run produced a page's outputs."""
    when = record["started"].replace("T", " ").replace("+00:00", " UTC")
    commit = f", course commit `{record['commit']}`" if record["commit"] else ""
    return (f"Executed by `make course` on {when} with the `{record['profile']}` profile ({record['device']}, torch "
            f"{record['torch']}{commit}), in {record['seconds']:.0f} s: the outputs on this page are that run's. A "
            "model or result the notebook loads from the course's cache, or from the results store, was computed "
            "when it was first made, by that run or an earlier one with the same settings.")


# ------------------------------------------------------------------ the pages


def _opening_comment(source: str) -> str:
    """What a code cell says it does: the comment on its own first line (magics aside), "" if none."""
    lines = [line.strip() for line in source.splitlines() if line.strip() and not line.lstrip().startswith("%")]
    return lines[0].lstrip("#").strip() if lines and lines[0].startswith("#") else ""


def _plain(markdown: str) -> str:
    """A Markdown heading as plain text (no emphasis, code or link marks)."""
    return re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", markdown).replace("*", "").replace("`", "").strip()


def _image_bytes(output) -> list[bytes]:
    return [base64.b64decode(output["data"][mime]) for mime in IMAGE_TYPES if mime in output.get("data", {})]


def _width(image: bytes) -> int | None:
    """A PNG's width in pixels (its IHDR chunk), None for another format."""
    return int.from_bytes(image[16:20], "big") if image[:8] == b"\x89PNG\r\n\x1a\n" else None


def figures(nb: nbformat.NotebookNode) -> dict[str, dict]:
    """Every image output of ``nb`` by the SHA-256 of its bytes (the name MyST-NB gives its file): its ``alt`` text
    and its ``width`` in pixels. The alt text is the author's (code cell metadata ``"course": {"alt": "..."}``, or a
    list with one per image), else the figure's number on the page, where it is (its section and notebook) and
    what its cell says it does (the comment that opens it); with its place among its cell's images where the cell
    draws several. No two figures of a page share one."""
    title = section = ""
    found, number = {}, 0
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            for line in cell.source.splitlines():
                heading = re.match(r"(#{1,6})\s+(.+)", line)
                if heading:
                    section = _plain(heading.group(2))
                    title = title or (section if heading.group(1) == "#" else "")
            continue
        images = [data for output in cell.get("outputs", []) for data in _image_bytes(output)]
        given = cell.metadata.get("course", {}).get("alt")
        comment = _opening_comment(cell.source)
        for k, data in enumerate(images):
            number += 1
            which = f" (image {k + 1} of {len(images)} of its cell)" if len(images) > 1 else ""
            if isinstance(given, list) and k < len(given) and isinstance(given[k], str):
                alt = given[k]
            elif isinstance(given, str):
                alt = given + which
            else:
                where = f"“{section}”" + (f" in {title}" if title and title != section else "") if section else title
                alt = f"Figure {number}" + (f" of {where}" if where else "") + which + (f": {comment}" if comment else "")
            found[hashlib.sha256(data).hexdigest()] = {"alt": alt, "width": _width(data)}
    return found


def notebook_page(executed: nbformat.NotebookNode, student: nbformat.NotebookNode, record: dict,
                  source: nbformat.NotebookNode | None = None) -> nbformat.NotebookNode:
    """A notebook's page: the student version (released from ``source``, the course's notebook, by default from
    ``executed``) with the executed outputs that give nothing away, no live widget (a static page cannot run one:
    the progress bars), a note where an output was withheld, and under the notebook's first cell the run that
    produced its outputs."""
    from course_lib.tools.release import student_outputs

    nb = student_outputs(executed, student, source)
    nb.metadata.pop("widgets", None)
    for key in ("kernelspec", "language_info"):  # the kernel's, which the run recorded: the code's highlighting
        if key in executed.metadata:
            nb.metadata[key] = copy.deepcopy(executed.metadata[key])
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        cell.outputs = [o for o in cell.outputs if WIDGET_VIEW not in o.get("data", {})]
        if cell.metadata.get("course", {}).get("outputs_withheld"):
            cell.outputs = [new_output("display_data", data={"text/markdown": WITHHELD})]
    note = (f"{run_note(record)} The exercises are shown as students get them; download the notebooks from the "
            "[course's home page](../index.ipynb) to run them.")
    nb.cells.insert(1, new_markdown_cell(f"```{{note}}\n{note}\n```"))
    return nb


def link_library_files(nb: nbformat.NotebookNode, files: list[Path]) -> None:
    """Every ``course_lib/<file>.py`` that the Markdown cells of the page ``nb`` name in backticks without a link
    becomes a link to the page of its source (``files``: the library's, relative to the course)."""
    known = {path.as_posix() for path in files}

    def link(match):
        return f"[`{match.group(1)}`](../{match.group(1)})" if match.group(1) in known else match.group(0)
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            cell.source = re.sub(r"(?<!\[)`(course_lib/[\w/]+\.py)`(?!\])", link, cell.source)


def landing_cells(pages: dict[str, nbformat.NotebookNode]) -> list[tuple[str, nbformat.NotebookNode]]:
    """(notebook, cell) of every page cell tagged ``landing``, with its outputs; ``ValueError`` when there is none,
    or when one has nothing to show."""
    found = [(name, cell) for name, nb in pages.items() for cell in nb.cells
             if LANDING_TAG in cell.metadata.get("tags", [])]
    if not found:
        raise ValueError(f"no notebook cell is tagged '{LANDING_TAG}': the landing page shows the outputs of those "
                         "(notebook 10's comparison table and its figure)")
    empty = [name for name, cell in found if not cell.outputs or cell.metadata.get("course", {}).get("outputs_withheld")]
    if empty:
        raise ValueError(f"the cell tagged '{LANDING_TAG}' in {', '.join(empty)} has no output to show")
    return found


def _title(nb: nbformat.NotebookNode, fallback: str) -> str:
    for cell in nb.cells:
        heading = re.search(r"^#\s+(.+)$", cell.source, flags=re.M) if cell.cell_type == "markdown" else None
        if heading:
            return _plain(heading.group(1))
    return fallback


def landing_page(readme: str, pages: dict[str, nbformat.NotebookNode], records: dict[str, dict],
                 bundle_mb: float) -> nbformat.NotebookNode:
    """The landing page, a notebook: what the course is and its notebooks (README), the comparison (the outputs of
    the cells tagged ``landing``), how to install and the bundle to download, the library map, the table of
    contents."""
    from course_lib.tools.bundle import BUNDLE_NAME, STUDENT_README

    title, opening = readme_parts(readme)
    profiles = sorted({r["profile"] for r in records.values()})
    days = sorted({r["started"][:10] for r in records.values()})
    when = days[0] if len(days) == 1 else f"{days[0]} to {days[-1]}"
    cells = [new_markdown_cell(f"# {title}\n\n{opening}"),
             new_markdown_cell(f"```{{note}}\nThis site shows every notebook as `make course` executed it ({when}, "
                               f"{' and '.join(f'`{p}`' for p in profiles)} profile): each page says which run made its "
                               "outputs and what they reuse of earlier runs. The exercises are shown as students get "
                               "them, without their answers.\n```"),
             new_markdown_cell("## The notebooks\n\n" + readme_section(readme, "The notebooks"))]
    found = landing_cells(pages)
    sources = ", ".join(dict.fromkeys(f"[{_title(pages[name], name)}](notebooks/{name}.ipynb)" for name, _ in found))
    cells.append(new_markdown_cell(f"## The comparison\n\nFrom {sources}:"))
    for _, cell in found:
        shown = new_code_cell(cell.source, metadata={"tags": ["remove-input"]})
        shown.outputs, shown.execution_count = cell.outputs, cell.execution_count
        cells.append(shown)
    install = STUDENT_README.split("\n", 1)[1].strip()  # without its title
    cells += [new_markdown_cell(f"## Run the notebooks yourself\n\nDownload {{download}}`the student bundle <{BUNDLE_NAME}"
                                f".zip>` ({bundle_mb:.1f} MB: the notebooks, `course_lib` and the data), unzip it, "
                                f"and in its folder:\n\n{install}"),
              new_markdown_cell("## The library\n\n[The library map](library.md): each concept of the lecture and the "
                                "file of `course_lib` that implements it, with its source."),
              new_markdown_cell("```{toctree}\n:hidden:\n:maxdepth: 1\n\n"
                                + "\n".join(f"notebooks/{name}" for name in pages) + "\nlibrary\n```")]
    return new_notebook(cells=cells, metadata={"kernelspec": {"name": "python3", "display_name": "Python 3",
                                                              "language": "python"}})


def library_files(root: Path = REPO_ROOT) -> list[Path]:
    """Every source file of ``course_lib``, relative to ``root``."""
    return sorted(p.relative_to(root) for p in (Path(root) / "course_lib").rglob("*.py") if "__pycache__" not in p.parts)


def library_map(readme: str, root: Path = REPO_ROOT) -> str:
    """The library map page: the README's, up to the end of its table, with every file named in it linked to the
    page of its source (a file of the ``tools/`` row is looked for in ``tools/`` first)."""
    lines, in_table = [], False
    for line in readme_section(readme, "Library map").splitlines():
        if in_table and not line.startswith("|"):
            break
        in_table = line.startswith("|")
        lines.append(line)
    files = {p.relative_to("course_lib").as_posix() for p in library_files(root)}

    def link(row: str) -> str:
        folders = ["tools/", ""] if row.startswith("| `tools/`") else ["", "tools/"]

        def one(match):
            name = match.group(1).removeprefix("course_lib/")
            for folder in folders:
                if folder + name in files:
                    return f"[`{match.group(1)}`](course_lib/{folder}{name})"
            return match.group(0)
        return re.sub(r"`((?:course_lib/)?[\w/]+\.py)`", one, row)
    body = "\n".join(link(row) for row in lines)
    toc = "\n".join(p.as_posix() for p in library_files(root))
    return (f"# The library: `course_lib`\n\n{body}\n\n```{{toctree}}\n:hidden:\n:maxdepth: 1\n\n{toc}\n```\n")


def source_page(path: Path, root: Path = REPO_ROOT) -> str:
    """The page of one source file of the library: its name and its code, highlighted."""
    code = (Path(root) / path).read_text(encoding="utf-8")
    fence = "`" * max(3, 1 + max((len(run) for run in re.findall(r"`+", code)), default=0))
    return f"# `{path.as_posix()}`\n\n{fence}python\n{code}\n{fence}\n"


def sphinx_conf(title: str, figures: dict[str, dict]) -> str:
    """The site's ``conf.py``."""
    settings = {
        "project": title, "html_title": title, "language": "en",
        "extensions": ["myst_nb", "course_lib.tools.site"],
        "html_theme": "furo",
        "nb_execution_mode": "off",  # the notebooks as make course executed them
        "nb_ipywidgets_js": {},  # no widget scripts from a CDN: the site works offline
        "nb_merge_streams": True,
        "nb_render_markdown_format": "myst",  # Markdown outputs with their tables (CommonMark has none)
        "myst_enable_extensions": ["dollarmath", "amsmath"],
        "mathjax_path": "mathjax/tex-chtml-full.js",  # the site's own copy (_static/mathjax): formulas offline
        "html_static_path": ["_static"], "html_css_files": ["course.css"], "html_favicon": "_static/favicon.svg",
        "html_copy_source": False, "html_show_sourcelink": False, "html_show_copyright": False,
        "smartquotes": False,  # text as written: a quote turned typographic would hide a line from the leak check
        "course_site_figures": figures,
    }
    return "".join(f"{key} = {value!r}\n" for key, value in settings.items())


def _copy_mathjax(static: Path) -> None:
    """MathJax's TeX-to-HTML build and its fonts (django-static-mathjax ships the files) into the site."""
    spec = importlib.util.find_spec("mathjax")
    es5 = Path(next(iter(spec.submodule_search_locations))) / "static" / "mathjax" / "es5"
    (static / "mathjax").mkdir(parents=True)
    shutil.copy(es5 / "tex-chtml-full.js", static / "mathjax")
    shutil.copytree(es5 / "output" / "chtml" / "fonts" / "woff-v2", static / "mathjax" / "output" / "chtml" / "fonts"
                    / "woff-v2")


# ------------------------------------------------------------------ Sphinx


def _describe_figures(app, doctree) -> None:
    from docutils import nodes

    for image in doctree.findall(nodes.image):
        figure = app.config.course_site_figures.get(Path(image["uri"]).stem)
        if figure:
            image["alt"] = figure["alt"]
            if figure["width"] and "width" not in image:  # its own width: Sphinx links it to the file, full size
                image["width"] = f"{figure['width']}px"


def setup(app):
    """The site's Sphinx extension (its ``conf.py`` names this module): every notebook figure gets its alt text,
    and a link to itself at full size (on a phone the page shows it scaled down)."""
    app.add_config_value("course_site_figures", {}, "env")
    app.connect("doctree-read", _describe_figures)
    return {"parallel_read_safe": True, "parallel_write_safe": True}


def run_sphinx(src: Path, out: Path, doctrees: Path) -> None:
    """Sphinx's HTML build of ``src`` into ``out``; ``ValueError`` listing its warnings if it warned (a link that
    resolves nowhere, a figure it cannot read, ...)."""
    from sphinx.application import Sphinx
    from sphinx.util.docutils import docutils_namespace, patch_docutils

    warnings = io.StringIO()
    # as sphinx-build does: docutils' registries are restored afterwards, so a second build here starts clean
    with patch_docutils(src), docutils_namespace():
        app = Sphinx(str(src), str(src), str(out), str(doctrees), "html", status=None, warning=warnings,
                     freshenv=True)
        app.build()
    warned = re.sub(r"\x1b\[[0-9;]*m", "", warnings.getvalue()).strip()  # without the terminal's colours
    if warned:
        raise ValueError(f"Sphinx warned while building the course site:\n{warned[-6000:]}")


# ------------------------------------------------------------------ the build


def check_out(out: Path, root: Path, course_dir: Path) -> None:
    """``ValueError`` unless ``out`` may be replaced by a new site: not the course's folder, its executed notebooks'
    or a folder above either, and either absent, an empty folder or a site that ``make site`` built (it holds
    ``SITE_MARKER``)."""
    target = out.resolve()
    for what, folder in (("the course", root), ("the executed notebooks", course_dir)):
        if target == folder.resolve() or target in folder.resolve().parents:
            raise ValueError(f"the site's folder {out} is or contains {what} ({folder}), which a build would replace: "
                             "name a folder of the site's own (default: build/site)")
    if out.is_symlink() or out.exists() and not out.is_dir():
        raise ValueError(f"the site's folder {out} exists and is not a folder: name a folder (default: build/site)")
    if out.is_dir() and any(out.iterdir()) and not (out / SITE_MARKER).is_file():
        raise ValueError(f"{out} is a folder that `make site` did not build (it has no {SITE_MARKER} file), which a "
                         "build would replace: name a new or empty folder, or remove this one yourself")


def _replace(out: Path, new: Path) -> None:
    """Put the built site ``new`` (a folder beside ``out``) in the place of ``out``: two renames, so that ``out`` is
    never half written; ``ValueError`` if the previous site could not be removed afterwards."""
    if not out.exists():
        new.rename(out)
        return
    old = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}-old-")) / out.name
    out.rename(old)
    new.rename(out)
    try:
        shutil.rmtree(old.parent)
    except OSError as e:
        raise ValueError(f"the new site is in {out}, but the previous one, moved to {old}, could not be removed "
                         f"({e}): remove it yourself") from e


def build_site(course_dir: str | Path = COURSE_DIR, out: str | Path = SITE_DIR, root: str | Path = REPO_ROOT,
               allow_stale: bool = False) -> Path:
    """Build the course site in ``out`` from the executed notebooks of ``course_dir`` (``make course``'s) and the
    course at ``root`` (README, ``notebooks/``, ``course_lib``, the student bundle's files). Returns ``out``.

    Everything is checked before any work (``ValueError``): ``out`` (:func:`check_out`), the README's sections, the
    executed notebooks and their run records (:func:`executed_course`), that each was executed from the course's
    notebook as it is now (:func:`stale_notebooks`; with ``allow_stale``, a changed notebook is shown as it is now,
    with the outputs of its cells that did not change and use no answer in either version), and the cell tagged
    ``landing`` (:func:`check_landing`). The pages show the student versions of the course's notebooks and the
    bundle to download is ``make release``'s (``release.student_bundle``). The site is written to ``out`` only after
    the leak check found no line of a solution, hidden test or instructors' cell, of the executed or the current
    notebooks, in it (``ValueError`` naming them otherwise; an earlier site in ``out`` stays as it was)."""
    require({"sphinx": "sphinx", "myst_nb": "myst-nb", "furo": "furo", "mathjax": "django-static-mathjax"},
            "building the course site", "site")
    from course_lib.tools.bundle import BUNDLE_NAME, find_leaks, secret_lines
    from course_lib.tools.release import student_bundle

    root, out, course_dir = Path(root), Path(out), Path(course_dir)
    check_out(out, root, course_dir)
    readme = (root / "README.md").read_text(encoding="utf-8")
    title, _ = readme_parts(readme)
    readme_section(readme, "The notebooks")
    map_page = library_map(readme, root)
    executed = executed_course(course_dir, root)
    executed_nbs = {name: read_notebook(path) for name, (path, _) in executed.items()}
    current = {name: root / "notebooks" / path.name for name, (path, _) in executed.items()}
    current_nbs = {name: read_notebook(path) for name, path in current.items()}
    stale = stale_notebooks(executed_nbs, current_nbs)
    if stale and not allow_stale:
        raise ValueError("notebooks changed since `make course` executed them (a cell, its type, source, nbgrader or "
                         "course metadata or tags): run `make course` again, so that the site shows what the "
                         "notebooks say now\n" + "\n".join(f"  notebooks/{name}.ipynb" for name in stale))
    check_landing(executed_nbs, current_nbs)
    for name in stale:
        print(f"note: notebooks/{name}.ipynb changed since `make course` executed it: its page shows it as it is now, "
              "without the outputs of the cells that changed")
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}-new-"))  # beside out: renamed into place
    try:
        with tempfile.TemporaryDirectory(prefix="course-site-") as tmp:
            work, html = Path(tmp), staging / "html"
            src = work / "src"
            students, _, archive = student_bundle(root / "notebooks", work / "release", root)
            students = {p.stem: p for p in students}
            pages = {name: notebook_page(executed_nbs[name], read_notebook(students[name]), record, current_nbs[name])
                     for name, (_, record) in executed.items()}
            (src / "notebooks").mkdir(parents=True)
            for name, nb in pages.items():
                link_library_files(nb, library_files(root))
                nbformat.write(nb, src / "notebooks" / f"{name}.ipynb")
            records = {name: record for name, (_, record) in executed.items()}
            landing = landing_page(readme, pages, records, archive.stat().st_size / 1e6)
            nbformat.write(landing, src / "index.ipynb")
            shutil.copy(archive, src / f"{BUNDLE_NAME}.zip")
            (src / "library.md").write_text(map_page, encoding="utf-8")
            for path in library_files(root):
                page = src / f"{path.as_posix()}.md"
                page.parent.mkdir(parents=True, exist_ok=True)
                page.write_text(source_page(path, root), encoding="utf-8")
            described = {key: figure for nb in pages.values() for key, figure in figures(nb).items()}
            (src / "conf.py").write_text(sphinx_conf(title, described), encoding="utf-8")
            (src / "_static").mkdir()
            (src / "_static" / "course.css").write_text(CSS, encoding="utf-8")
            (src / "_static" / "favicon.svg").write_text(FAVICON, encoding="utf-8")
            _copy_mathjax(src / "_static")
            run_sphinx(src, html, work / "doctrees")
        (html / ".buildinfo").unlink(missing_ok=True)
        (html / SITE_MARKER).write_text(MARKER_TEXT, encoding="utf-8")
        secrets = {**secret_lines([p for p, _ in executed.values()], root), **secret_lines(list(current.values()), root)}
        leaks = find_leaks(html, secrets)
        if leaks:
            raise ValueError(f"the course site would give away {len(leaks)} line(s) of solutions, hidden tests or "
                             "instructors' cells (not written):\n" + "\n".join(leaks[:40]))
        _replace(out, html)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return out
