"""Rotation prediction: the pretext task of Gidaris et al. 2018.

"Unsupervised representation learning by predicting image rotations" (ICLR 2018):
rotate an image by k quarter turns, k in {0, 1, 2, 3} (0, 90, 180, 270 degrees),
and train a network to predict k -- a 4-way classification, with the loss

    loss = 1/4 sum_k CE(head(h(rot(x, k))), k)        (eq. 1-2 of the paper)

when every image is shown in all four rotations in the same batch, which the
paper found better than one random rotation per image. To
predict "which way is up" the network has to recognise the object and where its
parts are, so its features become useful for classification -- except where an
object looks the same upside down, which is what the per-class rotation accuracy
of notebook 03 shows.

Everything runs on whole batches on the device: ``rotate_batch`` makes the four
rotated copies with ``torch.rot90``, ``rotation_step`` is the step function for
``course_lib.train.train``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from course_lib import models
from course_lib.augment import random_flip, random_rotate90, to_float
from course_lib.config import Profile, Settings, check_int, check_number
from course_lib.datasets import ImageData
from course_lib.models import Backbone
from course_lib.train import (
    Pretrained,
    PretrainSetup,
    check_budget,
    config_from_table,
    pretrain_method,
    profile_row,
    seeded_backbone,
)

NUM_ROTATIONS = 4
ROTATION_NAMES = ("0°", "90°", "180°", "270°")  # target k = quarter turns counter-clockwise


@dataclass(frozen=True)
class RotationConfig(Settings):
    """Hyperparameters of the rotation pretext task, resolved and checked when built (``config_for``):
    the printed values are the values used."""

    all_rotations: bool = True  # each image in all 4 rotations in one batch (as the paper); False: one random k
    batch_size: int = 32  # images drawn per step (x4 rotated copies when all_rotations)
    head_hidden_dim: int = 256  # > 0: an MLP head with one hidden layer (keeps h less rotation-specific); 0: linear
    flip_p: float = 0.5  # horizontal flip before rotating (a flip keeps "up" up)
    num_epochs: int = 1  # passes over the training images
    time_budget_s: float | None = 80.0  # stop pre-training after this many seconds (None: no budget)
    recalibration_batches: int = 20  # batches that re-estimate the batch-norm statistics after training (0: skip)

    def __post_init__(self) -> None:
        if not isinstance(self.all_rotations, bool):
            raise ValueError(f"all_rotations must be True or False, got {self.all_rotations!r}")
        check_int(self.batch_size, "batch_size")
        check_int(self.head_hidden_dim, "head_hidden_dim", minimum=0)
        check_number(self.flip_p, "flip_p", 0, 1)
        check_int(self.num_epochs, "num_epochs")
        check_int(self.recalibration_batches, "recalibration_batches", minimum=0)
        check_budget(self.time_budget_s)


# Per-profile values (the dataclass defaults are the fast profile's). Fast and grade: one epoch (312 steps,
# under a minute on a 2-core CPU) with an 80-s budget for a slow or busy machine; full: the profile's
# epochs, no budget. The batch follows the profile's: batch_size / 4 images, each in its 4 rotations.
ROTATION_CONFIGS: dict[str, dict] = {
    "fast": {"num_epochs": 1, "time_budget_s": 80.0},
    "full": {"time_budget_s": None},  # num_epochs: the profile's
    "grade": {"num_epochs": 1, "time_budget_s": 80.0},
}


def config_for(profile: Profile, **overrides) -> RotationConfig:
    """The rotation settings for ``profile`` (by name; ``fast``'s for an unknown name), every value
    resolved, then ``overrides``.

    A step sees ``profile.batch_size`` rotated images (batch_size / 4 images x 4 turns; with
    ``all_rotations=False``, batch_size images in one random rotation each). The profile's own
    budget (grade) wins when it is smaller.
    """
    all_rotations = overrides.get("all_rotations", True)
    derived = {"batch_size": max(1, profile.batch_size // NUM_ROTATIONS) if all_rotations else profile.batch_size,
               "num_epochs": profile_row(ROTATION_CONFIGS, profile).get("num_epochs", profile.num_epochs)}
    return config_from_table(RotationConfig, ROTATION_CONFIGS, profile, {**derived, **overrides}, "rotation")


# --------------------------------------------------------------------------- inputs and targets


def _check_square_batch(x: Tensor) -> None:
    if not isinstance(x, Tensor):
        raise TypeError(f"x must be a torch.Tensor of shape (B, C, H, W), got {type(x).__name__}")
    if x.dim() != 4:
        raise ValueError(f"x must be 4-D (B, C, H, W), got shape {tuple(x.shape)}")
    if x.shape[-1] != x.shape[-2]:
        raise ValueError(f"rotation needs square images (H == W), got shape {tuple(x.shape)}")


def rotate_batch(x: Tensor) -> tuple[Tensor, Tensor]:
    """All four rotations of every image, and their targets.

    ``x`` (B, C, H, W), any dtype, square. Returns ``x_rot`` (4B, C, H, W) and
    ``k`` (4B,) int64, rotation-major: rows ``r*B .. r*B + B - 1`` hold every image
    turned by ``r`` quarter turns counter-clockwise (``torch.rot90(x, r, dims=(2, 3))``),
    so ``k = [0]*B + [1]*B + [2]*B + [3]*B``.
    """
    _check_square_batch(x)
    B = x.shape[0]
    x_rot = torch.cat([torch.rot90(x, r, dims=(2, 3)) for r in range(NUM_ROTATIONS)])  # (4B, C, H, W)
    k = torch.arange(NUM_ROTATIONS, device=x.device).repeat_interleave(B)  # (4B,)
    return x_rot, k


def make_rotation_inputs(x: Tensor, cfg: RotationConfig, generator: torch.Generator | None = None
                         ) -> tuple[Tensor, Tensor]:
    """The pretext task's inputs and targets for a uint8 or float batch: flip, then rotate.

    Returns float ``x_rot`` in [0, 1] and int64 targets ``k``: (4B, ...) with all four
    rotations per image, or (B, ...) with one random rotation per image.
    """
    _check_square_batch(x)
    x = to_float(x) if x.dtype == torch.uint8 else x
    if cfg.flip_p > 0:
        x = random_flip(x, cfg.flip_p, generator)
    if cfg.all_rotations:
        return rotate_batch(x)
    return random_rotate90(x, generator)


# --------------------------------------------------------------------------- the head and the step


def make_head(in_dim: int, cfg: RotationConfig) -> nn.Module:
    """Features h (B, in_dim) -> rotation logits (B, 4): an MLP head, or linear if ``cfg.head_hidden_dim`` is 0.

    Gidaris et al. predict the rotation with the network's top conv blocks, which end up
    specialised in rotations. A small MLP head plays that part here, as the projection head
    does in SimCLR: it absorbs the most rotation-specific computation, so that h, which the
    protocol evaluates, keeps more of what object classes need.
    """
    return models.make_head(in_dim, NUM_ROTATIONS, cfg.head_hidden_dim)


def rotation_loss(logits: Tensor, k: Tensor) -> Tensor:
    """Eq. 1-2 of Gidaris et al. 2018: mean cross-entropy of the rotation logits (N, 4) against the
    quarter turns k (N,) that made the inputs; chance = log 4."""
    if logits.dim() != 2 or logits.shape[1] != NUM_ROTATIONS or k.shape != logits.shape[:1]:
        raise ValueError(f"expected logits (N, 4) and targets (N,), got {tuple(logits.shape)} and {tuple(k.shape)}")
    return F.cross_entropy(logits, k)


def rotation_step(backbone: Backbone, head: nn.Module, cfg: RotationConfig,
                  generator: torch.Generator | None = None):
    """The step function for ``course_lib.train.train``: batch -> {"loss", "acc"}.

    Labels in the batch are never looked at: the targets are the rotations we made.
    """

    def step(batch) -> dict[str, Tensor]:
        x_rot, k = make_rotation_inputs(batch.x, cfg, generator)  # (4B, C, H, W), (4B,)
        logits = head(backbone.forward_features(x_rot))  # (4B, 4)
        return {"loss": rotation_loss(logits, k), "acc": (logits.argmax(1) == k).float().mean()}

    return step


def setup(train_data: ImageData, profile: Profile, cfg: RotationConfig, device: torch.device) -> PretrainSetup:
    """Rotation's part of its pre-training run (``train.pretrain_method`` does the rest): the profile's
    backbone with the random-init baseline's weights, the rotation head, the step, and the pretext
    inputs that recalibrate batch norm. Labels are not given to the loader: self-supervised."""
    _check_square_batch(train_data.images)
    backbone = seeded_backbone(profile, train_data.images.shape[1], device)
    head = make_head(backbone.feature_dim, cfg).to(device)
    generator = torch.Generator(device=device).manual_seed(profile.seed)

    def forward(batch) -> Tensor:  # the pretext inputs through both modules (batch-norm recalibration)
        return head(backbone.forward_features(make_rotation_inputs(batch.x, cfg, generator)[0]))

    return PretrainSetup(backbone, {"head": head}, rotation_step(backbone, head, cfg, generator), forward,
                         train_data.images, min(cfg.batch_size, len(train_data)), profile.lr, profile.weight_decay)


def pretrain(train_data: ImageData, profile: Profile, cfg: RotationConfig | None = None,
             device: torch.device | None = None, progress: bool = True) -> Pretrained:
    """Pre-train a backbone on rotation prediction over ``train_data``'s images (cached), then
    recalibrate its batch norm. The backbone starts from the same seeded initialisation as the
    random-init baseline. Returns ``Pretrained(backbone, history, heads={"head": ...})``."""
    return pretrain_method(__name__, train_data, profile, cfg, device, progress)


# --------------------------------------------------------------------------- which rotations it gets right


@torch.no_grad()
def predict_rotations(backbone: Backbone, head: nn.Module, images: Tensor, batch_size: int = 256) -> Tensor:
    """Predicted k (N, 4) for each image (uint8 (N, C, H, W)) shown in each rotation r = 0..3 (column r)."""
    _check_square_batch(images)
    device = next(backbone.parameters()).device
    was_training = backbone.training, head.training
    backbone.eval()
    head.eval()
    preds = []
    try:
        for i in range(0, len(images), batch_size):
            x = to_float(images[i:i + batch_size].to(device)) if images.dtype == torch.uint8 \
                else images[i:i + batch_size].to(device)
            x_rot, _ = rotate_batch(x)  # (4b, C, H, W), rotation-major
            pred = head(backbone.forward_features(x_rot)).argmax(1)  # (4b,)
            preds.append(pred.view(NUM_ROTATIONS, -1).T.cpu())  # (b, 4)
    finally:
        backbone.train(was_training[0])
        head.train(was_training[1])
    return torch.cat(preds)


def per_class_rotation_accuracy(pred: Tensor, k: Tensor, labels: Tensor, num_classes: int) -> Tensor:
    """Rotation accuracy of each object class: mean of (pred == k) over the samples of class c.

    ``pred``, ``k`` and ``labels`` are integer tensors of one shape (any; e.g. (N, 4) with
    ``k`` = the rotation of each column). Returns float (num_classes,); NaN for a class with
    no samples.
    """
    tensors = {"pred": pred, "k": k, "labels": labels}
    for name, t in tensors.items():
        if not isinstance(t, Tensor) or t.is_floating_point() or t.is_complex() or t.dtype == torch.bool:
            raise TypeError(f"{name} must be an integer tensor, got {getattr(t, 'dtype', type(t).__name__)}")
    if not pred.shape == k.shape == labels.shape:
        raise ValueError(f"pred, k and labels must have one shape, got {tuple(pred.shape)}, {tuple(k.shape)}, "
                         f"{tuple(labels.shape)}")
    check_int(num_classes, "num_classes")
    labels = labels.reshape(-1).long()
    if labels.numel() and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(f"labels must be in [0, {num_classes}), got [{int(labels.min())}, {int(labels.max())}]")
    correct = (pred.reshape(-1) == k.reshape(-1)).float()  # (M,)
    hits = torch.zeros(num_classes).index_add_(0, labels.cpu(), correct.cpu())  # (classes,)
    counts = torch.bincount(labels.cpu(), minlength=num_classes).float()  # (classes,)
    return torch.where(counts > 0, hits / counts.clamp_min(1), torch.full_like(hits, math.nan))


def rotation_confusion(pred: Tensor, k: Tensor) -> Tensor:
    """Counts (4, 4): row = true rotation, column = predicted rotation."""
    if pred.shape != k.shape:
        raise ValueError(f"pred and k must have one shape, got {tuple(pred.shape)} and {tuple(k.shape)}")
    index = k.reshape(-1).long().cpu() * NUM_ROTATIONS + pred.reshape(-1).long().cpu()
    return torch.bincount(index, minlength=NUM_ROTATIONS**2).view(NUM_ROTATIONS, NUM_ROTATIONS)
