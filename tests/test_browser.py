"""Instructor mode in a real browser: JupyterLab driven through Chromium, as in a lecture.

The test prepares notebooks 01 and 03 the way ``make demo`` does (their cache warmed, fast profile),
starts JupyterLab on a free localhost port with a token, on
temporary copies of the notebooks and temporary Jupyter folders, and drives Debian's ``chromium``
through Playwright: it opens each notebook, runs all cells with JupyterLab's "Run All Cells",
waits for the kernel to go idle, checks that every cell ran with no error, and in notebook 01
moves the widget slider and checks that the figure changes. The lab server runs live (no
``COURSE_HEADLESS``), so the slider is a real ipywidgets slider. Every wait is bounded; on a failure
a screenshot is saved in the test's temporary folder and its path printed; the server and the
browser are shut down whatever happens.

Needs the ``playwright`` package (the dev extra) and a Chromium (the ``browser`` fixture of ``conftest.py``,
which ``tests/test_site.py`` uses too; ``tests/browser.py`` finds it): ``$COURSE_CHROMIUM``, else
``/usr/bin/chromium`` or ``chromium`` on the PATH (Debian: ``apt-get install chromium``; ``.ci/run``
installs it). Without them the test is skipped with a warning, except in CI (``CI=true``), where a
missing browser is a failure. Select it with ``-m browser``, leave it out with ``-m "not browser"``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
from browser import find_chromium, no_browser

from course_lib.config import BUDGETS_ENV, PROFILE_ENV, REPO_ROOT, cache_dir
from course_lib.widgets import HEADLESS_ENV

NOTEBOOKS = ["01_learning_paradigms.ipynb", "03_rotation.ipynb"]
SLIDER_NOTEBOOK = "01_learning_paradigms.ipynb"  # its slider_plot: labels_per_class from 1 to 20
SERVER_START_S = 90  # JupyterLab answering /api/status
PAGE_READY_S = 90  # the notebook's cells on the page and its kernel started
RUN_ALL_S = 300  # every cell of a notebook whose cache is warm (about 10-30 s on a busy 2-core CPU)
WIDGET_S = 90  # the kernel redrawing the figure after the slider moved
SAVE_S = 30


def wait_until(condition: Callable[[], object], timeout: float, what: str, interval: float = 0.5):
    """Poll ``condition`` until it returns something truthy (returned); AssertionError after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Lab:
    """A JupyterLab server in temporary folders; ``api(path)`` calls its REST API with the token."""

    def __init__(self, root: Path, tmp: Path, cache: Path):
        self.root, self.port, self.token = root, free_port(), uuid.uuid4().hex
        self.url = f"http://127.0.0.1:{self.port}"
        settings = tmp / "lab-user-settings"
        for plugin, values in {  # every cell in the page (no windowing), no news or update checks
            "@jupyterlab/notebook-extension/tracker": {"windowingMode": "none"},
            "@jupyterlab/apputils-extension/notification": {"fetchNews": "false", "checkForUpdates": False},
        }.items():
            path = settings / f"{plugin}.jupyterlab-settings"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(values))
        env = {k: v for k, v in os.environ.items() if k not in (HEADLESS_ENV, BUDGETS_ENV)}  # a live session
        env.update({PROFILE_ENV: "fast", "COURSE_CACHE": str(cache),
                    "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), *filter(None, [env.get("PYTHONPATH")])]),
                    "JUPYTER_RUNTIME_DIR": str(tmp / "jupyter-runtime"), "JUPYTER_CONFIG_DIR": str(tmp / "jupyter-config"),
                    "JUPYTER_DATA_DIR": str(tmp / "jupyter-data"), "IPYTHONDIR": str(tmp / "ipython")})
        self.log_path = tmp / "jupyterlab.log"
        self._log = open(self.log_path, "w")
        cmd = [sys.executable, "-m", "jupyter", "lab", "--no-browser", "--allow-root", "--ServerApp.ip=127.0.0.1",
               f"--ServerApp.port={self.port}", "--ServerApp.port_retries=0", f"--IdentityProvider.token={self.token}",
               f"--ServerApp.root_dir={root}", f"--LabApp.user_settings_dir={settings}",
               f"--LabApp.workspaces_dir={tmp / 'lab-workspaces'}"]
        self.process = subprocess.Popen(cmd, cwd=root, env=env, stdout=self._log, stderr=subprocess.STDOUT,
                                        start_new_session=True)
        try:
            wait_until(self._up, SERVER_START_S, "JupyterLab to answer")
        except BaseException:
            self.stop()
            raise

    def api(self, path: str, method: str = "GET", timeout: float = 10):
        request = urllib.request.Request(f"{self.url}/api/{path}", method=method,
                                         headers={"Authorization": f"token {self.token}"})
        with urllib.request.urlopen(request, timeout=timeout) as response:
            body = response.read()
        return json.loads(body) if body else None

    def _up(self) -> bool:
        if self.process.poll() is not None:
            raise AssertionError(f"JupyterLab exited with code {self.process.returncode}:\n{self.log_tail()}")
        try:
            return bool(self.api("status", timeout=2))
        except (OSError, ValueError):
            return False

    def kernel_state(self, notebook: str) -> str | None:
        """The execution state of the kernel of ``notebook`` (None while it has no session)."""
        for session in self.api("sessions"):
            if session.get("path", "").endswith(notebook) and session.get("kernel"):
                return session["kernel"].get("execution_state")
        return None

    def shut_down_kernel(self, notebook: str) -> None:
        for session in self.api("sessions"):
            if session.get("path", "").endswith(notebook):
                self.api(f"sessions/{session['id']}", method="DELETE", timeout=30)

    def log_tail(self, chars: int = 3000) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")[-chars:]

    def stop(self) -> None:
        """Shut down the kernels and the server; terminate, then kill, the server's process group if it lingers."""
        if self.process.poll() is None:
            try:
                self.api("shutdown", method="POST", timeout=10)
            except (OSError, ValueError):
                pass
            for sig, wait_s in ((None, 20), (signal.SIGTERM, 10), (signal.SIGKILL, 10)):
                if sig is not None and self.process.poll() is None:
                    try:
                        os.killpg(self.process.pid, sig)
                    except ProcessLookupError:
                        pass
                try:
                    self.process.wait(wait_s)
                    break
                except subprocess.TimeoutExpired:
                    continue
        self._log.close()


