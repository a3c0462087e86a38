"""The pipeline benchmark is a fair race: both pipelines draw the same random views.

``course_lib.tools.bench`` times the course pipeline (``augment.augment`` on whole batches)
against per-image ``torchvision.transforms.v2`` built from the same ``AugmentConfig``
(``bench.torchvision_transform``). These tests draw many views from each and compare
the statistics that define the distribution: crop area, flip rate, grayscale and
jitter rates, colour and blur changes. Tolerances are 5 standard errors (a correct
implementation fails with probability < 1e-6 per check) or a two-sample
Kolmogorov-Smirnov bound at alpha = 1e-4.
"""

import dataclasses
import importlib.util
import json
import math
import os
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image

from course_lib.augment import (
    AugmentConfig,
    augment,
    color_jitter,
    gaussian_blur,
    random_flip,
    random_grayscale,
    random_resized_crop,
    sample_crop_boxes,
    simclr_config,
    to_float,
)
from course_lib.colour import hsv_to_rgb, rgb_to_hsv
from course_lib.tools import bench

ROOT = Path(__file__).resolve().parents[1]
SIZE = 32


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny ops: one thread is fastest on a busy CPU (conftest)


def pattern() -> torch.Tensor:
    """uint8 (3, 32, 32) whose pixels say where they are: R = 8 * column, G = 8 * row, B = 128.

    A crop resized back to 32x32 keeps its corner pixels exactly (bilinear upsampling
    samples the box between its outer pixel centres), so the range of R and G gives the
    box's width and height, and R falling from left to right gives a flip.
    """
    col = torch.arange(SIZE).view(1, SIZE).expand(SIZE, SIZE)
    row = torch.arange(SIZE).view(SIZE, 1).expand(SIZE, SIZE)
    return torch.stack([8 * col, 8 * row, torch.full((SIZE, SIZE), 128)]).to(torch.uint8)


