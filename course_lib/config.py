"""Profiles, device and seeding: everything a notebook needs before it trains.

A *profile* is a dataclass of hyperparameters. ``fast`` (the default) runs each
notebook in about two minutes on a laptop CPU with the embedded data; ``full``
uses the real datasets and a ResNet-18 on a GPU. Choose one with the
environment variable ``COURSE_PROFILE``; notebooks print the profile they use.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import random
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

PROFILE_ENV = "COURSE_PROFILE"
SEED_ENV = "COURSE_SEED"  # the training seed of every notebook (default: the profile's, 0)
BUDGETS_ENV = "COURSE_TIME_BUDGETS"
REPO_ROOT = Path(__file__).resolve().parents[1]


class Settings:
    """What the course's frozen hyperparameter dataclasses share (the profile and each method's
    config): a changed copy, a JSON-ready dict (checkpoint keys), and a readable listing."""

    def replace(self, **changes):
        """A copy with some fields changed (settings are immutable)."""
        return dataclasses.replace(self, **changes)

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)

    def __str__(self) -> str:
        lines = [f"{type(self).__name__}:"]
        lines += [f"  {f.name:20s} = {getattr(self, f.name)!r}" for f in dataclasses.fields(self)]
        return "\n".join(lines)


def check_int(value, name: str, minimum: int = 1, optional: bool = False) -> None:
    """Raise ``ValueError`` unless ``value`` is an int >= ``minimum`` (or None when ``optional``)."""
    if optional and value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        kind = "a positive int" if minimum == 1 else f"an int >= {minimum}"
        raise ValueError(f"{name} must be {kind}{' or None' if optional else ''}, got {value!r}")


def check_number(value, name: str, low: float, high: float) -> None:
    """Raise ``ValueError`` unless ``value`` is a number (not a bool) in [low, high]."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
        raise ValueError(f"{name} must be a number in [{low}, {high}], got {value!r}")