def code_prompts(page) -> list[str]:
    """The execution prompt of every code cell of the open notebook: '[ ]:', '[*]:' or '[12]:'."""
    return page.eval_on_selector_all(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-CodeCell .jp-InputPrompt",
                                     "els => els.map(e => e.textContent.trim())")


def run_all_cells(page, lab: Lab, notebook: str) -> None:
    """JupyterLab's Run > Run All Cells; returns once the kernel is idle and no cell is queued or running."""
    page.locator(".lm-MenuBar-itemLabel", has_text=re.compile(r"^Run$")).click()
    page.locator(".lm-Menu-itemLabel", has_text=re.compile(r"^Run All Cells$")).click()
    stable = {"since": None}

    def finished() -> bool:
        prompts = code_prompts(page)
        done = (not any("*" in p for p in prompts) and any(re.search(r"\d", p) for p in prompts)
                and lab.kernel_state(notebook) == "idle")
        if not done:
            stable["since"] = None
            return False
        stable["since"] = stable["since"] or time.monotonic()
        return time.monotonic() - stable["since"] >= 2.0  # idle and nothing queued for 2 s: not between two cells

    wait_until(finished, RUN_ALL_S, f"all cells of {notebook} to run and its kernel to go idle", interval=1.0)


def saved_errors(page, lab: Lab, notebook: str, executed: int) -> list[str]:
    """Save the notebook (Ctrl+S) and read the saved file: the error outputs it holds."""
    page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook").first.click(position={"x": 5, "y": 5})
    page.keyboard.press("Control+s")

    def saved():
        # read from the disk, not through the server: a GET of the contents API while the save is still
        # writing makes the server move the half-written file aside (.invalid) and restore the old one
        try:
            nb = json.loads((lab.root / notebook).read_text(encoding="utf-8"))
        except (OSError, ValueError):  # not written yet, or half written
            return None
        counts = [c.get("execution_count") for c in nb["cells"] if c["cell_type"] == "code"]
        return nb if sum(c is not None for c in counts) == executed else None

    nb = wait_until(saved, SAVE_S, f"{notebook} saved with its {executed} executed cells")
    return [f"cell {i}: {o.get('ename')}: {o.get('evalue')}" for i, c in enumerate(nb["cells"])
            for o in c.get("outputs", []) if o.get("output_type") == "error"]


def open_notebook(page, lab: Lab, notebook: str) -> None:
    """Open ``notebook`` in a workspace of its own (no other notebook restored beside it), kernel idle."""
    page.goto(f"{lab.url}/lab/workspaces/{Path(notebook).stem}/tree/{notebook}?token={lab.token}",
              timeout=PAGE_READY_S * 1000)
    page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-CodeCell").first.wait_for(timeout=PAGE_READY_S * 1000)
    wait_until(lambda: lab.kernel_state(notebook) == "idle", PAGE_READY_S, f"the kernel of {notebook} to start")


def check_notebook(page, lab: Lab, notebook: str) -> None:
    open_notebook(page, lab, notebook)
    prompts = code_prompts(page)
    assert prompts and not any(re.search(r"\d", p) for p in prompts), f"{notebook} opened with outputs: {prompts}"
    start = time.monotonic()
    run_all_cells(page, lab, notebook)
    prompts = code_prompts(page)
    not_run = [i for i, p in enumerate(prompts) if not re.search(r"\d", p)]
    errors = saved_errors(page, lab, notebook, executed=len(prompts) - len(not_run))
    assert not errors, f"{notebook}: error output after Run All Cells: {errors}"
    assert not not_run, f"{notebook}: code cells {not_run} (of {len(prompts)}) did not run"
    print(f"{notebook}: {len(prompts)} code cells ran in the browser in {time.monotonic() - start:.1f} s, no error")


