"""Behaviour tests for SimCLR (course_lib.simclr, Chen et al. 2020)."""

import math

import pytest
import torch
import torch.nn.functional as F
from conftest import make_image_data, tiny_profile

from course_lib import simclr as S
from course_lib.config import get_profile
from course_lib.contrastive import nt_xent
from course_lib.datasets import ImageData
from course_lib.loader import Batch
from course_lib.models import MLPHead, SmallConvNet

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def image_data(n: int = 32, c: int = 1, size: int = 12, num_classes: int = 4, seed: int = 0) -> ImageData:
    return make_image_data(n, num_classes, size, channels=c, seed=seed)  # tests/conftest.py


def tiny_config(**changes):
    values = {"batch_size": 8, "num_epochs": 2, "view_size": 10, "hidden_dim": 16, "proj_dim": 8,
              "time_budget_s": None} | changes
    return S.config_for(tiny_profile(), **values)


# ---------------------------------------------------------------- the configuration


@pytest.mark.parametrize("change", [
    {"temperature": 0}, {"temperature": -0.1}, {"temperature": True}, {"batch_size": 1}, {"batch_size": 8.0},
    {"num_epochs": 0}, {"lr": 0}, {"weight_decay": -1e-4}, {"schedule": "linear"}, {"view_size": 4},
    {"crop_scale": (0.5, 0.2)}, {"crop_scale": (0.2, 1.5)}, {"crop_scale": (0.0, 1.0)}, {"crop_scale": 0.5},
    {"color_strength": 3.0}, {"color_p": 1.5}, {"blur_p": -0.1}, {"hidden_dim": 0}, {"proj_dim": 0},
    {"time_budget_s": 0}, {"time_budget_s": -5.0}, {"recalibration_batches": -1},
])
def test_bad_config_raises_when_built(change):
    with pytest.raises(ValueError, match=next(iter(change))):
        S.SimCLRConfig(**change)
    with pytest.raises(ValueError, match=next(iter(change))):
        S.config_for(get_profile("fast"), **change)


def test_config_for_rejects_unknown_settings_and_non_profiles():
    with pytest.raises(TypeError, match="unknown SimCLR setting"):
        S.config_for(get_profile("fast"), temprature=0.2)
    with pytest.raises(TypeError, match="Profile"):
        S.config_for("fast")


def test_config_for_resolves_every_value_when_built():
    fast = S.config_for(get_profile("fast"))
    assert fast == S.SimCLRConfig(**S.SIMCLR_CONFIGS["fast"])
    assert fast.time_budget_s == S.SIMCLR_CONFIGS["fast"]["time_budget_s"]
    grade = S.config_for(get_profile("grade"))  # the grade profile's 5-second budget is the smaller one
    assert grade.time_budget_s == 5.0 and grade.num_epochs == 1
    full = S.config_for(get_profile("full"))  # the paper's CIFAR-10 recipe: colour strength 0.5, no blur
    assert (full.temperature, full.batch_size, full.view_size, full.color_strength, full.blur_p) == (0.5, 512, 32, 0.5, 0.0)
    assert full.time_budget_s is None
    assert S.config_for(get_profile("fast"), temperature=0.3).temperature == 0.3
    assert S.config_for(get_profile("fast"), time_budget_s=None).time_budget_s is None  # an override wins
    assert "temperature" in str(fast) and repr(fast.temperature) in str(fast)  # the printed values are the used ones
    assert S.config_for(get_profile("fast"), crop_scale=[0.3, 1.0]).crop_scale == (0.3, 1.0)


def test_augment_config_follows_the_colour_strength():
    cfg = S.SimCLRConfig(color_strength=0.5, color_p=0.8, view_size=20, crop_scale=(0.3, 1.0), blur_p=0.25)
    aug = cfg.augment_config()
    assert aug.jitter == pytest.approx((0.4, 0.4, 0.4, 0.1)) and aug.jitter_p == 0.8
    assert (aug.size, aug.crop_scale, aug.blur_p) == (20, (0.3, 1.0), 0.25)
    assert S.SimCLRConfig(color_strength=0.0).augment_config().jitter_p == 0.0  # crop alone: no jitter at all


