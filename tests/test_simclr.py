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
from course_lib.models import ProjectionHead, SmallConvNet
from course_lib.train import Pretrained

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
    head = ProjectionHead(backbone.feature_dim, 16, 8)
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


def test_pretrain_is_deterministic_and_cached(cache):
    data, profile, cfg = image_data(n=32), tiny_profile(), tiny_config()
    pre = S.pretrain(data, profile, cfg, torch.device("cpu"), progress=False)
    assert isinstance(pre, Pretrained) and set(pre.heads) == {"projection"}
    assert isinstance(pre.heads["projection"], ProjectionHead)
    b1, h1 = pre.backbone, pre.history
    assert h1.steps == 2 * 4 and all(math.isfinite(v) for v in h1.losses)  # 2 epochs of 32 // 8 steps
    assert h1.compute() == {"images": 2 * 32, "steps": 8, "seconds": round(h1.seconds, 1)}
    assert not b1.training and not pre.heads["projection"].training, "returned in eval mode"
    for p in list(cache.glob("checkpoints/simclr-*.pt")):  # a second run trains again from scratch ...
        p.unlink()
    pre2 = S.pretrain(data, profile, cfg, torch.device("cpu"), progress=False)
    b2, h2 = pre2.backbone, pre2.history
    assert h1.losses == h2.losses  # ... and gives the same losses and weights (head included)
    for p1, p2 in zip(pre.heads.state_dict().values(), pre2.heads.state_dict().values(), strict=True):
        assert torch.equal(p1, p2)
    for p1, p2 in zip(b1.state_dict().values(), b2.state_dict().values(), strict=True):
        assert torch.equal(p1, p2)
    pre3 = S.pretrain(data, profile, cfg, torch.device("cpu"), progress=False)  # loaded, not trained
    b3, h3 = pre3.backbone, pre3.history
    assert h3.losses == h1.losses and torch.equal(b3.stages[0][0].weight, b1.stages[0][0].weight)
    torch.testing.assert_close(pre3.heads.state_dict(), pre.heads.state_dict())
    assert len(list(cache.glob("checkpoints/simclr-*.pt"))) == 1
    S.pretrain(data, profile, cfg.replace(temperature=0.3), torch.device("cpu"), progress=False)
    assert len(list(cache.glob("checkpoints/simclr-*.pt"))) == 2, "another config, another checkpoint"


def test_pretrain_starts_from_the_random_init_weights_and_moves_them(cache):
    data, profile = image_data(n=32), tiny_profile()
    torch.manual_seed(profile.seed)
    random_init = SmallConvNet(1, width=4)
    pre = S.pretrain(data, profile, tiny_config(num_epochs=1), torch.device("cpu"), progress=False)
    backbone, history = pre.backbone, pre.history
    assert history.steps == 4
    moved = (backbone.stages[0][0].weight - random_init.stages[0][0].weight).abs().max().item()
    assert 0 < moved < 0.1, "trained from the seeded random init, a few small steps"


def test_pretrain_rejects_bad_input_before_training(cache):
    with pytest.raises(ValueError, match="batch_size"):
        S.pretrain(image_data(n=6), tiny_profile(), tiny_config(), progress=False)
    with pytest.raises(TypeError, match="SimCLRConfig"):
        S.pretrain(image_data(), tiny_profile(), {"temperature": 0.5}, progress=False)
    with pytest.raises(TypeError, match="uint8"):
        S.pretrain(torch.zeros(8, 1, 12, 12), tiny_profile(), tiny_config(), progress=False)
    assert not list(cache.glob("checkpoints/*"))


def test_full_profile_runs_a_few_steps_on_cifar_shaped_data(cache):
    """The full profile's config (ResNet-18, channels-last, bf16 on CUDA only) on random (16, 3, 32, 32) uint8."""
    full = get_profile("full")
    cfg = S.config_for(full, batch_size=8, num_epochs=1)  # everything else as the full profile trains
    assert (cfg.view_size, cfg.crop_scale, cfg.blur_p) == (32, (0.08, 1.0), 0.0)
    pre = S.pretrain(image_data(n=16, c=3, size=32, num_classes=10), full, cfg, torch.device("cpu"), progress=False)
    backbone, history = pre.backbone, pre.history
    assert history.steps == 2 and all(math.isfinite(v) for v in history.losses)
    assert backbone.feature_dim == 512 and backbone.channels_last
