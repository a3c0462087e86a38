"""The course site (course_lib.tools.site, ``make site``), built from a tiny course executed by the course runner.

The course: two notebooks, the first with two exercises in nbgrader's format (tests/test_grading.py's), a cell that
prints what a solution computes, a figure, a clean output and an instructors' note; the second with the cell tagged
``landing`` (a table and a figure). Checked: the pages hold no solution, hidden test, instructors' cell or output
that uses an answer; the leak check refuses a site with a solution line; and in Debian's Chromium (as
tests/test_browser.py drives it: conftest's ``browser``), every page loads from ``file://`` and from a local server without a console
error, every image and internal link resolves, search finds a word offline, nothing is wider than a phone's
screen, and the landing page and a notebook page are shot at phone and laptop widths (in the test's folder).
"""

from __future__ import annotations

import functools
import http.server
import json
import re
import shutil
import threading
import time
import zipfile
from pathlib import Path
from urllib.parse import unquote, urlparse

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook
from test_bundle import HIDDEN_LINE, SOLUTION_LINE, fake_course_root, highlighted
from test_grading import _meta, tiny_notebook

from course_lib.tools import release as release_module
from course_lib.tools import runner
from course_lib.tools.bundle import find_leaks, html_text, normalize, secret_lines
from course_lib.tools.cli import main as cli_main
from course_lib.tools.site import SITE_MARKER, WITHHELD, build_site

README = """\
# Tiny course

A two-notebook course that the site's test builds.

## Quick start

Not on the site.

## The notebooks

| # | notebook | what it shows |
|---|---|---|
| 01 | [homework](notebooks/01_homework.ipynb) | squares and means |
| 02 | [comparison](notebooks/02_comparison.ipynb) | one table, one figure |

## Library map (`course_lib/`)

| file | concept |
|---|---|
| `shapes.py` | squares, drawn |
| `tools/` | the tooling: `helper.py` |

A paragraph after the table, with [a link the site leaves out](docs/nowhere.md).
"""
FIGURE = "import matplotlib.pyplot as plt\nplt.figure(figsize=(8, 3))\nplt.plot([1, 4, 9])\nplt.show()"
INSTRUCTORS_NOTE = "**For instructors** (how the numbers were measured): the secret timing runs."
INTRO = "We compute $x^2$ and draw it."
WIDGET_STATE = "widget state of the instructor's run: 100/100 steps"
PHONE, LAPTOP = 390, 1280


def homework() -> nbformat.NotebookNode:
    nb = tiny_notebook()  # "# Tiny homework", square and mean with visible and hidden tests
    nb.cells.insert(1, new_markdown_cell(INTRO))
    nb.cells += [new_code_cell("print('square of 12 is', square(12))"),  # uses a solution: its output is withheld
                 new_markdown_cell("## A figure\n\nDrawn as `course_lib/shapes.py` computes them."),
                 new_code_cell(f"# the squares, drawn\n{FIGURE}"),
                 new_code_cell(FIGURE.replace("9]", "16]")),  # no comment: its alt text differs by its number
                 new_code_cell("print('clean output', 6 * 7)"),
                 new_markdown_cell(INSTRUCTORS_NOTE)]
    nb.metadata["widgets"] = {"application/vnd.jupyter.widget-state+json": {"state": {"m": {"text": WIDGET_STATE}}}}
    return nb


def comparison() -> nbformat.NotebookNode:
    table = "| method | accuracy |\\n|---|---|\\n| squares | 99.9 |"
    return new_notebook(cells=[
        new_markdown_cell("# Comparison"),
        new_code_cell(f"from IPython.display import Markdown, display\ndisplay(Markdown('{table}'))\n{FIGURE}",
                      metadata={"tags": ["landing"]})])


