"""Colour spaces: RGB to HSV (hue, saturation, value) and to CIE Lab, and back, on whole batches.

HSV is how colour jitter turns the hue and saturation of an image (``augment.color_jitter``,
SimCLR's colour distortion); Lab is the colorization lecture's colour space (Zhang et al. 2016
predict the colour channels ab from the lightness L). Every function takes a float batch
(B, 3, H, W) on any device and returns one of the same shape.
"""

from __future__ import annotations

import torch
from torch import Tensor

from course_lib.config import check_images


def _check_rgb(x: Tensor, name: str, check_range: bool = False) -> None:
    check_images(x, name, check_range)
    if x.shape[1] != 3:
        raise ValueError(f"{name} must have 3 channels, got shape {tuple(x.shape)}")


def rgb_to_hsv(x: Tensor) -> Tensor:
    """RGB (B, 3, H, W) in [0, 1] -> HSV (B, 3, H, W) with hue in [0, 1), as torchvision computes it."""
    _check_rgb(x, "x")
    return torch.cat(_rgb_to_hsv(x), dim=1)


def _rgb_to_hsv(x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """(h, s, v), each (B, 1, H, W). In-place steps (``div_``, ``add_``) only touch new tensors."""
    r, g, b = x.unbind(dim=1)  # each (B, H, W)
    maxc, minc = x.amax(dim=1), x.amin(dim=1)
    delta = maxc - minc  # chroma; 0 for grays, whose hue and saturation are 0
    s = delta / maxc.clamp_min(1e-12)
    d = delta.clamp_min_(1e-12)
    # Hue in sixths of the colour wheel, measured from the largest channel (red first on ties):
    # 4 + (r - g) / d where blue is largest, then overwritten where green is, then where red is.
    h = (r - g).div_(d).add_(4.0)
    torch.where(maxc == g, (b - r).div_(d).add_(2.0), h, out=h)
    torch.where(maxc == r, (g - b).div_(d), h, out=h)
    h = h.div_(6.0).remainder_(1.0)  # -> [0, 1)
    return h.unsqueeze(1), s.unsqueeze(1), maxc.unsqueeze(1)


def hsv_to_rgb(hsv: Tensor) -> Tensor:
    """HSV (B, 3, H, W) -> RGB: channel n in (R, G, B) = (5, 3, 1) is
    V - V S clamp(min(k, 4 - k), 0, 1) with k = (n + 6 H) mod 6."""
    _check_rgb(hsv, "hsv")
    h, s, v = hsv.unsqueeze(2).unbind(dim=1)  # each (B, 1, H, W)
    return _hsv_to_rgb(h, s, v)


def _hsv_to_rgb(h: Tensor, s: Tensor, v: Tensor) -> Tensor:
    """h, s, v (B, 1, H, W) -> RGB (B, 3, H, W); in-place steps only touch new tensors."""
    n = torch.tensor([5.0, 3.0, 1.0], dtype=h.dtype, device=h.device).view(1, 3, 1, 1)  # R, G, B
    k = (n + 6 * h).remainder_(6)  # (B, 3, H, W)
    c = torch.minimum(k, 4 - k, out=k).clamp_(0, 1)  # (B, 3, H, W), written over k
    return torch.sub(v, c.mul_(v * s), out=c)  # V - V S c, written over c


# CIE Lab (D65 white, 2° observer), as scikit-image's rgb2lab / lab2rgb compute it: sRGB -> linear RGB
# -> XYZ -> Lab. L is lightness in [0, 100]; a (green-red) and b (blue-yellow) are the colour, 0 for greys.
XYZ_FROM_RGB = ((0.412453, 0.357580, 0.180423),
                (0.212671, 0.715160, 0.072169),
                (0.019334, 0.119193, 0.950227))  # linear sRGB -> XYZ (scikit-image's xyz_from_rgb)
D65_WHITE = (0.95047, 1.0, 1.08883)  # XYZ of the reference white


def _mix(matrix: Tensor, x: Tensor) -> Tensor:
    """``matrix`` (3, 3) applied to the channels of x (B, 3, H, W)."""
    return torch.einsum("ij,bjhw->bihw", matrix.to(x), x)


def rgb_to_lab(x: Tensor) -> Tensor:
    """sRGB (B, 3, H, W) in [0, 1] -> CIE Lab (B, 3, H, W): L in [0, 100], a and b roughly in [-110, 110].

    The colorization notebook's colour space (Zhang et al. 2016 predict ab from L). The same numbers
    as ``skimage.color.rgb2lab`` (D65, 2°), on a whole batch on any device.
    """
    _check_rgb(x, "x", check_range=True)
    linear = torch.where(x > 0.04045, ((x + 0.055) / 1.055).pow(2.4), x / 12.92)  # undo the sRGB gamma
    xyz = _mix(torch.tensor(XYZ_FROM_RGB, dtype=torch.float64), linear)  # (B, 3, H, W)
    xyz = xyz / torch.tensor(D65_WHITE, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    f = torch.where(xyz > 0.008856, xyz.clamp_min(0.008856).pow(1 / 3), 7.787 * xyz + 16 / 116)
    fx, fy, fz = f.unbind(dim=1)  # each (B, H, W)
    return torch.stack([116 * fy - 16, 500 * (fx - fy), 200 * (fy - fz)], dim=1)  # (B, 3, H, W)


def lab_to_rgb(lab: Tensor) -> Tensor:
    """CIE Lab (B, 3, H, W) -> sRGB (B, 3, H, W) in [0, 1], as ``skimage.color.lab2rgb`` computes it.

    Not every (L, a, b) is a colour a screen can show: out-of-gamut values are clipped to [0, 1]
    (and a negative Z to 0), as scikit-image does, without its warning.
    """
    check_images(lab, "lab", check_range=False)
    if lab.shape[1] != 3:
        raise ValueError(f"lab must have 3 channels (L, a, b), got shape {tuple(lab.shape)}")
    L, a, b = lab.unbind(dim=1)  # each (B, H, W)
    fy = (L + 16) / 116
    f = torch.stack([a / 500 + fy, fy, (fy - b / 200).clamp_min(0)], dim=1)  # (B, 3, H, W): fx, fy, fz
    xyz = torch.where(f > 0.2068966, f.pow(3), (f - 16 / 116) / 7.787)
    xyz = xyz * torch.tensor(D65_WHITE, dtype=lab.dtype, device=lab.device).view(1, 3, 1, 1)
    linear = _mix(torch.linalg.inv(torch.tensor(XYZ_FROM_RGB, dtype=torch.float64)), xyz)  # (B, 3, H, W)
    rgb = torch.where(linear > 0.0031308, 1.055 * linear.clamp_min(0.0031308).pow(1 / 2.4) - 0.055, 12.92 * linear)
    return rgb.clamp(0, 1)
