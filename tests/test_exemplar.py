"""Behaviour tests for course_lib.exemplar: surrogate classes, views, the loss, the step, the profiles."""

import math

import pytest
import torch
import torch.nn.functional as F
from conftest import make_images
from torch import nn

from course_lib import exemplar
from course_lib.augment import to_float
from course_lib.config import get_profile
from course_lib.loader import DeviceLoader
from course_lib.models import SmallConvNet, build_backbone, count_parameters
from course_lib.train import train

pytestmark = pytest.mark.usefixtures("one_thread")


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def uint8_images(n: int = 16, c: int = 1, size: int = 28, seed: int = 0) -> torch.Tensor:
    return make_images(n, c, size, smooth=True, seed=seed)


# --------------------------------------------------------------------------- exemplars and surrogate classes


def test_sample_exemplars_are_distinct_sorted_in_range_and_seeded():
    ids = exemplar.sample_exemplars(100, 30, seed=1)
    assert ids.shape == (30,) and ids.dtype == torch.int64
    assert len(ids.unique()) == 30 and torch.equal(ids, ids.sort().values)
    assert ids.min() >= 0 and ids.max() < 100
    assert torch.equal(ids, exemplar.sample_exemplars(100, 30, seed=1))
    assert not torch.equal(ids, exemplar.sample_exemplars(100, 30, seed=2))
    assert torch.equal(exemplar.sample_exemplars(5, 5), torch.arange(5))


@pytest.mark.parametrize("num_images, num_exemplars", [(10, 11), (10, 0), (0, 1), (10.0, 5), (10, True)])
def test_sample_exemplars_bad_input_raises(num_images, num_exemplars):
    with pytest.raises(ValueError):
        exemplar.sample_exemplars(num_images, num_exemplars)


def test_targets_are_positions_in_the_exemplar_set_not_dataset_indices():
    ids = torch.tensor([7, 3, 42])
    image_index, targets = exemplar.surrogate_dataset(ids, views_per_exemplar=2)
    assert image_index.tolist() == [7, 7, 3, 3, 42, 42]
    assert targets.tolist() == [0, 0, 1, 1, 2, 2]
    assert targets.dtype == image_index.dtype == torch.int64


@pytest.mark.parametrize("ids, k, error", [
    (torch.tensor([1.0, 2.0]), 2, TypeError),
    (torch.tensor([[1, 2]]), 2, TypeError),
    ([1, 2], 2, TypeError),
    (torch.tensor([1, 2]), 0, ValueError),
    (torch.tensor([1, 2]), 1.5, ValueError),
])
def test_surrogate_dataset_bad_input_raises(ids, k, error):
    with pytest.raises(error):
        exemplar.surrogate_dataset(ids, k)


# --------------------------------------------------------------------------- views


@pytest.mark.parametrize("c, size", [(1, 28), (3, 32)])
def test_views_have_the_input_shape_as_floats_in_unit_range(c, size):
    x = exemplar.make_views(uint8_images(8, c, size), exemplar.ExemplarConfig(), gen())
    assert x.shape == (8, c, size, size) and x.dtype == torch.float32
    assert x.min() >= 0 and x.max() <= 1


def test_views_of_one_exemplar_differ_but_share_its_label():
    images = uint8_images(3)
    image_index, targets = exemplar.surrogate_dataset(torch.tensor([2]), views_per_exemplar=6)
    views = exemplar.make_views(images[image_index], exemplar.ExemplarConfig(), gen())
    assert targets.tolist() == [0] * 6
    distances = torch.cdist(views.flatten(1), views.flatten(1))  # (6, 6)
    assert (distances + torch.eye(6) > 0.5).all(), "every pair of views should differ"


def test_same_seed_same_views_other_seed_other_views():
    images, cfg = uint8_images(8), exemplar.ExemplarConfig()
    a = exemplar.make_views(images, cfg, gen(3))
    assert torch.equal(a, exemplar.make_views(images, cfg, gen(3)))
    assert not torch.allclose(a, exemplar.make_views(images, cfg, gen(4)))


def test_strength_zero_is_the_identity_and_strength_grows_the_change():
    images = uint8_images(32)
    same = exemplar.make_views(images, exemplar.ExemplarConfig(strength=0.0), gen())
    assert torch.allclose(same, to_float(images), atol=1e-5)
    change = [(exemplar.make_views(images, exemplar.ExemplarConfig(strength=s), gen()) - to_float(images)).abs().mean()
              for s in (0.25, 1.0)]
    assert change[0] < change[1]


