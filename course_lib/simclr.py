"""SimCLR: find an image's other augmented view among the batch (Chen et al., ICML 2020).

"A simple framework for contrastive learning of visual representations": take a
batch of N images, make two random views of each (crop + resize + flip, colour
distortion, Gaussian blur), encode all 2N views with the backbone (h) and a small
MLP projection head (z = g(h)), and train both so that each view picks its partner
out of the 2N - 1 other views with the NT-Xent loss (their eq. 1):

    l(i, j) = -log( exp(sim(z_i, z_j) / t) / sum_{k=1}^{2N} 1[k != i] exp(sim(z_i, z_k) / t) ),

averaged over all 2N (i, j) pairs -- the "2N loss terms" of the lecture. The loss is
the course's one contrastive loss, :func:`course_lib.contrastive.nt_xent`; this
file holds what is SimCLR's own: the two views, the step and the training entry point.

After training the head is thrown away and h is evaluated: the paper found the
features *before* the projection head better than z (sec. 4.2, fig. 8).

The method contract (``docs/adding-a-method.md``): :class:`SimCLRConfig` (built by
:func:`config_for`, its printed values the values used), the loss (``nt_xent``, imported
here from ``contrastive.py``), the step (:func:`simclr_step`) for ``course_lib.train.train``
and :func:`pretrain`, which returns a ``train.Pretrained`` with the projection head in
``heads["projection"]``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from course_lib.augment import AugmentConfig, augment
from course_lib.config import Profile, Settings, check_int, check_number
from course_lib.contrastive import nt_xent
from course_lib.datasets import ImageData
from course_lib.models import Backbone, MLPHead
from course_lib.train import (
    Pretrained,
    PretrainSetup,
    check_budget,
    config_from_table,
    pretrain_method,
    seeded_backbone,
)

SCHEDULES = ("constant", "cosine")


@dataclass(frozen=True)
class SimCLRConfig(Settings):
    """SimCLR's hyperparameters: every value here is the value used (see :func:`config_for`)."""

    temperature: float = 0.2  # t of NT-Xent: lower = sharper softmax over the 2N - 1 candidates
    batch_size: int = 128  # images per step N; each gives 2 views, so 2N - 2 negatives per view
    num_epochs: int = 20  # passes over the training images
    lr: float = 5e-3  # AdamW peak learning rate
    weight_decay: float = 5e-4
    schedule: str = "cosine"  # "cosine": 10% linear warm-up, then cosine decay to 0; "constant"
    view_size: int = 20  # side of each view in pixels: the crop is resized to it (smaller = cheaper steps)
    crop_scale: tuple[float, float] = (0.08, 1.0)  # area fraction of the random crop (the paper's)
    flip_p: float = 0.5  # horizontal flip probability
    color_strength: float = 1.0  # s: jitter (0.8s, 0.8s, 0.8s, 0.2s); on grey images brightness and contrast only
    color_p: float = 0.8  # probability of the colour jitter
    grayscale_p: float = 0.0  # probability of converting a view to grey (the paper: 0.2; a no-op on grey images)
    blur_p: float = 0.5  # probability of a Gaussian blur (sigma in [0.1, 2] px)
    hidden_dim: int = 256  # projection head: h -> hidden -> z
    proj_dim: int = 128  # size of z
    time_budget_s: float | None = None  # stop after this many seconds (None: no budget)
    recalibration_batches: int = 20  # batches that re-estimate the batch-norm statistics after training (0: skip)

    def __post_init__(self) -> None:
        if isinstance(self.temperature, bool) or not isinstance(self.temperature, (int, float)) \
                or not self.temperature > 0:
            raise ValueError(f"temperature must be a positive number, got {self.temperature!r}")
        check_int(self.batch_size, "batch_size", minimum=2)  # one image alone has no negatives
        check_int(self.num_epochs, "num_epochs")
        if isinstance(self.lr, bool) or not isinstance(self.lr, (int, float)) or not self.lr > 0:
            raise ValueError(f"lr must be a positive number, got {self.lr!r}")
        check_number(self.weight_decay, "weight_decay", 0, math.inf)
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {SCHEDULES}, got {self.schedule!r}")
        check_int(self.view_size, "view_size", minimum=8)
        ok = isinstance(self.crop_scale, tuple) and len(self.crop_scale) == 2
        if not ok or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in self.crop_scale) \
                or not 0 < self.crop_scale[0] <= self.crop_scale[1] <= 1:
            raise ValueError(f"crop_scale must be a tuple (low, high) with 0 < low <= high <= 1, "
                             f"got {self.crop_scale!r}")
        check_number(self.color_strength, "color_strength", 0, 2.5)  # hue 0.2 s must stay <= 0.5
        for name in ("flip_p", "color_p", "grayscale_p", "blur_p"):
            check_number(getattr(self, name), name, 0, 1)
        check_int(self.hidden_dim, "hidden_dim")
        check_int(self.proj_dim, "proj_dim")
        check_int(self.recalibration_batches, "recalibration_batches", minimum=0)
        check_budget(self.time_budget_s)
        self.augment_config()  # the augmentation distribution must be valid too

    def augment_config(self) -> AugmentConfig:
        """The distribution both views are drawn from (SimCLR's pipeline, appendix A of the paper)."""
        s = float(self.color_strength)
        return AugmentConfig(size=self.view_size, crop_scale=self.crop_scale, flip_p=self.flip_p,
                             jitter=(0.8 * s, 0.8 * s, 0.8 * s, 0.2 * s), jitter_p=self.color_p if s > 0 else 0.0,
                             grayscale_p=self.grayscale_p, blur_p=self.blur_p)