def tiny_course(base: Path) -> Path:
    """A course root (README, notebooks, course_lib, data, the install files) of two small notebooks."""
    root = fake_course_root(base, '"""A library."""\n')
    (root / "README.md").write_text(README)
    (root / "course_lib" / "shapes.py").write_text('"""Squares, drawn."""\n\n\ndef square(x):\n    return x * x\n')
    (root / "course_lib" / "tools").mkdir()
    (root / "course_lib" / "tools" / "helper.py").write_text('"""A helper with ``backticks``."""\n')
    (root / "notebooks").mkdir()
    nbformat.write(homework(), root / "notebooks" / "01_homework.ipynb")
    nbformat.write(comparison(), root / "notebooks" / "02_comparison.ipynb")
    return root


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """The tiny course executed by the course runner (make course's code), and its site: (root, course, site)."""
    base = tmp_path_factory.mktemp("site")
    root = tiny_course(base / "root")
    start = time.monotonic()
    course = base / "course"
    for notebook in sorted((root / "notebooks").glob("*.ipynb")):  # what make course runs for each notebook
        assert runner.execute_notebook_here(str(notebook), str(course), html=False) == 0, notebook
    executed = time.monotonic()
    site = build_site(course, base / "site", root)
    print(f"tiny course executed in {executed - start:.1f} s, its site built in {time.monotonic() - executed:.1f} s")
    return root, course, site


def page_text(path: Path) -> str:
    return normalize(html_text(path.read_text(encoding="utf-8")))


def test_the_pages_show_the_student_version_and_the_outputs_that_give_nothing_away(built):
    root, course, site = built
    pages = {str(p.relative_to(site)): page_text(p) for p in site.rglob("*.html")}
    assert {"index.html", "library.html", "search.html", "notebooks/01_homework.html", "notebooks/02_comparison.html",
            "course_lib/shapes.py.html", "course_lib/tools/helper.py.html"} <= set(pages)
    everything = "\n".join(pages.values())
    for answer in (SOLUTION_LINE, HIDDEN_LINE, "square of 12 is 144", "BEGIN SOLUTION", "BEGIN HIDDEN", "secret timing"):
        assert answer not in everything, answer
    homework_page = pages["notebooks/01_homework.html"]
    assert homework_page.count("raise NotImplementedError()") == 2, "both exercises as students get them"
    assert "print('square of 12 is', square(12))" in homework_page and normalize(WITHHELD.strip("*")) in homework_page
    assert "clean output 42" in homework_page, "an output that needs no answer is shown"
    assert re.search(r"Executed by make course on \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC with the fast profile", homework_page)
    landing = pages["index.html"]
    assert "A two-notebook course that the site's test builds." in landing and "Not on the site" not in landing
    assert "squares 99.9" in landing, "the comparison table of the cell tagged 'landing'"
    assert "pip install -c requirements-lock.txt -e ." in landing, "how to install: the student bundle's README"
    assert (site / "_downloads").exists() and len(list(site.glob("_downloads/*/ssl-course.zip"))) == 1
    for name in pages:  # every figure's alt text says which one it is
        alts = re.findall(r'<img [^>]*alt="([^"]*)"', (site / name).read_text())
        assert len(alts) == len(set(alts)), (name, alts)
    homework_html = (site / "notebooks/01_homework.html").read_text()
    assert len(re.findall(r'<img [^>]*alt="Figure \d', homework_html)) == 2
    assert "We compute" in homework_page and 'href="../course_lib/shapes.py.html"' in homework_html, \
        "a library file named in the text links to its source"
    library = (site / "library.html").read_text()
    assert 'href="course_lib/shapes.py.html"' in library and 'href="course_lib/tools/helper.py.html"' in library
    assert "a link the site leaves out" not in library


def test_every_page_says_no_answer_and_a_planted_solution_line_is_refused(built, tmp_path):
    """The bundle's leak check finds nothing in the site; a solution line planted in a page as highlighted code (split
    into tags, with entities) is found; a README that quotes a hidden test makes the build refuse the site."""
    root, course, site = built
    secrets = secret_lines(sorted(course.glob("*.ipynb")), root)
    assert SOLUTION_LINE in secrets and HIDDEN_LINE in secrets
    assert find_leaks(site, secrets) == []
    planted = tmp_path / "planted"
    shutil.copytree(site, planted)
    page = planted / "notebooks" / "02_comparison.html"
    page.write_text(page.read_text().replace("</body>", f"<pre>{highlighted(SOLUTION_LINE)}</pre></body>", 1))
    assert [leak.split(":")[0] for leak in find_leaks(planted, secrets)] == ["notebooks/02_comparison.html"]

    (root / "README.md").write_text(README.replace("builds.", f"builds: `{HIDDEN_LINE}`."))
    try:
        with pytest.raises(ValueError, match="(?s)site would give away 1 line.*index.html"):
            build_site(course, tmp_path / "refused", root)
    finally:
        (root / "README.md").write_text(README)
    assert not (tmp_path / "refused").exists()


