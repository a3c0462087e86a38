"""Behaviour tests for the relative-position pretext task (course_lib.patch_position)."""

import math

import pytest
import torch
from conftest import make_images

from course_lib import patch_position as pp
from course_lib.config import get_profile
from course_lib.loader import DeviceLoader
from course_lib.models import build_backbone
from course_lib.train import train

pytestmark = pytest.mark.usefixtures("one_thread")


def images(n: int = 16, size: int = 28, channels: int = 1, seed: int = 0) -> torch.Tensor:
    return make_images(n, channels, size, seed=seed)


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# ---------------------------------------------------------------- the 8 positions


def test_offsets_per_label_are_the_eight_neighbour_cells_in_reading_order():
    patch, gap = 10, 3
    offsets = pp.neighbour_offsets(patch, gap)
    assert offsets.shape == (8, 2) and offsets.dtype == torch.long
    expected = [(dr * (patch + gap), dc * (patch + gap))
                for dr in (-1, 0, 1) for dc in (-1, 0, 1) if (dr, dc) != (0, 0)]  # reading order, centre skipped
    assert offsets.tolist() == [list(e) for e in expected]


def test_lecture_numbering_patch_4_left_of_the_centre_is_label_3():
    assert [pp.label_to_cell(k) for k in range(8)] == [1, 2, 3, 4, 6, 7, 8, 9]
    assert pp.NEIGHBOURS[3] == (0, -1)  # "X = (patch 5, patch 4); Y = 3": cell 4 is left of cell 5
    with pytest.raises(ValueError, match="0..7"):
        pp.label_to_cell(8)


# ---------------------------------------------------------------- cutting patches


def test_without_jitter_the_patches_are_the_slices_computed_by_hand():
    cfg = pp.PatchPositionConfig(image_size=28, patch_size=8, gap=2, jitter=0)  # grid 3*8 + 2*2 = 28: no room to move
    x = images(8)
    labels = torch.arange(8)
    pairs = pp.make_pairs(x, cfg, gen(), labels=labels)
    xf = x.float() / 255
    for i in range(8):
        dr, dc = pp.NEIGHBOURS[i]
        r, c = 10 + 10 * dr, 10 + 10 * dc  # centre cell starts at 8 + 2 = 10
        assert torch.equal(pairs.centre[i], xf[i, :, 10:18, 10:18])
        assert torch.equal(pairs.neighbour[i], xf[i, :, r:r + 8, c:c + 8])


def test_cut_patches_matches_a_loop_over_samples():
    x = torch.rand(6, 3, 20, 20, generator=gen(1))
    corners = torch.randint(0, 13, (6, 2), generator=gen(2))
    out = pp.cut_patches(x, corners, 7)
    assert out.shape == (6, 3, 7, 7)
    for i, (r, c) in enumerate(corners.tolist()):
        assert torch.equal(out[i], x[i, :, r:r + 7, c:c + 7])
    with pytest.raises(ValueError, match="outside"):
        pp.cut_patches(x, torch.tensor([[0, 14]] * 6), 7)


def test_gap_and_jitter_keep_patches_apart_and_inside_the_image():
    cfg = pp.PatchPositionConfig(image_size=56, patch_size=14, gap=4, jitter=2)
    labels = torch.randint(0, 8, (2000,), generator=gen(3))
    centre, neighbour = pp.sample_corners(labels, cfg, 56, gen(4))
    for corner in (centre, neighbour):
        assert corner.min() >= 0 and corner.max() <= 56 - 14
    step = torch.tensor(pp.NEIGHBOURS)[labels]  # (B, 2) cell steps
    d = neighbour - centre  # (B, 2) corner distance
    # Along an axis where the cells differ, the empty space between the two patches is gap +- 2*jitter.
    between = d.abs() - cfg.patch_size
    moved = step != 0
    assert between[moved].min() >= cfg.gap - 2 * cfg.jitter
    assert between[moved].max() <= cfg.gap + 2 * cfg.jitter
    assert between[moved].min() == cfg.gap - 2 * cfg.jitter  # the extremes do occur over 2000 draws
    assert (d[~moved].abs() <= 2 * cfg.jitter).all()  # same row/column: only the jitter separates them
    assert (torch.sign(d[moved]) == step[moved]).all()  # the neighbour is on the labelled side


