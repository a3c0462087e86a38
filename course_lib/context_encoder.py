"""Context encoder: fill in a region the network was not shown (Pathak et al., CVPR 2016).

"Context encoders: feature learning by inpainting": remove a region of an image, encode
what is left (the *context*) with a CNN, and decode a prediction of the missing pixels.
The encoder has to understand the image to fill the hole, so its features become useful.
The paper's loss is a masked L2 reconstruction plus an adversarial term (their eq. 1, 3 and 4):

    L_rec = || M * (x - F((1 - M) * x)) ||^2          M = 1 on the removed pixels
    L_adv = -log D(fill)                                (non-saturating, for the generator F; see below)
    L     = lambda_rec L_rec + lambda_adv L_adv         (lambda_rec = 0.999, lambda_adv = 0.001)

and the paper predicts a slightly larger region that overlaps the context by a few pixels,
with a 10x weight on that overlap band (their implementation details). L2 alone "tends to average
together the multiple modes in predictions" (their sec. 3.2): where several fills are plausible, the
L2-optimal one is their mean, a blur -- notebook 05 shows it, measures it, and shows what the adversarial
term changes. Two differences from the paper: the course's discriminator judges the composited image
(context plus fill), the paper's judges F's output; and the paper learned its *features* with L2 alone
(sec. 5.2: the joint loss did not converge with its AlexNet encoder), the joint loss being its inpainting
recipe.

Masks (sec. 3.3), all pure functions of a ``torch.Generator``: the central square
(:func:`center_mask`), random blocks (:func:`random_block_masks`) and random regions
(:func:`random_region_masks`: the paper cut its shapes from PASCAL VOC segmentations, which we do not
ship, so here they come from thresholded smooth noise: irregular and often fragmented, not object-shaped).

The method contract (``docs/adding-a-method.md``): :class:`ContextEncoderConfig` (built by
:func:`config_for`), the loss (:func:`masked_l2_loss`, weights by :func:`loss_weights`),
the step (:func:`context_encoder_step`; with the adversarial term, the discriminator's update is the
one loop's too: :func:`adversary`) and :func:`pretrain`, which returns a
``train.Pretrained`` with the decoder in ``heads["decoder"]`` (and the discriminator in
``heads["discriminator"]`` when the adversarial term is on). The encoder is the profile's
backbone, so the protocol evaluates it like every other method's.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from course_lib.augment import to_float
from course_lib.config import Profile, Settings, check_int, check_number
from course_lib.datasets import ImageData
from course_lib.models import Backbone, conv_block
from course_lib.train import (
    Adversary,
    Pretrained,
    PretrainSetup,
    check_budget,
    config_from_table,
    pretrain_method,
    seeded_backbone,
)

MASKS = ("center", "blocks", "regions")


@dataclass(frozen=True)
class ContextEncoderConfig(Settings):
    """Hyperparameters of the context encoder, resolved and checked when built (``config_for``):
    the printed values are the values used."""

    mask: str = "regions"  # "center" square, random "blocks" or random "regions" (the paper's three)
    mask_fraction: float = 0.25  # share of the image removed (the paper: 1/4); center: a square of side sqrt(.) H
    num_blocks: int = 5  # "blocks": squares per image, each of side sqrt(mask_fraction / num_blocks) H
    fill_value: float = 0.5  # what the removed pixels are set to in the input (the paper: the mean pixel)
    overlap: int = 1  # pixels of context next to the hole that are predicted too (the paper: 4 of 128)
    overlap_weight: float = 10.0  # their weight in the loss, the hole's pixels weighing 1 (the paper: 10)
    adv_weight: float = 0.0  # lambda_adv (0: L2 only; the paper: 0.001, lambda_rec = 1 - lambda_adv)
    decoder_width: int = 16  # channels of the decoder's last stage (x2, x4 towards the bottleneck)
    batch_size: int = 64  # images per step
    num_epochs: int = 3  # passes over the training images
    time_budget_s: float | None = 80.0  # stop pre-training after this many seconds (None: no budget)
    recalibration_batches: int = 20  # batches that re-estimate the batch-norm statistics after training (0: skip)

    def __post_init__(self) -> None:
        if self.mask not in MASKS:
            raise ValueError(f"mask must be one of {MASKS}, got {self.mask!r}")
        check_number(self.mask_fraction, "mask_fraction", 0.01, 0.9)
        check_int(self.num_blocks, "num_blocks")
        check_number(self.fill_value, "fill_value", 0, 1)
        check_int(self.overlap, "overlap", minimum=0)
        check_number(self.overlap_weight, "overlap_weight", 0, 1000)
        check_number(self.adv_weight, "adv_weight", 0, 1)
        check_int(self.decoder_width, "decoder_width")
        check_int(self.batch_size, "batch_size")
        check_int(self.num_epochs, "num_epochs")
        check_int(self.recalibration_batches, "recalibration_batches", minimum=0)
        check_budget(self.time_budget_s)


# Per-profile values (the dataclass defaults are the fast profile's). Fast (Fashion-MNIST 28x28, small CNN,
# one CPU thread): L2 only -- a discriminator would add its own forward and backward passes to every step,
# so the adversarial term is shown on a small run in notebook 05 instead; 3 epochs of random regions.
# Full (CIFAR-10 32x32, ResNet-18, a GPU): the paper's joint loss (lambda_adv = 0.001), a 2-px overlap
# band (the paper's 4 px of 128 would round to 1 px of 32), a wider decoder, 100 epochs.
CONTEXT_ENCODER_CONFIGS: dict[str, dict] = {
    "fast": {},
    "full": {"adv_weight": 0.001, "overlap": 2, "decoder_width": 64, "batch_size": 256, "num_epochs": 100,
             "time_budget_s": None},
    "grade": {"num_epochs": 1},
}


def config_for(profile: Profile, **overrides) -> ContextEncoderConfig:
    """The context encoder's settings for ``profile`` (by name; ``fast``'s for an unknown name), then
    ``overrides``. The time budget is the smaller of the method's and the profile's."""
    return config_from_table(ContextEncoderConfig, CONTEXT_ENCODER_CONFIGS, profile, overrides, "context-encoder", default_budget=80.0)


# --------------------------------------------------------------------------- masks (1 = removed)


def _check_size(size) -> tuple[int, int]:
    if isinstance(size, int) and not isinstance(size, bool):
        size = (size, size)
    if not (isinstance(size, tuple) and len(size) == 2
            and all(isinstance(s, int) and not isinstance(s, bool) and s >= 2 for s in size)):
        raise ValueError(f"size must be an int >= 2 or a pair (H, W) of them, got {size!r}")
    return size


def _check_fraction(fraction) -> float:
    check_number(fraction, "fraction", 0.0, 1.0)
    if not fraction > 0:
        raise ValueError(f"fraction must be in (0, 1], got {fraction!r}")
    return float(fraction)


def square_mask(size: int | tuple[int, int], side: int, top: int, left: int) -> Tensor:
    """A bool mask (H, W), True on the ``side`` x ``side`` square whose top-left pixel is (``top``, ``left``);
    the square is clipped at the image's border."""
    h, w = _check_size(size)
    for name, v in (("side", side), ("top", top), ("left", left)):
        check_int(v, name, minimum=1 if name == "side" else 0)
    if top >= h or left >= w:
        raise ValueError(f"(top, left) = ({top}, {left}) lies outside an image of size {(h, w)}")
    mask = torch.zeros(h, w, dtype=torch.bool)
    mask[top:top + side, left:left + side] = True
    return mask