def test_without_executed_notebooks_it_says_to_run_make_course_before_any_work(built, tmp_path, capsys):
    root, course, _ = built
    assert cli_main(["site", "--course", str(tmp_path / "nothing"), "--out", str(tmp_path / "out")]) == 2
    assert "run `make course` first" in capsys.readouterr().err
    partial = tmp_path / "partial"
    shutil.copytree(course, partial)
    record = json.loads((partial / "02_comparison.json").read_text())
    (partial / "02_comparison.json").write_text(json.dumps({**record, "error": "AssertionError: no"}))
    for name in ("01_homework.json", "01_homework.ipynb"):
        (partial / name).unlink()
    with pytest.raises(ValueError, match="(?s)run `make course` again.*01_homework: not executed.*"
                                         "02_comparison: did not finish \\(AssertionError: no\\)"):
        build_site(partial, tmp_path / "out", root)
    (partial / "02_comparison.json").write_text(json.dumps({k: v for k, v in record.items() if k != "profile"}))
    shutil.copy(course / "01_homework.ipynb", partial)
    shutil.copy(course / "01_homework.json", partial)
    with pytest.raises(ValueError, match="02_comparison: its run record .*02_comparison.json has no profile"):
        build_site(partial, tmp_path / "out", root)
    assert not (tmp_path / "out").exists()


def test_the_bundle_to_download_is_make_releases(built, tmp_path):
    """The zip on the site is the bundle `make release` writes (the same code, the course's notebooks): no widget
    state of the instructor's run in its notebooks."""
    root, _, site = built
    [download] = site.glob("_downloads/*/ssl-course.zip")
    _, _, archive = release_module.student_bundle(root / "notebooks", tmp_path / "release", root)
    with zipfile.ZipFile(download) as on_site, zipfile.ZipFile(archive) as released:
        assert on_site.namelist() == released.namelist()
        for name in on_site.namelist():
            assert on_site.read(name) == released.read(name), name
        assert not any(WIDGET_STATE.encode() in on_site.read(name) for name in on_site.namelist())


def course_copy(built, base: Path) -> tuple[Path, Path]:
    """A copy of the tiny course and of its executed notebooks, to change: (root, course)."""
    root, course, _ = built
    shutil.copytree(root, base / "root")
    shutil.copytree(course, base / "course")
    return base / "root", base / "course"


def edit(path: Path, change) -> None:
    nb = nbformat.read(path, as_version=4)
    change(nb)
    nbformat.write(nb, path)


def no_work(*args, **kwargs):
    raise AssertionError("the build started its work before refusing")


def cell(nb, start: str):
    return next(c for c in nb.cells if c.source.startswith(start))


def test_a_notebook_changed_since_make_course_is_refused_before_any_work(built, tmp_path, monkeypatch):
    """A cell made instructors-only or an exercise in its metadata, or tagged, after `make course` ran: its source is
    unchanged, yet the release treats it differently. The build says to run `make course` again."""
    root, course = course_copy(built, tmp_path)
    monkeypatch.setattr(release_module, "student_bundle", no_work)
    original = (root / "notebooks" / "01_homework.ipynb").read_text()
    for change in (lambda nb: cell(nb, INTRO).metadata.update({"course": {"instructors": True}}),
                   lambda nb: cell(nb, "print('clean").metadata.update(_meta("test_clean", 1)),
                   lambda nb: cell(nb, "print('clean").metadata.update({"tags": ["landing"]})):
        (root / "notebooks" / "01_homework.ipynb").write_text(original)
        edit(root / "notebooks" / "01_homework.ipynb", change)
        with pytest.raises(ValueError, match="(?s)changed since `make course`.*run `make course` again.*"
                                             "notebooks/01_homework.ipynb"):
            build_site(course, tmp_path / "out", root)
    assert not (tmp_path / "out").exists()


