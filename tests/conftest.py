"""Every test starts from the default profile, whatever the shell or an earlier test set."""

import pytest
import torch

from course_lib.config import PROFILE_ENV


@pytest.fixture(autouse=True)
def _default_profile(monkeypatch):
    monkeypatch.delenv(PROFILE_ENV, raising=False)


@pytest.fixture
def one_thread():
    """Torch on one thread: on a busy 2-core machine two threads make small ops many times slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
