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

from course_lib.augment import random_flip, random_rotate90, to_float
from course_lib.checkpoints import load_or_train
from course_lib.config import Profile, Settings, check_int, check_number, get_device
from course_lib.datasets import ImageData
from course_lib.evaluate import linear_probe_accuracy, sample_per_class
from course_lib.loader import DeviceLoader
from course_lib.models import Backbone, build_backbone
from course_lib.train import History, train

NUM_ROTATIONS = 4
ROTATION_NAMES = ("0°", "90°", "180°", "270°")  # target k = quarter turns counter-clockwise


@dataclass(frozen=True)
class RotationConfig(Settings):
    """Hyperparameters of the rotation pretext task (the rest comes from the profile)."""

    all_rotations: bool = True  # each image in all 4 rotations in one batch (as the paper); False: one random k
    images_per_batch: int | None = None  # None: profile.batch_size // 4, so a step sees batch_size rotated images
    head_hidden_dim: int = 256  # > 0: an MLP head with one hidden layer (keeps h less rotation-specific); 0: linear
    flip_p: float = 0.5  # horizontal flip before rotating (a flip keeps "up" up)
    num_epochs: int | None = None  # None: the profile's num_epochs
    time_budget_s: float | None = None  # stop pre-training after this many seconds (a smaller profile budget wins)
    recalibration_batches: int = 20  # batches that re-estimate the batch-norm statistics after training (0: skip)

    def __post_init__(self) -> None:
        check_int(self.images_per_batch, "images_per_batch", optional=True)
        check_int(self.head_hidden_dim, "head_hidden_dim", minimum=0)
        check_number(self.flip_p, "flip_p", 0, 1)
        check_int(self.num_epochs, "num_epochs", optional=True)
        check_int(self.recalibration_batches, "recalibration_batches", minimum=0)
        if self.time_budget_s is not None and not self.time_budget_s > 0:
            raise ValueError(f"time_budget_s must be positive or None, got {self.time_budget_s!r}")

    def batch_images(self, profile: Profile) -> int:
        """Images drawn per step (each becomes 4 rotated copies when ``all_rotations``)."""
        if self.images_per_batch is not None:
            return self.images_per_batch
        return max(1, profile.batch_size // NUM_ROTATIONS) if self.all_rotations else profile.batch_size

    def epochs(self, profile: Profile) -> int:
        return self.num_epochs if self.num_epochs is not None else profile.num_epochs

    def budget(self, profile: Profile) -> float | None:
        """The training time budget: the smaller of this config's and the profile's (None = no budget)."""
        budgets = [b for b in (self.time_budget_s, profile.time_budget_s) if b is not None]
        return min(budgets) if budgets else None


# Per-profile defaults. Fast: 1 epoch = 312 steps of 32 images x 4 turns, under a minute on a 2-core CPU
# (so the same seed gives the same weights); the time budget only cuts runs on a slow or busy machine.
ROTATION_CONFIGS = {
    "fast": RotationConfig(num_epochs=1, time_budget_s=80.0),
    "full": RotationConfig(),  # 100 epochs of CIFAR-10 on a GPU, no time budget
    "grade": RotationConfig(),  # the grade profile's own 5-second budget applies
}


def get_rotation_config(profile: Profile, **overrides) -> RotationConfig:
    """The rotation defaults for ``profile`` (by name; ``fast``'s for unknown names), with overrides."""
    cfg = ROTATION_CONFIGS.get(profile.name, ROTATION_CONFIGS["fast"])
    return cfg.replace(**overrides) if overrides else cfg


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


class RotationHead(nn.Module):
    """Features h (B, in_dim) -> rotation logits (B, 4): linear, or one hidden layer if ``hidden_dim`` > 0.

    Gidaris et al. predict the rotation with the network's top conv blocks, which end up
    specialised in rotations. A small MLP head plays that part here, as the projection head
    does in SimCLR: it absorbs the most rotation-specific computation, so that h, which the
    protocol evaluates, keeps more of what object classes need.
    """

    def __init__(self, in_dim: int, hidden_dim: int = 0):
        super().__init__()
        if hidden_dim:
            self.net = nn.Sequential(nn.Linear(in_dim, hidden_dim, bias=False), nn.BatchNorm1d(hidden_dim),
                                     nn.ReLU(inplace=True), nn.Linear(hidden_dim, NUM_ROTATIONS))
        else:
            self.net = nn.Linear(in_dim, NUM_ROTATIONS)

    def forward(self, h: Tensor) -> Tensor:
        return self.net(h)


def rotation_loss(logits: Tensor, k: Tensor) -> Tensor:
    """Cross-entropy of the 4-way rotation logits (N, 4) against targets k (N,); chance = log 4."""
    return F.cross_entropy(logits, k)


def rotation_step(backbone: Backbone, head: RotationHead, cfg: RotationConfig,
                  generator: torch.Generator | None = None):
    """The step function for ``course_lib.train.train``: batch -> {"loss", "acc"}.

    Labels in the batch are never looked at: the targets are the rotations we made.
    """

    def step(batch) -> dict[str, Tensor]:
        x_rot, k = make_rotation_inputs(batch.x, cfg, generator)  # (4B, C, H, W), (4B,)
        logits = head(backbone.forward_features(x_rot))  # (4B, 4)
        return {"loss": rotation_loss(logits, k), "acc": (logits.argmax(1) == k).float().mean()}

    return step


@torch.no_grad()
def recalibrate_batchnorm(backbone: Backbone, head: RotationHead, loader, cfg: RotationConfig,
                          generator: torch.Generator | None = None, num_batches: int = 20) -> None:
    """Re-estimate every batch-norm layer's running mean/variance on ``num_batches`` pretext batches.

    Training keeps an exponential moving average of batch statistics while the weights
    still move (a constant learning rate, a run cut by a time budget), so the averages lag
    behind the final weights and eval-mode predictions suffer: in a fast-profile run (linear head) the
    270° rotation fell to 55% test accuracy while the others stayed above 94%. A pass in
    train mode with a cumulative average (momentum None) over fresh batches fixes it
    (the "precise BN" of Wu & Johnson 2021, "Rethinking 'Batch' in BatchNorm").
    """
    modules = nn.ModuleList([backbone, head])
    norms = [m for m in modules.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not norms or num_batches == 0:
        return
    momenta = [m.momentum for m in norms]
    modes = [m.training for m in modules]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over the batches below
    modules.train()
    try:
        done = 0
        while done < num_batches:
            for batch in loader:
                x_rot, _ = make_rotation_inputs(batch.x, cfg, generator)
                head(backbone.forward_features(x_rot))
                done += 1
                if done == num_batches:
                    break
            if done == 0:
                raise ValueError("loader yielded no batch to recalibrate batch norm with")
    finally:
        for m, momentum in zip(norms, momenta, strict=True):
            m.momentum = momentum
        for m, mode in zip(modules, modes, strict=True):
            m.train(mode)


def train_rotation(train_data: ImageData, profile: Profile, cfg: RotationConfig | None = None,
                   device: torch.device | None = None, progress: bool = True, retrain: bool = False
                   ) -> tuple[Backbone, RotationHead, History]:
    """Pre-train a backbone on rotation prediction over ``train_data``'s images (cached by load_or_train).

    The backbone starts from the same seeded initialisation as the random-init baseline.
    """
    cfg = cfg or get_rotation_config(profile)
    device = device or get_device()
    _check_square_batch(train_data.images)
    torch.manual_seed(profile.seed)
    backbone = build_backbone(profile, train_data.images.shape[1]).to(device)
    head = RotationHead(backbone.feature_dim, cfg.head_hidden_dim).to(device)
    model = nn.ModuleDict({"backbone": backbone, "head": head})
    loader = DeviceLoader(train_data.images, None, min(cfg.batch_images(profile), len(train_data)),
                          device=device, seed=profile.seed)  # no labels: self-supervised
    generator = torch.Generator(device=device).manual_seed(profile.seed)
    if profile.compile:
        backbone.compile()

    def run() -> History:
        opt = torch.optim.AdamW(model.parameters(), lr=profile.lr, weight_decay=profile.weight_decay)
        step = rotation_step(backbone, head, cfg, generator)
        history = train(model, step, loader, opt, cfg.epochs(profile), time_budget_s=cfg.budget(profile),
                        amp=profile.amp, desc="rotation", progress=progress)
        recalibrate_batchnorm(backbone, head, loader, cfg, generator, cfg.recalibration_batches)
        return history

    config = {"task": "rotation", "profile": profile.as_dict(), "rotation": cfg.as_dict(),
              "train": len(train_data), "image_shape": list(train_data.image_shape)}
    history = load_or_train("rotation", config, model, run, retrain=retrain)
    return backbone, head, history


# --------------------------------------------------------------------------- which rotations it gets right


@torch.no_grad()
def predict_rotations(backbone: Backbone, head: RotationHead, images: Tensor, batch_size: int = 256) -> Tensor:
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


# --------------------------------------------------------------------------- which depth gives the best features


@torch.no_grad()
def stage_features(backbone: Backbone, images: Tensor, grid: int = 1, batch_size: int = 512) -> list[Tensor]:
    """Features of every stage for uint8 images (N, C, H, W), shallow to deep, on the CPU.

    Each stage's map (B, C_s, H_s, W_s) from ``backbone.forward_maps`` is average-pooled to
    grid x grid and flattened: (N, C_s * grid * grid). ``grid = 1`` is global average pooling.
    """
    if not isinstance(images, Tensor) or images.dtype != torch.uint8 or images.dim() != 4:
        raise TypeError(f"images must be a uint8 tensor (N, C, H, W), got {getattr(images, 'dtype', type(images))}")
    check_int(grid, "grid")
    device = next(backbone.parameters()).device
    was_training = backbone.training
    backbone.eval()
    chunks: list[list[Tensor]] = []
    try:
        for i in range(0, len(images), batch_size):
            maps = backbone.forward_maps(to_float(images[i:i + batch_size].to(device)))
            chunks.append([F.adaptive_avg_pool2d(m.float(), grid).flatten(1).cpu() for m in maps])  # (b, C_s g^2)
    finally:
        backbone.train(was_training)
    return [torch.cat(per_stage) for per_stage in zip(*chunks, strict=True)]


def probe_by_depth(backbone: Backbone, train_data: ImageData, test_data: ImageData, profile: Profile,
                   labels_per_class: int | None = 100, grid: int = 1) -> list[float]:
    """Linear-probe test accuracy on the pooled features of every stage, shallow to deep.

    Gidaris et al. (sec. 3.1, table 1) probe each conv block of a rotation-trained
    network: the deepest blocks specialise in the pretext task, and an intermediate
    block gives the best features for object classes. Same labelled subset as ``evaluate``.
    """
    idx = sample_per_class(train_data.labels, labels_per_class, profile.seed)
    h_train = stage_features(backbone, train_data.images[idx], grid)
    h_test = stage_features(backbone, test_data.images, grid)
    return [linear_probe_accuracy(a, train_data.labels[idx], b, test_data.labels, profile.probe_weight_decay)
            for a, b in zip(h_train, h_test, strict=True)]