def test_with_allow_stale_a_changed_notebook_is_shown_by_its_current_release_rules(built, tmp_path):
    """--allow-stale: the page is the release of the notebook as it is now (the cell made instructors-only is left
    out, the cell made an exercise shows no output), and the new site replaces the earlier one in place."""
    root, course = course_copy(built, tmp_path)
    edit(root / "notebooks" / "01_homework.ipynb",
         lambda nb: (cell(nb, INTRO).metadata.update({"course": {"instructors": True}}),
                     cell(nb, "print('clean").metadata.update(_meta("test_clean", 1))))
    out = tmp_path / "out"
    shutil.copytree(built[2], out)
    (out / "earlier.txt").write_text("from the earlier site")
    build_site(course, out, root, allow_stale=True)
    page = page_text(out / "notebooks" / "01_homework.html")
    assert "We compute" not in page and "clean output 42" not in page
    assert "print('clean output', 6 * 7)" in page and (out / SITE_MARKER).is_file()
    assert not (out / "earlier.txt").exists() and sorted(p.name for p in tmp_path.iterdir()) == ["course", "out",
                                                                                                  "root"]


def test_the_site_folder_is_never_one_the_build_did_not_make(built, tmp_path, capsys):
    """--out: never the course, its executed notebooks or a folder above them; never a folder without the site's
    marker, which every built site holds; each refused before any work, the folder untouched."""
    root, course, site = built
    assert (site / SITE_MARKER).is_file()
    for out in (root, root.parent, course, root / ".."):
        with pytest.raises(ValueError, match="is or contains the (course|executed notebooks)"):
            build_site(course, out, root)
    assert cli_main(["site", "--course", str(course), "--out", "."]) == 2
    assert "is or contains the course" in capsys.readouterr().err
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    with pytest.raises(ValueError, match=f"did not build \\(it has no {SITE_MARKER} file\\)"):
        build_site(course, mine, root)
    (tmp_path / "file").write_text("keep me too")
    with pytest.raises(ValueError, match="exists and is not a folder"):
        build_site(course, tmp_path / "file", root)
    assert (mine / "notes.txt").read_text() == "keep me" and (tmp_path / "file").read_text() == "keep me too"


def test_a_missing_landing_cell_is_refused_before_any_work(built, tmp_path, monkeypatch):
    root, course = course_copy(built, tmp_path)
    monkeypatch.setattr(release_module, "student_bundle", no_work)
    edit(course / "02_comparison.ipynb", lambda nb: [c.outputs.clear() for c in nb.cells if c.cell_type == "code"])
    with pytest.raises(ValueError, match="(?s)run `make course` again.*02_comparison: the cell tagged 'landing' has "
                                         "no outputs"):
        build_site(course, tmp_path / "out", root)
    for path in (course / "02_comparison.ipynb", root / "notebooks" / "02_comparison.ipynb"):
        edit(path, lambda nb: [c.metadata.pop("tags", None) for c in nb.cells])
    with pytest.raises(ValueError, match="no notebook cell is tagged 'landing'.*run `make course` again"):
        build_site(course, tmp_path / "out", root)
    assert not (tmp_path / "out").exists()


def test_a_bad_run_record_is_named_before_any_work(built, tmp_path, monkeypatch):
    root, course = course_copy(built, tmp_path)
    monkeypatch.setattr(release_module, "student_bundle", no_work)
    record = json.loads((course / "01_homework.json").read_text())
    (course / "01_homework.json").write_text(json.dumps({k: v for k, v in record.items() if k != "seconds"}))
    (course / "02_comparison.json").write_text('{"notebook": "02_comparison.ipynb", "seco')
    with pytest.raises(ValueError, match="(?s)run `make course` again.*01_homework: its run record .*01_homework.json "
                                         "has no seconds.*02_comparison: its run record .*02_comparison.json is not a "
                                         "JSON object"):
        build_site(course, tmp_path / "out", root)
    (course / "01_homework.json").write_text(json.dumps(record))
    (course / "02_comparison.json").write_text("[]")
    with pytest.raises(ValueError, match="02_comparison.json is not a JSON object"):
        build_site(course, tmp_path / "out", root)


# ---------------------------------------------------------------- in the browser