def test_without_jitter_the_gap_is_exact():
    cfg = pp.PatchPositionConfig(image_size=48, patch_size=12, gap=5, jitter=0)
    labels = torch.randint(0, 8, (500,), generator=gen(5))
    centre, neighbour = pp.sample_corners(labels, cfg, 48, gen(6))
    assert torch.equal(neighbour - centre, pp.neighbour_offsets(12, 5)[labels])


def test_labels_are_uniform_over_the_eight_positions():
    cfg = pp.PatchPositionConfig(image_size=28, patch_size=8, gap=1, jitter=0)
    pairs = pp.make_pairs(images(4000, seed=7), cfg, gen(8))
    counts = torch.bincount(pairs.label, minlength=8).float()
    assert counts.sum() == 4000
    assert (counts - 500).abs().max() < 75  # ~3.5 standard deviations of a binomial(4000, 1/8)


def test_shapes_dtypes_and_resize():
    cfg = pp.PatchPositionConfig(image_size=40, patch_size=10, gap=3, jitter=2)
    pairs = pp.make_pairs(images(5, size=32, channels=3), cfg, gen())
    assert pairs.centre.shape == pairs.neighbour.shape == (5, 3, 10, 10)
    assert pairs.centre.dtype == torch.float32 and 0 <= pairs.centre.min() and pairs.centre.max() <= 1
    assert pairs.label.shape == (5,) and pairs.label.dtype == torch.long
    assert pairs.centre_corner.shape == pairs.neighbour_corner.shape == (5, 2)


def test_same_seed_same_pairs_other_seed_other_pairs():
    cfg = pp.PatchPositionConfig()
    x = images(32)
    a, b, c = (pp.make_pairs(x, cfg, gen(s)) for s in (0, 0, 1))
    assert all(torch.equal(u, v) for u, v in zip(a, b, strict=True))
    assert not torch.equal(a.neighbour_corner, c.neighbour_corner)


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize("changes", [
    {"image_size": 28},  # 3*8 + 2*2 + 2*2 = 32 > 28
    {"image_size": 31},
    {"image_size": 56, "patch_size": 14, "gap": 4, "jitter": 4},  # 58 > 56
    {"patch_size": 6},
    {"gap": -1},
    {"jitter": 1.5},
])
def test_bad_config_raises_before_any_work(changes):
    with pytest.raises(ValueError):  # when the config is built, before any work
        pp.PatchPositionConfig(**changes)
    with pytest.raises(ValueError):
        pp.config_for(get_profile("fast"), **changes)


def test_too_small_image_message_names_the_needed_size():
    with pytest.raises(ValueError, match="need >= .* = 32 px"):
        pp.PatchPositionConfig(image_size=30)
    with pytest.raises(ValueError, match="too small"):
        pp.PatchPositionConfig(image_size=28)  # the default grid does not fit a raw 28-px image


def test_bad_images_and_labels_raise():
    cfg = pp.PatchPositionConfig()
    with pytest.raises(TypeError):
        pp.make_pairs(torch.zeros(28, 28, dtype=torch.uint8), cfg)
    with pytest.raises(ValueError, match="0..7"):
        pp.make_pairs(images(2), cfg, labels=torch.tensor([0, 8]))


# ---------------------------------------------------------------- head, step, training


def test_step_returns_a_finite_loss_and_trains_backbone_and_head():
    profile = get_profile("fast", width=8)
    cfg = pp.PatchPositionConfig()
    torch.manual_seed(0)
    backbone = build_backbone(profile, 1)
    head = pp.PairHead(backbone.feature_dim, 16)
    step = pp.patch_position_step(backbone, head, cfg, gen())
    batch = next(iter(DeviceLoader(images(16), batch_size=16, device="cpu")))
    out = step(batch)
    assert out["loss"].dim() == 0 and math.isfinite(out["loss"].item())
    assert 0 <= out["acc"].item() <= 1
    out["loss"].backward()
    assert backbone.stages[0][0].weight.grad.abs().sum() > 0
    assert head.mlp.net[0].weight.grad.abs().sum() > 0


def test_pair_head_sees_the_order_of_the_two_patches():
    head = pp.PairHead(4, 8).eval()
    a, b = torch.randn(3, 4), torch.randn(3, 4)
    assert head(a, b).shape == (3, 8)
    assert not torch.allclose(head(a, b), head(b, a))  # (centre, neighbour) is not (neighbour, centre)