def draw(cfg: AugmentConfig, image: torch.Tensor, n: int, batch: int = 16, seed: int = 0):
    """n views of ``image`` from each pipeline, as uint8-valued float tensors (N, 3, H, W) in 0..255.

    The course draws in batches of 16 so that many batches (and so many jitter orders,
    drawn once per batch) are averaged over. Both outputs are rounded to 0..255 levels, as
    the PIL pipeline's are.
    """
    g = torch.Generator().manual_seed(seed)
    course = torch.cat([augment(image.expand(batch, -1, -1, -1), cfg, g) for _ in range(n // batch)])
    transform = bench.torchvision_transform(cfg)
    pil = Image.fromarray(image.permute(1, 2, 0).numpy())
    torch.manual_seed(seed)
    torchvision = torch.stack([transform(pil) for _ in range(n // batch * batch)])
    return (course * 255).round(), (torchvision * 255).round()


def read_pattern(views: torch.Tensor):
    """(gray, area fraction, flipped) per view of ``pattern()``."""
    r, g, b = views.unbind(dim=1)
    gray = ((r == g) & (g == b)).flatten(1).all(dim=1)
    w = (r.amax(dim=(1, 2)) - r.amin(dim=(1, 2))) / 8 + 1
    h = (g.amax(dim=(1, 2)) - g.amin(dim=(1, 2))) / 8 + 1
    flipped = r[:, :, 0].mean(dim=1) > r[:, :, -1].mean(dim=1)
    return gray, w * h / SIZE**2, flipped


def assert_rate(flags: torch.Tensor, p: float, name: str) -> None:
    """A Bernoulli rate within 5 standard errors of p."""
    n, rate = len(flags), flags.double().mean().item()
    tolerance = 5 * math.sqrt(p * (1 - p) / n)
    assert abs(rate - p) <= tolerance, f"{name}: rate {rate:.3f} from {n} samples, expected {p} +- {tolerance:.3f}"


def assert_same_distribution(a: torch.Tensor, b: torch.Tensor, name: str) -> None:
    """Two-sample Kolmogorov-Smirnov: sup |F_a - F_b| below its alpha = 1e-4 critical value."""
    a, b = a.double().sort().values, b.double().sort().values
    points = torch.cat([a, b])
    cdf_a = torch.searchsorted(a, points, right=True) / len(a)
    cdf_b = torch.searchsorted(b, points, right=True) / len(b)
    d = (cdf_a - cdf_b).abs().max().item()
    critical = math.sqrt(-0.5 * math.log(1e-4 / 2)) * math.sqrt((len(a) + len(b)) / (len(a) * len(b)))
    assert d < critical, f"{name}: KS distance {d:.3f} >= {critical:.3f}; means {a.mean():.4f} vs {b.mean():.4f}"


def only(cfg: AugmentConfig, **changes) -> AugmentConfig:
    """``cfg`` with the whole-image crop (an identity), no flip and the given changes."""
    return dataclasses.replace(cfg, crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0), flip_p=0.0, **changes)


# --------------------------------------------------------------------------- the test pattern itself


def test_pattern_reveals_the_crop_box_exactly():
    cfg = dataclasses.replace(simclr_config(SIZE), jitter_p=0.0, grayscale_p=0.0, blur_p=0.0, flip_p=0.0)
    views = (augment(pattern().expand(256, -1, -1, -1), cfg, torch.Generator().manual_seed(3)) * 255).round()
    boxes = sample_crop_boxes(256, SIZE, SIZE, generator=torch.Generator().manual_seed(3))  # augment's first draws
    gray, area, flipped = read_pattern(views)
    assert not gray.any() and not flipped.any()
    torch.testing.assert_close(area, (boxes[:, 2] * boxes[:, 3]).double() / SIZE**2, check_dtype=False)


# --------------------------------------------------------------------------- same distribution


def test_same_crop_scales_flips_and_grayscale():
    cfg = dataclasses.replace(simclr_config(SIZE), jitter_p=0.0, blur_p=0.0)  # the pattern survives the rest
    course, torchvision = draw(cfg, pattern(), 2000)
    for name, views in (("course", course), ("torchvision", torchvision)):
        gray, area, flipped = read_pattern(views)
        assert_rate(gray, cfg.grayscale_p, f"{name} grayscale")
        assert_rate(flipped[~gray], cfg.flip_p, f"{name} flip")
        assert area[~gray].min() >= 0.06 and area[~gray].max() <= 1.0  # scale (0.08, 1), rounded boxes
    (gray_a, area_a, _), (gray_b, area_b, _) = read_pattern(course), read_pattern(torchvision)
    assert_same_distribution(area_a[~gray_a], area_b[~gray_b], "crop area fraction")
    se = math.sqrt(area_a[~gray_a].var() / (~gray_a).sum() + area_b[~gray_b].var() / (~gray_b).sum())
    assert abs(area_a[~gray_a].mean() - area_b[~gray_b].mean()) < 5 * se


def test_same_colour_jitter_rate_and_strength():
    cfg = only(simclr_config(SIZE), grayscale_p=0.0, blur_p=0.0)  # jitter alone, p = 0.8
    x = pattern().double()
    course, torchvision = draw(cfg, pattern(), 1504)
    for name, views in (("course", course), ("torchvision", torchvision)):
        change = (views - x).abs().amax(dim=(1, 2, 3))  # 0 where not jittered
        assert_rate(change > 3, cfg.jitter_p, f"{name} jitter")
    for stat_name, stat in {
        "mean intensity": lambda v: v.mean(dim=(1, 2, 3)),
        "colourfulness": lambda v: (v.amax(dim=1) - v.amin(dim=1)).mean(dim=(1, 2)),
        "red minus blue": lambda v: (v[:, 0] - v[:, 2]).mean(dim=(1, 2)),
    }.items():
        assert_same_distribution(stat(course), stat(torchvision), f"jitter: {stat_name}")


def test_same_blur_rate_and_strength():
    checkerboard = (torch.arange(SIZE).view(-1, 1) + torch.arange(SIZE)) % 2 * 255
    image = checkerboard.expand(3, SIZE, SIZE).to(torch.uint8).contiguous()
    cfg = only(simclr_config(SIZE), jitter_p=0.0, grayscale_p=0.0)  # blur alone, p = 0.5
    course, torchvision = draw(cfg, image, 1504)
    change_a = (course - image).abs().mean(dim=(1, 2, 3))
    change_b = (torchvision - image).abs().mean(dim=(1, 2, 3))
    assert_same_distribution(change_a, change_b, "blur: mean change")
    # Sigma below ~0.3 leaves a checkerboard unchanged, so the rate of visible change is below p.
    assert 0.3 < (change_a > 0).double().mean() < cfg.blur_p + 0.06


def test_same_full_simclr_distribution():
    cfg = simclr_config(SIZE)
    course, torchvision = draw(cfg, pattern(), 1008)
    for stat_name, stat in {
        "mean intensity": lambda v: v.mean(dim=(1, 2, 3)),
        "colourfulness": lambda v: (v.amax(dim=1) - v.amin(dim=1)).mean(dim=(1, 2)),
        "sharpness": lambda v: (v[..., 1:] - v[..., :-1]).abs().mean(dim=(1, 2, 3)),
    }.items():
        assert_same_distribution(stat(course), stat(torchvision), f"SimCLR views: {stat_name}")


# --------------------------------------------------------------------------- augment's fast path


@pytest.mark.parametrize("channels,size,out", [(3, 32, 32), (1, 28, 28), (3, 40, 24), (3, 32, 64)])
def test_augment_equals_its_public_steps_one_after_another(channels, size, out):
    """augment folds the flip into the crop and works in place; the values must not change."""
    x = torch.randint(0, 256, (24, channels, size, size), dtype=torch.uint8, generator=torch.Generator())
    cfg = simclr_config(out)
    fast = augment(x, cfg, torch.Generator().manual_seed(5))
    g = torch.Generator().manual_seed(5)  # the same draws, in the same order
    ref = random_resized_crop(to_float(x), out, cfg.crop_scale, cfg.crop_ratio, generator=g)
    ref = random_flip(ref, cfg.flip_p, generator=g)
    ref = color_jitter(ref, *cfg.jitter, p=cfg.jitter_p, generator=g)
    ref = random_grayscale(ref, cfg.grayscale_p, generator=g)
    ref = gaussian_blur(ref, cfg.kernel_size, cfg.blur_sigma, cfg.blur_p, generator=g)
    assert torch.equal(fast, ref)


def test_fast_steps_leave_their_inputs_alone():
    x = torch.rand(8, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    before = x.clone()
    for fn in (lambda: color_jitter(x, p=1.0), lambda: gaussian_blur(x, 3, p=1.0), lambda: random_flip(x, 1.0),
               lambda: rgb_to_hsv(x), lambda: hsv_to_rgb(x)):
        fn()
        assert torch.equal(x, before)


# --------------------------------------------------------------------------- the benchmark runs


def test_bench_run_returns_both_pipelines(tmp_path):
    images = bench.cifar_like_images(64, "random")
    cfg = bench.BenchConfig(num_images=64, data="random", batch_size=16, num_workers=(0, 1), threads=(1,),
                            seconds=0.01, repeats=2, warmup=1, width=4)
    table = bench.run(cfg, images=images, progress=None)
    names = [(r.name, r.num_workers) for r in table.rows]
    assert names == [("course", None), ("dataloader", 0), ("dataloader", 1)]
    assert all(r.pipeline > 0 and r.train > 0 and len(r.pipeline_windows) == 2 for r in table.rows)
    assert table.train_threads == 1 and torch.get_num_threads() == 1  # restored
    text = table.markdown()
    assert "course: DeviceLoader + batched augment" in text and "DataLoader + per-image transforms.v2" in text
    assert f"{table.speedup('pipeline'):.1f}x" in text


def test_gpu_check_tiny_runs_the_full_profile_code_on_cpu(tmp_path, monkeypatch):
    spec = importlib.util.spec_from_file_location("gpu_check", ROOT / "scripts" / "gpu_check.py")
    gpu_check = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "gpu_check", gpu_check)  # its dataclasses look themselves up there
    spec.loader.exec_module(gpu_check)
    assert gpu_check.main(["--tiny", "--out", str(tmp_path)]) == 0
    results = json.loads((tmp_path / "gpu_check.json").read_text())
    assert results["mode"] == "tiny" and not results["skipped"]
    assert results["profile"]["backbone"] == "resnet18" and results["profile"]["amp"]
    assert results["throughput"]["eager"]["images_per_s"] > 0
    assert results["simclr"]["course"]["steps"] == 2 and results["simclr"]["dataloader"]["steps"] == 2
    assert "Short SimCLR run" in (tmp_path / "gpu_check.md").read_text()


def test_cli_bench_writes_the_table_and_runs_the_notebooks_on_request(tmp_path, monkeypatch, capsys):
    from course_lib.tools import runner
    from course_lib.tools.cli import main

    rows = [bench.Row("course", None, 1, 1000.0, 50.0, [1000.0], [50.0]),
            bench.Row("dataloader", 2, None, 100.0, 40.0, [100.0], [40.0])]
    seen = {}

    def fake_run(cfg, device="cpu", progress=None):
        seen["cfg"] = cfg
        return bench.BenchTable(rows, cfg, "test machine", train_threads=1)

    def fake_run_course(notebooks=None, profile=None, out_dir=None, html=True):
        seen["course_out"] = out_dir
        seen["cache"] = os.environ.get("COURSE_CACHE")
        return 0

    monkeypatch.setattr(bench, "run", fake_run)
    monkeypatch.setattr(runner, "run_course", fake_run_course)
    assert main(["bench", "--quick", "--workers", "2", "--threads", "1", "--out", str(tmp_path)]) == 0
    assert seen["cfg"].num_workers == (2,) and seen["cfg"].threads == (1,) and seen["cfg"].seconds == bench.QUICK.seconds
    assert "course_out" not in seen  # notebooks only with --notebooks
    text = (tmp_path / "pipeline.md").read_text()
    assert "**10.0x**" in text and "**1.25x**" in text and "10.0x" in capsys.readouterr().out
    monkeypatch.setenv("COURSE_CACHE", str(tmp_path / "usual"))
    stale = tmp_path / "cache" / "checkpoints" / "old.pt"
    stale.parent.mkdir(parents=True)
    stale.write_text("from an earlier run")
    assert main(["bench", "--quick", "--notebooks", "--out", str(tmp_path)]) == 0
    assert seen["course_out"] == tmp_path / "course"
    assert seen["cache"] == str(tmp_path / "cache") and not stale.exists()  # cold: a fresh cache of its own
    monkeypatch.setenv("COURSE_CACHE", str(tmp_path / "usual"))
    assert main(["bench", "--quick", "--notebooks", "--warm", "--out", str(tmp_path)]) == 0
    assert seen["cache"] == str(tmp_path / "usual")  # warm: the usual cache
