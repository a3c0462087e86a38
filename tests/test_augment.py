"""Behaviour tests for course_lib.augment: ranges, seeds, exact references, torchvision parity."""

import math

import pytest
import torch
import torchvision.transforms.v2.functional as TF
from conftest import make_images

from course_lib import augment as aug
from course_lib.augment import (
    AugmentConfig,
    augment,
    color_jitter,
    crop_and_resize,
    crop_at,
    gaussian_blur,
    random_crop,
    random_flip,
    random_grayscale,
    random_resized_crop,
    random_rotate90,
    rgb_to_grayscale,
    rotate90,
    sample_crop_boxes,
    simclr_config,
    to_float,
)
from course_lib.colour import hsv_to_rgb, rgb_to_hsv


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def images(b: int = 8, c: int = 3, h: int = 32, w: int = 32, seed: int = 0) -> torch.Tensor:
    return make_images(b, c, (h, w), dtype=torch.float32, smooth=True, seed=seed)


def assert_images(y: torch.Tensor, shape: tuple[int, ...]) -> None:
    assert y.shape == shape
    assert y.dtype == torch.float32
    assert y.min() >= 0 and y.max() <= 1


# --------------------------------------------------------------------------- ranges, shapes, seeds


def test_to_float():
    x = torch.tensor([0, 51, 255], dtype=torch.uint8).view(1, 1, 1, 3)
    y = to_float(x)
    assert y.dtype == torch.float32
    assert torch.allclose(y.flatten(), torch.tensor([0.0, 0.2, 1.0]))
    with pytest.raises(TypeError, match="uint8"):
        to_float(y)


@pytest.mark.parametrize("c", [1, 3])
def test_every_function_keeps_range_shape_dtype(c):
    x = images(c=c)
    g = gen()
    assert_images(random_resized_crop(x, 24, generator=g), (8, c, 24, 24))
    assert_images(random_resized_crop(x, (20, 28), generator=g), (8, c, 20, 28))
    assert_images(random_flip(x, generator=g), x.shape)
    assert_images(color_jitter(x, p=1.0, generator=g), x.shape)
    assert_images(random_grayscale(x, p=1.0, generator=g), x.shape)
    assert_images(gaussian_blur(x, 5, p=1.0, generator=g), x.shape)
    assert_images(rotate90(x, 1), x.shape)


@pytest.mark.parametrize("c,size", [(1, 28), (3, 32)])
def test_augment_uint8_in_float_out(c, size):
    x = torch.randint(0, 256, (16, c, size, size), dtype=torch.uint8, generator=gen())
    for cfg in (simclr_config(size), AugmentConfig(size, crop_scale=(0.6, 1.0), jitter_p=0.0, grayscale_p=0.0, blur_p=0.0),
                simclr_config(20, strength=0.5)):
        assert_images(augment(x, cfg, gen()), (16, c, cfg.size, cfg.size))


def test_augment_accepts_float_and_resizes():
    x = images(4, 3, 96, 96)
    assert_images(augment(x, simclr_config(64), gen()), (4, 3, 64, 64))


def test_same_seed_same_output_different_seed_different():
    x = torch.randint(0, 256, (16, 3, 32, 32), dtype=torch.uint8, generator=gen())
    cfg = simclr_config(32)
    a, b, c = augment(x, cfg, gen(1)), augment(x, cfg, gen(1)), augment(x, cfg, gen(2))
    assert torch.equal(a, b)
    assert not torch.allclose(a, c)


def test_randomness_is_per_sample():
    x = images(1).expand(16, -1, -1, -1)  # the same image 16 times
    crops = random_resized_crop(x, 32, generator=gen())
    distinct = {tuple(c.flatten()[:64].tolist()) for c in crops}
    assert len(distinct) > 8
    views = augment(x, simclr_config(32), gen())
    assert (views - views[:1]).abs().amax(dim=(1, 2, 3)).gt(1e-3).sum() >= 14


# --------------------------------------------------------------------------- rotations and flips


def test_rotate90_matches_torch_rot90_for_every_k():
    x = images(8)
    k = torch.tensor([0, 1, 2, 3, 3, 2, 1, 0])
    y = rotate90(x, k)
    for i in range(8):
        assert torch.equal(y[i], torch.rot90(x[i], int(k[i]), dims=(1, 2)))
    for r in range(4):  # an int k rotates every sample
        assert torch.equal(rotate90(x, r), torch.rot90(x, r, dims=(2, 3)))


