"""The full profile on a GPU: training throughput and the input-pipeline race, in one run.

    python scripts/gpu_check.py --out build/gpu             # on a CUDA machine; budgeted to stop within 7 minutes
    python scripts/gpu_check.py --out build/gpu --compile   # also time the torch.compile'd backbone
    python scripts/gpu_check.py --out /tmp/check --tiny     # any machine, CPU too: tiny sizes, a few steps

Three parts (four with ``--compile``), each with its own time limit, on CIFAR-10-shaped random uint8 data
(50,000 images of 3x32x32; nothing is downloaded):

1. **pipeline**: images/s of two SimCLR views produced by the course pipeline
   (``DeviceLoader`` + ``augment`` on the GPU) and by the DataLoader baseline (per-image
   ``transforms.v2`` in worker processes, pinned memory, copied to the GPU), via
   ``course_lib.tools.bench.run``.
2. **throughput**: training images/s of the full profile (``get_profile("full")``:
   ResNet-18 with the CIFAR stem, batch 512, bf16 autocast through ``train(amp=True)``,
   channels-last), a supervised step with the light augmentation; eager, and compiled
   with ``--compile``.
3. **simclr**: a short SimCLR run (two views, NT-Xent, a few hundred steps) fed by the
   course pipeline and by the best DataLoader of part 1: images/s, first and last loss.

Results go to ``<out>/gpu_check.json`` and ``<out>/gpu_check.md``, rewritten after every
part, so an interrupted run keeps what it measured.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import sys
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from course_lib.augment import AugmentConfig, augment, simclr_config  # noqa: E402
from course_lib.config import get_device, get_profile  # noqa: E402
from course_lib.files import atomic_write  # noqa: E402
from course_lib.loader import DeviceLoader  # noqa: E402
from course_lib.models import LinearHead, MLPHead, build_backbone  # noqa: E402
from course_lib.tools import bench  # noqa: E402
from course_lib.train import train  # noqa: E402


@dataclasses.dataclass(frozen=True)
class CheckConfig:
    """Sizes and time limits (seconds) of each part; ``TINY`` is the CPU smoke-test version."""

    num_images: int = 50_000  # CIFAR-10's training set size
    image_size: int = 32
    batch_size: int | None = None  # None: the full profile's (512)
    pipeline_seconds: float = 4.0  # part 1: one timed window per pipeline ...
    pipeline_repeats: int = 2  # ... this many times
    num_workers: tuple[int, ...] | None = None  # part 1 DataLoader workers; None: half and all CPUs
    warmup_steps: int = 10  # untimed training steps before each timed run (cuDNN autotuning, compile)
    throughput_s: float = 30.0  # part 2: timed seconds per variant
    throughput_steps: int = 10_000  # part 2: at most this many timed steps
    simclr_steps: int = 300  # part 3: steps per pipeline ...
    simclr_s: float = 75.0  # ... or this many seconds, whichever comes first
    budget_s: float = 400.0  # the whole run; a part that would not fit is skipped


TINY = CheckConfig(num_images=64, image_size=16, batch_size=4, pipeline_seconds=0.05, pipeline_repeats=1,
                   num_workers=(0,), warmup_steps=1, throughput_s=30.0, throughput_steps=2, simclr_steps=2,
                   simclr_s=30.0, budget_s=300.0)


class Take:
    """The first ``steps`` batches of ``loader``, epoch after epoch (for ``train(num_epochs=1)``)."""

    def __init__(self, loader: Iterable, steps: int) -> None:
        self.loader, self.steps = loader, steps

    def __len__(self) -> int:
        return self.steps

    def __iter__(self) -> Iterator:
        n = 0
        while True:
            for batch in self.loader:
                if n == self.steps:
                    return
                yield batch
                n += 1


class AugmentedBatches:
    """``DeviceLoader`` batches augmented once, outside the step (so outside autocast): (x, y)."""

    def __init__(self, loader: DeviceLoader, size: int, seed: int = 0) -> None:
        # mild augmentation for a supervised run: crops of 60-100 % of the image and flips, no colour change
        self.loader = loader
        self.cfg = AugmentConfig(size, crop_scale=(0.6, 1.0), jitter=(0.0, 0.0, 0.0, 0.0), jitter_p=0.0, grayscale_p=0.0,
                                 blur_p=0.0)
        self.generator = torch.Generator(device=loader.device).manual_seed(seed)

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for batch in self.loader:
            yield augment(batch.x, self.cfg, self.generator), batch.y


def environment(device: torch.device) -> dict:
    env = {"torch": torch.__version__, "cuda": torch.version.cuda, "device": str(device),
           "cpus": os.cpu_count(), "python": platform.python_version()}
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        env.update(gpu=props.name, capability=f"{props.major}.{props.minor}",
                   gpu_memory_gb=round(props.total_memory / 2**30, 1), bf16=torch.cuda.is_bf16_supported())
    return env


def part_pipeline(cfg: CheckConfig, profile, device: torch.device, images: torch.Tensor) -> dict:
    workers = cfg.num_workers or tuple(sorted({max(1, (os.cpu_count() or 2) // 2), os.cpu_count() or 1}))
    bench_cfg = bench.BenchConfig(num_images=len(images), data="random", batch_size=profile.batch_size,
                                  num_workers=workers, threads=(torch.get_num_threads(),),
                                  seconds=cfg.pipeline_seconds, repeats=cfg.pipeline_repeats, warmup=2,
                                  max_seconds=3 * cfg.pipeline_seconds, train=False)
    table = bench.run(bench_cfg, device=device, images=images, progress=print)
    best = table.best("dataloader", "pipeline")
    return {"rows": [{"pipeline": r.name, "num_workers": r.num_workers, "images_per_s": round(r.pipeline),
                      "windows": [round(v) for v in r.pipeline_windows]} for r in table.rows],
            "speedup": round(table.speedup("pipeline"), 2), "best_num_workers": best.num_workers,
            "markdown": table.markdown()}


def _timed_train(modules, step, loader, optimizer, cfg: CheckConfig, steps: int, seconds: float,
                 amp: bool, batch_size: int) -> dict:
    """Warm up (untimed), then train ``steps`` steps or ``seconds``; images/s of the timed part."""
    train(modules, step, Take(loader, cfg.warmup_steps), optimizer, num_epochs=1, amp=amp, progress=False)
    history = train(modules, step, Take(loader, steps), optimizer, num_epochs=1, time_budget_s=seconds,
                    amp=amp, progress=False)
    losses = history.losses
    k = max(1, min(10, len(losses) // 4))
    return {"steps": history.steps, "seconds": round(history.seconds, 2),
            "images_per_s": round(history.steps * batch_size / history.seconds, 1),
            "loss_first": round(sum(losses[:k]) / k, 4), "loss_last": round(sum(losses[-k:]) / k, 4)}


def part_throughput(cfg: CheckConfig, profile, device: torch.device, images, labels, compile_: bool) -> dict:
    torch.manual_seed(0)
    backbone = build_backbone(profile, 3).to(device)  # ResNet-18, channels-last in the full profile
    head = LinearHead(backbone.feature_dim, 10).to(device)
    model = torch.compile(backbone) if compile_ else backbone
    optimizer = torch.optim.AdamW([*backbone.parameters(), *head.parameters()], lr=profile.lr,
                                  weight_decay=profile.weight_decay)
    loader = AugmentedBatches(DeviceLoader(images, labels, profile.batch_size, device=device), cfg.image_size)

    def step(batch):
        x, y = batch
        return F.cross_entropy(head(model(x)), y)  # the backbone puts x in its own memory layout

    start = time.perf_counter()
    result = _timed_train([backbone, head], step, loader, optimizer, cfg, cfg.throughput_steps,
                          cfg.throughput_s, profile.amp, profile.batch_size)
    result["wall_s_with_warmup"] = round(time.perf_counter() - start, 1)
    return result


def part_simclr(cfg: CheckConfig, profile, device: torch.device, images, num_workers: int) -> dict:
    aug = simclr_config(cfg.image_size)
    out = {}
    for name in ("course", "dataloader"):
        torch.manual_seed(0)
        backbone = build_backbone(profile, 3).to(device)
        head = MLPHead(backbone.feature_dim).to(device)
        optimizer = torch.optim.AdamW([*backbone.parameters(), *head.parameters()], lr=profile.lr,
                                      weight_decay=profile.weight_decay)
        step = bench.views_step(backbone, head, device)
        if name == "course":
            loader = bench.CourseTwoViews(images, aug, profile.batch_size, device)
        else:
            loader = bench.dataloader_two_views(images, aug, profile.batch_size, num_workers,
                                                pin_memory=device.type == "cuda")
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        try:
            out[name] = _timed_train([backbone, head], step, loader, optimizer, cfg, cfg.simclr_steps,
                                     cfg.simclr_s, profile.amp, profile.batch_size)
        finally:
            bench.stop_workers(loader)
        out[name]["num_workers"] = None if name == "course" else num_workers
        if device.type == "cuda":
            out[name]["peak_memory_gb"] = round(torch.cuda.max_memory_allocated(device) / 2**30, 2)
        print(f"  simclr {name:10s}: {out[name]}", flush=True)
    out["speedup"] = round(out["course"]["images_per_s"] / out["dataloader"]["images_per_s"], 2)
    return out


def markdown(results: dict) -> str:
    env = results["env"]
    lines = ["# GPU check of the full profile", "",
             f"Device: {env.get('gpu', env['device'])}, torch {env['torch']} (CUDA {env['cuda']}), "
             f"{env['cpus']} CPUs. Mode: {results['mode']}. Total {results.get('total_s', '?')} s.", ""]
    if "pipeline" in results:
        lines += ["## 1. Input pipeline alone (two SimCLR views per image)", "", results["pipeline"]["markdown"]]
    if "throughput" in results:
        lines += ["## 2. Full-profile training throughput (ResNet-18, supervised step, bf16, channels-last)", "",
                  "| variant | steps | seconds | images/s |", "|---|---|---|---|"]
        lines += [f"| {k} | {v['steps']} | {v['seconds']} | {v['images_per_s']:,} |"
                  for k, v in results["throughput"].items() if isinstance(v, dict)]
        lines.append("")
    if "simclr" in results:
        s = results["simclr"]
        lines += ["## 3. Short SimCLR run (ResNet-18 + projection head, NT-Xent, bf16)", "",
                  "| pipeline | workers | steps | images/s | loss first -> last |", "|---|---|---|---|---|"]
        lines += [f"| {k} | {v['num_workers'] if v['num_workers'] is not None else '-'} | {v['steps']} | "
                  f"{v['images_per_s']:,} | {v['loss_first']} -> {v['loss_last']} |"
                  for k, v in s.items() if isinstance(v, dict)]
        lines += ["", f"Course / DataLoader: {s['speedup']}x", ""]
    if results.get("skipped"):
        lines += ["Skipped: " + "; ".join(results["skipped"]), ""]
    return "\n".join(lines)


def write(results: dict, out: Path) -> None:
    """Write the JSON and markdown atomically (a crash leaves the previous complete files)."""
    for name, text in (("gpu_check.json", json.dumps(results, indent=2)), ("gpu_check.md", markdown(results))):
        atomic_write(out / name, lambda tmp, text=text: tmp.write_text(text))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="folder for gpu_check.json and gpu_check.md")
    parser.add_argument("--tiny", action="store_true", help="tiny sizes and a few steps (runs on a CPU)")
    parser.add_argument("--compile", action="store_true", help="also time torch.compile (adds about a minute)")
    parser.add_argument("--budget-s", type=float, default=None, help="time limit of the whole run (default 400)")
    args = parser.parse_args(argv)

    cfg = TINY if args.tiny else CheckConfig()
    if args.budget_s is not None:
        cfg = dataclasses.replace(cfg, budget_s=args.budget_s)
    device = get_device()
    if device.type != "cuda" and not args.tiny:
        print(f"no CUDA device (found {device}): this check is for a GPU; use --tiny to run its code on a CPU",
              file=sys.stderr)
        return 2
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    profile = get_profile("full")
    if cfg.batch_size is not None:
        profile = profile.replace(batch_size=cfg.batch_size)
    g = torch.Generator().manual_seed(0)
    size = cfg.image_size
    images = torch.randint(0, 256, (cfg.num_images, 3, size, size), dtype=torch.uint8, generator=g)
    labels = torch.randint(0, 10, (cfg.num_images,), generator=g)
    results: dict = {"mode": "tiny" if args.tiny else "full", "env": environment(device),
                     "profile": profile.as_dict(), "config": dataclasses.asdict(cfg), "skipped": []}
    print(f"gpu_check ({results['mode']}) on {results['env'].get('gpu', device)}", flush=True)

    def left() -> float:
        return cfg.budget_s - (time.perf_counter() - start)

    def run_part(name: str, needs_s: float, fn, *fn_args) -> None:
        if left() < needs_s:
            results["skipped"].append(f"{name} (needs ~{needs_s:.0f} s, {left():.0f} s left)")
            print(f"skip {name}: not enough time left", flush=True)
            return
        t = time.perf_counter()
        print(f"[{name}]", flush=True)
        results.setdefault(name.split(":")[0], {})
        value = fn(*fn_args)
        key, _, sub = name.partition(":")
        if sub:
            results[key][sub] = value
        else:
            results[key] = value
        print(f"[{name}] done in {time.perf_counter() - t:.1f} s", flush=True)
        results["total_s"] = round(time.perf_counter() - start, 1)
        write(results, out)

    num_rows = 1 + len(cfg.num_workers or (0, 0))
    run_part("pipeline", num_rows * (cfg.pipeline_seconds * cfg.pipeline_repeats + 5),
             part_pipeline, cfg, profile, device, images)
    run_part("throughput:eager", cfg.throughput_s + 20, part_throughput, cfg, profile, device, images, labels, False)
    workers = results.get("pipeline", {}).get("best_num_workers", os.cpu_count() or 1)
    run_part("simclr", 2 * cfg.simclr_s + 30, part_simclr, cfg, profile, device, images, workers)
    if args.compile:  # last: compiling takes a minute or two that no time limit can cut short
        run_part("throughput:compiled", cfg.throughput_s + 150, part_throughput, cfg, profile, device, images,
                 labels, True)
    results["total_s"] = round(time.perf_counter() - start, 1)
    write(results, out)
    print("\n" + markdown(results) + f"\nwritten to {out}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