def check_images(x, name: str = "x", check_range: bool = True) -> None:
    """Raise unless ``x`` is a float batch of images (B, C, H, W), with values in [0, 1] when ``check_range``:
    a ``TypeError`` for what is not a float tensor, a ``ValueError`` for a wrong shape or range (NaN included)."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of shape (B, C, H, W), got {type(x).__name__}")
    if x.dim() != 4:
        raise ValueError(f"{name} must be 4-D (B, C, H, W), got shape {tuple(x.shape)}")
    if not x.is_floating_point():
        raise TypeError(f"{name} must be a float tensor with values in [0, 1], got dtype {x.dtype} "
                        "(augment.to_float turns uint8 images into one)")
    if check_range and x.numel() > 0:
        lo, hi = torch.aminmax(x)
        if not (lo >= 0 and hi <= 1):  # also catches NaN
            raise ValueError(f"{name} must have values in [0, 1], got min {lo.item():.4g}, max {hi.item():.4g}")


@dataclass(frozen=True)
class Profile(Settings):
    """Hyperparameters shared by every notebook of one profile."""

    name: str = "fast"
    dataset: str = "fashion_mnist_embedded"  # what the lectures train on
    backbone: str = "small_cnn"  # "small_cnn" or "resnet18"
    width: int = 32  # channels of the first conv stage of the small CNN
    batch_size: int = 128
    num_epochs: int = 8  # epochs of self-supervised pre-training
    lr: float = 2e-3  # AdamW learning rate
    weight_decay: float = 5e-4
    time_budget_s: float | None = None  # stop pre-training after this many seconds
    labels_per_class: tuple[int | None, ...] = (10, 100, None)  # None = all labels
    knn_k: int = 20  # neighbours voted by the kNN classifier
    finetune_steps: int = 50  # AdamW steps of the protocol's LP-FT column, once per label draw (evaluate.protocol_for)
    amp: bool = False  # bf16 autocast (GPU only)
    channels_last: bool = True  # NHWC memory layout: faster convolutions on x86 CPUs (oneDNN) and tensor cores
    compile: bool = False  # torch.compile the backbone
    seed: int = 0
    check_claims: bool = True  # notebooks assert their claims (off when grading with tiny budgets)
    max_images_per_class: int | None = None  # keep at most this many images per class of a split (None = all)
    num_threads: int | None = 1  # torch CPU threads (None: torch's default, one per core); see README
    cell_timeout_s: float = 600.0  # a notebook cell running longer than this is stopped (make course/test/bench)

    def __post_init__(self) -> None:
        """Every field checked when the profile is built: a wrong override fails here, naming the field."""
        if not isinstance(self.name, str) or not self.name:
            raise TypeError(f"name must be a non-empty str, got {self.name!r}")
        for f in ("dataset", "backbone"):
            if not isinstance(getattr(self, f), str):
                raise TypeError(f"{f} must be a str, got {getattr(self, f)!r}")
        if self.backbone not in ("small_cnn", "resnet18"):
            raise ValueError(f"unknown backbone {self.backbone!r}: expected 'small_cnn' or 'resnet18'")
        for f in ("width", "batch_size", "num_epochs", "knn_k", "finetune_steps"):
            check_int(getattr(self, f), f)
        check_int(self.seed, "seed", minimum=0)
        check_int(self.max_images_per_class, "max_images_per_class", optional=True)
        check_int(self.num_threads, "num_threads", optional=True)
        for f, low, high in (("lr", 1e-12, 10.0), ("weight_decay", 0.0, 10.0),
                             ("cell_timeout_s", 1.0, 7 * 24 * 3600.0)):
            check_number(getattr(self, f), f, low, high)
        if self.time_budget_s is not None:
            check_number(self.time_budget_s, "time_budget_s", 1e-3, float("inf"))
        for f in ("amp", "channels_last", "compile", "check_claims"):
            if not isinstance(getattr(self, f), bool):
                raise TypeError(f"{f} must be True or False, got {getattr(self, f)!r}")
        budgets = self.labels_per_class
        if not isinstance(budgets, tuple) or not budgets or not all(
                b is None or (isinstance(b, int) and not isinstance(b, bool) and b >= 1) for b in budgets):
            raise TypeError("labels_per_class must be a non-empty tuple of positive ints or None (all labels), "
                            f"e.g. (10, 100, None); got {budgets!r}")

    def limit(self, data):
        """``data`` (an ``ImageData``) cut to ``max_images_per_class`` random images of every class.

        Unchanged when the field is None (every profile but ``grade``). The same
        seed keeps the same images, so every notebook sees the same subset.
        """
        n = self.max_images_per_class
        if n is None:
            return data
        if not isinstance(n, int) or n < 1:
            raise ValueError(f"max_images_per_class must be a positive int or None, got {n!r}")
        order = torch.randperm(len(data.labels), generator=torch.Generator().manual_seed(self.seed))
        labels = data.labels.cpu()[order]
        keep = torch.cat([order[labels == c][:n] for c in labels.unique()])
        return data.subset(keep.sort().values)

    def __str__(self) -> str:
        lines = [f"Profile {self.name!r}:"]
        lines += [f"  {f.name:20s} = {getattr(self, f.name)!r}" for f in dataclasses.fields(self) if f.name != "name"]
        return "\n".join(lines)


PROFILES: dict[str, Profile] = {
    "fast": Profile(),
    "full": Profile(
        name="full",
        dataset="cifar10",
        backbone="resnet18",
        batch_size=512,
        num_epochs=100,
        lr=1e-3,
        weight_decay=1e-4,
        finetune_steps=5000,
        amp=True,
        channels_last=True,
        num_threads=None,  # a GPU machine: torch's default for the little work left on the CPU
        cell_timeout_s=4 * 3600.0,  # pre-training a ResNet-18 on CIFAR-10 takes tens of minutes
    ),
    # Homework grading: tiny budgets so that a notebook grades in seconds.
    "grade": Profile(
        name="grade",
        num_epochs=1,
        time_budget_s=5.0,
        labels_per_class=(10, None),
        finetune_steps=10,
        check_claims=False,
        max_images_per_class=50,  # 500 training and 500 test images
        cell_timeout_s=120.0,
    ),
}


def get_profile(name: str | None = None, **overrides) -> Profile:
    """The profile called ``name``, else ``$COURSE_PROFILE``, else ``fast``; its seed is ``$COURSE_SEED``
    when that is set (``python -m course_lib course --seed N``: the course at another training seed).

    Keyword arguments override single fields: ``get_profile(num_epochs=2)``.
    """
    name = name or os.environ.get(PROFILE_ENV) or "fast"
    if name not in PROFILES:
        raise ValueError(
            f"unknown profile {name!r}: expected one of {sorted(PROFILES)} "
            f"(set {PROFILE_ENV} or pass name=...)"
        )
    profile = PROFILES[name]
    seed = os.environ.get(SEED_ENV, "").strip()
    if seed and "seed" not in overrides:
        if not seed.isdigit():
            raise ValueError(f"{SEED_ENV} must be a non-negative integer (a training seed), got {seed!r}")
        overrides = {**overrides, "seed": int(seed)}
    known = {f.name for f in dataclasses.fields(Profile)}
    unknown = set(overrides) - known
    if unknown:
        raise TypeError(f"unknown profile field(s) {sorted(unknown)}: expected some of {sorted(known)}")
    return profile.replace(**overrides) if overrides else profile


def get_device(prefer: str | None = None) -> torch.device:
    """CUDA if present, then Apple MPS, then CPU (or ``prefer`` if given)."""
    if prefer is not None:
        return torch.device(prefer)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def seed_everything(seed: int, deterministic: bool = True, threads: int | None = None) -> torch.Generator:
    """Seed Python, NumPy and torch; make torch's algorithms deterministic.

    ``threads`` (a profile's ``num_threads``) fixes torch's CPU thread count: the order of
    floating-point sums depends on it, so the same seed gives the same numbers only with the
    same count -- and on a busy machine one thread is faster than two (README).
    Returns a ``torch.Generator`` seeded with ``seed`` for code that takes one.
    """
    if not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    check_int(threads, "threads", optional=True)
    if threads is not None:
        torch.set_num_threads(threads)
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
    return torch.Generator().manual_seed(seed)


def time_budgets_enabled() -> bool:
    """False when ``$COURSE_TIME_BUDGETS`` is ``off``: training then always runs to its last step.

    ``make test`` switches budgets off, so that every claim a notebook asserts is asserted on a
    complete run; budgets stay for live demos and grading, where a slow machine must not stall.
    """
    value = os.environ.get(BUDGETS_ENV, "on").strip().lower()
    if value not in ("on", "off", ""):
        raise ValueError(f"${BUDGETS_ENV} must be 'on' or 'off', got {value!r}")
    return value != "off"


@contextlib.contextmanager
def environ(**values: str) -> Iterator[None]:
    """Environment variables set for the duration of a ``with`` block (kernels and runs started inside
    inherit them), then restored -- removed again where they were not set before."""
    old = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def git_revision(root: Path = REPO_ROOT, short: bool = False) -> str:
    """The git commit the course's code is at (``short``: abbreviated), with ``+changes`` when tracked files
    differ from it; "" outside a git checkout (e.g. the student bundle) or without git. What made a number:
    a recorded sweep and every executed notebook's record say it."""
    try:
        head = subprocess.run(["git", "-C", str(root), "rev-parse", *(["--short"] if short else []), "HEAD"],
                              capture_output=True, text=True, timeout=30)
        if head.returncode != 0:
            return ""
        changed = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                                 capture_output=True, text=True, timeout=30).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""
    return head.stdout.strip() + ("+changes" if changed else "")


def cache_dir() -> Path:
    """Where checkpoints and results live (``$COURSE_CACHE`` or ``build/cache``)."""
    path = Path(os.environ.get("COURSE_CACHE", REPO_ROOT / "build" / "cache"))
    path.mkdir(parents=True, exist_ok=True)
    return path


def seed_cache_dir(seed: int) -> Path:
    """The cache of one training seed: :func:`cache_dir` for seed 0 (what ``make course`` fills), its
    subfolder ``seed-N`` for another seed, so that two seeds' rows never share a results store
    (``python -m course_lib course --seed N`` and ``compare --seeds`` use it)."""
    check_int(seed, "seed", minimum=0)
    return cache_dir() if seed == 0 else cache_dir() / f"seed-{seed}"


def data_dir() -> Path:
    """Where datasets live (``$COURSE_DATA`` or the repository's ``data/``)."""
    return Path(os.environ.get("COURSE_DATA", REPO_ROOT / "data"))