# Per-profile values (the dataclass defaults are the fast profile's). Fast (Fashion-MNIST, small CNN,
# 2-core CPU): temperature, learning rate, augmentation strength and view size compared on seeds 0-2
# for the linear probe at 100 labels per class; then length, which mattered most (seed 1: 79.6 % with
# batch 256 for 10 epochs, 80.5 with batch 128 for 10, 80.9 for 15, 81.5 for 20 epochs -- 1,560 steps).
# The budget only cuts a run on a slow or busy machine. Full (CIFAR-10, ResNet-18, a GPU):
# the paper's CIFAR-10 recipe (appendix B.9: temperature 0.5, colour strength 0.5 with grayscale,
# no blur, batch 512) with the profile's AdamW, 100 epochs.
SIMCLR_CONFIGS: dict[str, dict] = {
    "fast": {"time_budget_s": 300.0},
    "full": {"temperature": 0.5, "batch_size": 512, "num_epochs": 100, "lr": 1e-3, "weight_decay": 1e-4,
             "view_size": 32, "color_strength": 0.5, "grayscale_p": 0.2, "blur_p": 0.0},
    "grade": {"batch_size": 100, "num_epochs": 1},
}


def config_for(profile: Profile, **overrides) -> SimCLRConfig:
    """SimCLR's configuration for ``profile`` (by name; ``fast``'s values for an unknown name), with overrides.

    Resolved here, so that the printed config is the one used: the time budget is the
    smaller of the method's and the profile's.
    """
    if isinstance(overrides.get("crop_scale"), list):
        overrides = {**overrides, "crop_scale": tuple(overrides["crop_scale"])}
    return config_from_table(SimCLRConfig, SIMCLR_CONFIGS, profile, overrides, "SimCLR")


# --------------------------------------------------------------------------- views, step


