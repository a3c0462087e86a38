"""Batched image augmentations: the random views of SimCLR, exemplars and friends.

Every function takes a whole float batch ``x`` of shape (B, C, H, W) with values in
[0, 1], on any device, and draws its random parameters *per sample* from
``generator`` (a ``torch.Generator`` on the same device as ``x``; ``None`` uses
torch's global one). There is no per-image PIL work and no Python loop over
samples: a crop is one ``grid_sample``, a blur a weighted sum of a few shifted
copies of the batch.

The semantics follow torchvision's transforms (RandomResizedCrop, ColorJitter,
RandomGrayscale, GaussianBlur) and SimCLR's augmentation pipeline (Chen et al.
2020, "A Simple Framework for Contrastive Learning of Visual Representations",
appendix A): random crop + resize + flip, colour distortion, Gaussian blur.

Each public function validates its input. ``augment`` validates once and then runs
the unchecked steps (the ``_`` functions), so a training step does not pay for the
range check five times.

Speed on a CPU: a batch-sized temporary costs about as much to allocate (page faults
on fresh memory) as the arithmetic done on it, so the hot steps work in place on
tensors they have just made (``_select``, the ``out=`` arguments) and ``augment``
folds the flip into the crop's sampling grid. The values are bit for bit those of
the plain versions (``augment`` equals its public steps run one after the other).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from course_lib.colour import _hsv_to_rgb, _rgb_to_hsv  # unchecked: the jitter has checked its batch
from course_lib.config import check_images, check_number

LUMA_WEIGHTS = (0.299, 0.587, 0.114)  # ITU-R 601-2 luma (PIL's "L"; torchvision uses 0.2989 for red)


# --------------------------------------------------------------------------- validation


def _check_channels(x: Tensor, name: str = "x") -> None:
    if x.shape[1] not in (1, 3):
        raise ValueError(f"{name} must have 1 (gray) or 3 (RGB) channels, got shape {tuple(x.shape)}")


def _check_generator(generator: torch.Generator | None, x: Tensor) -> None:
    if generator is None:
        return
    if not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator or None, got {type(generator).__name__}")
    if generator.device.type != x.device.type:
        raise ValueError(
            f"generator is on {generator.device} but x is on {x.device}: "
            f"create it with torch.Generator(device=x.device)"
        )


def _check_range_pair(pair: tuple[float, float], name: str) -> tuple[float, float]:
    """A (low, high) pair with 0 < low <= high."""
    ok = isinstance(pair, (tuple, list)) and len(pair) == 2
    ok = ok and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in pair)
    if not ok or not 0 < pair[0] <= pair[1]:
        raise ValueError(f"{name} must be a pair (low, high) with 0 < low <= high, got {pair!r}")
    return float(pair[0]), float(pair[1])


def _pair_size(size: int | tuple[int, int]) -> tuple[int, int]:
    """``size`` as (height, width) of positive ints."""
    if isinstance(size, int) and not isinstance(size, bool):
        size = (size, size)
    ok = isinstance(size, (tuple, list)) and len(size) == 2
    if not ok or not all(isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in size):
        raise ValueError(
            f"size must be a positive int or a pair (height, width) of positive ints, got {size!r}"
        )
    return int(size[0]), int(size[1])


# --------------------------------------------------------------------------- helpers


def to_float(x: Tensor) -> Tensor:
    """uint8 images (any shape) -> float32 in [0, 1], on the same device."""
    if not isinstance(x, Tensor):
        raise TypeError(f"x must be a torch.Tensor, got {type(x).__name__}")
    if x.dtype != torch.uint8:
        raise TypeError(f"x must be a uint8 tensor (values 0..255), got dtype {x.dtype}")
    return x.float().div_(255)


def _uniform(low: float, high: float, shape: tuple[int, ...], generator, device) -> Tensor:
    """Samples uniform in [low, high)."""
    return low + (high - low) * torch.rand(shape, generator=generator, device=device)


def _coin(p: float, batch_size: int, generator, device) -> Tensor:
    """(B,) bool: True with probability p, per sample."""
    return torch.rand(batch_size, generator=generator, device=device) < p


def _per_sample(mask: Tensor) -> Tensor:
    """(B,) -> (B, 1, 1, 1), to broadcast over an image batch."""
    return mask.view(-1, 1, 1, 1)


# --------------------------------------------------------------------------- crop and resize


def sample_crop_boxes(
    batch_size: int,
    height: int,
    width: int,
    scale: tuple[float, float] = (0.08, 1.0),
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
    num_tries: int = 10,
) -> Tensor:
    """Crop boxes (B, 4) as int64 ``(top, left, h, w)``, torchvision's RandomResizedCrop.get_params.

    Each try draws an area fraction uniform in ``scale`` and a log aspect ratio
    uniform in ``log(ratio)``; the first of ``num_tries`` tries whose box fits is kept
    (all tries are drawn at once, so this is one batched op). Samples with no fitting
    box fall back to the central crop, clipped to ``ratio``, as torchvision does.
    """
    scale = _check_range_pair(scale, "scale")
    ratio = _check_range_pair(ratio, "ratio")
    if not all(isinstance(n, int) and n > 0 for n in (batch_size, height, width, num_tries)):
        raise ValueError(
            f"batch_size, height, width and num_tries must be positive ints, "
            f"got {batch_size!r}, {height!r}, {width!r}, {num_tries!r}"
        )
    shape = (batch_size, num_tries)
    area = _uniform(*scale, shape, generator, device) * (height * width)  # (B, T)
    aspect = torch.exp(_uniform(math.log(ratio[0]), math.log(ratio[1]), shape, generator, device))
    w = torch.round(torch.sqrt(area * aspect))  # (B, T), rounded like torchvision's int(round(.))
    h = torch.round(torch.sqrt(area / aspect))
    fits = (w >= 1) & (w <= width) & (h >= 1) & (h <= height)  # (B, T)
    first = fits.int().argmax(dim=1, keepdim=True)  # (B, 1): index of the first True
    found = fits.any(dim=1)  # (B,)
    w = w.gather(1, first).squeeze(1)  # (B,)
    h = h.gather(1, first).squeeze(1)

    # Fallback: the central crop, the whole image clipped to the allowed aspect ratios.
    in_ratio = width / height
    if in_ratio < ratio[0]:
        fallback_w, fallback_h = width, round(width / ratio[0])
    elif in_ratio > ratio[1]:
        fallback_w, fallback_h = round(height * ratio[1]), height
    else:
        fallback_w, fallback_h = width, height
    w = torch.where(found, w, float(fallback_w))
    h = torch.where(found, h, float(fallback_h))

    # Position uniform over the valid offsets (torch.randint(0, H - h + 1)); centred on fallback.
    u = torch.rand(2, batch_size, generator=generator, device=device)
    top = torch.floor(u[0] * (height - h + 1)).clamp(max=height - h)
    left = torch.floor(u[1] * (width - w + 1)).clamp(max=width - w)
    top = torch.where(found, top, float((height - fallback_h) // 2))
    left = torch.where(found, left, float((width - fallback_w) // 2))
    return torch.stack([top, left, h, w], dim=1).long()  # (B, 4)


def crop_at(x: Tensor, corners: Tensor, size: int) -> Tensor:
    """The ``size`` x ``size`` window of each image at its own top-left corner, no resizing: image i's
    ``x[i, :, r:r+size, c:c+size]`` for ``(r, c) = corners[i]``; (B, C, size, size), any dtype.

    One gather for the whole batch: row and column indices (B, size) broadcast to (B, size, size).
    The crop of :func:`random_crop`, and the patches of the patch-position task (``patch_position.cut_patches``).
    """
    if not isinstance(x, Tensor) or x.dim() != 4 or not isinstance(corners, Tensor) or corners.shape != (x.shape[0], 2):
        raise ValueError(f"expected x (B, C, H, W) and corners (B, 2), got {tuple(getattr(x, 'shape', ()))} and "
                         f"{tuple(getattr(corners, 'shape', ()))}")
    H, W = x.shape[-2:]
    if corners.numel() and (corners.min() < 0 or (corners[:, 0] + size).max() > H or (corners[:, 1] + size).max() > W):
        raise ValueError(f"some {size}-px windows fall outside the {H}x{W} image")
    steps = torch.arange(size, device=x.device)
    rows = (corners[:, 0, None] + steps)[:, :, None]  # (B, size, 1)
    cols = (corners[:, 1, None] + steps)[:, None, :]  # (B, 1, size)
    batch = torch.arange(x.shape[0], device=x.device)[:, None, None]  # (B, 1, 1)
    return x.permute(0, 2, 3, 1)[batch, rows, cols].permute(0, 3, 1, 2)  # (B, size, size, C) -> (B, C, size, size)


def random_crop(x: Tensor, size: int, generator: torch.Generator | None = None) -> Tensor:
    """A random ``size`` x ``size`` window of each image of x (B, C, H, W), its own position per image,
    no resizing (:func:`crop_at` at corners drawn uniformly: rows first, then columns)."""
    if not isinstance(x, Tensor) or x.dim() != 4 or isinstance(size, bool) or not isinstance(size, int) \
            or not 1 <= size <= min(x.shape[-2:]):
        raise ValueError(f"cannot crop {size!r}x{size!r} from images of shape {tuple(getattr(x, 'shape', ()))}")
    _check_generator(generator, x)
    B, (H, W) = x.shape[0], x.shape[-2:]
    top = torch.randint(0, H - size + 1, (B, 1), generator=generator, device=x.device)  # (B, 1)
    left = torch.randint(0, W - size + 1, (B, 1), generator=generator, device=x.device)  # (B, 1)
    return crop_at(x, torch.cat([top, left], dim=1), size)


def crop_and_resize(x: Tensor, boxes: Tensor, size: int | tuple[int, int]) -> Tensor:
    """Crop box ``boxes[i] = (top, left, h, w)`` of image i and resize it to ``size``, batched.

    One ``F.affine_grid`` + ``F.grid_sample`` (bilinear, align_corners=False): the
    output grid in normalised coordinates [-1, 1] is scaled by (w/W, h/H) and moved to
    the box centre. Upsampling matches torchvision's bilinear resize; downsampling is
    without antialiasing.
    """
    check_images(x)
    if not isinstance(boxes, Tensor) or boxes.shape != (x.shape[0], 4):
        got = tuple(boxes.shape) if isinstance(boxes, Tensor) else type(boxes).__name__
        raise ValueError(f"boxes must be a tensor of shape (B, 4) = ({x.shape[0]}, 4), got {got}")
    return _crop_and_resize(x, boxes, _pair_size(size))


def _crop_and_resize(x: Tensor, boxes: Tensor, size: tuple[int, int], flip: Tensor | None = None) -> Tensor:
    """``flip`` (B,) bool, optional: mirror those crops horizontally in the same pass (see ``augment``)."""
    B, C, H, W = x.shape
    h_out, w_out = size
    top, left, h, w = boxes.to(x.dtype).view(B, 4, 1).unbind(dim=1)  # each (B, 1)
    # Output pixel centres in normalised coordinates, as F.affine_grid makes them (align_corners=False).
    xs = torch.linspace(-1, 1, w_out, dtype=x.dtype, device=x.device) * (w_out - 1) / w_out  # (w_out,)
    ys = torch.linspace(-1, 1, h_out, dtype=x.dtype, device=x.device) * (h_out - 1) / h_out  # (h_out,)
    # The affine map of the box: scale by the box size (w/W, h/H), move to the box centre. The map is
    # separable (no rotation), so the grid is an outer product, not F.affine_grid's batched matmul.
    grid_x = xs * (w / W) + ((2 * left + w) / W - 1)  # (B, w_out)
    grid_y = ys * (h / H) + ((2 * top + h) / H - 1)  # (B, h_out)
    # Sample only inside the box, between its outer pixel centres, as crop-then-resize does.
    grid_x = grid_x.clamp_(min=(2 * left + 1) / W - 1, max=(2 * (left + w) - 1) / W - 1)
    grid_y = grid_y.clamp_(min=(2 * top + 1) / H - 1, max=(2 * (top + h) - 1) / H - 1)
    if flip is not None:  # sampling the columns right to left is exactly the flipped crop
        grid_x = torch.where(flip.view(B, 1), grid_x.flip(1), grid_x)
    grid = torch.stack([grid_x.view(B, 1, w_out).expand(B, h_out, w_out),
                        grid_y.view(B, h_out, 1).expand(B, h_out, w_out)], dim=3)  # (B, h_out, w_out, 2) as (x, y)
    out = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    return out.clamp_(0, 1)  # (B, C, h_out, w_out)


def random_resized_crop(
    x: Tensor,
    size: int | tuple[int, int],
    scale: tuple[float, float] = (0.08, 1.0),
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
    generator: torch.Generator | None = None,
) -> Tensor:
    """torchvision's RandomResizedCrop, per sample: a random box of area fraction
    uniform in ``scale`` and aspect ratio log-uniform in ``ratio``, resized to ``size``.
    (B, C, H, W) -> (B, C, *size).
    """
    check_images(x)
    _check_generator(generator, x)
    return _random_resized_crop(x, _pair_size(size), scale, ratio, generator)


def _random_resized_crop(x, size, scale, ratio, generator) -> Tensor:
    B, _, H, W = x.shape
    boxes = sample_crop_boxes(B, H, W, scale, ratio, generator, x.device)  # (B, 4)
    return _crop_and_resize(x, boxes, size)


# --------------------------------------------------------------------------- flips and rotations


def random_flip(x: Tensor, p: float = 0.5, generator: torch.Generator | None = None) -> Tensor:
    """Horizontal flip of each sample with probability ``p`` (RandomHorizontalFlip)."""
    check_images(x)
    check_number(p, "p", 0, 1)
    _check_generator(generator, x)
    return _random_flip(x, p, generator)


def _random_flip(x, p, generator) -> Tensor:
    flip = _coin(p, x.shape[0], generator, x.device)  # (B,)
    return _select(flip, x.flip(dims=(3,)), x)


def _select(mask: Tensor, new: Tensor, old: Tensor) -> Tensor:
    """``torch.where(mask, new, old)`` per sample, written into ``new`` (a tensor the caller just made).

    The same result as ``torch.where`` without allocating a third batch-sized tensor: on a CPU,
    fresh large allocations (and the page faults behind them) cost as much as the arithmetic.
    """
    return torch.where(_per_sample(mask), new, old, out=new)


def rotate90(x: Tensor, k: Tensor | int) -> Tensor:
    """Rotate sample i by ``k[i]`` quarter turns counter-clockwise, like ``torch.rot90(x[i], k[i], (1, 2))``.

    ``k`` is an int or an integer tensor (B,), taken modulo 4. Square images only; any
    dtype (uint8 too). All four rotations are computed and one is picked per sample.
    """
    if not isinstance(x, Tensor) or x.dim() != 4:
        got = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
        raise ValueError(f"x must be a 4-D tensor (B, C, H, W), got {got}")
    B, _, H, W = x.shape
    if H != W:
        raise ValueError(f"rotate90 needs square images (H == W), got shape {tuple(x.shape)}")
    if isinstance(k, int) and not isinstance(k, bool):
        k = torch.full((B,), k, dtype=torch.long, device=x.device)
    if not isinstance(k, Tensor) or k.shape != (B,) or k.is_floating_point() or k.dtype == torch.bool:
        got = f"{tuple(k.shape)} {k.dtype}" if isinstance(k, Tensor) else type(k).__name__
        raise ValueError(f"k must be an int or an integer tensor of shape (B,) = ({B},), got {got}")
    k = torch.remainder(k.to(x.device).long(), 4)  # like torch.rot90: k = 4 or -1 are fine
    rotations = torch.stack([torch.rot90(x, r, dims=(2, 3)) for r in range(4)])  # (4, B, C, H, W)
    return rotations[k, torch.arange(B, device=x.device)]  # (B, C, H, W): rotation k[i] of sample i


def random_rotate90(x: Tensor, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
    """Rotate each sample by a random k in {0, 1, 2, 3} quarter turns; returns (x_rot, k).

    The pretext task of Gidaris et al. 2018 ("Unsupervised representation learning by
    predicting image rotations"): ``k`` is the label to predict.
    """
    if not isinstance(x, Tensor) or x.dim() != 4:
        got = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
        raise ValueError(f"x must be a 4-D tensor (B, C, H, W), got {got}")
    _check_generator(generator, x)
    k = torch.randint(0, 4, (x.shape[0],), generator=generator, device=x.device)  # (B,)
    return rotate90(x, k), k


# --------------------------------------------------------------------------- colour


def rotate(x: Tensor, degrees: Tensor | float) -> Tensor:
    """Rotate each image (B, C, H, W), float, counter-clockwise by ``degrees`` (a number or (B,)) about
    its centre: bilinear, zeros outside, one ``affine_grid`` + ``grid_sample``. For quarter turns
    :func:`rotate90` is exact (no interpolation)."""
    if not torch.is_tensor(x) or x.dim() != 4 or not x.is_floating_point():
        got = f"{x.dtype} {tuple(x.shape)}" if torch.is_tensor(x) else type(x).__name__
        raise TypeError(f"x must be a float tensor (B, C, H, W) in [0, 1], got {got}")
    B = x.shape[0]
    angle = torch.as_tensor(degrees, dtype=torch.float32, device=x.device)
    if angle.dim() == 0:
        angle = angle.expand(B)
    if angle.shape != (B,):
        raise ValueError(f"degrees must be a number or a tensor of shape ({B},), got shape {tuple(angle.shape)}")
    angle = torch.deg2rad(angle)
    cos, sin = torch.cos(angle).to(x.dtype), torch.sin(angle).to(x.dtype)
    theta = torch.zeros(B, 2, 3, dtype=x.dtype, device=x.device)
    # grid_sample maps output to input coordinates (y pointing down): this matrix turns the image content
    # counter-clockwise as seen on screen, like rotate90
    theta[:, 0, 0], theta[:, 0, 1], theta[:, 1, 0], theta[:, 1, 1] = cos, -sin, sin, cos
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)  # (B, H, W, 2)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False).clamp_(0, 1)


def random_rotation(x: Tensor, max_degrees: float, generator: torch.Generator | None = None) -> Tensor:
    """Rotate each image (B, C, H, W), float, by its own angle uniform in [-max_degrees, max_degrees]."""
    if not torch.is_tensor(x) or x.dim() != 4 or not x.is_floating_point():
        got = f"{x.dtype} {tuple(x.shape)}" if torch.is_tensor(x) else type(x).__name__
        raise TypeError(f"x must be a float tensor (B, C, H, W) in [0, 1], got {got}")
    if isinstance(max_degrees, bool) or not isinstance(max_degrees, (int, float)) or not 0 <= max_degrees <= 180:
        raise ValueError(f"max_degrees must be a number in [0, 180], got {max_degrees!r}")
    if max_degrees == 0:
        return x
    angle = (2 * torch.rand(x.shape[0], generator=generator, device=x.device) - 1) * max_degrees  # (B,)
    return rotate(x, angle)


def rgb_to_grayscale(x: Tensor) -> Tensor:
    """Luma (B, 1, H, W) = 0.299 R + 0.587 G + 0.114 B (ITU-R 601-2); 1-channel input unchanged."""
    check_images(x, check_range=False)
    _check_channels(x)
    return _gray(x)


def _gray(x: Tensor) -> Tensor:
    if x.shape[1] == 1:
        return x
    r, g, b = x.unbind(dim=1)  # each (B, H, W)
    gray = LUMA_WEIGHTS[0] * r  # in-place sums: fewer (B, H, W) temporaries to allocate
    gray += LUMA_WEIGHTS[1] * g
    gray += LUMA_WEIGHTS[2] * b
    return gray.unsqueeze(1)  # (B, 1, H, W)


# The four jitter steps, per-sample factor (B,); each clamps to [0, 1] like torchvision.


def _blend(x: Tensor, other: Tensor, factor: Tensor) -> Tensor:
    """factor * x + (1 - factor) * other, clamped to [0, 1] (torchvision's _blend)."""
    f = _per_sample(factor)
    return (f * x).add_((1 - f) * other).clamp_(0, 1)  # other is (B, 1, ...): one full-size temporary


def _brightness(x: Tensor, factor: Tensor) -> Tensor:
    return (x * _per_sample(factor)).clamp_(0, 1)  # blend with black


def _contrast(x: Tensor, factor: Tensor) -> Tensor:
    mean = _gray(x).mean(dim=(1, 2, 3), keepdim=True)  # (B, 1, 1, 1): mean luma of each image
    return _blend(x, mean, factor)


def _saturation(x: Tensor, factor: Tensor) -> Tensor:
    return x if x.shape[1] == 1 else _blend(x, _gray(x), factor)  # blend with the gray image


def _hue(x: Tensor, shift: Tensor) -> Tensor:
    if x.shape[1] == 1:
        return x
    h, s, v = _rgb_to_hsv(x)  # each (B, 1, H, W)
    h = h.add_(_per_sample(shift)).remainder_(1.0)  # rotate the colour wheel by shift turns
    return _hsv_to_rgb(h, s, v).clamp_(0, 1)


def color_jitter(
    x: Tensor,
    brightness: float = 0.4,
    contrast: float = 0.4,
    saturation: float = 0.4,
    hue: float = 0.1,
    p: float = 0.8,
    generator: torch.Generator | None = None,
) -> Tensor:
    """torchvision's ColorJitter, applied to each sample with probability ``p`` (RandomApply).

    Factors per sample: brightness, contrast, saturation uniform in
    [max(0, 1 - b), 1 + b]; hue shift uniform in [-hue, hue] (hue <= 0.5). Each step
    clamps to [0, 1]. A strength of 0 skips that step; for 1-channel images
    saturation and hue are no-ops. Order: torchvision draws a random order of the
    four steps per image; here one random order is drawn per *batch* (from
    ``generator``), so that each step stays a single batched op.
    """
    check_images(x)
    _check_channels(x)
    for value, name in ((brightness, "brightness"), (contrast, "contrast"), (saturation, "saturation")):
        check_number(value, name, 0, math.inf)
    check_number(hue, "hue", 0, 0.5)
    check_number(p, "p", 0, 1)
    _check_generator(generator, x)
    return _color_jitter(x, brightness, contrast, saturation, hue, p, generator)


def _color_jitter(x, brightness, contrast, saturation, hue, p, generator) -> Tensor:
    B, device = x.shape[0], x.device
    factors = [
        _uniform(max(0.0, 1 - brightness), 1 + brightness, (B,), generator, device),
        _uniform(max(0.0, 1 - contrast), 1 + contrast, (B,), generator, device),
        _uniform(max(0.0, 1 - saturation), 1 + saturation, (B,), generator, device),
        _uniform(-hue, hue, (B,), generator, device),
    ]
    steps: list[Callable[[Tensor, Tensor], Tensor]] = [_brightness, _contrast, _saturation, _hue]
    active = [brightness > 0, contrast > 0, saturation > 0, hue > 0]
    order = torch.randperm(4, generator=generator, device=device).tolist()
    apply = _coin(p, B, generator, device)  # (B,)
    out = x
    for i in order:
        if active[i]:
            out = steps[i](out, factors[i])  # each step returns a new tensor
    return x if out is x else _select(apply, out, x)


def random_grayscale(x: Tensor, p: float = 0.2, generator: torch.Generator | None = None) -> Tensor:
    """torchvision's RandomGrayscale: with probability ``p`` per sample, replace every
    channel by the luma 0.299 R + 0.587 G + 0.114 B. Keeps C channels; 1-channel input unchanged."""
    check_images(x)
    _check_channels(x)
    check_number(p, "p", 0, 1)
    _check_generator(generator, x)
    return _random_grayscale(x, p, generator)


def _random_grayscale(x, p, generator) -> Tensor:
    gray = _coin(p, x.shape[0], generator, x.device)  # drawn for 1 channel too: same stream for any C
    if x.shape[1] == 1:
        return x
    return torch.where(_per_sample(gray), _gray(x).expand_as(x), x)


# --------------------------------------------------------------------------- blur


def gaussian_kernels(kernel_size: int, sigma: Tensor) -> Tensor:
    """1-D Gaussian kernels (B, kernel_size), one per sigma, normalised to sum 1 (torchvision's)."""
    half = (kernel_size - 1) / 2
    t = torch.linspace(-half, half, kernel_size, dtype=sigma.dtype, device=sigma.device)  # (k,)
    pdf = torch.exp(-0.5 * (t / sigma.view(-1, 1)) ** 2)  # (B, k)
    return pdf / pdf.sum(dim=1, keepdim=True)


def gaussian_blur(
    x: Tensor,
    kernel_size: int,
    sigma: tuple[float, float] | float = (0.1, 2.0),
    p: float = 0.5,
    generator: torch.Generator | None = None,
) -> Tensor:
    """torchvision's GaussianBlur, applied to each sample with probability ``p``.

    Sigma per sample uniform in ``sigma`` (SimCLR: [0.1, 2.0]); a separable odd
    ``kernel_size`` kernel with reflect padding, applied as a weighted sum of
    ``kernel_size`` shifted copies of the batch along the rows, then the columns, each
    sample with its own weights (the same sums as a grouped ``F.conv2d``).
    """
    check_images(x)
    sigma = (sigma, sigma) if isinstance(sigma, (int, float)) and not isinstance(sigma, bool) else sigma
    sigma = _check_range_pair(sigma, "sigma")
    if (
        isinstance(kernel_size, bool)
        or not isinstance(kernel_size, int)
        or kernel_size < 1
        or kernel_size % 2 == 0
    ):
        raise ValueError(f"kernel_size must be a positive odd int, got {kernel_size!r}")
    if kernel_size // 2 >= min(x.shape[2], x.shape[3]):
        raise ValueError(
            f"kernel_size {kernel_size} is too large for images of shape {tuple(x.shape)}: "
            f"reflect padding needs kernel_size // 2 < min(H, W)"
        )
    check_number(p, "p", 0, 1)
    _check_generator(generator, x)
    return _gaussian_blur(x, kernel_size, sigma, p, generator)


def _gaussian_blur(x, kernel_size, sigma, p, generator) -> Tensor:
    B, C, H, W = x.shape
    sigmas = _uniform(*sigma, (B,), generator, x.device)  # (B,)
    apply = _coin(p, B, generator, x.device)  # (B,)
    kernel = gaussian_kernels(kernel_size, sigmas.to(x.dtype)).view(B, 1, 1, 1, kernel_size)  # (B, 1, 1, 1, k)
    pad = kernel_size // 2
    padded = F.pad(x, (pad, pad, pad, pad), mode="reflect")  # (B, C, H+2p, W+2p)
    # Separable: a weighted sum of k shifted copies along the rows, then along the columns
    # (out[i] = sum_t kernel[t] in[i + t], the cross-correlation F.conv2d computes).
    rows = padded[..., 0:W] * kernel[..., 0]  # (B, C, H+2p, W)
    for t in range(1, kernel_size):
        rows.addcmul_(padded[..., t : t + W], kernel[..., t])
    blurred = rows[:, :, 0:H] * kernel[..., 0]  # (B, C, H, W)
    for t in range(1, kernel_size):
        blurred.addcmul_(rows[:, :, t : t + H], kernel[..., t])
    return _select(apply, blurred.clamp_(0, 1), x)


# --------------------------------------------------------------------------- the pipeline


@dataclass(frozen=True)
class AugmentConfig:
    """One augmentation distribution; the defaults are SimCLR's (Chen et al. 2020, appendix A)."""

    size: int  # output height = width
    crop_scale: tuple[float, float] = (0.08, 1.0)  # area fraction of the random crop
    crop_ratio: tuple[float, float] = (3 / 4, 4 / 3)  # aspect ratio range of the crop
    flip_p: float = 0.5  # horizontal flip probability
    jitter: tuple[float, float, float, float] = (0.8, 0.8, 0.8, 0.2)  # brightness, contrast, saturation, hue
    jitter_p: float = 0.8  # probability of applying the colour jitter
    grayscale_p: float = 0.2  # probability of converting to grayscale
    blur_p: float = 0.5  # probability of a Gaussian blur
    blur_sigma: tuple[float, float] = (0.1, 2.0)  # blur sigma range, in pixels
    blur_kernel_size: int | None = None  # None: about 10% of size, odd (SimCLR)

    def __post_init__(self) -> None:
        _pair_size(self.size)
        _check_range_pair(self.crop_scale, "crop_scale")
        _check_range_pair(self.crop_ratio, "crop_ratio")
        _check_range_pair(self.blur_sigma, "blur_sigma")
        for name in ("flip_p", "jitter_p", "grayscale_p", "blur_p"):
            check_number(getattr(self, name), name, 0, 1)
        if not isinstance(self.jitter, (tuple, list)) or len(self.jitter) != 4:
            raise ValueError(f"jitter must be (brightness, contrast, saturation, hue), got {self.jitter!r}")
        for value, name in zip(self.jitter[:3], ("brightness", "contrast", "saturation"), strict=True):
            check_number(value, f"jitter {name}", 0, math.inf)
        check_number(self.jitter[3], "jitter hue", 0, 0.5)
        k = self.kernel_size
        if isinstance(k, bool) or not isinstance(k, int) or k < 1 or k % 2 == 0:
            raise ValueError(f"blur_kernel_size must be a positive odd int or None, got {k!r}")

    @property
    def kernel_size(self) -> int:
        """The blur kernel size: ``blur_kernel_size`` or 10% of ``size`` rounded to odd, at least 3."""
        if self.blur_kernel_size is not None:
            return self.blur_kernel_size
        k = max(3, int(0.1 * self.size))
        return k if k % 2 == 1 else k + 1


def simclr_config(size: int, strength: float = 1.0) -> AugmentConfig:
    """SimCLR's two-view distribution at colour strength s (Chen et al. 2020, appendix A):
    crop (0.08, 1) + flip, jitter (0.8s, 0.8s, 0.8s, 0.2s) with p 0.8, grayscale p 0.2,
    blur p 0.5 with a kernel of 10% of the image size."""
    check_number(strength, "strength", 0, 2.5)  # hue 0.2 s must stay <= 0.5
    s = float(strength)
    return AugmentConfig(size=size, jitter=(0.8 * s, 0.8 * s, 0.8 * s, 0.2 * s))


def augment(x: Tensor, cfg: AugmentConfig, generator: torch.Generator | None = None) -> Tensor:
    """One random view of each image: crop -> flip -> colour jitter -> grayscale -> blur.

    ``x`` is uint8 (converted with ``to_float``) or float in [0, 1], shape (B, C, H, W).
    Returns float (B, C, cfg.size, cfg.size). Call it twice for SimCLR's two views.
    """
    if not isinstance(cfg, AugmentConfig):
        raise TypeError(f"cfg must be an AugmentConfig, got {type(cfg).__name__}")
    if isinstance(x, Tensor) and x.dtype == torch.uint8:
        x = to_float(x)
        check_images(x, check_range=False)  # uint8 / 255 is always in [0, 1]
    else:
        check_images(x)
    _check_generator(generator, x)
    size = _pair_size(cfg.size)
    B, _, H, W = x.shape
    boxes = sample_crop_boxes(B, H, W, cfg.crop_scale, cfg.crop_ratio, generator, x.device)  # (B, 4)
    flip = _coin(cfg.flip_p, B, generator, x.device) if cfg.flip_p > 0 else None  # (B,)
    x = _crop_and_resize(x, boxes, size, flip)  # crop, resize and flip in one grid_sample
    if cfg.jitter_p > 0 and any(v > 0 for v in cfg.jitter):
        _check_channels(x)
        x = _color_jitter(x, *cfg.jitter, cfg.jitter_p, generator)
    if cfg.grayscale_p > 0:
        _check_channels(x)
        x = _random_grayscale(x, cfg.grayscale_p, generator)
    if cfg.blur_p > 0:
        if cfg.kernel_size // 2 >= min(size):
            raise ValueError(f"blur kernel size {cfg.kernel_size} is too large for output size {cfg.size}")
        x = _gaussian_blur(x, cfg.kernel_size, cfg.blur_sigma, cfg.blur_p, generator)
    return x


# --------------------------------------------------------------------------- pose and light (notebook 09's faces)


def pose_and_light(x: Tensor, max_degrees: float = 15.0, max_zoom: float = 0.15, light: float = 0.6,
                   generator: torch.Generator | None = None) -> Tensor:
    """Synthetic pose and illumination changes of float images (B, C, H, W) in [0, 1], one draw per image:
    an in-plane rotation in [-max_degrees, max_degrees] (head tilt), a zoom in [1, 1 + max_zoom] about a
    shifted centre (distance and position), and light from one side -- brightness multiplied by a ramp
    across the image from 1 - s to 1 + s, s uniform in [-light, light] (light from the left or right).
    These are 2-D stand-ins: a real change of pose turns the head in 3-D, which no image warp can do."""
    if not torch.is_tensor(x) or x.dim() != 4 or not x.is_floating_point():
        got = f"{x.dtype} {tuple(x.shape)}" if torch.is_tensor(x) else type(x).__name__
        raise TypeError(f"x must be a float tensor (B, C, H, W) in [0, 1], got {got}")
    check_number(max_degrees, "max_degrees", 0, 180)
    check_number(max_zoom, "max_zoom", 0, 1)
    check_number(light, "light", 0, 1)
    B, _, H, W = x.shape
    x = rotate(x, _uniform(-max_degrees, max_degrees, (B,), generator, x.device))
    zoom = _uniform(1.0, 1.0 + max_zoom, (B,), generator, x.device)
    h, w = (H / zoom).floor().long(), (W / zoom).floor().long()  # (B,) the box that fills the image
    top = (_uniform(0, 1, (B,), generator, x.device) * (H - h + 1).float()).floor().long().clamp(max=H - 1)
    left = (_uniform(0, 1, (B,), generator, x.device) * (W - w + 1).float()).floor().long().clamp(max=W - 1)
    x = _crop_and_resize(x, torch.stack([top, left, h, w], 1), (H, W))
    s = _uniform(-light, light, (B,), generator, x.device)
    ramp = 1 + s[:, None] * torch.linspace(-1, 1, W, device=x.device)[None, :]  # (B, W)
    return (x * ramp[:, None, None, :]).clamp(0, 1)
