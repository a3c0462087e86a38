"""How fast is the course's input pipeline? A side-by-side benchmark.

Two ways to feed SimCLR's two augmented views (Chen et al. 2020, appendix A:
random resized crop, flip, colour jitter, grayscale, Gaussian blur) to a network,
drawn from the *same* distribution (one ``augment.AugmentConfig`` builds both):

* **course**: the images live as one uint8 tensor on the device; a batch is drawn
  by index (``loader.DeviceLoader``) and augmented as a whole (``augment.augment``,
  called twice for two views).
* **DataLoader**: what one would otherwise write: a ``torch.utils.data.Dataset`` that
  hands out one PIL image at a time (as ``torchvision.datasets.CIFAR10`` does), a
  per-image ``torchvision.transforms.v2`` pipeline applied twice, and a
  ``DataLoader`` with ``num_workers`` worker processes.

Each is timed alone ("pipeline": images/s of two-view batches produced) and inside
a training step (SimCLR's NT-Xent on a backbone + projection head). Run it with
``python -m course_lib bench`` (``--quick`` for a short run); the table is printed and
written to ``build/bench/pipeline.md``. ``tests/test_bench.py`` checks that both
pipelines draw the same crops, flips and colour changes, so the race is fair.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import shutil
import statistics
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import torch
from torch import Tensor, nn

from course_lib.augment import AugmentConfig, augment, simclr_config
from course_lib.config import check_int, get_profile
from course_lib.contrastive import nt_xent
from course_lib.loader import DeviceLoader
from course_lib.models import Backbone, MLPHead, build_backbone
from course_lib.peak import machine_peak

Views = tuple[Tensor, Tensor]  # two float batches (B, C, H, W) in [0, 1]: two views of the same images


# --------------------------------------------------------------------------- data


def cifar_like_images(num_images: int = 5000, source: str = "photos", seed: int = 0) -> Tensor:
    """uint8 images (N, 3, 32, 32) shaped like CIFAR-10, without a download.

    ``source="photos"``: the course's 32x32 photo patches (``datasets.load_photos``),
    repeated to ``num_images``; ``"random"``: uniform noise.
    """
    check_int(num_images, "num_images")
    if source == "random":
        g = torch.Generator().manual_seed(seed)
        return torch.randint(0, 256, (num_images, 3, 32, 32), dtype=torch.uint8, generator=g)
    if source == "photos":
        from course_lib.datasets import load_photos

        patches = load_photos("train", size=32).images  # (M, 3, 32, 32)
        return patches[torch.arange(num_images) % len(patches)].contiguous()
    raise ValueError(f"source must be 'photos' or 'random', got {source!r}")


# --------------------------------------------------------------------------- the two pipelines


class CourseTwoViews:
    """The course's pipeline: ``DeviceLoader`` batches, each augmented twice by ``augment``.

    Iterating gives one epoch of ``(view1, view2)`` pairs, each (B, C, size, size) float.
    """

    def __init__(self, images: Tensor, cfg: AugmentConfig, batch_size: int = 256,
                 device: torch.device | str | None = None, seed: int = 0) -> None:
        self.loader = DeviceLoader(images, batch_size=batch_size, device=device, seed=seed)
        self.cfg = cfg
        self.generator = torch.Generator(device=self.loader.device).manual_seed(seed)

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self) -> Iterator[Views]:
        for batch in self.loader:
            yield augment(batch.x, self.cfg, self.generator), augment(batch.x, self.cfg, self.generator)


def torchvision_transform(cfg: AugmentConfig):
    """The same distribution as ``augment(x, cfg)``, written per image with ``torchvision.transforms.v2``.

    Takes a PIL image or a uint8 (C, H, W) tensor, returns float32 (C, size, size) in [0, 1].
    """
    import torchvision.transforms.v2 as T

    return T.Compose([
        T.RandomResizedCrop(cfg.size, scale=cfg.crop_scale, ratio=cfg.crop_ratio, antialias=True),
        T.RandomHorizontalFlip(cfg.flip_p),
        T.RandomApply([T.ColorJitter(*cfg.jitter)], p=cfg.jitter_p),
        T.RandomGrayscale(cfg.grayscale_p),
        T.RandomApply([T.GaussianBlur(cfg.kernel_size, cfg.blur_sigma)], p=cfg.blur_p),
        T.ToImage(),
        T.ToDtype(torch.float32, scale=True),
    ])


class TwoViewDataset(torch.utils.data.Dataset):
    """A dataset as one would write it for a DataLoader: image i as a PIL image, transformed twice.

    Like ``torchvision.datasets.CIFAR10``, the images are kept as a (N, H, W, C) uint8
    array and each ``__getitem__`` makes one PIL image (``pil=False``: a uint8 tensor).
    """

    def __init__(self, images: Tensor, transform: Callable, pil: bool = True) -> None:
        self.array = images.permute(0, 2, 3, 1).contiguous().numpy()  # (N, H, W, C), CIFAR10.data's layout
        self.transform = transform
        self.pil = pil

    def __len__(self) -> int:
        return len(self.array)

    def __getitem__(self, i: int) -> Views:
        if self.pil:
            from PIL import Image

            image = Image.fromarray(self.array[i])
        else:
            from torchvision import tv_tensors

            image = tv_tensors.Image(torch.from_numpy(self.array[i]).permute(2, 0, 1))  # (C, H, W) uint8
        return self.transform(image), self.transform(image)


def dataloader_two_views(images: Tensor, cfg: AugmentConfig, batch_size: int = 256, num_workers: int = 0,
                         seed: int = 0, pin_memory: bool = False) -> torch.utils.data.DataLoader:
    """The usual pipeline: ``TwoViewDataset`` + per-image v2 transforms + a ``DataLoader``."""
    return torch.utils.data.DataLoader(
        TwoViewDataset(images, torchvision_transform(cfg)), batch_size=batch_size, shuffle=True,
        drop_last=True, num_workers=num_workers, persistent_workers=num_workers > 0, pin_memory=pin_memory,
        generator=torch.Generator().manual_seed(seed),
    )


# --------------------------------------------------------------------------- the training step


def views_step(backbone: Backbone, head: nn.Module, device: torch.device | str,
               temperature: float = 0.5) -> Callable[[Views], Tensor]:
    """The benchmark's step function for ``train.train`` on the views a data pipeline made: two views -> NT-Xent
    of their projections (SimCLR's own step, ``simclr.simclr_step``, makes its views from a batch)."""

    def step(views: Views) -> Tensor:
        x = torch.cat([v.to(device, non_blocking=True) for v in views])  # (2B, C, H, W)
        z = head(backbone.forward_features(x))  # (2B, D)
        z1, z2 = z.chunk(2)
        return nt_xent(z1, z2, temperature)

    return step


# --------------------------------------------------------------------------- timing


class Timing(NamedTuple):
    """Images/s of each timed window; ``warmup_only``: the setting was too slow to time past its warm-up."""

    rates: list[float]
    warmup_only: bool = False


def _forever(pipeline: Iterable[Views]) -> Iterator[Views]:
    """Epoch after epoch of ``pipeline``, as one stream of batches."""
    while True:
        yield from pipeline


def throughput(pipeline: Iterable[Views], consume: Callable[[Views], object], batch_size: int,
               seconds: float, repeats: int = 3, warmup: int = 2, max_seconds: float | None = None,
               sync: Callable[[], None] = lambda: None, stop_after_slow_warmup: bool = True) -> Timing:
    """Images/s of ``consume(batch)`` over batches of ``pipeline``, ``repeats`` windows of >= ``seconds``.

    The first ``warmup`` batches (worker start-up, allocator, kernels) are not timed.
    Each window counts whole batches; epochs roll over inside a window, as in training.
    No new window starts once ``max_seconds`` have passed since the first batch (so a very
    slow setting gets fewer windows), and if the warm-up alone took that long (and
    ``stop_after_slow_warmup``), its rate is returned instead (``warmup_only``: pessimistic,
    it includes the start-up).
    """
    batches = _forever(pipeline)
    first = time.perf_counter()
    for _ in range(warmup):
        consume(next(batches))
    sync()
    warm_seconds = time.perf_counter() - first
    if stop_after_slow_warmup and warmup and max_seconds is not None and warm_seconds >= max_seconds:
        return Timing([warmup * batch_size / warm_seconds], warmup_only=True)
    rates: list[float] = []
    for _ in range(repeats):
        if rates and max_seconds is not None and time.perf_counter() - first >= max_seconds:
            break
        n, start = 0, time.perf_counter()
        while True:
            consume(next(batches))
            n += 1
            sync()
            elapsed = time.perf_counter() - start
            if elapsed >= seconds:
                break
        rates.append(n * batch_size / elapsed)
    return Timing(rates)


def stop_workers(pipeline: object) -> None:
    """Stop a DataLoader's persistent workers now rather than at garbage collection."""
    iterator = getattr(pipeline, "_iterator", None)
    if iterator is not None and hasattr(iterator, "_shutdown_workers"):
        iterator._shutdown_workers()


# --------------------------------------------------------------------------- the benchmark


@dataclass(frozen=True)
class BenchConfig:
    """What ``run`` measures; the defaults are the full run, ``QUICK`` the short one."""

    num_images: int = 5000  # CIFAR-shaped uint8 images (N, 3, 32, 32)
    data: str = "photos"  # "photos" (course photo patches) or "random" (noise)
    batch_size: int = 256  # images per batch (each gives two views)
    num_workers: tuple[int, ...] = (0, 1, 2)  # DataLoader worker counts to try
    threads: tuple[int, ...] | None = None  # torch threads of the main process to try; None: 1 and every CPU
    seconds: float = 5.0  # length of one timed window
    repeats: int = 3  # timed windows per measurement; the table shows their median
    warmup: int = 2  # untimed batches before the windows
    max_seconds: float = 60.0  # no new window after this long (very slow settings get fewer windows)
    train: bool = True  # also time a full training step (the fast backbone + projection head + NT-Xent)
    width: int = 32  # width of the small CNN (the fast profile's)
    seed: int = 0

    def thread_counts(self) -> tuple[int, ...]:
        if self.threads is not None:
            return tuple(self.threads)
        return tuple(sorted({1, os.cpu_count() or 1}))


QUICK = BenchConfig(seconds=2.0, repeats=3, warmup=1, max_seconds=6.0)


@dataclass
class Row:
    """One pipeline setting: median images/s (and every window's) alone and inside a training step."""

    name: str  # "course" or "dataloader"
    num_workers: int | None  # DataLoader workers; None for the course pipeline
    threads: int | None  # torch threads of the main process; None where they do not augment (workers do)
    pipeline: float
    train: float | None = None
    pipeline_windows: list[float] = field(default_factory=list)
    train_windows: list[float] = field(default_factory=list)
    warmup_only: list[str] = field(default_factory=list)  # columns timed from the warm-up batches only

    @property
    def label(self) -> str:
        if self.name == "course":
            return "course: DeviceLoader + batched augment"
        return "DataLoader + per-image transforms.v2"


@dataclass
class BenchTable:
    rows: list[Row]
    cfg: BenchConfig
    machine: str
    view_size: int = 32  # height = width of the views
    train_threads: int | None = None  # the thread count every training-step row ran with

    def best(self, name: str, column: str) -> Row:
        """The row of pipeline ``name`` with the most images/s in ``column`` ("pipeline" or "train")."""
        rows = [r for r in self.rows if r.name == name and getattr(r, column) is not None]
        return max(rows, key=lambda r: getattr(r, column))

    def speedup(self, column: str) -> float:
        """Best course images/s / best DataLoader images/s in ``column``."""
        return getattr(self.best("course", column), column) / getattr(self.best("dataloader", column), column)

    def markdown(self) -> str:
        train = self.cfg.train
        lines = ["| pipeline | workers | torch threads | pipeline only (images/s) |"
                 + (" training step (images/s) |" if train else ""),
                 "|---|---|---|---|" + ("---|" if train else "")]
        for r in self.rows:
            cells = [r.label, "-" if r.num_workers is None else str(r.num_workers),
                     "-" if r.threads is None else str(r.threads),
                     _spread(r.pipeline, r.pipeline_windows, "pipeline" in r.warmup_only)]
            if train:
                cells.append(_spread(r.train, r.train_windows, "train" in r.warmup_only))
            lines.append("| " + " | ".join(cells) + " |")
        course, loader = self.best("course", "pipeline"), self.best("dataloader", "pipeline")
        lines += ["", f"Best course pipeline / best DataLoader: pipeline only **{self.speedup('pipeline'):.1f}x** "
                      f"({course.pipeline:,.0f} / {loader.pipeline:,.0f} images/s, "
                      f"num_workers={loader.num_workers})" + ("" if train else ".")]
        if train:
            course, loader = self.best("course", "train"), self.best("dataloader", "train")
            lines[-1] += (f"; training step **{self.speedup('train'):.2f}x** ({course.train:,.0f} / "
                          f"{loader.train:,.0f} images/s, num_workers={loader.num_workers}).")
        c = self.cfg
        lines += ["", f"Images/s counts source images, each giving two {self.view_size}x{self.view_size} views "
                      f"(augment.simclr_config); median of {c.repeats} windows of >= {c.seconds:g} s "
                      f"(fewer after {c.max_seconds:g} s; min-max in brackets) after {c.warmup} untimed "
                      f"batch(es); {c.num_images} {c.data} images, batch size {c.batch_size}. "
                      f"DataLoader workers run 1 torch thread each."]
        if train:
            lines[-1] += (f" Training step: the fast profile's SmallConvNet(3, width={c.width}), channels-last, + "
                          f"MLPHead + NT-Xent + AdamW on both views, every row with {self.train_threads} torch thread(s) in the main "
                          f"process (the count that was fastest for the course pipeline alone).")
        lines += ["", f"Machine: {self.machine}"]
        return "\n".join(lines) + "\n"


def _spread(median: float | None, windows: list[float], warmup_only: bool = False) -> str:
    if median is None:
        return "-"
    if warmup_only:
        return f"{median:,.0f} (warm-up only)"
    if len(windows) < 2:
        return f"{median:,.0f}"
    return f"{median:,.0f} ({min(windows):,.0f}-{max(windows):,.0f})"


def machine_description(device: torch.device) -> str:
    """CPU/GPU, torch version and how busy the machine is (load average), for the table's footnote."""
    load = ", ".join(f"{v:.1f}" for v in os.getloadavg()) if hasattr(os, "getloadavg") else "n/a"
    text = f"{platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}, device {device}"
    if device.type == "cuda":
        text += f" ({torch.cuda.get_device_name(device)})"
    return text + f"; load average (1, 5, 15 min) at the end: {load}"


def _train_consumer(cfg: BenchConfig, device: torch.device) -> Callable[[Views], None]:
    """One SimCLR training step on a two-view batch (a fresh model, seeded, per pipeline): the fast
    profile's backbone (small CNN, channels-last) at ``cfg.width``."""
    torch.manual_seed(cfg.seed)
    backbone = build_backbone(get_profile("fast", width=cfg.width), 3).to(device)
    head = MLPHead(backbone.feature_dim).to(device)
    optimizer = torch.optim.AdamW([*backbone.parameters(), *head.parameters()], lr=1e-3)
    step = views_step(backbone, head, device)
    backbone.train()
    head.train()

    def consume(views: Views) -> None:
        loss = step(views)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return consume


def run(cfg: BenchConfig | None = None, quick: bool = False, device: torch.device | str = "cpu",
        images: Tensor | None = None, progress: Callable[[str], None] | None = print) -> BenchTable:
    """Time the course pipeline and the DataLoader one; see the module docstring.

    Rows: the course pipeline and the DataLoader with ``num_workers=0`` (both augment in
    the main process) for each torch thread count in ``cfg.thread_counts()``; the
    DataLoader with each ``num_workers > 0`` (its workers augment, one thread each). The
    training step is then timed for every pipeline at one thread count, the one that was
    fastest for the course pipeline alone, so that the model's own compute is the same
    in every row. ``cfg`` defaults to ``QUICK`` if ``quick`` else ``BenchConfig()``;
    ``images`` (uint8 (N, 3, H, W)) replaces the generated data; ``progress`` gets a line
    per measurement. Torch's thread count is restored at the end.
    """
    cfg = cfg or (QUICK if quick else BenchConfig())
    device = torch.device(device)
    say = progress or (lambda _line: None)
    images = cifar_like_images(cfg.num_images, cfg.data, cfg.seed) if images is None else images
    aug = simclr_config(images.shape[-1])
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)

    def make(row: Row) -> Iterable[Views]:
        if row.name == "course":
            return CourseTwoViews(images, aug, cfg.batch_size, device, cfg.seed)
        return dataloader_two_views(images, aug, cfg.batch_size, row.num_workers, cfg.seed,
                                    pin_memory=device.type == "cuda")

    def measure(row: Row, consume: Callable[[Views], object], stop_after_slow_warmup: bool) -> Timing:
        pipeline = make(row)
        try:
            return throughput(pipeline, consume, cfg.batch_size, cfg.seconds, cfg.repeats, cfg.warmup,
                              cfg.max_seconds, sync, stop_after_slow_warmup)
        finally:
            stop_workers(pipeline)

    def describe(row: Row) -> str:
        return f"  {row.name:10s} workers={row.num_workers!s:4s} threads={row.threads!s:4s}"

    saved_threads = torch.get_num_threads()
    try:
        rows = [Row("course", None, t, 0.0) for t in cfg.thread_counts()]
        rows += [Row("dataloader", w, t, 0.0) for w in cfg.num_workers if w == 0 for t in cfg.thread_counts()]
        rows += [Row("dataloader", w, None, 0.0) for w in cfg.num_workers if w > 0]
        def to_device(views: Views) -> Views:  # a no-op on the CPU; the host-to-GPU copy on a GPU
            return tuple(v.to(device, non_blocking=True) for v in views)

        for row in rows:
            torch.set_num_threads(row.threads or saved_threads)
            timing = measure(row, to_device, stop_after_slow_warmup=True)
            row.pipeline_windows, row.pipeline = timing.rates, statistics.median(timing.rates)
            if timing.warmup_only:
                row.warmup_only.append("pipeline")
            say(f"{describe(row)} pipeline {row.pipeline:9,.0f} images/s")
        table = BenchTable(rows, cfg, "", view_size=aug.size)
        if cfg.train:
            table.train_threads = table.best("course", "pipeline").threads
            torch.set_num_threads(table.train_threads)
            for row in rows:
                if row.threads in (None, table.train_threads):
                    timing = measure(row, _train_consumer(cfg, device), stop_after_slow_warmup=False)
                    row.train_windows, row.train = timing.rates, statistics.median(timing.rates)
                    if timing.warmup_only:
                        row.warmup_only.append("train")
                    say(f"{describe(row)} training {row.train:9,.0f} images/s "
                        f"(with {table.train_threads} thread(s))")
    finally:
        torch.set_num_threads(saved_threads)
    table.machine = machine_description(device)
    return table