def links_that_do_not_resolve(page, site: Path) -> list[str]:
    """The links of the open page into the site that lead to no file (or no anchor) there, and the files it loads
    (images, scripts, styles) from anywhere else: those would need the network. Links out of the site are fine."""
    broken = []
    for url, resource in page.eval_on_selector_all(
            "a[href], img[src], link[href], script[src]", "els => els.map(e => [e.href || e.src, e.tagName != 'A'])"):
        parts = urlparse(url)
        local = parts.scheme == "file" or parts.hostname in ("127.0.0.1", "localhost")
        if not local:
            if resource:
                broken.append(f"{url} (loaded from outside the site: needs the network)")
            continue
        path = unquote(parts.path)
        target = Path(path) if parts.scheme == "file" else site / path.lstrip("/")
        if target.is_dir():
            target = target / "index.html"
        if not target.is_file() or site.resolve() not in target.resolve().parents:
            broken.append(url)
        elif parts.fragment and target.suffix == ".html" and f'id="{parts.fragment}"' not in target.read_text():
            broken.append(f"{url} (no such anchor)")
    return broken


class Visitor:
    """One browser tab that opens pages and says what is wrong with each: console errors, failed requests, images
    not loaded or without alt text, links that do not resolve, content wider than the window."""

    def __init__(self, browser, width: int):
        self.width, self.problems = width, []
        self.context = browser.new_context(viewport={"width": width, "height": 800})
        self.page = self.context.new_page()
        self.page.on("console", lambda m: self.problems.append(f"console {m.type}: {m.text}") if m.type == "error"
                     else None)
        self.page.on("pageerror", lambda e: self.problems.append(f"page error: {e}"))
        self.page.on("requestfailed", lambda r: self.problems.append(f"request failed: {r.url}"))

    def check(self, url: str, site: Path) -> list[str]:
        self.problems = []
        self.page.goto(url, wait_until="load")
        self.page.wait_for_timeout(200)  # MathJax and the theme's scripts run after the load event
        for src, loaded, alt in self.page.eval_on_selector_all(
                "img", "els => els.map(i => [i.src, i.complete && i.naturalWidth > 0, i.alt])"):
            if not loaded:
                self.problems.append(f"image not loaded: {src}")
            if not alt.strip() or alt == Path(unquote(urlparse(src).path)).name or alt.endswith((".png", ".jpg")):
                self.problems.append(f"image without alt text: {src} ({alt!r})")
        self.problems += [f"link does not resolve: {u}" for u in links_that_do_not_resolve(self.page, site)]
        overflow = self.page.evaluate("document.documentElement.scrollWidth") - self.width
        if overflow > 1:
            self.problems.append(f"{overflow} px wider than the window ({self.width} px)")
        return self.problems

    def close(self):
        self.context.close()


@pytest.fixture
def local_server(built):
    """The site served on a free localhost port (any static host would do)."""
    _, _, site = built
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(site)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.browser
def test_the_site_in_a_browser_at_phone_and_laptop_widths(built, browser, local_server, tmp_path):
    """Every page from file:// at a laptop's width, the landing page and a notebook page at a phone's too (with
    screenshots), three pages from a local server, and a search."""
    _, _, site = built
    start = time.monotonic()
    pages = sorted(str(p.relative_to(site)) for p in site.rglob("*.html"))
    shown = ("index.html", "notebooks/01_homework.html")
    problems = []
    for width, names in ((LAPTOP, pages), (PHONE, shown)):
        visitor = Visitor(browser, width)
        for name in names:
            problems += [f"{name} at {width} px: {p}" for p in visitor.check((site / name).as_uri(), site)]
            if name in shown:
                shot = tmp_path / f"{Path(name).stem}-{width}px.png"
                visitor.page.screenshot(path=str(shot), full_page=True)
                print(f"screenshot: {shot}")
        visitor.close()
    visitor = Visitor(browser, LAPTOP)
    for name in (*shown, "search.html"):  # the same from a server (any static host)
        problems += [f"{name} served: {p}" for p in visitor.check(f"{local_server}/{name}", site)]
    visitor.page.goto((site / "search.html").as_uri() + "?q=squares")  # offline: the index is a file of the site
    results = visitor.page.locator("#search-results li a")
    results.first.wait_for(timeout=30_000)
    found = results.evaluate_all("els => els.map(e => e.href)")
    visitor.close()
    assert not problems, "\n".join(problems)
    assert any("01_homework" in url for url in found), found
    shots = list(tmp_path.glob("*.png"))
    assert len(shots) == 4 and all(p.stat().st_size > 10_000 for p in shots)
    print(f"{len(pages)} pages checked in the browser in {time.monotonic() - start:.1f} s")
