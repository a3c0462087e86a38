"""Finding a real browser for the browser tests (conftest's ``browser`` fixture, tests/test_browser.py): Debian's
Chromium, driven through Playwright; without one a browser test is skipped loudly, except in CI, where it fails."""

import os
import shutil
import sys
import warnings

import pytest


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("true", "1", "yes")


def find_chromium() -> str | None:
    for candidate in (os.environ.get("COURSE_CHROMIUM"), "/usr/bin/chromium", shutil.which("chromium"),
                      shutil.which("chromium-browser")):
        if candidate and os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    return None


def no_browser(reason: str) -> None:
    """Fail in CI; elsewhere skip, loudly."""
    message = (f"browser test not run: {reason}. Install Debian's chromium (apt-get install chromium) and the "
               "dev extra (pip install -e '.[dev]'), or point $COURSE_CHROMIUM at a Chromium binary")
    if in_ci():
        pytest.fail(message + " (CI=true: a browser test that cannot run is a failure)", pytrace=False)
    warnings.warn(message, stacklevel=2)
    print(f"\nWARNING: {message}", file=sys.stderr, flush=True)
    pytest.skip(message)