def training_efficiency(profile_name: str | None = None, device: torch.device | str = "cpu") -> str:
    """Each method's achieved GFLOP/s in its pre-training run (from the results store of the current cache)
    against the machine's peak, as the table notebook 10 shows; '' when no method's row is stored yet."""
    from course_lib import comparison
    from course_lib.results import load_results

    profile = get_profile(profile_name)
    stored = load_results(profile.name)
    methods = [m for m in comparison.METHODS if m.row in stored]
    if not methods:
        return ""
    peak = machine_peak(profile.num_threads, device)
    flops = comparison.flops_per_image(methods, profile, torch.device(device))
    rows = [stored[m.row] for m in sorted(methods, key=lambda m: m.notebook)]
    load = f", load average {peak['load']:.1f} when measured" if peak.get("load") is not None else ""
    return (f"Machine peak: {peak['gflops']:.1f} GFLOP/s (float32 {peak['size']}x{peak['size']} matrix product, "
            f"{peak['threads']} thread(s), {peak['device']}{load})\n\n"
            + comparison.efficiency_table(rows, flops, peak["gflops"]))


# --------------------------------------------------------------------------- command line


def main(args: argparse.Namespace) -> int:
    """``python -m course_lib bench``: print the pipeline table, write it to ``<out>/pipeline.md``."""
    if getattr(args, "efficiency", False):
        text = training_efficiency(device="cpu")
        print(text or "no method's row in the results store yet: run the notebooks first")
        return 0 if text else 1
    cfg = QUICK if args.quick else BenchConfig()
    changes = {"num_images": args.num_images, "batch_size": args.batch_size, "data": args.data,
               "num_workers": tuple(args.workers) if args.workers else None,
               "threads": tuple(args.threads) if args.threads else None}
    changes = {k: v for k, v in changes.items() if v is not None}
    if args.no_train:
        changes["train"] = False
    cfg = dataclasses.replace(cfg, **changes)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    print(f"Input pipeline benchmark ({'quick' if args.quick else 'full'}): {cfg}", flush=True)
    table = run(cfg, device=args.device, progress=lambda line: print(line, flush=True))
    text = "# Training input pipeline: course vs DataLoader\n\n" + table.markdown()
    (out / "pipeline.md").write_text(text)
    print("\n" + table.markdown() + f"\nwritten to {out / 'pipeline.md'}", flush=True)
    status = 0
    if args.notebooks:
        status = course_run_table(out, warm=args.warm)
        text = training_efficiency(device="cpu")  # the results the notebooks just saved (in the cache they used)
        if text:
            (out / "efficiency.md").write_text("# Training arithmetic against the machine's peak\n\n" + text + "\n")
            print("\nTraining arithmetic against the machine's peak (as in notebook 10):\n" + text, flush=True)
    return status


def course_run_table(out: Path, warm: bool = False) -> int:
    """Execute every notebook (fast profile unless ``COURSE_PROFILE`` says otherwise) and print
    its time and peak memory. Cold by default: checkpoints and results go to a fresh
    ``<out>/cache``, so every notebook trains from scratch as on a student's first run;
    ``warm`` uses the usual cache (what a second run, or a live demo, costs)."""
    from course_lib.tools.runner import run_course

    if not warm:
        cache = out / "cache"
        shutil.rmtree(cache, ignore_errors=True)
        os.environ["COURSE_CACHE"] = str(cache)  # the notebooks' kernels inherit it
    print(f"\nNotebook course run ({'warm' if warm else 'cold'} cache):", flush=True)
    return run_course(out_dir=out / "course", html=False)

