"""Colorization: predict the colours of a grey image (Zhang, Isola & Efros, ECCV 2016).

"Colorful image colorization": in the CIE Lab colour space an image is its lightness L and
two colour channels ab (``colour.rgb_to_lab``). Show the network L alone and train it to
predict ab. To colour a banana yellow and the sky blue it has to recognise bananas and
skies, so the encoder that reads L learns features -- the pretext task. (The lecture's
slide cites "[Zheng et al.]" beside DeOldify; this module follows Zhang et al. 2016.)

Two losses, side by side, as in the paper:

* **regression** (their eq. 1): L2 on ab, ``1/2 ||Y - Y_hat||^2`` per pixel. Where a pixel
  could be red or green or blue, the L2 optimum is their *mean*: a greyish, brownish,
  desaturated colour.
* **classification** (eq. 2-4): quantise ab into bins of side 10 that hold sRGB colours
  (the paper keeps 313; :func:`ab_bins` computes the in-gamut bins from the sRGB cube),
  soft-encode each target pixel over its 5 nearest bins (Gaussian, sigma 5), and minimise the
  cross-entropy weighted by ``v = w[argmax Z]`` per pixel,

      L_cl = -sum_{h,w} v(Z_hw) sum_q Z_hwq log Z_hat_hwq,
      w ~ ((1 - lambda) p_smooth + lambda / Q)^-1,  normalised so that E_p[w] = 1,   (eq. 4)

  where p_smooth is the training pixels' bin distribution smoothed by a Gaussian (sigma 5):
  rare, saturated colours weigh more (lambda = 1/2 mixes with the uniform distribution).
  A predicted distribution is decoded by the **annealed mean** (eq. 5)

      H(Z) = E[f_T(Z)],  f_T(z) = exp(log z / T) / sum_q exp(log z_q / T),

  which is the mean at T = 1 (desaturated again), the mode as T -> 0 (vivid but patchy);
  the paper uses T = 0.38.

The encoder is the profile's backbone with **one input channel**: it reads L / 100 in
[0, 1]. The head (:class:`ColorizationHead`) upsamples its deepest map (1/8 of the input's
side) to 1/4 and predicts there, as the paper predicts at a quarter of the resolution.

The method contract (``docs/adding-a-method.md``): :class:`ColorizationConfig` (built by
:func:`config_for`), the losses (:func:`regression_loss`, :func:`classification_loss`), the step
(:func:`colorization_step`) and :func:`pretrain`, whose heads hold the bin centres and weights.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from course_lib.augment import random_crop, random_flip, to_float
from course_lib.colour import lab_to_rgb, rgb_to_lab
from course_lib.config import Profile, Settings, check_int, check_number
from course_lib.datasets import SPLITS, ImageData
from course_lib.models import Backbone
from course_lib.train import (
    Pretrained,
    PretrainSetup,
    check_budget,
    config_from_table,
    pretrain_method,
    seeded_backbone,
)

LOSSES = ("classification", "regression")
PAPER_TEMPERATURE = 0.38  # the annealed mean's T in Zhang et al. (sec. 2.3)
AB_SCALE = 100.0  # the regression head predicts ab / 100: outputs of order one


@dataclass(frozen=True)
class ColorizationConfig(Settings):
    """Colorization's hyperparameters: every value here is the value used (see :func:`config_for`)."""

    loss: str = "classification"  # "classification" over ab bins (the paper's), or "regression" (L2 on ab)
    grid_size: int = 10  # side of an ab bin (the paper's 10: Q in-gamut bins, see ab_bins)
    soft_neighbours: int = 5  # a target pixel is soft-encoded over its 5 nearest bins (the paper's)
    soft_sigma: float = 5.0  # ... with Gaussian weights of this width (ab units; the paper's 5)
    prior_sigma: float = 5.0  # Gaussian smoothing of the colour distribution before rebalancing (the paper's 5)
    rebalance_lambda: float = 0.5  # weight of the uniform distribution in the rebalancing (the paper's 1/2; 1 = none)
    temperature: float = PAPER_TEMPERATURE  # annealed-mean T for decoding a prediction (1 = mean, -> 0 = mode)
    hidden_dim: int = 64  # channels of the head's hidden conv
    batch_size: int = 64  # images per step
    crop_size: int | None = 24  # train on random crops of this side (cheaper steps, more variety; None: whole images)
    flip_p: float = 0.5  # horizontal flip of a training image
    pretrain_dataset: str = "photos"  # colour images to pre-train on (the protocol evaluates on the profile's data)
    num_epochs: int = 10  # passes over the training images
    time_budget_s: float | None = None  # stop after this many seconds (None: no budget)
    recalibration_batches: int = 20  # batches that re-estimate the batch-norm statistics after training (0: skip)

    def __post_init__(self) -> None:
        if self.loss not in LOSSES:
            raise ValueError(f"loss must be one of {LOSSES}, got {self.loss!r}")
        check_int(self.grid_size, "grid_size", minimum=2)
        check_int(self.soft_neighbours, "soft_neighbours")
        for name in ("soft_sigma", "prior_sigma"):
            check_number(getattr(self, name), name, 1e-3, 1e3)
        check_number(self.rebalance_lambda, "rebalance_lambda", 0, 1)
        check_number(self.temperature, "temperature", 1e-3, 10)
        check_int(self.hidden_dim, "hidden_dim")
        check_int(self.batch_size, "batch_size")
        check_int(self.crop_size, "crop_size", minimum=8, optional=True)
        check_number(self.flip_p, "flip_p", 0, 1)
        if self.pretrain_dataset not in SPLITS:
            raise ValueError(f"pretrain_dataset must be one of {list(SPLITS)}, got {self.pretrain_dataset!r}")
        check_int(self.num_epochs, "num_epochs")
        check_int(self.recalibration_batches, "recalibration_batches", minimum=0)
        check_budget(self.time_budget_s)


