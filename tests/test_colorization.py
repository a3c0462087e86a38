"""Behaviour tests for colorization (course_lib.colorization, Zhang, Isola & Efros 2016) and the Lab
conversion it uses (colour.rgb_to_lab / lab_to_rgb, against scikit-image)."""

import math
import warnings

import numpy as np
import pytest
import torch
from conftest import make_image_data, make_images, tiny_profile
from skimage.color import lab2rgb, rgb2lab

from course_lib import colorization as C
from course_lib.colour import lab_to_rgb, rgb_to_lab
from course_lib.config import get_profile
from course_lib.datasets import ImageData
from course_lib.loader import Batch
from course_lib.models import SmallConvNet
from course_lib.train import Pretrained

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def colour_data(n: int = 32, size: int = 16, seed: int = 0) -> ImageData:
    return make_image_data(n, 4, size, channels=3, seed=seed)


def tiny_config(**changes):
    values = dict(batch_size=8, num_epochs=2, hidden_dim=8, crop_size=12, recalibration_batches=2)
    values.update(changes)
    return C.config_for(tiny_profile(), **values)


def to_hwc(x: torch.Tensor) -> np.ndarray:
    return x.permute(0, 2, 3, 1).numpy()


# ---------------------------------------------------------------- Lab against scikit-image