def test_training_is_deterministic_and_pretext_accuracy_is_a_fraction():
    profile = get_profile("fast", width=8)
    cfg = pp.PatchPositionConfig()

    def run():
        torch.manual_seed(0)
        backbone = build_backbone(profile, 1)
        head = pp.PairHead(backbone.feature_dim, 16)
        loader = DeviceLoader(images(64), batch_size=32, device="cpu", seed=0)
        opt = torch.optim.AdamW([*backbone.parameters(), *head.parameters()], lr=1e-3)
        history = train([backbone, head], pp.patch_position_step(backbone, head, cfg, gen()), loader, opt, 2,
                        progress=False)
        return history, pp.pretext_accuracy(backbone, head, images(40, seed=9), cfg, batch_size=16)

    (h1, acc1), (h2, acc2) = run(), run()
    assert h1.steps == 4 and h1.losses == h2.losses
    assert acc1 == acc2 and 0 <= acc1 <= 1


def test_full_profile_runs_a_few_steps_of_resnet18_on_generated_colour_images():
    profile = get_profile("full")
    cfg = pp.config_for(profile)
    torch.manual_seed(0)
    backbone = build_backbone(profile, 3)
    head = pp.PairHead(backbone.feature_dim, cfg.hidden_dim)
    loader = DeviceLoader(images(8, size=32, channels=3), batch_size=4, device="cpu")
    opt = torch.optim.AdamW([*backbone.parameters(), *head.parameters()], lr=profile.lr)
    history = train([backbone, head], pp.patch_position_step(backbone, head, cfg, gen()), loader, opt, 1,
                    progress=False)
    assert history.steps == 2 and all(math.isfinite(v) for v in history.losses)
    h = backbone.forward_features(torch.rand(2, 3, 32, 32))  # the probe sees whole 32x32 images
    assert h.shape == (2, 512)


# ---------------------------------------------------------------- the exercise reference, figure, caching


def test_cut_pair_matches_the_batched_cut_and_rejects_a_grid_outside_the_image():
    x = torch.rand(3, 30, 33, generator=gen(10))
    for label in range(8):
        centre, neighbour = pp.cut_pair(x, label, 0, 3, 8, 3)
        dr, dc = pp.NEIGHBOURS[label]
        assert torch.equal(centre, x[:, 11:19, 14:22])
        assert torch.equal(neighbour, x[:, 11 + 11 * dr:19 + 11 * dr, 14 + 11 * dc:22 + 11 * dc])
    for top, left in [(1, 0), (0, 4), (-1, 0)]:
        with pytest.raises(ValueError, match="does not fit"):
            pp.cut_pair(x, 0, top, left, 8, 3)


def test_configs_of_every_profile_are_resolved_and_fit_their_images():
    for name, size in [("fast", 32), ("grade", 32), ("full", 32)]:
        profile = get_profile(name)
        cfg = pp.config_for(profile)
        assert cfg.image_size == size and cfg.grid_size <= size
        assert cfg.num_epochs == profile.num_epochs and cfg.time_budget_s == profile.time_budget_s
    assert pp.config_for(get_profile("full", dataset="stl10")).image_size == 96
    assert pp.config_for(get_profile("fast"), gap=0, jitter=0, image_size=24).grid_size == 24
    with pytest.raises(TypeError):
        pp.config_for(get_profile("fast"), no_such_knob=1)


def test_pretrain_keys_its_checkpoint_by_the_patch_geometry(tmp_path, monkeypatch):
    from course_lib.datasets import ImageData
    monkeypatch.setenv("COURSE_CACHE", str(tmp_path))
    data = ImageData(images(64), torch.zeros(64, dtype=torch.long), ["x"])
    profile = get_profile("fast", width=8, batch_size=32, num_epochs=1)
    cfg = pp.config_for(profile, hidden_dim=16, recalibration_batches=2)
    pre = pp.pretrain(data, profile, cfg, "cpu", progress=False)
    b1, h1 = pre.backbone, pre.history
    assert len(list(tmp_path.rglob("patch_position-*.pt"))) == 1 and h1.steps == 2  # the rest of the contract:
    pp.pretrain(data, profile, cfg.replace(gap=0, jitter=0, image_size=24), "cpu", progress=False)  # test_method_
    assert len(list(tmp_path.rglob("patch_position-*.pt"))) == 2  # a changed knob is a new checkpoint (contract.py)
    assert b1.feature_dim == 32
