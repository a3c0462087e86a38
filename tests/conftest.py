"""Every test starts from the default profile, a live (not headless) session and time budgets on, whatever the
shell or an earlier test set; `make test` exports all three for the notebooks it executes. The tests' shared
fixtures: the image factory, a fresh cache, and a real browser (Debian's Chromium through Playwright, found by
tests/browser.py) for the browser tests (tests/test_browser.py, tests/test_site.py)."""

import pytest
import torch
from browser import find_chromium, no_browser

from course_lib.config import BUDGETS_ENV, PROFILE_ENV, SEED_ENV
from course_lib.widgets import HEADLESS_ENV


@pytest.fixture(autouse=True)
def _default_profile(monkeypatch):
    monkeypatch.delenv(PROFILE_ENV, raising=False)
    monkeypatch.delenv(SEED_ENV, raising=False)
    monkeypatch.delenv(HEADLESS_ENV, raising=False)
    monkeypatch.delenv(BUDGETS_ENV, raising=False)


@pytest.fixture
def restore_torch():
    """Torch's global settings back as they were after a test whose code seeds runs as a notebook does
    (``seed_everything``: deterministic algorithms, the profile's threads), e.g. a sweep or the tuning pass."""
    before = (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled(),
              torch.get_num_threads())
    yield
    torch.use_deterministic_algorithms(before[0], warn_only=before[1])
    torch.set_num_threads(before[2])


@pytest.fixture
def one_thread():
    """Torch on one thread: on a busy 2-core machine two threads make small ops many times slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def make_images(n: int = 16, channels: int = 1, size: int | tuple[int, int] = 28, dtype: torch.dtype = torch.uint8,
                smooth: bool = False, seed: int = 0) -> torch.Tensor:
    """The tests' one image factory: ``n`` random images (n, channels, H, W), uint8 in [0, 255] or float in
    [0, 1]. ``smooth``: upsampled from a 4x coarser grid, so that crops, rotations and blurs change them
    visibly. The same arguments give the same images."""
    h, w = (size, size) if isinstance(size, int) else size
    g = torch.Generator().manual_seed(seed)
    if smooth:
        small = torch.rand(n, channels, h // 4, w // 4, generator=g)
        x = torch.nn.functional.interpolate(small, size=(h, w), mode="bilinear", align_corners=False).clamp(0, 1)
        return (x * 255).round().to(torch.uint8) if dtype == torch.uint8 else x.to(dtype)
    if dtype == torch.uint8:
        return torch.randint(0, 256, (n, channels, h, w), dtype=torch.uint8, generator=g)
    return torch.rand(n, channels, h, w, generator=g).to(dtype)


def make_image_data(n: int = 40, num_classes: int = 4, size: int = 12, channels: int = 1, seed: int = 0):
    """The tests' one image factory: ``n`` uint8 images (n, channels, size, size), labels cycling
    0..num_classes-1, each class marked by a bright band of rows so that features can tell them apart."""
    from course_lib.datasets import ImageData

    labels = torch.arange(n) % num_classes
    images = make_images(n, channels, size, seed=seed)
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


def tiny_profile(**changes):
    """The fast profile shrunk for method tests: a 4-wide backbone, batches of 16, one epoch, no time budget;
    ``changes`` win."""
    from course_lib.config import get_profile

    return get_profile("fast", **{"width": 4, "batch_size": 16, "num_epochs": 1, "time_budget_s": None, **changes})


# ---------------------------------------------------------------- a real browser


@pytest.fixture
def browser():
    """Playwright's Chromium (Debian's, headless), closed after the test whatever happens."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        no_browser("the playwright package is not installed")
    executable = find_chromium()
    if executable is None:
        no_browser("no Chromium found ($COURSE_CHROMIUM, /usr/bin/chromium, chromium on the PATH)")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=executable, headless=True, timeout=60_000)
        try:
            yield chromium
        finally:
            chromium.close()
