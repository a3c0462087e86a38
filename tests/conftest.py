"""Every test starts from the default profile and a live (not headless) session, whatever the shell or an
earlier test set; `make test` exports both for the notebooks it executes."""

import pytest
import torch

from course_lib.config import PROFILE_ENV
from course_lib.widgets import HEADLESS_ENV


@pytest.fixture(autouse=True)
def _default_profile(monkeypatch):
    monkeypatch.delenv(PROFILE_ENV, raising=False)
    monkeypatch.delenv(HEADLESS_ENV, raising=False)


@pytest.fixture
def one_thread():
    """Torch on one thread: on a busy 2-core machine two threads make small ops many times slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
