"""The optional parts of the install, and a clear error where one is missing.

The student install (``pip install -e .``, what the student bundle sets up) has the notebooks, ``course_lib`` and
JupyterLab. Three extras add tools for other users (``pyproject.toml``):

* ``instructor``: nbgrader, for ``release``, ``grade`` and ``grade-manual`` (``tools/grading.py`` and the modules
  it uses: ``release``, ``execute``, ``gradebook``, ``nbgrader_setup``);
* ``site``: Sphinx, MyST-NB, furo and MathJax's files, and the instructor tools, for ``site`` (``tools/site.py``);
* ``dev``: the tests (pytest, nbval, pytest-xdist, Playwright), the instructor tools and the site's, for ``test``.

A command that needs a missing extra stops with :class:`MissingExtra`, which names the extra and the command that
installs it, instead of an ``ImportError`` from deep inside.
"""

from __future__ import annotations

import importlib.util

INSTALL_HINT = "pip install -c requirements-lock.txt -e '.[{extra}]'"


class MissingExtra(ModuleNotFoundError):
    """``what`` needs ``package``, which only the ``extra`` extra installs."""

    def __init__(self, what: str, extra: str, package: str):
        self.extra = extra
        super().__init__(f"{what} needs {package}, which is in the '{extra}' extra, not in the student install. "
                         f"Install it in the course folder with: {INSTALL_HINT.format(extra=extra)}",
                         name=package)


def require(modules: dict[str, str], what: str, extra: str) -> None:
    """Raise :class:`MissingExtra` for the first of ``modules`` (import name -> package name) not installed."""
    for module, package in modules.items():
        if importlib.util.find_spec(module) is None:
            raise MissingExtra(what, extra, package)
