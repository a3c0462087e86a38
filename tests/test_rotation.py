"""Behaviour tests for the rotation pretext task (course_lib.rotation, Gidaris et al. 2018)."""

import math

import pytest
import torch
from conftest import make_image_data, tiny_profile
from torch import nn

from course_lib import rotation as R
from course_lib.config import get_profile
from course_lib.datasets import ImageData
from course_lib.loader import Batch
from course_lib.models import SmallConvNet
from course_lib.train import recalibrate_batchnorm, train

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def uint8_images(n: int, c: int = 1, size: int = 12, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, 256, (n, c, size, size), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))


def image_data(n: int = 40, c: int = 1, size: int = 12, num_classes: int = 4, seed: int = 0) -> ImageData:
    return make_image_data(n, num_classes, size, c, seed)


# ---------------------------------------------------------------- inputs and targets


@pytest.mark.parametrize("dtype", [torch.uint8, torch.float32])
def test_rotate_batch_matches_a_loop_over_torch_rot90(dtype):
    x = uint8_images(5, c=3, size=7).to(dtype)
    x_rot, k = R.rotate_batch(x)
    assert x_rot.shape == (20, 3, 7, 7) and x_rot.dtype == dtype
    assert k.dtype == torch.int64 and k.tolist() == [0] * 5 + [1] * 5 + [2] * 5 + [3] * 5
    for j in range(20):
        expected = torch.rot90(x[j % 5], int(k[j]), dims=(1, 2))  # one image, rotated alone
        torch.testing.assert_close(x_rot[j], expected, rtol=0, atol=0)


def test_every_image_appears_in_all_four_rotations_and_rotating_back_recovers_it():
    x = uint8_images(6)
    x_rot, k = R.rotate_batch(x)
    for r in range(4):
        assert (k[r * 6:(r + 1) * 6] == r).all()
        back = torch.rot90(x_rot[r * 6:(r + 1) * 6], -r, dims=(2, 3))
        assert torch.equal(back, x)
    # a quarter turn counter-clockwise moves the top-left pixel to the bottom-left
    marker = torch.zeros(1, 1, 3, 3)
    marker[0, 0, 0, 0] = 1
    assert R.rotate_batch(marker)[0][1, 0, 2, 0] == 1


def test_make_rotation_inputs_all_rotations_converts_uint8_and_flips_before_rotating():
    x = uint8_images(4)
    cfg = R.RotationConfig(flip_p=1.0)
    x_rot, k = R.make_rotation_inputs(x, cfg)
    assert x_rot.dtype == torch.float32 and x_rot.shape == (16, 1, 12, 12)
    expected, expected_k = R.rotate_batch(x.flip(dims=(3,)).float() / 255)
    torch.testing.assert_close(x_rot, expected)
    assert torch.equal(k, expected_k)


def test_make_rotation_inputs_one_random_rotation_per_image():
    x = uint8_images(64)
    g = torch.Generator().manual_seed(3)
    x_rot, k = R.make_rotation_inputs(x, R.RotationConfig(all_rotations=False, flip_p=0.0), g)
    assert x_rot.shape == (64, 1, 12, 12) and k.shape == (64,)
    assert set(k.tolist()) == {0, 1, 2, 3}  # 64 draws: every rotation occurs
    for i in range(64):
        torch.testing.assert_close(x_rot[i], torch.rot90(x[i].float() / 255, int(k[i]), dims=(1, 2)))


@pytest.mark.parametrize("fn", [R.rotate_batch, lambda x: R.make_rotation_inputs(x, R.RotationConfig())])
def test_bad_input_raises(fn):
    with pytest.raises(ValueError, match="square"):
        fn(torch.zeros(2, 1, 8, 9))
    with pytest.raises(ValueError, match="4-D"):
        fn(torch.zeros(1, 8, 8))
    with pytest.raises(TypeError):
        fn([[0.0]])


@pytest.mark.parametrize("change", [{"batch_size": 0}, {"head_hidden_dim": -1}, {"flip_p": 1.5},
                                    {"num_epochs": 0}, {"time_budget_s": 0.0}])
def test_bad_config_raises(change):
    with pytest.raises(ValueError):
        R.RotationConfig(**change)