def move_slider(page, lab: Lab, notebook: str) -> None:
    """Move the notebook's first slider with the keyboard; the figure under it must be redrawn."""
    panel = page.locator(".jp-NotebookPanel:not(.lm-mod-hidden)")
    slider = panel.locator(".widget-slider").first
    slider.scroll_into_view_if_needed(timeout=WIDGET_S * 1000)
    readout = slider.locator(".widget-readout")
    figure = panel.locator(".widget-output img").first
    figure.wait_for(timeout=WIDGET_S * 1000)
    before, value = figure.get_attribute("src"), readout.inner_text().strip()
    assert before and before.startswith("data:image/png"), f"no figure under the slider: {before!r:.80}"
    slider.locator(".noUi-handle").first.focus()
    for _ in range(4):
        page.keyboard.press("ArrowRight")
    wait_until(lambda: readout.inner_text().strip() != value, WIDGET_S, "the slider's value to change")
    moved = readout.inner_text().strip()
    wait_until(lambda: (figure.get_attribute("src") or before) != before, WIDGET_S,
               f"the figure to change after the slider moved from {value} to {moved}")
    wait_until(lambda: lab.kernel_state(notebook) == "idle", WIDGET_S, "the kernel to go idle after the redraw")
    assert panel.locator(".widget-output img").count() >= 1, "the redrawn figure is missing"
    traceback = panel.locator(".widget-output", has_text=re.compile("Traceback|Error")).count()
    assert traceback == 0, "the widget's redraw printed an error"
    print(f"{notebook}: slider moved from {value} to {moved}, figure redrawn")


@pytest.fixture
def warm_notebooks(tmp_path, monkeypatch):
    """Copies of the notebooks, their cache warmed by ``make demo``'s code (fast profile).

    The cache is the course's own (``build/cache``, or ``$COURSE_CACHE``), as for ``make demo``,
    ``make course`` and the notebooks under nbval: its keys hold the whole config and the code, so
    what it serves is what a fresh run would compute. On a warm cache the test took about 3 minutes on
    a busy 2-core CPU (load 9: 90 s of warm-up, 20-30 s per notebook in the browser); on a clean clone
    it first trains what notebooks 01 and 03 need, which nbval then finds cached.
    """
    from course_lib.tools.demo import prepare

    root = tmp_path / "notebooks"
    root.mkdir()
    for name in NOTEBOOKS:
        shutil.copy(REPO_ROOT / "notebooks" / name, root / name)
    monkeypatch.setenv(PROFILE_ENV, "fast")  # restored after the test (prepare sets it for the kernels)
    start = time.monotonic()
    assert prepare([str(root / n) for n in NOTEBOOKS], profile="fast", out_dir=tmp_path / "demo", warm_check=False) == 0
    print(f"cache warmed in {time.monotonic() - start:.0f} s")
    return root, cache_dir()


@pytest.mark.browser
def test_lecture_in_jupyterlab(browser, warm_notebooks, tmp_path):
    """Notebooks 01 and 03 run in JupyterLab in Chromium with no error; 01's slider redraws its figure."""
    root, cache = warm_notebooks
    lab = Lab(root, tmp_path, cache)
    page = None
    try:
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.set_default_timeout(WIDGET_S * 1000)
        for notebook in NOTEBOOKS:
            check_notebook(page, lab, notebook)
            if notebook == SLIDER_NOTEBOOK:
                move_slider(page, lab, notebook)
            lab.shut_down_kernel(notebook)  # one kernel at a time: each holds about 1 GB
    except BaseException:
        if page is not None:
            shot = tmp_path / "failure.png"
            try:
                page.screenshot(path=str(shot), full_page=True, timeout=30_000)
                print(f"\nscreenshot of the failure: {shot}", file=sys.stderr)
            except Exception as e:  # the page itself may be gone
                print(f"\nno screenshot ({e})", file=sys.stderr)
        print(f"JupyterLab's log ({lab.log_path}), last lines:\n{lab.log_tail()}", file=sys.stderr)
        raise
    finally:
        if page is not None:
            page.close()
        lab.stop()


def test_without_a_browser_it_skips_loudly_but_fails_in_ci(monkeypatch, capsys):
    monkeypatch.delenv("CI", raising=False)
    with pytest.warns(UserWarning, match="browser test not run: no Chromium"), pytest.raises(pytest.skip.Exception):
        no_browser("no Chromium found")
    assert "WARNING: browser test not run" in capsys.readouterr().err
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI=true"):
        no_browser("no Chromium found")


def test_find_chromium_prefers_course_chromium(tmp_path, monkeypatch):
    fake = tmp_path / "my-chromium"
    fake.write_text("#!/bin/sh\n")
    fake.chmod(0o755)
    monkeypatch.setenv("COURSE_CHROMIUM", str(fake))
    assert find_chromium() == str(fake)