def test_rgb_to_lab_matches_skimage_in_float64_and_float32():
    x = torch.rand(3, 3, 7, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    corners = torch.tensor([[0, 0, 0], [1, 1, 1], [1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 0], [0.5, 0.5, 0.5]],
                           dtype=torch.float64)  # black, white, primaries, yellow, grey
    x[0, :, 0, :] = corners[:5].T
    x[1, :, 0, :] = corners[2:].T
    expected = rgb2lab(to_hwc(x)).transpose(0, 3, 1, 2)
    np.testing.assert_allclose(rgb_to_lab(x).numpy(), expected, rtol=0, atol=1e-10)
    np.testing.assert_allclose(rgb_to_lab(x.float()).numpy(), expected, rtol=0, atol=1e-3)
    lab = rgb_to_lab(corners.T[None, :, :, None])  # (1, 3, 7, 1)
    assert abs(lab[0, 0, 0, 0]) < 1e-9 and abs(lab[0, 0, 1, 0] - 100) < 1e-4  # L of black 0, of white 100
    assert lab[0, 1:, 6, 0].abs().max() < 0.01  # a grey has a = b = 0 (up to the 6-digit matrix: 0.003)


def test_lab_to_rgb_matches_skimage_including_out_of_gamut_values():
    g = torch.Generator().manual_seed(1)
    light = torch.rand(2, 1, 6, 6, dtype=torch.float64, generator=g) * 100
    ab = (torch.rand(2, 2, 6, 6, dtype=torch.float64, generator=g) - 0.5) * 300  # many beyond the sRGB gamut
    lab = torch.cat([light, ab], dim=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # skimage warns about the negative Z it clips
        expected = lab2rgb(to_hwc(lab)).transpose(0, 3, 1, 2)
    got = lab_to_rgb(lab)
    np.testing.assert_allclose(got.numpy(), expected, rtol=0, atol=1e-10)
    assert got.min() >= 0 and got.max() <= 1


def test_lab_round_trip_recovers_the_image():
    x = make_images(4, channels=3, size=9, dtype=torch.float64)
    torch.testing.assert_close(lab_to_rgb(rgb_to_lab(x)), x, rtol=0, atol=1e-9)


def test_lab_conversions_reject_bad_input():
    with pytest.raises(ValueError, match="3 channels"):
        rgb_to_lab(torch.rand(2, 1, 4, 4))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        rgb_to_lab(torch.rand(2, 3, 4, 4) * 2)
    with pytest.raises(TypeError, match="float"):
        rgb_to_lab(torch.zeros(2, 3, 4, 4, dtype=torch.uint8))
    with pytest.raises(ValueError, match="L, a, b"):
        lab_to_rgb(torch.rand(2, 2, 4, 4))


# ---------------------------------------------------------------- quantised ab


def test_ab_bins_are_distinct_grid_points_each_holding_srgb_colours():
    centres = C.ab_bins(10)
    assert centres.shape[1] == 2 and 200 < len(centres) < 313  # the paper's 313 include the gamut's edge
    assert torch.equal(centres, torch.round(centres / 10) * 10), "centres are multiples of the grid size"
    assert len(torch.unique(centres, dim=0)) == len(centres)
    assert (centres == 0).all(1).any(), "grey (a = b = 0) is a bin"
    order = centres[:, 0] * 1000 + centres[:, 1]
    assert torch.equal(order, order.sort().values), "sorted by a, then b"
    # an sRGB sample on another lattice: every bin holds colours, every colour is near a bin
    levels = torch.arange(1, 256, 6, dtype=torch.float64) / 255  # 1, 7, ..., 253: not the bins' own lattice
    cube = torch.stack(torch.meshgrid(levels, levels, levels, indexing="ij")).reshape(1, 3, -1, 1)
    ab = rgb_to_lab(cube)[0, 1:, :, 0].T.float()  # (43^3, 2)
    d = torch.cdist(centres, ab)  # (Q, M)
    assert d.min(1).values.max() <= 5 * math.sqrt(2) + 1e-3, "a bin's cell holds at least one sRGB colour"
    assert d.min(0).values.max() <= 10, "every sRGB colour is within a grid step of a bin centre"
    assert len(C.ab_bins(20)) < len(centres) / 3
    with pytest.raises(ValueError, match="grid_size"):
        C.ab_bins(1)


def test_quantize_ab_is_the_nearest_centre():
    centres = C.ab_bins(10)
    ab = (torch.rand(2, 2, 3, 4, generator=torch.Generator().manual_seed(2)) - 0.5) * 160
    idx = C.quantize_ab(ab, centres)
    assert idx.shape == (2, 3, 4) and idx.dtype == torch.int64
    for b in range(2):
        for i in range(3):
            for j in range(4):
                d = [float((ab[b, :, i, j] - c).pow(2).sum()) for c in centres]
                assert d[int(idx[b, i, j])] == pytest.approx(min(d), abs=1e-3)
    on_centres = centres[:6].T.reshape(1, 2, 2, 3)  # pixels exactly on bin centres 0..5
    assert C.quantize_ab(on_centres, centres).flatten().tolist() == list(range(6))


def test_soft_encode_spreads_each_pixel_over_its_nearest_bins_with_gaussian_weights():
    centres = C.ab_bins(10)
    ab = (torch.rand(2, 2, 2, 3, generator=torch.Generator().manual_seed(3)) - 0.5) * 150
    z = C.soft_encode(ab, centres, neighbours=5, sigma=5.0)
    assert z.shape == (2, len(centres), 2, 3)
    torch.testing.assert_close(z.sum(1), torch.ones(2, 2, 3))
    assert ((z > 0).sum(1) == 5).all()
    for b in range(2):
        for i in range(2):
            for j in range(3):
                d2 = [float((ab[b, :, i, j] - c).pow(2).sum()) for c in centres]
                nearest = sorted(range(len(centres)), key=lambda q: d2[q])[:5]
                w = [math.exp(-d2[q] / (2 * 5.0**2)) for q in nearest]
                for q, wq in zip(nearest, w, strict=True):
                    assert float(z[b, q, i, j]) == pytest.approx(wq / sum(w), abs=1e-5)
    one_hot = C.soft_encode(ab, centres, neighbours=1)
    assert torch.equal(one_hot.argmax(1), C.quantize_ab(ab, centres)) and torch.equal(one_hot.amax(1), torch.ones(2, 2, 3))


def test_quantisation_rejects_bad_input():
    centres = C.ab_bins(10)
    with pytest.raises(ValueError, match=r"\(B, 2, H, W\)"):
        C.quantize_ab(torch.zeros(2, 3, 4, 4), centres)
    with pytest.raises(ValueError, match="centres"):
        C.soft_encode(torch.zeros(2, 2, 4, 4), torch.zeros(5, 3))
    with pytest.raises(ValueError, match="neighbours"):
        C.soft_encode(torch.zeros(1, 2, 2, 2), centres[:3], neighbours=4)


# ---------------------------------------------------------------- class rebalancing


def test_color_prior_matches_a_loop_over_pixels_and_bins():
    images = make_images(3, channels=3, size=8, smooth=True, seed=4)
    centres = C.ab_bins(20)
    prior = C.color_prior(images, centres, sigma=7.0, pool=2)
    ab = rgb2lab(to_hwc(images.double() / 255)).transpose(0, 3, 1, 2)[:, 1:]  # (3, 2, 8, 8)
    ab = ab.reshape(3, 2, 4, 2, 4, 2).mean(axis=(3, 5))  # 2x2 blocks averaged
    counts = [0.0] * len(centres)
    for pixel in ab.transpose(0, 2, 3, 1).reshape(-1, 2):
        counts[int(np.argmin([((pixel - c.numpy()) ** 2).sum() for c in centres]))] += 1
    smooth = [sum(counts[r] * math.exp(-float((centres[q] - centres[r]).pow(2).sum()) / (2 * 7.0**2))
                  for r in range(len(centres))) for q in range(len(centres))]
    expected = torch.tensor([s / sum(smooth) for s in smooth])
    torch.testing.assert_close(prior, expected, rtol=1e-4, atol=1e-6)
    with pytest.raises(TypeError, match="uint8"):
        C.color_prior(images.float() / 255, centres)


def test_rebalance_weights_match_the_papers_equation_and_favour_rare_colours():
    prior = torch.tensor([0.7, 0.2, 0.06, 0.04, 0.0])
    for lam in (0.0 + 1e-9, 0.25, 0.5, 1.0):
        w = C.rebalance_weights(prior, lam)
        raw = [1 / ((1 - lam) * p + lam / 5) for p in prior.tolist()]
        scale = sum(p * r for p, r in zip(prior.tolist(), raw, strict=True))
        torch.testing.assert_close(w, torch.tensor([r / scale for r in raw]), rtol=1e-5, atol=0)
        assert float((prior * w).sum()) == pytest.approx(1.0, abs=1e-5), "weight 1 on expectation"
    w = C.rebalance_weights(prior, 0.5)
    assert all(a < b for a, b in zip(w[:-1], w[1:], strict=True)), "the rarer the colour, the larger its weight"
    assert float(w[-1]) == pytest.approx(5 / 0.5 / float(sum(p / (0.5 * p + 0.1) for p in prior.tolist())), rel=1e-5)
    torch.testing.assert_close(C.rebalance_weights(prior, 1.0), torch.ones(5))  # lambda = 1: no rebalancing
    with pytest.raises(ValueError, match="distribution"):
        C.rebalance_weights(torch.tensor([0.5, 0.6]), 0.5)
    with pytest.raises(ValueError, match="lam"):
        C.rebalance_weights(prior, 1.5)
    with pytest.raises(ValueError, match="lam = 0"):
        C.rebalance_weights(prior, 0)


# ---------------------------------------------------------------- losses and decoding


def test_regression_loss_is_half_the_squared_ab_error_per_pixel():
    g = torch.Generator().manual_seed(5)
    pred, ab = torch.randn(2, 2, 3, 4, generator=g) * 30, torch.randn(2, 2, 3, 4, generator=g) * 30
    ref = sum(0.5 * float(((pred[b, :, i, j] - ab[b, :, i, j]) ** 2).sum())
              for b in range(2) for i in range(3) for j in range(4)) / 24
    assert float(C.regression_loss(pred, ab)) == pytest.approx(ref, rel=1e-5)
    assert float(C.regression_loss(ab, ab)) == 0
    with pytest.raises(ValueError, match="one shape"):
        C.regression_loss(pred, ab[:, :, :2])


@pytest.mark.parametrize("weighted", [False, True])
def test_classification_loss_matches_a_loop_over_pixels(weighted):
    g = torch.Generator().manual_seed(6)
    q = 7
    logits = torch.randn(2, q, 3, 2, generator=g)
    z = torch.softmax(torch.randn(2, q, 3, 2, generator=g) * 3, dim=1)
    weights = torch.rand(q, generator=g) + 0.5 if weighted else None
    total = 0.0
    for b in range(2):
        for i in range(3):
            for j in range(2):
                logp = [float(v) for v in torch.log_softmax(logits[b, :, i, j].double(), 0)]
                v = float(weights[int(z[b, :, i, j].argmax())]) if weighted else 1.0
                total += -v * sum(float(z[b, k, i, j]) * logp[k] for k in range(q))
    assert float(C.classification_loss(logits, z, weights)) == pytest.approx(total / 12, rel=1e-5)
    with pytest.raises(ValueError, match="one shape"):
        C.classification_loss(logits, z[:, :5])
    with pytest.raises(ValueError, match="weights"):
        C.classification_loss(logits, z, torch.ones(q + 1))


def test_annealed_mean_goes_from_the_mean_at_t1_to_the_mode_as_t_goes_to_0():
    centres = C.ab_bins(20)
    logits = torch.randn(2, len(centres), 2, 2, generator=torch.Generator().manual_seed(7)) * 2
    p = torch.softmax(logits, dim=1)
    mean = torch.einsum("bqhw,qc->bchw", p, centres)
    torch.testing.assert_close(C.annealed_mean(logits, centres, 1.0), mean, rtol=1e-5, atol=1e-4)
    mode = centres[logits.argmax(1)].permute(0, 3, 1, 2)  # (B, 2, H, W)
    torch.testing.assert_close(C.annealed_mean(logits, centres, 1e-3), mode, rtol=0, atol=1e-3)
    # T = 0.38 from the formula: f_T(z) = exp(log z / T) / sum exp(log z / T), on probabilities
    f = p.double().log().div(0.38).softmax(dim=1)
    expected = torch.einsum("bqhw,qc->bchw", f, centres.double()).float()
    torch.testing.assert_close(C.annealed_mean(logits, centres, 0.38), expected, rtol=1e-4, atol=1e-3)
    chroma = [float(C.annealed_mean(logits, centres, t).norm(dim=1).mean()) for t in (1.0, 0.38, 0.1)]
    assert chroma[0] < chroma[1] < chroma[2], "lower temperature, more saturated colours here"
    with pytest.raises(ValueError, match="temperature"):
        C.annealed_mean(logits, centres, 0.0)
    with pytest.raises(ValueError, match="centres"):
        C.annealed_mean(logits, centres[:-1], 0.5)


def test_colourfulness_and_chroma_match_their_formulas_and_are_zero_for_grey():
    x = make_images(2, channels=3, size=6, seed=8)
    rgb = x.double().numpy()
    for n in range(2):
        r, g, b = rgb[n]
        rg, yb = (r - g).ravel(), (0.5 * (r + g) - b).ravel()
        ref = math.sqrt(rg.std() ** 2 + yb.std() ** 2) + 0.3 * math.sqrt(rg.mean() ** 2 + yb.mean() ** 2)
        assert float(C.colourfulness(x)[n]) == pytest.approx(ref, rel=1e-5)
        chroma = np.sqrt((rgb2lab(rgb[n].transpose(1, 2, 0) / 255)[..., 1:] ** 2).sum(-1)).mean()
        assert float(C.mean_chroma(x)[n]) == pytest.approx(chroma, rel=1e-3)
    torch.testing.assert_close(C.colourfulness(x.float() / 255), C.colourfulness(x))  # float in [0, 1] alike
    grey = make_images(2, channels=1, size=6).expand(-1, 3, -1, -1)
    assert C.colourfulness(grey).abs().max() < 1e-4 and C.mean_chroma(grey).abs().max() < 1e-2
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        C.colourfulness(make_images(2, channels=1))


# ---------------------------------------------------------------- inputs, crop, step


def test_split_lab_and_lightness_data():
    x = make_images(3, channels=3, size=8, seed=9)
    light, ab = C.split_lab(x)
    lab = rgb_to_lab(x.float() / 255)
    torch.testing.assert_close(light, lab[:, :1] / 100)
    torch.testing.assert_close(ab, lab[:, 1:])
    data = ImageData(x, torch.tensor([0, 1, 0]), ["a", "b"])
    grey = C.lightness_data(data)
    assert grey.images.shape == (3, 1, 8, 8) and grey.images.dtype == torch.uint8
    assert torch.equal(grey.images, (light * 255).round().to(torch.uint8)) and torch.equal(grey.labels, data.labels)
    one_channel = make_image_data(8)
    assert C.lightness_data(one_channel) is one_channel, "grey images are their own L"
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        C.split_lab(make_images(2, channels=1))


@pytest.mark.parametrize("loss", ["classification", "regression"])
def test_step_on_a_tiny_batch_gives_a_finite_loss_and_gradients(loss):
    cfg = tiny_config(loss=loss)
    torch.manual_seed(0)
    backbone = SmallConvNet(1, width=4)
    centres = C.ab_bins(cfg.grid_size) if loss == "classification" else torch.zeros(0, 2)
    weights = torch.ones(len(centres))
    head = C.ColorizationHead(backbone.feature_dim, cfg.hidden_dim, centres, weights)
    x = make_images(4, channels=3, size=16, smooth=True)
    out = C.colorization_step(backbone, head, cfg, torch.Generator().manual_seed(0))(
        Batch(x=x, y=torch.full((4,), -1), index=torch.arange(4)))
    assert set(out) == {"loss", "acc"} and math.isfinite(out["loss"].item()) and 0 <= out["acc"].item() <= 2
    out["loss"].backward()
    assert backbone.stages[0][0].weight.grad.abs().sum() > 0
    maps = backbone.forward_maps(torch.rand(4, 1, 12, 12))[-1]  # (4, 16, 1, 1) for a 12x12 crop
    assert head(maps).shape == (4, len(centres) or 2, 2 * maps.shape[2], 2 * maps.shape[3])


# ---------------------------------------------------------------- config


@pytest.mark.parametrize("change", [dict(loss="l1"), dict(grid_size=1), dict(soft_neighbours=0),
                                    dict(soft_sigma=0.0), dict(rebalance_lambda=1.5), dict(temperature=0.0),
                                    dict(crop_size=4), dict(flip_p=2.0), dict(pretrain_dataset="imagenet"),
                                    dict(num_epochs=0), dict(time_budget_s=-1.0), dict(recalibration_batches=-1)])
def test_bad_config_raises_when_built(change):
    field = next(iter(change))
    with pytest.raises(ValueError, match=field if field != "grid_size" else "grid_size"):
        C.ColorizationConfig(**change)


def test_config_for_resolves_every_value_and_rejects_unknown_settings():
    fast = C.config_for(get_profile("fast"))
    assert (fast.loss, fast.grid_size, fast.soft_neighbours, fast.rebalance_lambda, fast.temperature) == \
        ("classification", 10, 5, 0.5, 0.38)  # the paper's values
    assert fast.pretrain_dataset == "photos" and fast.time_budget_s is not None
    grade = C.config_for(get_profile("grade"))
    assert grade.time_budget_s == 5.0 and grade.num_epochs == 1  # the profile's smaller budget wins
    full = C.config_for(get_profile("full"))
    assert full.pretrain_dataset == "cifar10" and full.time_budget_s is None
    assert C.config_for(get_profile("fast"), loss="regression", time_budget_s=None).time_budget_s is None
    with pytest.raises(TypeError, match="unknown colorization setting"):
        C.config_for(get_profile("fast"), colour=True)
    with pytest.raises(TypeError, match="Profile"):
        C.config_for("fast")


# ---------------------------------------------------------------- pretrain


def test_pretrain_measures_the_colour_prior_and_reads_l_alone(cache):
    data, profile, cfg = colour_data(), tiny_profile(), tiny_config()
    pre = C.pretrain(data, profile, cfg, torch.device("cpu"), progress=False)  # the rest: test_method_contract.py
    assert isinstance(pre, Pretrained) and set(pre.heads) == {"colour"}
    head = pre.heads["colour"]
    assert head.classification and torch.equal(head.centres, C.ab_bins(10))
    assert float((C.color_prior(data.images, head.centres) * head.class_weights).sum()) == pytest.approx(1, abs=1e-4)
    assert pre.backbone.in_channels == 1, "the encoder reads L alone"
    assert pre.history.steps == 2 * 4
    reg = C.pretrain(data, profile, cfg.replace(loss="regression"), torch.device("cpu"), progress=False)
    assert not reg.heads["colour"].classification
    assert len(list(cache.glob("checkpoints/colorization-*.pt"))) == 2, "another loss, another checkpoint"
    rgb = C.colorize(reg.backbone, reg.heads["colour"], data.images[:3])
    assert rgb.shape == (3, 3, 16, 16) and 0 <= rgb.min() and rgb.max() <= 1


def test_pretrain_rejects_grey_images_small_sets_and_large_crops_before_training(cache):
    with pytest.raises(TypeError, match="colour uint8"):
        C.pretrain(make_image_data(32), tiny_profile(), tiny_config(), progress=False)  # grey images
    with pytest.raises(ValueError, match="batch_size"):
        C.pretrain(colour_data(n=6), tiny_profile(), tiny_config(), progress=False)
    with pytest.raises(ValueError, match="crop_size"):
        C.pretrain(colour_data(size=10), tiny_profile(), tiny_config(), progress=False)
    assert not list(cache.glob("checkpoints/*"))


def test_full_profile_config_runs_a_few_steps_on_cifar_shaped_data(cache):
    """The full profile's config (ResNet-18 reading L, channels-last, 28-pixel crops) on random colour 32x32 images."""
    full = get_profile("full")
    cfg = C.config_for(full, batch_size=8, num_epochs=1, recalibration_batches=1)  # all else as the full profile
    assert (cfg.pretrain_dataset, cfg.crop_size, cfg.hidden_dim) == ("cifar10", 28, 256)
    pre = C.pretrain(colour_data(n=16, size=32), full, cfg, torch.device("cpu"), progress=False)
    assert pre.history.steps == 2 and all(math.isfinite(v) for v in pre.history.losses)
    assert pre.backbone.feature_dim == 512 and pre.backbone.in_channels == 1 and pre.backbone.channels_last
    assert C.colorize(pre.backbone, pre.heads["colour"], colour_data(n=2, size=32).images).shape == (2, 3, 32, 32)


def test_quantize_ab_in_chunks_equals_image_by_image():
    centres = C.ab_bins(10)
    ab = (torch.rand(300, 2, 16, 16, generator=torch.Generator().manual_seed(11)) - 0.5) * 150  # > 16M distances
    idx = C.quantize_ab(ab, centres)
    assert torch.equal(idx[[0, 150, 299]], torch.cat([C.quantize_ab(ab[i:i + 1], centres) for i in (0, 150, 299)]))
    assert C.quantize_ab(ab[:0], centres).shape == (0, 16, 16)


def test_plot_ab_bins_draws_one_panel_per_value_and_checks_shapes():
    import matplotlib.pyplot as plt

    from course_lib.plots import plot_ab_bins

    centres = C.ab_bins(20)
    fig = plot_ab_bins(centres, {"p": torch.rand(len(centres)), "w": torch.rand(len(centres))}, log=["p"])
    assert len([ax for ax in fig.axes if ax.get_label() != "<colorbar>"]) == 3
    plt.close(fig)
    with pytest.raises(ValueError, match="values"):
        plot_ab_bins(centres, {"p": torch.rand(3)})
