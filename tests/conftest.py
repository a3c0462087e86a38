"""Every test starts from the default profile, whatever the shell or an earlier test set."""

import pytest

from course_lib.config import PROFILE_ENV


@pytest.fixture(autouse=True)
def _default_profile(monkeypatch):
    monkeypatch.delenv(PROFILE_ENV, raising=False)