@pytest.mark.parametrize("bad", [torch.rand(2, 1, 28, 28), torch.zeros(1, 28, 28, dtype=torch.uint8), "images"])
def test_views_need_uint8_batches(bad):
    with pytest.raises(TypeError):
        exemplar.make_views(bad, exemplar.ExemplarConfig())


# --------------------------------------------------------------------------- head and loss


def loop_cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> float:
    """-log softmax, one row at a time, in float64."""
    total = 0.0
    for row, t in zip(logits.double(), targets.tolist(), strict=True):
        total += -(row[t].item() - math.log(sum(math.exp(v) for v in row.tolist())))
    return total / len(targets)


def test_loss_matches_a_loop_reference_and_cross_entropy():
    logits, targets = torch.randn(6, 10, generator=gen()), torch.randint(0, 10, (6,), generator=gen())
    loss = exemplar.exemplar_loss(logits, targets)
    assert loss.item() == pytest.approx(loop_cross_entropy(logits, targets), rel=1e-5)
    assert torch.allclose(loss, F.cross_entropy(logits, targets))


def test_loss_is_log_n_at_chance_and_stable_for_large_logits():
    assert exemplar.exemplar_loss(torch.zeros(4, 2000), torch.arange(4)).item() == pytest.approx(math.log(2000))
    big = torch.tensor([[1000.0, 0.0], [0.0, 1000.0]])
    assert exemplar.exemplar_loss(big, torch.tensor([0, 1])).item() == pytest.approx(0.0)
    assert exemplar.exemplar_loss(big, torch.tensor([1, 1])).item() == pytest.approx(500.0)


def test_loss_bad_shapes_raise():
    with pytest.raises(ValueError, match="logits"):
        exemplar.exemplar_loss(torch.zeros(4, 3), torch.zeros(5, dtype=torch.long))
    with pytest.raises(ValueError, match="logits"):
        exemplar.exemplar_loss(torch.zeros(4), torch.zeros(4, dtype=torch.long))


def test_head_has_one_weight_vector_per_exemplar():
    head = exemplar.make_head(64, exemplar.ExemplarConfig(num_exemplars=500))
    assert head(torch.zeros(3, 64)).shape == (3, 500)
    assert count_parameters(head) == exemplar.head_parameters(64, 500) == 500 * 65


# --------------------------------------------------------------------------- the step and training


def small_setup(n: int = 32, seed: int = 0, cfg: exemplar.ExemplarConfig | None = None):
    torch.manual_seed(seed)
    backbone = SmallConvNet(1, width=8)
    head = exemplar.make_head(backbone.feature_dim, exemplar.ExemplarConfig(num_exemplars=n))
    model = nn.ModuleDict({"backbone": backbone, "head": head})
    cfg = cfg or exemplar.ExemplarConfig(num_exemplars=n)
    step = exemplar.exemplar_step(backbone, head, cfg, gen(seed))
    loader = DeviceLoader(uint8_images(n), batch_size=16, device="cpu", seed=seed)
    return model, step, loader


def test_step_targets_are_the_batch_index_and_the_loss_is_finite():
    model, step, loader = small_setup(cfg=exemplar.ExemplarConfig(num_exemplars=32, strength=0.0))
    batch = next(iter(loader))
    out = step(batch)
    assert torch.isfinite(out["loss"]) and 0 <= out["acc"].item() <= 1
    logits = model["head"](model["backbone"].forward_features(to_float(batch.x)))  # strength 0: views = images
    assert torch.allclose(out["loss"], F.cross_entropy(logits, batch.index), atol=1e-5)


def test_a_loader_over_more_images_than_exemplars_raises():
    torch.manual_seed(0)
    backbone = SmallConvNet(1, width=8)
    head = exemplar.make_head(backbone.feature_dim, exemplar.ExemplarConfig(num_exemplars=8))  # a head for 8 exemplars
    step = exemplar.exemplar_step(backbone, head, exemplar.ExemplarConfig(num_exemplars=8), gen())
    loader = DeviceLoader(uint8_images(32), batch_size=32, device="cpu")  # but a loader over 32 images
    with pytest.raises(ValueError, match="exemplar"):
        step(next(iter(loader)))


def test_training_learns_to_tell_exemplars_apart():
    model, step, loader = small_setup(cfg=exemplar.ExemplarConfig(num_exemplars=32, strength=0.5))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    history = train(model, step, loader, opt, num_epochs=30, progress=False)
    assert sum(history.losses[:4]) / 4 > math.log(32) - 0.3
    assert sum(history.losses[-4:]) / 4 < math.log(32) - 1.0, "the loss should fall clearly below chance"