def center_mask(size: int | tuple[int, int], fraction: float = 0.25) -> Tensor:
    """The paper's central square: a bool mask (H, W), True on a centred square of side
    ``round(sqrt(fraction * H * W))`` (the paper: 64 x 64 of 128 x 128, a quarter of the pixels)."""
    h, w = _check_size(size)
    side = min(h, w, max(1, round(math.sqrt(_check_fraction(fraction) * h * w))))
    return square_mask((h, w), side, (h - side) // 2, (w - side) // 2)


def random_block_masks(n: int, size: int | tuple[int, int], fraction: float = 0.25, num_blocks: int = 5,
                       generator: torch.Generator | None = None) -> Tensor:
    """The paper's random blocks: bool masks (n, H, W), each the union of ``num_blocks`` squares of side
    ``max(1, round(sqrt(fraction * H * W / num_blocks)))`` at uniformly random positions inside the image
    (they may overlap, so each mask covers at most ``fraction`` of the image, up to rounding).

    The positions are drawn as ``torch.randint(0, H - side + 1, (n, num_blocks))`` for the rows, then the
    same for the columns, from ``generator``.
    """
    check_int(n, "n")
    check_int(num_blocks, "num_blocks")
    h, w = _check_size(size)
    side = min(h, w, max(1, round(math.sqrt(_check_fraction(fraction) * h * w / num_blocks))))
    top = torch.randint(0, h - side + 1, (n, num_blocks), generator=generator)  # (n, k)
    left = torch.randint(0, w - side + 1, (n, num_blocks), generator=generator)  # (n, k)
    rows = torch.arange(h)  # (H,)
    cols = torch.arange(w)  # (W,)
    in_rows = (rows >= top[..., None]) & (rows < top[..., None] + side)  # (n, k, H)
    in_cols = (cols >= left[..., None]) & (cols < left[..., None] + side)  # (n, k, W)
    return (in_rows[..., :, None] & in_cols[..., None, :]).any(dim=1)  # (n, H, W)


def random_region_masks(n: int, size: int | tuple[int, int], fraction: float = 0.25, smoothness: int = 4,
                        generator: torch.Generator | None = None) -> Tensor:
    """Random regions: bool masks (n, H, W) of irregular blobs covering exactly ``round(fraction * H * W)``
    pixels each (the paper pastes deformed object shapes; we threshold smooth random noise).

    Noise of size (ceil(H / smoothness), ceil(W / smoothness)) from ``generator`` is upsampled bilinearly
    to (H, W); the ``round(fraction * H * W)`` largest values of each image are the region.
    """
    check_int(n, "n")
    check_int(smoothness, "smoothness")
    h, w = _check_size(size)
    k = max(1, round(_check_fraction(fraction) * h * w))
    noise = torch.rand(n, 1, -(-h // smoothness), -(-w // smoothness), generator=generator)
    field = F.interpolate(noise, size=(h, w), mode="bilinear", align_corners=False).flatten(1)  # (n, H*W)
    top = field.topk(k, dim=1).indices  # (n, k)
    return torch.zeros(n, h * w, dtype=torch.bool).scatter_(1, top, True).view(n, h, w)


def make_masks(n: int, size: int | tuple[int, int], cfg: ContextEncoderConfig,
               generator: torch.Generator | None = None) -> Tensor:
    """``n`` masks (n, H, W) of the kind ``cfg.mask`` asks for, on the CPU."""
    if cfg.mask == "center":
        return center_mask(size, cfg.mask_fraction).expand(n, -1, -1).clone()
    if cfg.mask == "blocks":
        return random_block_masks(n, size, cfg.mask_fraction, cfg.num_blocks, generator)
    return random_region_masks(n, size, cfg.mask_fraction, generator=generator)


def apply_mask(x: Tensor, mask: Tensor, fill_value: float = 0.5) -> Tensor:
    """The context the encoder sees: ``x`` (B, C, H, W) float with the pixels of ``mask`` (B, H, W) set to
    ``fill_value``."""
    _check_pair(x, mask)
    return x.masked_fill(mask[:, None].to(x.device), fill_value)  # (B, C, H, W)


# --------------------------------------------------------------------------- the loss


def _check_pair(x: Tensor, mask: Tensor) -> None:
    if not isinstance(x, Tensor) or not x.is_floating_point() or x.dim() != 4:
        raise TypeError(f"expected float images (B, C, H, W), got {getattr(x, 'dtype', type(x).__name__)} "
                        f"{tuple(getattr(x, 'shape', ()))}")
    if not isinstance(mask, Tensor) or mask.dtype != torch.bool:
        raise TypeError(f"mask must be a bool tensor (B, H, W), got {getattr(mask, 'dtype', type(mask).__name__)}")
    if mask.shape != (x.shape[0], *x.shape[2:]):
        raise ValueError(f"mask must have shape (B, H, W) = {(x.shape[0], *x.shape[2:])}, got {tuple(mask.shape)}")


def loss_weights(mask: Tensor, overlap: int = 0, overlap_weight: float = 10.0) -> Tensor:
    """Per-pixel weights (B, H, W) of the reconstruction loss: 1 on the removed pixels, ``overlap_weight``
    on the context pixels within ``overlap`` pixels of them (Chebyshev distance: a square dilation), 0
    elsewhere. Pathak et al. predict such an overlap band and weigh it 10x (their implementation details), which ties the fill
    to its border."""
    if not isinstance(mask, Tensor) or mask.dtype != torch.bool or mask.dim() != 3:
        raise TypeError(f"mask must be a bool tensor (B, H, W), got {getattr(mask, 'dtype', type(mask).__name__)} "
                        f"{tuple(getattr(mask, 'shape', ()))}")
    check_int(overlap, "overlap", minimum=0)
    check_number(overlap_weight, "overlap_weight", 0, math.inf)
    hole = mask.float()  # (B, H, W)
    if overlap == 0:
        return hole
    grown = F.max_pool2d(hole[:, None], 2 * overlap + 1, stride=1, padding=overlap)[:, 0]  # (B, H, W) dilated
    return hole + overlap_weight * (grown - hole)


def masked_l2_loss(pred: Tensor, target: Tensor, weights: Tensor) -> Tensor:
    """The paper's reconstruction loss L_rec = ||M * (x - F((1 - M) * x))||^2 (eq. 1), normalised: the
    weighted mean squared error

        sum_{b,c,i,j} w[b,i,j] (pred[b,c,i,j] - target[b,c,i,j])^2 / (C sum_{b,i,j} w[b,i,j])

    for ``pred`` and ``target`` (B, C, H, W) and weights ``w`` (B, H, W) from :func:`loss_weights`
    (a plain mask gives the mean squared error over the removed pixels).
    """
    if not isinstance(pred, Tensor) or not isinstance(target, Tensor) or not isinstance(weights, Tensor):
        raise TypeError("pred, target and weights must be tensors")
    if pred.dim() != 4 or pred.shape != target.shape:
        raise ValueError(f"pred and target must both be (B, C, H, W), got {tuple(pred.shape)} and {tuple(target.shape)}")
    if weights.shape != (pred.shape[0], *pred.shape[2:]):
        raise ValueError(f"weights must be (B, H, W) = {(pred.shape[0], *pred.shape[2:])}, got {tuple(weights.shape)}")
    total = weights.sum()
    if not total > 0:
        raise ValueError("weights sum to 0: no pixel is removed")
    squared = (pred.float() - target.float()).pow(2).sum(dim=1)  # (B, H, W), summed over channels
    return (weights.float() * squared).sum() / (pred.shape[1] * total)


def adversarial_losses(d_real: Tensor, d_fake: Tensor) -> tuple[Tensor, Tensor]:
    """The GAN losses of the paper's eq. 3 from the discriminator's logits (B,) on real images and on
    filled-in ones: ``(d_loss, g_loss)`` with d_loss = -log D(real) - log(1 - D(fake)) and the generator's
    non-saturating g_loss = -log D(fake), both averaged over the batch. Backpropagate d_loss only into the
    discriminator (give it logits of detached fakes) and g_loss only into the generator."""
    if d_real.dim() != 1 or d_fake.dim() != 1:
        raise ValueError(f"expected logits (B,), got {tuple(d_real.shape)} and {tuple(d_fake.shape)}")
    ones, zeros = torch.ones_like(d_fake), torch.zeros_like(d_fake)
    d_loss = F.binary_cross_entropy_with_logits(d_real, torch.ones_like(d_real)) \
        + F.binary_cross_entropy_with_logits(d_fake, zeros)
    g_loss = F.binary_cross_entropy_with_logits(d_fake, ones)
    return d_loss, g_loss


# --------------------------------------------------------------------------- decoder and discriminator


class Decoder(nn.Module):
    """The deepest feature map of the encoder (B, C_enc, h, w) -> an image (B, C, H, W) in [0, 1].

    The paper's channel-wise fully connected layer first (each channel's h*w values mixed with its own
    h*w x h*w matrix: every position can inform every other one, at a fraction of a full layer's
    weights), then three x2 up-samplings with conv blocks, a 3x3 conv to the image's channels, resized to
    (H, W) and squashed by a sigmoid. No skip connections: everything the fill needs must pass through
    the encoder's bottleneck.
    """

    def __init__(self, in_dim: int, map_size: tuple[int, int], out_channels: int, image_size: tuple[int, int],
                 width: int = 32):
        super().__init__()
        check_int(in_dim, "in_dim")
        check_int(width, "width")
        self.image_size = tuple(image_size)
        n = map_size[0] * map_size[1]
        self.channel_fc = nn.Parameter(torch.eye(n).repeat(in_dim, 1, 1) + 0.01 * torch.randn(in_dim, n, n))
        self.up = nn.Sequential(
            nn.Upsample(scale_factor=2, mode="nearest"), conv_block(in_dim, 4 * width),
            nn.Upsample(scale_factor=2, mode="nearest"), conv_block(4 * width, 2 * width),
            nn.Upsample(scale_factor=2, mode="nearest"), conv_block(2 * width, width),
            nn.Conv2d(width, out_channels, 3, padding=1),
        )

    def forward(self, maps: Tensor) -> Tensor:
        b, c, h, w = maps.shape
        mixed = torch.einsum("bcn,cnm->bcm", maps.reshape(b, c, h * w), self.channel_fc)  # (B, C, h*w)
        out = self.up(mixed.reshape(b, c, h, w))  # (B, C_img, 8h, 8w)
        return torch.sigmoid(F.interpolate(out, size=self.image_size, mode="bilinear", align_corners=False))


class Discriminator(nn.Module):
    """Real or filled-in? Images (B, C, H, W) -> one logit each (B,): strided convs with leaky ReLU
    (no batch norm, so real and fake batches do not leak into each other's statistics)."""

    def __init__(self, in_channels: int, width: int = 32):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(in_channels, width, 4, stride=2, padding=1), nn.LeakyReLU(0.2),
            nn.Conv2d(width, 2 * width, 4, stride=2, padding=1), nn.LeakyReLU(0.2),
            nn.Conv2d(2 * width, 4 * width, 3, stride=2, padding=1), nn.LeakyReLU(0.2),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4 * width, 1),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)[:, 0]


def make_decoder(backbone: Backbone, image_shape: tuple[int, int, int], cfg: ContextEncoderConfig) -> Decoder:
    """A :class:`Decoder` that fits ``backbone``'s deepest map for images of ``image_shape`` (C, H, W)."""
    c, h, w = image_shape
    device = next(backbone.parameters()).device
    was_training = backbone.training
    backbone.eval()
    with torch.no_grad():
        deepest = backbone.forward_maps(torch.zeros(1, c, h, w, device=device))[-1]  # (1, C_enc, h', w')
    backbone.train(was_training)
    return Decoder(deepest.shape[1], tuple(deepest.shape[2:]), c, (h, w), cfg.decoder_width)


# --------------------------------------------------------------------------- inpainting and the step


def inpaint(backbone: Backbone, decoder: nn.Module, x: Tensor, mask: Tensor, fill_value: float = 0.5) -> Tensor:
    """The network's prediction (B, C, H, W) for float images ``x`` with ``mask`` (B, H, W) removed."""
    context = apply_mask(x, mask, fill_value)  # (B, C, H, W)
    return decoder(backbone.forward_maps(context)[-1])  # (B, C, H, W)


def composite(x: Tensor, pred: Tensor, mask: Tensor) -> Tensor:
    """The filled-in image: the context of ``x``, the prediction in the hole (all (B, C, H, W); mask (B, H, W))."""
    m = mask[:, None].to(x.dtype)
    return x * (1 - m) + pred * m


def context_encoder_step(backbone: Backbone, decoder: nn.Module, cfg: ContextEncoderConfig,
                         generator: torch.Generator | None = None, discriminator: nn.Module | None = None):
    """The step function for ``course_lib.train.train``: batch -> {"loss", "rec"}. There is no accuracy to
    report for a reconstruction: "rec", the masked L2 itself, stands in its place.

    Labels are never looked at. With ``cfg.adv_weight > 0`` the step is the first half of an adversarial
    step (``train.Adversary``, made by :func:`adversary`): it returns the fills and the discriminator's
    loss on real images against them (``"adversary_loss"``, on detached fills); the loop updates the
    discriminator with its own optimiser, and :func:`adversary`'s ``finish`` then returns the joint loss
    (1 - lambda_adv) L_rec + lambda_adv L_adv against the updated discriminator.
    """
    adversarial = cfg.adv_weight > 0
    if adversarial and discriminator is None:
        raise ValueError("adv_weight > 0 needs a discriminator (and the loop its optimiser: context_encoder.adversary)")

    def step(batch) -> dict[str, Tensor]:
        x = to_float(batch.x) if batch.x.dtype == torch.uint8 else batch.x  # (B, C, H, W)
        mask = make_masks(len(x), tuple(x.shape[-2:]), cfg, generator).to(x.device)  # (B, H, W)
        pred = inpaint(backbone, decoder, x, mask, cfg.fill_value)  # (B, C, H, W)
        rec = masked_l2_loss(pred, x, loss_weights(mask, cfg.overlap, cfg.overlap_weight))
        if not adversarial:
            return {"loss": rec, "rec": rec.detach()}
        fake = composite(x, pred, mask)  # (B, C, H, W)
        d_loss, _ = adversarial_losses(discriminator(x), discriminator(fake.detach()))
        return {"adversary_loss": d_loss, "rec": rec, "fake": fake}

    return step


def adversary(discriminator: nn.Module, cfg: ContextEncoderConfig, lr: float) -> Adversary:
    """The discriminator as the one loop's second player (``train.Adversary``): its own Adam optimiser
    (betas (0.5, 0.999), as GANs use), and ``finish``, which builds the generator's loss against the
    discriminator just updated -- frozen while the loss is built, so the model's optimiser never moves it."""
    d_optimizer = torch.optim.Adam(discriminator.parameters(), lr=lr, betas=(0.5, 0.999))

    def finish(first: dict[str, Tensor]) -> dict[str, Tensor]:
        rec, fake = first["rec"], first["fake"]
        discriminator.requires_grad_(False)
        try:
            _, g_loss = adversarial_losses(torch.zeros(1, device=fake.device), discriminator(fake))
        finally:
            discriminator.requires_grad_(True)
        loss = (1 - cfg.adv_weight) * rec + cfg.adv_weight * g_loss
        return {"loss": loss, "rec": rec.detach(), "adv": g_loss.detach(), "d_loss": first["adversary_loss"].detach()}

    return Adversary(discriminator, d_optimizer, finish)


def setup(train_data: ImageData, profile: Profile, cfg: ContextEncoderConfig, device: torch.device) -> PretrainSetup:
    """The context encoder's part of its pre-training run (``train.pretrain_method`` does the rest): the
    profile's backbone with the random-init baseline's weights, the decoder (and, if ``cfg.adv_weight > 0``,
    the discriminator with its optimiser: :func:`adversary`), the step, and the masked inputs that
    recalibrate batch norm. Masks are drawn on the CPU. No labels: self-supervised."""
    if min(train_data.images.shape[-2:]) < 8:
        raise ValueError(f"images must be at least 8x8 pixels, got {tuple(train_data.images.shape[-2:])}")
    backbone = seeded_backbone(profile, train_data.images.shape[1], device)
    decoder = make_decoder(backbone, tuple(train_data.images.shape[1:]), cfg).to(device)
    if profile.channels_last:
        decoder = decoder.to(memory_format=torch.channels_last)  # faster convolutions, as the backbone's
    heads: dict[str, nn.Module] = {"decoder": decoder}
    discriminator = the_adversary = None
    if cfg.adv_weight > 0:
        discriminator = Discriminator(train_data.images.shape[1]).to(device)
        the_adversary = adversary(discriminator, cfg, profile.lr)
        heads["discriminator"] = discriminator
    generator = torch.Generator().manual_seed(profile.seed)  # masks are drawn on the CPU

    def forward(batch) -> Tensor:  # masked inputs through encoder and decoder (batch-norm recalibration)
        x = to_float(batch.x)
        return inpaint(backbone, decoder, x, make_masks(len(x), tuple(x.shape[-2:]), cfg, generator).to(x.device),
                       cfg.fill_value)

    return PretrainSetup(backbone, heads, context_encoder_step(backbone, decoder, cfg, generator, discriminator),
                         forward, train_data.images, min(cfg.batch_size, len(train_data)), profile.lr,
                         profile.weight_decay, adversary=the_adversary)


def pretrain(train_data: ImageData, profile: Profile, cfg: ContextEncoderConfig | None = None,
             device: torch.device | None = None, progress: bool = True) -> Pretrained:
    """Pre-train the profile's backbone as a context encoder on ``train_data``'s images (labels unused),
    cached. Starts from the same seeded initialisation as the random-init baseline; trains encoder and
    decoder (and a discriminator, if ``cfg.adv_weight > 0``) with the course's loop, then recalibrates
    batch norm on masked inputs. Returns ``Pretrained(backbone, history, heads={"decoder": ...})``."""
    return pretrain_method(__name__, train_data, profile, cfg, device, progress)


# --------------------------------------------------------------------------- measuring the blur


@torch.no_grad()
def fill_images(pre: Pretrained, images: Tensor, mask: Tensor, fill_value: float = 0.5,
                batch_size: int = 256) -> Tensor:
    """The network's predictions (N, C, H, W) float on the CPU for uint8 ``images`` (N, C, H, W) with
    ``mask`` (N, H, W) removed, in eval mode."""
    if not isinstance(images, Tensor) or images.dtype != torch.uint8 or images.dim() != 4:
        raise TypeError(f"images must be uint8 (N, C, H, W), got {getattr(images, 'dtype', type(images))}")
    backbone, decoder = pre.backbone, pre.heads["decoder"]
    device = next(backbone.parameters()).device
    out = []
    for i in range(0, len(images), batch_size):
        x = to_float(images[i:i + batch_size].to(device))
        out.append(inpaint(backbone, decoder, x, mask[i:i + batch_size].to(device), fill_value).float().cpu())
    return torch.cat(out)


def gradient_energy(x: Tensor, mask: Tensor) -> Tensor:
    """Sharpness inside the hole: per image, the mean squared difference between horizontally and
    vertically neighbouring pixels whose both ends lie in ``mask``. ``x`` (B, C, H, W), mask (B, H, W) ->
    (B,); a blurred fill has less of it than the truth."""
    _check_pair(x, mask)
    m = mask[:, None].to(x.dtype)  # (B, 1, H, W)
    dx = (x[..., :, 1:] - x[..., :, :-1]).pow(2) * (m[..., :, 1:] * m[..., :, :-1])  # (B, C, H, W-1)
    dy = (x[..., 1:, :] - x[..., :-1, :]).pow(2) * (m[..., 1:, :] * m[..., :-1, :])  # (B, C, H-1, W)
    pairs = (m[..., :, 1:] * m[..., :, :-1]).sum((1, 2, 3)) + (m[..., 1:, :] * m[..., :-1, :]).sum((1, 2, 3))
    return (dx.sum((1, 2, 3)) + dy.sum((1, 2, 3))) / (x.shape[1] * pairs.clamp_min(1))


def blur_measures(fill: Tensor, truth: Tensor, mask: Tensor, mean_image: Tensor) -> dict[str, float]:
    """How blurred the fills are, on the removed pixels only; all images float (N, C, H, W), mask (N, H, W),
    ``mean_image`` (C, H, W) the per-pixel mean of the training images.

    * ``mse_fill`` / ``mse_mean``: mean squared error in the hole of the fills and of the per-pixel mean
      (the best fill that ignores the context);
    * ``sharpness_fill`` / ``sharpness_truth``: mean :func:`gradient_energy` in the hole;
    * ``to_mean_fill`` / ``to_mean_truth``: mean squared distance in the hole to the per-pixel mean --
      a fill that hedges between plausible answers sits closer to the mean than the truth does.
    """
    _check_pair(truth, mask)
    if fill.shape != truth.shape or mean_image.shape != truth.shape[1:]:
        raise ValueError(f"fill must be {tuple(truth.shape)} and mean_image {tuple(truth.shape[1:])}, got "
                         f"{tuple(fill.shape)} and {tuple(mean_image.shape)}")
    w = mask.float()  # (N, H, W)
    mean = mean_image.expand_as(truth)  # (N, C, H, W)
    return {"mse_fill": float(masked_l2_loss(fill, truth, w)), "mse_mean": float(masked_l2_loss(mean, truth, w)),
            "sharpness_fill": float(gradient_energy(fill, mask).mean()),
            "sharpness_truth": float(gradient_energy(truth, mask).mean()),
            "to_mean_fill": float(masked_l2_loss(fill, mean, w)), "to_mean_truth": float(masked_l2_loss(truth, mean, w))}


# --------------------------------------------------------------------------- why L2 blurs: a toy with two answers


def two_answer_toy(size: int = 12, hole: int = 6) -> tuple[Tensor, Tensor, Tensor]:
    """A toy inpainting problem whose right answer is one of two sharp images: returns ``(context, a, b)``,
    float (1, 1, size, size). Both have vertical black-and-white stripes in the central ``hole`` x ``hole``
    square, ``b`` shifted by one pixel (white where ``a`` is black); outside the hole both are the same frame,
    so the context cannot tell them apart and each is the truth half of the time. Their average is a flat
    grey. ``context`` is the frame with the hole at 0.5."""
    check_int(size, "size", minimum=4)
    check_int(hole, "hole", minimum=2)
    if hole > size - 2:
        raise ValueError(f"hole must leave a frame: hole <= size - 2 = {size - 2}, got {hole}")
    frame = torch.zeros(size, size)
    frame[0], frame[-1], frame[:, 0], frame[:, -1] = 1.0, 1.0, 1.0, 1.0
    top = (size - hole) // 2
    stripes = (torch.arange(hole) % 2).float()  # 0, 1, 0, 1, ...
    a, b = frame.clone(), frame.clone()
    a[top:top + hole, top:top + hole] = stripes.expand(hole, hole)  # vertical stripes
    b[top:top + hole, top:top + hole] = (1 - stripes).expand(hole, hole)  # the same stripes, one pixel over
    mask = square_mask(size, hole, top, top)
    return frame.masked_fill(mask, 0.5)[None, None], a[None, None], b[None, None]


def train_two_answer_toy(adv_weight: float = 0.0, steps: int = 300, batch_size: int = 32, seed: int = 0,
                         size: int = 12, hole: int = 6) -> dict[str, Tensor]:
    """Fit a small generator (an MLP from the context to the image) on :func:`two_answer_toy`: every
    sample's context is the same, its truth is ``a`` or ``b`` with probability 1/2. Loss: the masked L2
    (``adv_weight`` = 0), or (1 - adv_weight) L2 + adv_weight L_adv with an MLP discriminator that sees the
    filled-in images (the paper's joint loss). Returns ``{"fill": (1, 1, size, size), "a", "b", "mask"}``.
    With L2 alone the fill converges to (a + b) / 2, a grey blur that is never the truth; the adversarial
    term pulls it to one of the two sharp answers."""
    check_number(adv_weight, "adv_weight", 0, 1)
    check_int(steps, "steps")
    check_int(batch_size, "batch_size")
    check_int(seed, "seed", minimum=0)
    context, a, b = two_answer_toy(size, hole)
    top = (size - hole) // 2
    mask = square_mask(size, hole, top, top)[None]  # (1, H, W)
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    n = size * size
    gen = nn.Sequential(nn.Flatten(), nn.Linear(n, 64), nn.ReLU(), nn.Linear(64, n), nn.Sigmoid())
    disc = nn.Sequential(nn.Flatten(), nn.Linear(n, 64), nn.LeakyReLU(0.2), nn.Linear(64, 1))
    g_opt = torch.optim.Adam(gen.parameters(), lr=1e-2)
    d_opt = torch.optim.Adam(disc.parameters(), lr=1e-2, betas=(0.5, 0.999))
    masks = mask.expand(batch_size, -1, -1)  # (B, H, W)
    for _ in range(steps):
        pick = torch.rand(batch_size, 1, 1, 1, generator=g) < 0.5  # which answer is the truth
        truth = torch.where(pick, a, b)  # (B, 1, H, W)
        pred = gen(context.expand(batch_size, -1, -1, -1)).view(batch_size, 1, size, size)
        loss = masked_l2_loss(pred, truth, masks.float())
        if adv_weight > 0:
            fake = composite(truth, pred, masks)  # the frame is the same in both answers
            d_loss, _ = adversarial_losses(disc(truth)[:, 0], disc(fake.detach())[:, 0])
            d_opt.zero_grad()
            d_loss.backward()
            d_opt.step()
            disc.requires_grad_(False)
            _, g_adv = adversarial_losses(torch.zeros(1), disc(fake)[:, 0])
            disc.requires_grad_(True)
            loss = (1 - adv_weight) * loss + adv_weight * g_adv
        g_opt.zero_grad()
        loss.backward()
        g_opt.step()
    with torch.no_grad():
        fill = composite(a, gen(context).view(1, 1, size, size), mask)
    return {"fill": fill, "a": a, "b": b, "mask": mask}