def two_views(x: Tensor, cfg: SimCLRConfig, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
    """Two independent random views of each image of ``x`` (uint8 or float (B, C, H, W)).

    Returns two float batches (B, C, view_size, view_size) in [0, 1]: row i of each is a view of image i.
    """
    aug = cfg.augment_config()
    return augment(x, aug, generator), augment(x, aug, generator)


@torch.no_grad()
def positive_accuracy(z1: Tensor, z2: Tensor) -> Tensor:
    """Fraction of the 2N views whose most similar other view (cosine) is their partner: chance 1/(2N - 1)."""
    n = z1.shape[0]
    z = F.normalize(torch.cat([z1, z2]).float(), dim=1)  # (2N, D)
    sim = (z @ z.T).fill_diagonal_(-math.inf)  # (2N, 2N), a view is not a candidate for itself
    partner = torch.cat([torch.arange(n, 2 * n), torch.arange(n)]).to(z.device)  # (2N,)
    return (sim.argmax(1) == partner).float().mean()


def simclr_step(backbone: Backbone, head: MLPHead, cfg: SimCLRConfig,
                generator: torch.Generator | None = None):
    """The step function for ``course_lib.train.train``: batch -> {"loss", "acc"}.

    Labels in the batch are never looked at. Both views go through the network as one
    batch of 2N, so batch norm sees them together.
    """

    def step(batch) -> dict[str, Tensor]:
        x1, x2 = two_views(batch.x, cfg, generator)  # (N, C, S, S) each
        z = head(backbone.forward_features(torch.cat([x1, x2])))  # (2N, proj_dim)
        z1, z2 = z.chunk(2)  # (N, proj_dim) each: z1[i], z2[i] are the two views of image i
        return {"loss": nt_xent(z1, z2, cfg.temperature), "acc": positive_accuracy(z1, z2)}

    return step


# --------------------------------------------------------------------------- training


def _warmup_cosine(cfg: SimCLRConfig):
    """``schedule(optimizer, total_steps)`` for the learning rate: 10% linear warm-up, then
    cosine decay to 0 (``cfg.schedule == "cosine"``); None for a constant learning rate."""
    if cfg.schedule != "cosine":
        return None

    def schedule(opt: torch.optim.Optimizer, total_steps: int):
        return torch.optim.lr_scheduler.OneCycleLR(opt, cfg.lr, total_steps=total_steps, pct_start=0.1,
                                                   anneal_strategy="cos")

    return schedule


def setup(train_data: ImageData, profile: Profile, cfg: SimCLRConfig, device: torch.device) -> PretrainSetup:
    """SimCLR's part of its pre-training run (``train.pretrain_method`` does the rest): the profile's
    backbone with the random-init baseline's weights, the projection head g, the step, both views to
    recalibrate batch norm, AdamW at the config's own rate with warm-up + cosine. No labels: self-supervised."""
    backbone = seeded_backbone(profile, train_data.images.shape[1], device)
    head = MLPHead(backbone.feature_dim, cfg.hidden_dim, cfg.proj_dim).to(device)
    generator = torch.Generator(device=device).manual_seed(profile.seed)

    def forward(batch) -> Tensor:  # both views through both modules (batch-norm recalibration)
        return head(backbone.forward_features(torch.cat(two_views(batch.x, cfg, generator))))

    return PretrainSetup(backbone, {"projection": head}, simclr_step(backbone, head, cfg, generator), forward,
                         train_data.images, cfg.batch_size, cfg.lr, cfg.weight_decay, schedule=_warmup_cosine(cfg))


def pretrain(train_data: ImageData, profile: Profile, cfg: SimCLRConfig | None = None,
             device: torch.device | None = None, progress: bool = True) -> Pretrained:
    """Pre-train the profile's backbone with SimCLR on ``train_data``'s images (labels unused), cached.

    Starts from the same seeded initialisation as the random-init baseline, trains backbone and
    projection head together with AdamW (``cfg.lr``, warm-up + cosine), then recalibrates batch norm
    on fresh views. Returns ``Pretrained(backbone, history, heads={"projection": g})``: the protocol
    evaluates h (the backbone); g gives z = g(h) for the h-vs-z comparison.
    """
    return pretrain_method(__name__, train_data, profile, cfg, device, progress)