# ---------------------------------------------------------------- views, positive accuracy, step


def test_two_views_shapes_range_and_determinism():
    x = image_data(n=6, c=1, size=12).images
    cfg = S.SimCLRConfig(view_size=10)
    v1, v2 = S.two_views(x, cfg, torch.Generator().manual_seed(0))
    assert v1.shape == v2.shape == (6, 1, 10, 10) and v1.dtype == torch.float32
    assert 0 <= float(v1.min()) and float(v1.max()) <= 1
    assert not torch.equal(v1, v2), "the two views of an image are drawn independently"
    w1, w2 = S.two_views(x, cfg, torch.Generator().manual_seed(0))
    assert torch.equal(v1, w1) and torch.equal(v2, w2), "same generator seed, same views"


def test_positive_accuracy_matches_a_loop():
    g = torch.Generator().manual_seed(1)
    z1, z2 = torch.randn(7, 5, generator=g), torch.randn(7, 5, generator=g)
    z = torch.cat([z1, z2])
    hits = 0
    for i in range(14):
        sims = [F.cosine_similarity(z[i], z[k], dim=0).item() if k != i else -math.inf for k in range(14)]
        hits += max(range(14), key=lambda k: sims[k]) == (i + 7) % 14
    assert S.positive_accuracy(z1, z2).item() == pytest.approx(hits / 14)
    assert S.positive_accuracy(z1, z1 + 1e-3 * z2).item() == 1.0  # each view next to its partner


def test_step_is_nt_xent_of_the_two_views_projections():
    torch.manual_seed(0)
    backbone, cfg = SmallConvNet(1, width=4), S.SimCLRConfig(view_size=10, hidden_dim=16, proj_dim=8)
    head = MLPHead(backbone.feature_dim, 16, 8)
    backbone.eval(), head.eval()  # batch norm in eval mode: the result does not depend on batch composition
    x = image_data(n=6).images
    batch = Batch(x=x, y=torch.full((6,), -1), index=torch.arange(6))
    out = S.simclr_step(backbone, head, cfg, torch.Generator().manual_seed(3))(batch)
    assert set(out) == {"loss", "acc"} and out["loss"].dim() == 0 and 0 <= out["acc"].item() <= 1
    v1, v2 = S.two_views(x, cfg, torch.Generator().manual_seed(3))  # the same views
    z = head(backbone.forward_features(torch.cat([v1, v2])))  # (12, 8)
    assert z.shape == (12, 8)
    torch.testing.assert_close(out["loss"], nt_xent(z[:6], z[6:], cfg.temperature))
    out["loss"].backward()
    assert backbone.stages[0][0].weight.grad is not None, "the loss trains the backbone"


# ---------------------------------------------------------------- training, caching, determinism


def test_warmup_cosine_schedule_rises_then_decays_to_zero():
    cfg = S.SimCLRConfig(lr=0.1)
    assert S._warmup_cosine(cfg.replace(schedule="constant")) is None
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=cfg.lr)
    scheduler = S._warmup_cosine(cfg)(opt, 50)
    lrs = []
    for _ in range(50):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        scheduler.step()
    peak = max(range(50), key=lambda i: lrs[i])
    assert peak == 4 and lrs[peak] == pytest.approx(0.1)  # warm-up over the first 10% of 50 steps, up to cfg.lr
    assert all(a < b for a, b in zip(lrs[:peak], lrs[1:peak + 1], strict=True)), "warm-up rises"
    assert all(a > b for a, b in zip(lrs[peak:-1], lrs[peak + 1:], strict=True)), "then decays"
    assert lrs[-1] < 0.01 * cfg.lr