def test_rotate90_then_back_is_identity():
    x = torch.randint(0, 256, (8, 1, 28, 28), dtype=torch.uint8, generator=gen())
    k = torch.tensor([0, 1, 2, 3, 0, 1, 2, 3])
    assert torch.equal(rotate90(rotate90(x, k), (4 - k) % 4), x)
    assert torch.equal(rotate90(rotate90(x, k), 4 - k), x)  # k is taken mod 4, like torch.rot90
    assert torch.equal(rotate90(x, -1), rotate90(x, 3))


def test_random_rotate90_returns_its_labels():
    x = images(32)
    y, k = random_rotate90(x, gen())
    assert k.dtype == torch.int64 and k.shape == (32,) and set(k.tolist()) == {0, 1, 2, 3}
    assert torch.equal(y, rotate90(x, k))
    y2, k2 = random_rotate90(x, gen())
    assert torch.equal(k, k2) and torch.equal(y, y2)


def test_flip_p1_is_torch_flip_and_p0_is_identity():
    x = images(8)
    assert torch.equal(random_flip(x, p=1.0, generator=gen()), torch.flip(x, dims=(3,)))
    assert torch.equal(random_flip(x, p=0.0, generator=gen()), x)
    y = random_flip(x, p=0.5, generator=gen(3))
    flipped = [torch.equal(y[i], x[i].flip(2)) for i in range(8)]
    kept = [torch.equal(y[i], x[i]) for i in range(8)]
    assert all(f or k for f, k in zip(flipped, kept, strict=True))


# --------------------------------------------------------------------------- crops


def test_full_crop_is_identity():
    x = images(8, 3, 32, 32)
    y = random_resized_crop(x, 32, scale=(1.0, 1.0), ratio=(1.0, 1.0), generator=gen())
    torch.testing.assert_close(y, x, atol=1e-6, rtol=0)


def test_crop_area_fraction_is_uniform_over_scale():
    lo, hi = 0.1, 0.5  # every try fits inside a 256x256 image, so no try is rejected
    boxes = sample_crop_boxes(20000, 256, 256, scale=(lo, hi), generator=gen())
    top, left, h, w = boxes.T.double()
    frac = h * w / 256**2
    assert frac.mean().item() == pytest.approx((lo + hi) / 2, abs=0.005)
    assert frac.min() >= lo - 0.01 and frac.max() <= hi + 0.01
    counts = torch.histc(frac, bins=4, min=lo, max=hi) / len(frac)
    assert torch.allclose(counts, torch.full((4,), 0.25, dtype=counts.dtype), atol=0.02)
    log_ratio = torch.log(w / h)
    assert log_ratio.mean().item() == pytest.approx(0.0, abs=0.01)
    assert log_ratio.abs().max() <= math.log(4 / 3) + 0.02
    assert (top >= 0).all() and (left >= 0).all() and (top + h <= 256).all() and (left + w <= 256).all()


def test_crop_positions_cover_the_image():
    boxes = sample_crop_boxes(4000, 32, 32, scale=(0.25, 0.25), ratio=(1.0, 1.0), generator=gen())
    assert (boxes[:, 2:] == 16).all()  # 16x16 boxes
    assert set(boxes[:, 0].tolist()) == set(range(17))  # top in 0..32-16 inclusive, like torch.randint