def test_same_seed_same_training():
    def run():
        model, step, loader = small_setup(seed=5)
        history = train(model, step, loader, torch.optim.AdamW(model.parameters(), 1e-3), 2, progress=False)
        return history.losses, model["head"].fc.weight.detach().clone()

    (losses_a, w_a), (losses_b, w_b) = run(), run()
    assert losses_a == losses_b and torch.equal(w_a, w_b)


# --------------------------------------------------------------------------- configs and profiles


@pytest.mark.parametrize("field, value", [("num_exemplars", 1), ("num_exemplars", 2.5), ("strength", -0.1),
                                          ("strength", 3.0), ("max_degrees", 200), ("num_epochs", 0), ("num_epochs", True),
                                          ("time_budget_s", 0)])
def test_bad_config_raises(field, value):
    with pytest.raises(ValueError, match=field.split("_")[0]):
        exemplar.ExemplarConfig(**{field: value})


def test_config_for_resolves_every_value_from_the_profile():
    fast, grade, full = (get_profile(name) for name in ("fast", "grade", "full"))
    assert exemplar.config_for(fast) == exemplar.ExemplarConfig()  # the defaults are the fast profile's
    assert exemplar.config_for(fast).num_epochs * exemplar.config_for(fast).num_exemplars == fast.num_epochs * 10_000
    assert exemplar.config_for(grade).time_budget_s == grade.time_budget_s
    assert exemplar.config_for(grade).num_exemplars == 10 * grade.max_images_per_class  # N <= the images kept
    full_cfg = exemplar.config_for(full)
    assert full_cfg.time_budget_s is None and full_cfg.num_exemplars > exemplar.config_for(fast).num_exemplars
    assert full_cfg.num_epochs * full_cfg.num_exemplars == pytest.approx(full.num_epochs * 50_000, rel=0.01)
    assert exemplar.config_for(fast, num_exemplars=100).num_exemplars == 100
    assert "None" not in str(exemplar.config_for(fast))  # printed values are the values used
    with pytest.raises(TypeError):
        exemplar.config_for(fast, num_images=500)  # not a knob


def test_pretrain_trains_on_the_exemplars_and_checks_their_number(cache):
    from conftest import make_image_data, tiny_profile

    from course_lib.train import Pretrained

    data = make_image_data(48, num_classes=4, size=16)
    profile = tiny_profile()
    cfg = exemplar.config_for(profile, num_exemplars=32, num_epochs=2, recalibration_batches=1)
    pre = exemplar.pretrain(data, profile, cfg, torch.device("cpu"), progress=False)
    assert isinstance(pre, Pretrained) and pre.history.steps == 4 and pre.history.images == 64
    assert pre.heads["head"].fc.out_features == 32  # the rest of the contract: test_method_contract.py
    with pytest.raises(ValueError, match="num_exemplars=64 but the training set has only 48"):
        exemplar.pretrain(data, profile, cfg.replace(num_exemplars=64), progress=False)


def test_full_profile_runs_a_few_steps_on_cifar_shaped_data():
    profile = get_profile("full")
    images = torch.randint(0, 256, (64, 3, 32, 32), dtype=torch.uint8, generator=gen())
    cfg = exemplar.config_for(profile, num_exemplars=32)
    ids = exemplar.sample_exemplars(len(images), cfg.num_exemplars, profile.seed)
    torch.manual_seed(0)
    backbone = build_backbone(profile, in_channels=3)
    head = exemplar.make_head(backbone.feature_dim, cfg)
    model = nn.ModuleDict({"backbone": backbone, "head": head})
    loader = DeviceLoader(images[ids], batch_size=16, device="cpu")
    opt = torch.optim.AdamW(model.parameters(), lr=profile.lr, weight_decay=profile.weight_decay)
    history = train(model, exemplar.exemplar_step(backbone, head, cfg, gen()), loader, opt, num_epochs=1,
                    amp=profile.amp, progress=False)
    assert history.steps == 2 and all(math.isfinite(v) for v in history.losses)
    assert backbone.feature_dim == 512


def test_view_similarities_are_cosines_and_a_constant_encoder_cannot_tell_images_apart():
    backbone = SmallConvNet(1, width=8).eval()
    same, different = exemplar.view_similarities(backbone, uint8_images(16), exemplar.ExemplarConfig(), gen())
    assert same.shape == different.shape == (16,)
    assert same.abs().max() <= 1 + 1e-5 and different.abs().max() <= 1 + 1e-5
    strength0 = exemplar.ExemplarConfig(strength=0.0)  # identical views: perfectly invariant
    same, different = exemplar.view_similarities(backbone, uint8_images(16), strength0, gen())
    assert torch.allclose(same, torch.ones(16), atol=1e-4) and (different < 0.999).all()
    with pytest.raises(ValueError):
        exemplar.view_similarities(backbone, uint8_images(1), strength0)