def test_config_for_resolves_every_value_from_the_profile():
    fast, grade, full = (get_profile(n) for n in ("fast", "grade", "full"))
    assert R.config_for(fast).time_budget_s == 80.0 and R.config_for(fast).num_epochs == 1
    assert R.config_for(grade).time_budget_s == grade.time_budget_s  # the profile's smaller budget
    cfg = R.config_for(full)
    assert cfg.time_budget_s is None and cfg.num_epochs == full.num_epochs
    assert cfg.batch_size * 4 == full.batch_size  # a step sees the profile's batch_size rotated images
    assert R.config_for(full, all_rotations=False).batch_size == full.batch_size
    assert R.config_for(fast, batch_size=7).batch_size == 7
    assert "None" not in str(R.config_for(fast))  # printed values are the values used
    with pytest.raises(ValueError, match="flip_p"):
        R.config_for(fast, flip_p=2.0)
    with pytest.raises(TypeError):
        R.config_for(fast, no_such_knob=1)


# ---------------------------------------------------------------- head, loss, step


def test_loss_of_uniform_logits_is_log_4_and_head_shapes():
    assert R.rotation_loss(torch.zeros(10, 4), torch.arange(10) % 4).item() == pytest.approx(math.log(4))
    for hidden in (0, 16):
        head = R.make_head(8, R.RotationConfig(head_hidden_dim=hidden)).eval()
        assert head(torch.randn(5, 8)).shape == (5, 4)


def test_step_returns_a_finite_loss_and_trains_the_backbone():
    torch.manual_seed(0)
    backbone, head = SmallConvNet(1, width=4), R.make_head(16, R.RotationConfig())
    step = R.rotation_step(backbone, head, R.RotationConfig(), torch.Generator().manual_seed(0))
    x = uint8_images(8)
    out = step(Batch(x=x, y=torch.full((8,), -1), index=torch.arange(8)))
    assert out["loss"].ndim == 0 and torch.isfinite(out["loss"])
    assert 0 <= out["acc"].item() <= 1
    out["loss"].backward()
    assert all(p.grad is not None for p in backbone.parameters())


def test_training_on_marked_images_learns_the_rotation():
    """Images with a bright top-left corner: rotation is easy, so the loss must fall far below log 4."""
    x = uint8_images(64, size=12) // 4
    x[:, :, :4, :4] = 255
    torch.manual_seed(0)
    backbone, head = SmallConvNet(1, width=4), R.make_head(16, R.RotationConfig())
    step = R.rotation_step(backbone, head, R.RotationConfig(flip_p=0.0))
    batches = [Batch(x=x[i:i + 16], y=torch.zeros(16), index=torch.arange(16)) for i in range(0, 64, 16)]
    opt = torch.optim.Adam([*backbone.parameters(), *head.parameters()], lr=1e-2)
    history = train([backbone, head], step, batches, opt, num_epochs=10, progress=False)
    assert history.losses[0] > 1.0 and history.losses[-1] < 0.3


def test_recalibrate_batchnorm_replaces_stale_statistics_with_the_batches_average():
    torch.manual_seed(0)
    backbone, head = SmallConvNet(1, width=4), R.make_head(16, R.RotationConfig(head_hidden_dim=8))
    backbone.eval()
    x = uint8_images(8)
    batches = [Batch(x=x, y=torch.zeros(8), index=torch.arange(8))]  # one batch, reused
    bn = backbone.stages[0][1]
    bn.running_mean.fill_(100.0)  # stale
    cfg = R.RotationConfig(flip_p=0.0)
    recalibrate_batchnorm([backbone, head], lambda b: head(backbone.forward_features(R.make_rotation_inputs(b.x, cfg)[0])),
                          batches, num_batches=3)
    x_rot, _ = R.rotate_batch(x.float() / 255)
    with torch.no_grad():
        expected = backbone.stages[0][0](x_rot).mean(dim=(0, 2, 3))  # the first conv's output, per channel
    torch.testing.assert_close(bn.running_mean, expected)
    assert bn.momentum == 0.1 and not backbone.training and head.training  # restored
    assert head.net[1].num_batches_tracked == 3


class CornerOracle(nn.Module):
    """Knows where the marked corner goes: h = the four corner pixels, ordered by the rotation that puts
    the top-left corner there (0: top-left, 1: bottom-left, 2: bottom-right, 3: top-right)."""

    feature_dim = 4

    def __init__(self):
        super().__init__()
        self.dummy = nn.Parameter(torch.zeros(()))  # so that the oracle has a device

    def forward_features(self, x):
        return torch.stack([x[:, 0, 0, 0], x[:, 0, -1, 0], x[:, 0, -1, -1], x[:, 0, 0, -1]], dim=1)  # (B, 4)