def test_crop_falls_back_to_the_central_crop():
    boxes = sample_crop_boxes(5, 32, 32, scale=(2.0, 3.0), generator=gen())  # no box fits
    assert (boxes == torch.tensor([0, 0, 32, 32])).all()
    boxes = sample_crop_boxes(5, 10, 40, scale=(2.0, 3.0), generator=gen())  # too wide: clip to ratio 4/3
    assert (boxes == torch.tensor([0, (40 - 13) // 2, 10, 13])).all()


def test_crop_and_resize_matches_torchvision_when_upsampling():
    x = images(3, 3, 32, 32)
    boxes = torch.tensor([[0, 0, 32, 32], [5, 7, 12, 20], [10, 3, 17, 9]])
    y = crop_and_resize(x, boxes, 40)
    for i, (top, left, h, w) in enumerate(boxes.tolist()):
        ref = TF.resized_crop(x[i], top, left, h, w, [40, 40], antialias=False)
        torch.testing.assert_close(y[i], ref, atol=1e-5, rtol=0)


# --------------------------------------------------------------------------- colour


def test_grayscale_p1_gives_luma_in_every_channel():
    x = images(4)
    y = random_grayscale(x, p=1.0, generator=gen())
    luma = 0.299 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2]
    for c in range(3):
        torch.testing.assert_close(y[:, c], luma)
    assert torch.equal(random_grayscale(x, p=0.0, generator=gen()), x)
    gray = images(4, c=1)
    assert torch.equal(random_grayscale(gray, p=1.0, generator=gen()), gray)
    torch.testing.assert_close(rgb_to_grayscale(x)[:, 0], luma)


def test_brightness_only_jitter_scales_each_image_by_one_factor():
    x = 0.1 + 0.5 * images(64)  # in [0.1, 0.6]: x * 1.5 never clips
    y = color_jitter(x, brightness=0.5, contrast=0, saturation=0, hue=0, p=1.0, generator=gen())
    factor = (y / x).mean(dim=(1, 2, 3))  # (B,)
    torch.testing.assert_close(y, x * factor.view(-1, 1, 1, 1))
    assert (factor >= 0.5).all() and (factor <= 1.5).all()
    assert factor.std() > 0.1  # per-sample factors
    bright = color_jitter(torch.full((64, 3, 4, 4), 0.9), 0.5, 0, 0, 0, p=1.0, generator=gen())
    assert bright.max() == 1.0  # clamped


def test_jitter_p0_is_identity_and_gray_images_ignore_saturation_and_hue():
    x = images(8)
    assert torch.equal(color_jitter(x, p=0.0, generator=gen()), x)
    gray = images(8, c=1)
    assert torch.equal(color_jitter(gray, 0, 0, 0.8, 0.5, p=1.0, generator=gen()), gray)


def test_hsv_round_trip_and_zero_hue_shift_are_identity():
    x = torch.rand(4, 3, 16, 16, generator=gen())
    x[0, :, :4, :4] = 0.5  # grays: hue undefined
    torch.testing.assert_close(hsv_to_rgb(rgb_to_hsv(x)), x, atol=1e-5, rtol=0)
    torch.testing.assert_close(aug._hue(x, torch.zeros(4)), x, atol=1e-5, rtol=0)
    hsv = rgb_to_hsv(x)
    assert hsv.min() >= 0 and hsv.max() <= 1 and hsv[:, 0].max() < 1


@pytest.mark.parametrize("shift", [-0.5, -0.3, 0.0, 0.1, 0.45])
def test_hue_matches_torchvision(shift):
    x = torch.rand(2, 3, 8, 8, generator=gen())
    y = aug._hue(x, torch.full((2,), shift))
    for i in range(2):
        torch.testing.assert_close(y[i], TF.adjust_hue(x[i], shift), atol=1e-5, rtol=0)


@pytest.mark.parametrize("factor", [0.0, 0.5, 1.7])
def test_contrast_and_saturation_match_torchvision(factor):
    x = torch.rand(2, 3, 8, 8, generator=gen())
    f = torch.full((2,), factor)
    for i in range(2):  # torchvision's luma uses 0.2989 for red: tolerance 1e-3
        torch.testing.assert_close(
            aug._contrast(x, f)[i], TF.adjust_contrast(x[i], factor), atol=1e-3, rtol=0
        )
        torch.testing.assert_close(
            aug._saturation(x, f)[i], TF.adjust_saturation(x[i], factor), atol=1e-3, rtol=0
        )


# --------------------------------------------------------------------------- blur


def test_blur_of_a_constant_image_is_that_constant():
    x = torch.full((4, 3, 16, 16), 0.37)
    torch.testing.assert_close(gaussian_blur(x, 5, sigma=(0.1, 3.0), p=1.0, generator=gen()), x)


@pytest.mark.parametrize("kernel_size,sigma", [(3, 0.5), (5, 1.3), (9, 2.0)])
def test_blur_matches_torchvision(kernel_size, sigma):
    x = images(3, 3, 24, 20)
    y = gaussian_blur(x, kernel_size, sigma=sigma, p=1.0, generator=gen())
    for i in range(3):
        ref = TF.gaussian_blur(x[i], [kernel_size, kernel_size], [sigma, sigma])
        torch.testing.assert_close(y[i], ref, atol=1e-5, rtol=0)


def test_blur_sigma_is_per_sample_and_p0_is_identity():
    x = images(16)
    y = gaussian_blur(x, 7, sigma=(0.1, 3.0), p=1.0, generator=gen())
    change = (y - x).abs().mean(dim=(1, 2, 3))
    assert change.max() > 3 * change.min()
    assert torch.equal(gaussian_blur(x, 7, p=0.0, generator=gen()), x)


# --------------------------------------------------------------------------- crops without resizing


def test_crop_at_matches_a_loop_over_samples_for_any_dtype():
    for x in (torch.rand(6, 3, 20, 20, generator=gen(1)), torch.randint(0, 256, (6, 1, 20, 20), dtype=torch.uint8)):
        corners = torch.randint(0, 13, (6, 2), generator=gen(2))
        out = crop_at(x, corners, 7)
        assert out.shape == (6, x.shape[1], 7, 7) and out.dtype == x.dtype
        for i, (r, c) in enumerate(corners.tolist()):
            assert torch.equal(out[i], x[i, :, r:r + 7, c:c + 7])


@pytest.mark.parametrize("corners, message", [([[0, 14]] * 6, "outside"), ([[-1, 0]] * 6, "outside"),
                                              ([[0, 0]] * 5, r"corners \(B, 2\)")])
def test_crop_at_rejects_windows_it_cannot_cut(corners, message):
    with pytest.raises(ValueError, match=message):
        crop_at(torch.rand(6, 3, 20, 20), torch.tensor(corners), 7)


def test_random_crop_takes_one_window_per_image_and_follows_the_generator():
    x = make_images(5, channels=3, size=10, seed=10)
    crops = random_crop(x, 6, gen(0))
    assert crops.shape == (5, 3, 6, 6) and crops.dtype == torch.uint8
    for b in range(5):
        windows = [(t, s) for t in range(5) for s in range(5) if torch.equal(x[b, :, t:t + 6, s:s + 6], crops[b])]
        assert windows, f"crop {b} is not a window of its image"
    assert torch.equal(crops, random_crop(x, 6, gen(0)))
    g = gen(0)  # rows first, then columns: the corners crop_at is given
    top, left = torch.randint(0, 5, (5, 1), generator=g), torch.randint(0, 5, (5, 1), generator=g)
    assert torch.equal(crops, crop_at(x, torch.cat([top, left], dim=1), 6))
    assert torch.equal(random_crop(x, 10, gen(3)), x)  # the whole image: one window only
    for bad in (11, 0, 2.5, True):
        with pytest.raises(ValueError, match="cannot crop"):
            random_crop(x, bad)


# --------------------------------------------------------------------------- configs


def test_simclr_config():
    cfg = simclr_config(32)
    assert cfg == AugmentConfig(size=32)  # the defaults are SimCLR's
    assert cfg.jitter == (0.8, 0.8, 0.8, 0.2) and cfg.jitter_p == 0.8 and cfg.grayscale_p == 0.2
    assert cfg.blur_p == 0.5 and cfg.blur_sigma == (0.1, 2.0) and cfg.crop_scale == (0.08, 1.0)
    assert [simclr_config(s).kernel_size for s in (28, 32, 96, 224)] == [3, 3, 9, 23]
    assert simclr_config(32, strength=0.5).jitter == pytest.approx((0.4, 0.4, 0.4, 0.1))
    with pytest.raises(AttributeError):
        cfg.size = 64  # frozen


# --------------------------------------------------------------------------- bad inputs


BAD_CALLS = {
    "not a tensor": (lambda x: random_flip(x.numpy()), TypeError),
    "3-D": (lambda x: random_flip(x[0]), ValueError),
    "uint8 to a float op": (lambda x: random_flip((x * 255).to(torch.uint8)), TypeError),
    "out of range": (lambda x: gaussian_blur(x * 2, 3), ValueError),
    "NaN": (lambda x: random_grayscale(x.masked_fill(x > 0.5, float("nan"))), ValueError),
    "p > 1": (lambda x: random_flip(x, p=1.5), ValueError),
    "negative brightness": (lambda x: color_jitter(x, brightness=-0.1), ValueError),
    "hue > 0.5": (lambda x: color_jitter(x, hue=0.6), ValueError),
    "2 channels": (lambda x: color_jitter(x[:, :2]), ValueError),
    "size 0": (lambda x: random_resized_crop(x, 0), ValueError),
    "bad scale": (lambda x: random_resized_crop(x, 8, scale=(0.5, 0.1)), ValueError),
    "even kernel": (lambda x: gaussian_blur(x, 4), ValueError),
    "kernel too large": (lambda x: gaussian_blur(x, 65), ValueError),
    "negative sigma": (lambda x: gaussian_blur(x, 3, sigma=(-1.0, 1.0)), ValueError),
    "non-square rotate": (lambda x: rotate90(x[:, :, :, :16], 1), ValueError),
    "float k": (lambda x: rotate90(x, torch.ones(4)), ValueError),
    "k wrong shape": (lambda x: rotate90(x, torch.zeros(3, dtype=torch.long)), ValueError),
    "generator not a Generator": (lambda x: random_flip(x, generator=0), TypeError),
    "cfg not a config": (lambda x: augment(x, {"size": 8}), TypeError),
    "boxes wrong shape": (lambda x: crop_and_resize(x, torch.zeros(4, 3), 8), ValueError),
    "config p": (lambda x: AugmentConfig(size=32, blur_p=2.0), ValueError),
    "config size": (lambda x: AugmentConfig(size=-1), ValueError),
    "config even kernel": (lambda x: AugmentConfig(size=32, blur_kernel_size=4), ValueError),
    "config jitter": (lambda x: AugmentConfig(size=32, jitter=(0.4, 0.4)), ValueError),
}


@pytest.mark.parametrize("name", list(BAD_CALLS))
def test_bad_inputs_raise(name):
    call, error = BAD_CALLS[name]
    with pytest.raises(error):
        call(images(4))


def test_rotation_by_zero_is_the_identity_and_keeps_the_centre():
    from course_lib.augment import random_rotation

    x = images(4, c=1, h=29, w=29)
    assert torch.equal(random_rotation(x, 0.0), x)
    rotated = random_rotation(x, 180.0, torch.Generator().manual_seed(0))
    assert rotated.shape == x.shape and not torch.allclose(rotated, x)
    assert torch.allclose(rotated[..., 14, 14], x[..., 14, 14], atol=1e-5), "rotation about the centre pixel"
    with pytest.raises(ValueError, match="max_degrees"):
        random_rotation(x, 200.0)


@pytest.mark.parametrize("degrees, k", [(90.0, 1), (180.0, 2), (-90.0, 3), (270.0, 3), (0.0, 0)])
def test_rotate_by_quarter_turns_matches_rotate90(degrees, k):
    from course_lib.augment import rotate, rotate90

    x = images(3, c=2, h=9, w=9)
    torch.testing.assert_close(rotate(x, degrees), rotate90(x, k), atol=1e-5, rtol=0)


def test_rotate_takes_one_angle_per_image():
    from course_lib.augment import rotate, rotate90

    x = images(2, c=1, h=9, w=9)
    out = rotate(x, torch.tensor([90.0, 180.0]))
    torch.testing.assert_close(out, rotate90(x, torch.tensor([1, 2])), atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match=r"shape \(2,\)"):
        rotate(x, torch.tensor([1.0, 2.0, 3.0]))
    with pytest.raises(TypeError, match="float tensor"):
        rotate(x.mul(255).to(torch.uint8), 10.0)


def test_pose_and_light_is_seeded_changes_images_and_keeps_their_range():
    from conftest import make_images

    from course_lib.augment import pose_and_light, to_float

    x = to_float(make_images(6, 1, 25, smooth=True))
    a = pose_and_light(x, generator=torch.Generator().manual_seed(0))
    b = pose_and_light(x, generator=torch.Generator().manual_seed(0))
    assert torch.equal(a, b) and a.shape == x.shape and 0 <= a.min() and a.max() <= 1
    assert (a - x).abs().flatten(1).mean(1).min() > 0.01, "every image changes"
    same = pose_and_light(x, max_degrees=0, max_zoom=0, light=0, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(same, x, atol=1e-5, rtol=0)  # no change asked: the image itself
    lit = pose_and_light(torch.full((1, 1, 4, 4), 0.5), max_degrees=0, max_zoom=0, light=0.5,
                         generator=torch.Generator().manual_seed(2))
    assert torch.allclose(lit[0, 0, 0], lit[0, 0, 3]) and not torch.allclose(lit[0, 0, :, 0], lit[0, 0, :, 3])
    with pytest.raises(TypeError, match="float"):
        pose_and_light(make_images(2, 1, 8))
    with pytest.raises(ValueError, match="light"):
        pose_and_light(x, light=2.0)
