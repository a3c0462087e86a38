"""The machine's peak: how fast this processor multiplies matrices, the arithmetic training is made of.

Notebook 10 sets each method's training rate (its FLOPs counted by ``comparison.py``, divided by
its wall time) against this peak: the best rate of a float32 matrix product, measured with the
notebooks' thread count, once per processor, torch version and thread count, and cached.
"""

from __future__ import annotations

import math
import os
import platform
import time
from pathlib import Path

import torch

from course_lib.checkpoints import load_or_compute
from course_lib.config import check_int


def matmul_gflops(size: int = 1024, repeats: int = 5, threads: int | None = 1,
                  device: torch.device | str = "cpu", seconds: float = 0.0) -> float:
    """GFLOP/s of a float32 product of two ``size`` x ``size`` matrices (2 size^3 FLOPs): the best of at
    least ``repeats`` timed products (more until ``seconds`` have passed) after one warm-up, with
    ``threads`` torch threads (None: torch's default; restored afterwards). The best, not the median: on
    a shared machine the slower products are the ones other jobs interrupted."""
    check_int(size, "size")
    check_int(repeats, "repeats")
    check_int(threads, "threads", optional=True)
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or seconds < 0:
        raise ValueError(f"seconds must be a number >= 0, got {seconds!r}")
    device = torch.device(device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    g = torch.Generator().manual_seed(0)
    a, b = (torch.randn(size, size, generator=g).to(device) for _ in range(2))
    saved = torch.get_num_threads()
    try:
        if threads is not None:
            torch.set_num_threads(threads)
        a @ b  # warm-up: allocation, kernel choice
        best, done, start_all = math.inf, 0, time.perf_counter()
        while done < repeats or time.perf_counter() - start_all < seconds:
            sync()
            start = time.perf_counter()
            a @ b
            sync()
            best = min(best, time.perf_counter() - start)
            done += 1
    finally:
        torch.set_num_threads(saved)
    return 2 * size**3 / best / 1e9


def cpu_name() -> str:
    """The processor's model name (from /proc/cpuinfo on Linux), else what ``platform`` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


PEAK_SIZES = {"cpu": (512, 1024, 2048), "cuda": (4096, 8192)}  # matrix sides tried; the best rate is the peak


def machine_peak(threads: int | None = 1, device: torch.device | str = "cpu", seconds: float = 1.0) -> dict:
    """The machine's measured peak for training arithmetic: the best :func:`matmul_gflops` over the sizes
    of :data:`PEAK_SIZES` (``seconds`` of products each), measured once per processor, torch version and
    thread count and cached. Returns ``{"gflops", "size", "threads", "device", "load"}`` (``size``: the
    side that reached it; ``load``: the 1-minute load average when measured)."""
    device = torch.device(device)
    sizes = PEAK_SIZES.get(device.type, PEAK_SIZES["cpu"])
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_name()
    key = {"task": "float32 matmul peak", "processor": name, "cpus": os.cpu_count(), "torch": torch.__version__,
           "threads": threads, "device": device.type, "sizes": list(sizes), "seconds": seconds}

    def measure() -> dict:
        rates = {n: matmul_gflops(n, threads=threads, device=device, seconds=seconds) for n in sizes}
        size = max(rates, key=rates.get)
        load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
        return {"gflops": rates[size], "size": size, "threads": threads, "device": f"{device.type} ({name})",
                "load": load, "by_size": {str(n): r for n, r in rates.items()}}

    return load_or_compute("matmul-peak", key, measure, code=(__name__,))