# Per-profile values (the dataclass defaults are the fast profile's). Fast: the photo patches that
# installed packages ship (3,240 patches of 32x32 from 8 photos), about 35 s per loss on one idle CPU
# thread; the budget only cuts a run on a slow or busy machine. Full: CIFAR-10's 50,000 colour images,
# the profile's epochs, no budget. Grade: one epoch (the profile's 5-s budget cuts it).
COLORIZATION_CONFIGS: dict[str, dict] = {
    "fast": {"num_epochs": 10, "time_budget_s": 90.0},
    "full": {"pretrain_dataset": "cifar10", "batch_size": 256, "hidden_dim": 256, "crop_size": 28, "num_epochs": 30},
    "grade": {"num_epochs": 1},
}


def config_for(profile: Profile, **overrides) -> ColorizationConfig:
    """Colorization's configuration for ``profile`` (by name; ``fast``'s values for an unknown name),
    then ``overrides``. The time budget is the smaller of the method's and the profile's."""
    return config_from_table(ColorizationConfig, COLORIZATION_CONFIGS, profile, overrides, "colorization")


# --------------------------------------------------------------------------- inputs and targets


def _check_rgb_batch(x: Tensor, name: str = "x") -> None:
    if not isinstance(x, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of shape (B, 3, H, W), got {type(x).__name__}")
    if x.dim() != 4 or x.shape[1] != 3:
        raise ValueError(f"{name} must be colour images (B, 3, H, W), got shape {tuple(x.shape)}")


def split_lab(x: Tensor) -> tuple[Tensor, Tensor]:
    """Colour images (B, 3, H, W), uint8 or float in [0, 1] -> the network's input L / 100 (B, 1, H, W)
    in [0, 1] and the target ab (B, 2, H, W) in Lab units."""
    _check_rgb_batch(x)
    lab = rgb_to_lab(to_float(x) if x.dtype == torch.uint8 else x)  # (B, 3, H, W)
    return lab[:, :1] / 100, lab[:, 1:]


def lightness_data(data: ImageData) -> ImageData:
    """The images the encoder reads: colour images become their lightness L, as uint8 L * 255 / 100
    (1 channel); grey images (Fashion-MNIST) are returned as they are -- their pixel value plays L."""
    if not isinstance(data, ImageData):
        raise TypeError(f"data must be an ImageData, got {type(data).__name__}")
    if data.images.shape[1] == 1:
        return data
    light = torch.cat([split_lab(data.images[i:i + 1024])[0] for i in range(0, len(data), 1024)])  # (N, 1, H, W)
    return ImageData((light * 255).round().to(torch.uint8), data.labels.clone(), list(data.classes))


# --------------------------------------------------------------------------- quantised ab


@functools.lru_cache(maxsize=4)
def _ab_bins(grid_size: int) -> Tensor:
    levels = torch.arange(0, 256, 5, dtype=torch.float64) / 255  # 52 levels per channel
    cube = torch.stack(torch.meshgrid(levels, levels, levels, indexing="ij")).reshape(1, 3, -1, 1)  # (1, 3, 52^3, 1)
    ab = rgb_to_lab(cube)[0, 1:, :, 0].T  # (52^3, 2)
    cells = torch.unique(torch.round(ab / grid_size).long(), dim=0)  # (Q, 2), sorted by a then b
    return cells.to(torch.float32) * grid_size


def ab_bins(grid_size: int = 10) -> Tensor:
    """The centres (Q, 2) of the ab bins that hold sRGB colours: the square cells of side ``grid_size``
    centred on multiples of it that the ab values of the sRGB cube (sampled every 5 of 255 levels per
    channel) fall in, sorted by a, then b.

    Zhang et al. keep Q = 313 bins of side 10 "in gamut"; the sRGB cube itself fills fewer
    (``len(ab_bins(10))``), the rest lie on the gamut's edge or beyond it.
    """
    check_int(grid_size, "grid_size", minimum=2)
    return _ab_bins(grid_size).clone()


def _check_ab(ab: Tensor, centres: Tensor) -> None:
    if not isinstance(ab, Tensor) or ab.dim() != 4 or ab.shape[1] != 2 or not ab.is_floating_point():
        raise ValueError(f"ab must be a float tensor (B, 2, H, W), got {getattr(ab, 'shape', type(ab).__name__)}")
    if not isinstance(centres, Tensor) or centres.dim() != 2 or centres.shape[1] != 2 or len(centres) == 0:
        raise ValueError(f"centres must be bin centres (Q, 2), got {getattr(centres, 'shape', type(centres))}")


def _squared_distances(ab: Tensor, centres: Tensor) -> Tensor:
    """||ab - c_q||^2 for every pixel and bin: (B, H, W, Q)."""
    pixels = ab.permute(0, 2, 3, 1).unsqueeze(-2)  # (B, H, W, 1, 2)
    return (pixels - centres.to(ab)).pow(2).sum(-1)  # (B, H, W, Q)


def quantize_ab(ab: Tensor, centres: Tensor) -> Tensor:
    """The nearest bin of every pixel: ab (B, 2, H, W) -> int64 (B, H, W) indices into ``centres`` (Q, 2)."""
    _check_ab(ab, centres)
    per_image = ab.shape[2] * ab.shape[3] * len(centres)
    step = max(1, 2**24 // max(1, per_image))  # images per chunk: at most 16M distances in memory at once
    return torch.cat([_squared_distances(ab[i:i + step], centres).argmin(-1)  # (b, H, W)
                      for i in range(0, len(ab), step)]) if len(ab) else ab.new_zeros(ab.shape[0], *ab.shape[2:]).long()


def soft_encode(ab: Tensor, centres: Tensor, neighbours: int = 5, sigma: float = 5.0) -> Tensor:
    """Zhang et al.'s soft target Z: each pixel's ab spread over its ``neighbours`` nearest bins with
    weights exp(-d^2 / 2 sigma^2), normalised to sum to 1. ab (B, 2, H, W) -> Z (B, Q, H, W)."""
    _check_ab(ab, centres)
    check_int(neighbours, "neighbours")
    if neighbours > len(centres):
        raise ValueError(f"neighbours must be at most the number of bins {len(centres)}, got {neighbours}")
    check_number(sigma, "sigma", 1e-6, float("inf"))
    d2, nearest = _squared_distances(ab, centres).topk(neighbours, dim=-1, largest=False)  # (B, H, W, k) each
    weight = torch.softmax(-d2 / (2 * sigma**2), dim=-1)  # (B, H, W, k): Gaussian, normalised
    z = torch.zeros(*ab.shape[:1], *ab.shape[2:], len(centres), dtype=ab.dtype, device=ab.device)  # (B, H, W, Q)
    return z.scatter_(-1, nearest, weight).permute(0, 3, 1, 2)  # (B, Q, H, W)


# --------------------------------------------------------------------------- class rebalancing


def color_prior(images: Tensor, centres: Tensor, sigma: float = 5.0, pool: int = 4, batch_size: int = 512) -> Tensor:
    """The empirical distribution (Q,) of the colours of ``images`` (uint8 (N, 3, H, W)) at the
    resolution the loss sees them (ab averaged over ``pool`` x ``pool`` blocks, as the head predicts
    at 1/4 of the side): each pixel counted in its nearest bin, the histogram smoothed over the bins
    by a Gaussian of width ``sigma`` (ab units) and normalised to sum to 1 (p_smooth of Zhang et al.,
    sec. 2.2)."""
    _check_rgb_batch(images, "images")
    if images.dtype != torch.uint8:
        raise TypeError(f"images must be uint8 (N, 3, H, W), got {images.dtype}")
    check_number(sigma, "sigma", 1e-6, float("inf"))
    check_int(pool, "pool")
    counts = torch.zeros(len(centres), dtype=torch.float64)
    for i in range(0, len(images), batch_size):
        _, ab = split_lab(images[i:i + batch_size].cpu())
        ab = F.avg_pool2d(ab, pool) if pool > 1 else ab  # (b, 2, H/pool, W/pool)
        counts += torch.bincount(quantize_ab(ab, centres).flatten(), minlength=len(centres)).double()
    d2 = (centres[:, None, :] - centres[None, :, :]).double().pow(2).sum(-1)  # (Q, Q)
    smooth = torch.exp(-d2 / (2 * sigma**2)) @ counts  # (Q,)
    return (smooth / smooth.sum()).float()


def rebalance_weights(prior: Tensor, lam: float = 0.5) -> Tensor:
    """Zhang et al.'s eq. 4: w ~ ((1 - lam) p + lam / Q)^-1, scaled so that sum_q p_q w_q = 1.

    ``prior`` (Q,) is a distribution over the bins. A rare colour gets a large weight (at most
    Q / lam times the average); lam = 1 gives every bin weight 1 (no rebalancing).
    """
    if not isinstance(prior, Tensor) or prior.dim() != 1 or len(prior) == 0 or not prior.is_floating_point():
        raise ValueError(f"prior must be a float tensor (Q,), got {getattr(prior, 'shape', type(prior).__name__)}")
    if (prior < 0).any() or not torch.isclose(prior.sum(), torch.ones((), dtype=prior.dtype), atol=1e-4):
        raise ValueError("prior must be a distribution: non-negative, summing to 1")
    check_number(lam, "lam", 0, 1)
    if lam == 0 and (prior == 0).any():
        raise ValueError("lam = 0 needs every bin's probability > 0 (its weight is 1 / p)")
    w = 1 / ((1 - lam) * prior + lam / len(prior))  # (Q,)
    return w / (prior * w).sum()


# --------------------------------------------------------------------------- the losses and decoding


def regression_loss(ab_pred: Tensor, ab: Tensor) -> Tensor:
    """Eq. 1 of Zhang et al.: 1/2 ||ab - ab_pred||^2 per pixel, averaged over pixels.
    ab_pred, ab: (B, 2, H, W) in Lab units."""
    if ab_pred.shape != ab.shape or ab.dim() != 4 or ab.shape[1] != 2:
        raise ValueError(f"expected ab_pred and ab of one shape (B, 2, H, W), got {tuple(ab_pred.shape)} "
                         f"and {tuple(ab.shape)}")
    return 0.5 * (ab_pred - ab).pow(2).sum(1).mean()


def classification_loss(logits: Tensor, z: Tensor, weights: Tensor | None = None) -> Tensor:
    """Eq. 2-3 of Zhang et al.: -v(Z) sum_q Z_q log softmax(logits)_q per pixel, averaged over pixels,
    with v(Z) = weights[argmax_q Z] (class rebalancing; None: v = 1).

    logits, z: (B, Q, H, W) -- z a distribution over the Q bins per pixel (``soft_encode``);
    weights: (Q,).
    """
    if logits.shape != z.shape or logits.dim() != 4:
        raise ValueError(f"expected logits and z of one shape (B, Q, H, W), got {tuple(logits.shape)} "
                         f"and {tuple(z.shape)}")
    if weights is not None and weights.shape != (logits.shape[1],):
        raise ValueError(f"weights must have shape ({logits.shape[1]},), got {tuple(weights.shape)}")
    per_pixel = -(z * F.log_softmax(logits.float(), dim=1)).sum(1)  # (B, H, W)
    if weights is not None:
        per_pixel = per_pixel * weights.to(per_pixel)[z.argmax(1)]  # v(Z): the weight of the target's bin
    return per_pixel.mean()


def annealed_mean(logits: Tensor, centres: Tensor, temperature: float = PAPER_TEMPERATURE) -> Tensor:
    """Eq. 5 of Zhang et al.: ab = sum_q f_T(z)_q c_q with f_T(z) = softmax(log z / T) -- for z =
    softmax(logits) that is softmax(logits / T). T = 1: the mean of the predicted distribution;
    T -> 0: its mode. logits (B, Q, H, W), centres (Q, 2) -> ab (B, 2, H, W)."""
    if not isinstance(logits, Tensor) or logits.dim() != 4:
        raise ValueError(f"logits must be (B, Q, H, W), got {getattr(logits, 'shape', type(logits).__name__)}")
    if not isinstance(centres, Tensor) or centres.shape != (logits.shape[1], 2):
        raise ValueError(f"centres must be ({logits.shape[1]}, 2), got {getattr(centres, 'shape', type(centres))}")
    check_number(temperature, "temperature", 1e-6, float("inf"))
    p = torch.softmax(logits.float() / temperature, dim=1)  # (B, Q, H, W)
    return torch.einsum("bqhw,qc->bchw", p, centres.to(p))  # (B, 2, H, W)


# --------------------------------------------------------------------------- the head and the step


class ColorizationHead(nn.Module):
    """The backbone's deepest map (B, C, H/8, W/8) -> outputs (B, out_dim, H/4, W/4): upsample x2,
    3x3 conv + BN + ReLU, 1x1 conv. out_dim = Q logits (classification) or 2 (regression: ab / 100).

    It keeps the bin centres (Q, 2) and the rebalancing weights (Q,) as buffers, so they are saved
    and reloaded with the weights (both empty for regression).
    """

    def __init__(self, in_dim: int, hidden_dim: int, centres: Tensor, weights: Tensor):
        super().__init__()
        out_dim = len(centres) if len(centres) else 2
        self.net = nn.Sequential(
            nn.Upsample(scale_factor=2, mode="nearest"),
            nn.Conv2d(in_dim, hidden_dim, 3, padding=1, bias=False), nn.BatchNorm2d(hidden_dim), nn.ReLU(inplace=True),
            nn.Conv2d(hidden_dim, out_dim, 1),
        )
        self.register_buffer("centres", centres.float().clone())
        self.register_buffer("class_weights", weights.float().clone())

    @property
    def classification(self) -> bool:
        return len(self.centres) > 0

    def forward(self, maps: Tensor) -> Tensor:
        return self.net(maps)

    def decode(self, out: Tensor, temperature: float = PAPER_TEMPERATURE) -> Tensor:
        """Outputs (B, out_dim, h, w) -> ab (B, 2, h, w): the annealed mean, or the regression's ab."""
        return annealed_mean(out, self.centres, temperature) if self.classification else AB_SCALE * out.float()


def colorization_step(backbone: Backbone, head: ColorizationHead, cfg: ColorizationConfig,
                      generator: torch.Generator | None = None):
    """The step function for ``course_lib.train.train``: batch -> {"loss", "acc"} (classification:
    the share of pixels whose most likely bin is the target's; regression: the mean |ab error| / 100).

    Labels are never looked at: the targets are the images' own colours, at the head's resolution.
    """

    def step(batch) -> dict[str, Tensor]:
        x = batch.x if cfg.crop_size is None else random_crop(batch.x, cfg.crop_size, generator)  # uint8
        x = random_flip(to_float(x), cfg.flip_p, generator) if cfg.flip_p > 0 else to_float(x)
        light, ab = split_lab(x)  # (B, 1, H, W), (B, 2, H, W)
        out = head(backbone.forward_maps(light)[-1])  # (B, Q or 2, H/4, W/4)
        ab = F.adaptive_avg_pool2d(ab, out.shape[-2:])  # (B, 2, H/4, W/4): the targets at that resolution
        if not head.classification:
            ab_pred = AB_SCALE * out.float()
            return {"loss": regression_loss(ab_pred, ab), "acc": (ab_pred - ab).abs().mean().detach() / AB_SCALE}
        z = soft_encode(ab, head.centres, cfg.soft_neighbours, cfg.soft_sigma)  # (B, Q, h, w)
        loss = classification_loss(out, z, head.class_weights)
        return {"loss": loss, "acc": (out.argmax(1) == z.argmax(1)).float().mean()}

    return step


# --------------------------------------------------------------------------- training


def setup(train_data: ImageData, profile: Profile, cfg: ColorizationConfig, device: torch.device) -> PretrainSetup:
    """Colorization's part of its pre-training run (``train.pretrain_method`` does the rest): for the
    classification loss the colour distribution and the rebalancing weights, measured on ``train_data``
    first; the profile's backbone with one input channel (L), seeded as a 1-channel random-init baseline;
    the head, the step, and the L channels that recalibrate batch norm. No labels: self-supervised."""
    images = train_data.images
    if images.shape[1] != 3:
        raise TypeError(f"train_data must be an ImageData with colour uint8 images (N, 3, H, W), got "
                        f"{type(train_data).__name__} with images {tuple(images.shape)}")
    if len(images) < cfg.batch_size:
        raise ValueError(f"batch_size {cfg.batch_size} is larger than the {len(images)} training images")
    if cfg.crop_size is not None and cfg.crop_size > min(images.shape[-2:]):
        raise ValueError(f"crop_size {cfg.crop_size} is larger than the images {tuple(images.shape[-2:])}")
    if cfg.loss == "classification":
        centres = ab_bins(cfg.grid_size)
        weights = rebalance_weights(color_prior(images, centres, cfg.prior_sigma), cfg.rebalance_lambda)
    else:
        centres, weights = torch.zeros(0, 2), torch.zeros(0)
    backbone = seeded_backbone(profile, 1, device)
    head = ColorizationHead(backbone.feature_dim, cfg.hidden_dim, centres, weights).to(device)
    generator = torch.Generator(device=device).manual_seed(profile.seed)

    def forward(batch) -> Tensor:  # L through both modules (batch-norm recalibration)
        return head(backbone.forward_maps(split_lab(batch.x)[0])[-1])

    return PretrainSetup(backbone, {"colour": head}, colorization_step(backbone, head, cfg, generator), forward,
                         images, cfg.batch_size, profile.lr, profile.weight_decay)


def pretrain(train_data: ImageData, profile: Profile, cfg: ColorizationConfig | None = None,
             device: torch.device | None = None, progress: bool = True) -> Pretrained:
    """Pre-train the profile's backbone (1 input channel: L) to colour ``train_data``'s colour images
    (labels unused), cached. Classification: the colour distribution and the rebalancing weights are
    measured on ``train_data`` first. Starts from the seeded initialisation of a 1-channel random-init
    baseline. Returns ``Pretrained(backbone, history, heads={"colour": ColorizationHead})``."""
    return pretrain_method(__name__, train_data, profile, cfg, device, progress)


# --------------------------------------------------------------------------- using it, measuring it


@torch.no_grad()
def colorize(backbone: Backbone, head: ColorizationHead, images: Tensor, temperature: float = PAPER_TEMPERATURE,
             batch_size: int = 256) -> Tensor:
    """Colour images (N, 3, H, W) (uint8 or float) recoloured from their L alone: the predicted ab,
    upsampled (bilinear) to H x W, joined with the true L. Returns sRGB (N, 3, H, W) float in [0, 1]."""
    _check_rgb_batch(images, "images")
    device = next(backbone.parameters()).device
    out = []
    for i in range(0, len(images), batch_size):
        light, _ = split_lab(images[i:i + batch_size].to(device))  # (b, 1, H, W)
        ab = head.decode(head(backbone.forward_maps(light)[-1]), temperature)  # (b, 2, H/4, W/4)
        ab = F.interpolate(ab, size=light.shape[-2:], mode="bilinear", align_corners=False)  # (b, 2, H, W)
        out.append(lab_to_rgb(torch.cat([100 * light, ab], dim=1)).cpu())
    return torch.cat(out)


def colourfulness(rgb: Tensor) -> Tensor:
    """Hasler & Süsstrunk's colourfulness M of each image (2003): with rg = R - G and yb = (R + G) / 2 - B
    (RGB in 0..255), M = sqrt(std(rg)^2 + std(yb)^2) + 0.3 sqrt(mean(rg)^2 + mean(yb)^2). 0 for a grey
    image; on their scale 33 is "moderately", 45 "averagely", 59 "quite" and 82 "highly" colourful. rgb (N, 3, H, W),
    uint8 or float in [0, 1] -> (N,)."""
    _check_rgb_batch(rgb, "rgb")
    x = rgb.double() if rgb.dtype == torch.uint8 else 255 * rgb.double()
    r, g, b = x.unbind(dim=1)  # (N, H, W) each
    rg, yb = (r - g).flatten(1), ((r + g) / 2 - b).flatten(1)  # (N, H*W) each
    spread = (rg.var(1, unbiased=False) + yb.var(1, unbiased=False)).sqrt()
    return (spread + 0.3 * (rg.mean(1).pow(2) + yb.mean(1).pow(2)).sqrt()).float()


def mean_chroma(rgb: Tensor) -> Tensor:
    """The mean chroma sqrt(a^2 + b^2) of each image's pixels (Lab units; 0 for grey): (N, 3, H, W) -> (N,)."""
    _check_rgb_batch(rgb, "rgb")
    _, ab = split_lab(rgb)
    return ab.pow(2).sum(1).sqrt().flatten(1).mean(1)
