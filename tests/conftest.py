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


def make_image_data(n: int = 40, num_classes: int = 4, size: int = 12, channels: int = 1, seed: int = 0):
    """The tests' one image factory: ``n`` uint8 images (n, channels, size, size), labels cycling
    0..num_classes-1, each class marked by a bright band of rows so that features can tell them apart."""
    from course_lib.datasets import ImageData

    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % num_classes
    images = torch.randint(0, 256, (n, channels, size, size), generator=g, dtype=torch.uint8)
    band = max(1, size // num_classes)
    for c in range(num_classes):
        images[labels == c, :, band * c: band * c + band] = 255
    return ImageData(images, labels, [f"c{c}" for c in range(num_classes)])


@pytest.fixture
def image_data():
    """The image factory as a fixture: ``image_data(n, num_classes, size, channels, seed)``."""
    return make_image_data


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """A fresh, empty checkpoint and results cache for one test."""
    monkeypatch.setenv("COURSE_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"