def test_a_rotation_oracle_scores_one_on_every_class():
    x = torch.zeros(30, 1, 8, 8, dtype=torch.uint8)
    x[:, :, 0, 0] = 255
    labels = torch.arange(30) % 3
    oracle, head = CornerOracle(), nn.Identity()
    pred = R.predict_rotations(oracle, head, x, batch_size=7)  # batches of 7: the column order must survive
    assert pred.shape == (30, 4)
    assert torch.equal(pred, torch.arange(4).expand(30, 4))
    k = torch.arange(4).expand_as(pred)
    acc = R.per_class_rotation_accuracy(pred, k, labels[:, None].expand_as(pred), 3)
    assert acc.tolist() == [1.0, 1.0, 1.0]
    assert torch.equal(R.rotation_confusion(pred, k), 30 * torch.eye(4, dtype=torch.long))


# ---------------------------------------------------------------- per-class accuracy


def test_per_class_accuracy_matches_a_loop_and_gives_nan_for_empty_classes():
    g = torch.Generator().manual_seed(0)
    pred, k = torch.randint(0, 4, (200,), generator=g), torch.randint(0, 4, (200,), generator=g)
    labels = torch.randint(0, 4, (200,), generator=g)  # class 4 of 5 never occurs
    acc = R.per_class_rotation_accuracy(pred, k, labels, 5)
    for c in range(4):
        m = labels == c
        assert acc[c].item() == pytest.approx((pred[m] == k[m]).float().mean().item())
    assert math.isnan(acc[4].item())


def test_per_class_accuracy_rejects_bad_input():
    p = torch.zeros(4, dtype=torch.long)
    with pytest.raises(ValueError, match="one shape"):
        R.per_class_rotation_accuracy(p, p, torch.zeros(3, dtype=torch.long), 2)
    with pytest.raises(ValueError, match="labels must be in"):
        R.per_class_rotation_accuracy(p, p, p + 2, 2)
    with pytest.raises(TypeError):
        R.per_class_rotation_accuracy(p.float(), p, p, 2)


# ---------------------------------------------------------------- training, caching, determinism


def test_pretrain_draws_batch_size_images_and_shows_each_in_four_rotations(cache):
    data, profile = image_data(), tiny_profile()
    pre = R.pretrain(data, profile, R.config_for(profile, batch_size=8), torch.device("cpu"), progress=False)
    assert set(pre.heads) == {"head"} and pre.history.steps == 5 and pre.history.images == 40  # the rest:
    #                                                                            test_method_contract.py


def test_pretrain_rejects_non_square_images_before_training(cache):
    data = ImageData(torch.zeros(8, 1, 12, 10, dtype=torch.uint8), torch.zeros(8, dtype=torch.long), ["a"])
    with pytest.raises(ValueError, match="square"):
        R.pretrain(data, tiny_profile(), progress=False)
    assert not list(cache.glob("checkpoints/*"))


def test_full_profile_predicts_rotations_with_a_resnet18(cache):
    full = get_profile("full")
    data = image_data(n=8, c=3, size=32, num_classes=4)  # 2 steps of 4 images = 16 rotated images each
    cfg = R.config_for(full, batch_size=4, num_epochs=1, time_budget_s=None, recalibration_batches=1)
    pre = R.pretrain(data, full, cfg, torch.device("cpu"), progress=False)
    assert R.predict_rotations(pre.backbone, pre.heads["head"], data.images[:3]).shape == (3, 4)


# ---------------------------------------------------------------- the bar chart notebook 03 draws (plots.plot_bars)


def test_plot_bars_draws_one_bar_per_value_and_checks_lengths():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from course_lib.plots import plot_bars

    fig = plot_bars({"a": [0.5, 0.25, 1.0], "b": [0.1, 0.2, 0.3]}, ["x", "y", "z"], chance=0.25)
    bars = fig.axes[0].patches
    assert len(bars) == 6
    assert [round(b.get_height(), 6) for b in bars[:3]] == [50.0, 25.0, 100.0]  # percent
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == ["x", "y", "z"]
    plt.close(fig)
    with pytest.raises(ValueError, match="categories"):
        plot_bars({"a": [1.0, 2.0]}, ["x", "y", "z"])
