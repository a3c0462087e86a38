"""Exemplar-based learning: every image is its own class (Dosovitskiy et al. 2014).

"Discriminative Unsupervised Feature Learning with Convolutional Neural Networks"
(Dosovitskiy, Springenberg, Riedmiller, Brox, NIPS 2014; the TPAMI 2016 version, "...with
Exemplar Convolutional Neural Networks", named it Exemplar-CNN): sample N unlabelled
images, the *exemplars*, and declare each one a *surrogate class* of its own. A training
example is a heavily augmented view T(x_i) of exemplar i and its target is i. The paper's
T, applied to 32x32 patches cut from high-gradient regions: translation, scaling, rotation
(up to 20 degrees), contrast and colour (hue, saturation, value) changes. Here, on whole
images: a random crop (position and scale), a flip, rotation, brightness/contrast and blur,
at a strength you choose. The network solves an N-way classification,

    min_theta  mean_i  -log softmax(W h_theta(T(x_i)))_i ,   h = backbone features,

so it must recognise an image under every transformation: its features become
invariant to the augmentations while still telling images apart. The head W holds
one weight vector per exemplar, which is why the method does not scale to millions
of images (SimCLR, notebook 08, replaces W by the other images of the batch).

Here views are drawn afresh every step (the paper made a fixed set of K views per
exemplar); the data loader iterates over the N exemplars, so a batch's ``index``
(its images' positions in the exemplar set) *is* the target.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from course_lib.augment import AugmentConfig, augment, random_rotation, to_float
from course_lib.config import Profile, Settings, check_int, check_number
from course_lib.datasets import ImageData
from course_lib.models import Backbone, LinearHead
from course_lib.train import (
    Pretrained,
    PretrainSetup,
    check_budget,
    config_from_table,
    pretrain_method,
    profile_row,
    seeded_backbone,
)

MAX_STRENGTH = 1.5  # crop area down to 10% of the image


@dataclass(frozen=True)
class ExemplarConfig(Settings):
    """Hyperparameters of the exemplar pretext task, resolved and checked when built (``config_for``):
    the printed values are the values used. The profile holds the shared ones (backbone, batch size, lr)."""

    num_exemplars: int = 2000  # N: images sampled from the training set = surrogate classes
    strength: float = 0.5  # augmentation strength s: crop area >= 1 - 0.6 s, rotation up to s * max_degrees,
    #                        brightness/contrast 0.4 s, blur with probability 0.5 s (0 = no augmentation)
    max_degrees: float = 20.0  # rotation range at strength 1 (the paper's +-20 degrees)
    batch_size: int = 128  # exemplars per step (the profile's; at most N)
    num_epochs: int = 40  # passes over the N exemplars (fast: 40 x 15 full batches of 128 = 600 steps)
    time_budget_s: float | None = 150.0  # stop pre-training after this long (None: no budget)
    recalibration_batches: int = 20  # batches that re-estimate the batch-norm statistics after training (0: skip)

    def __post_init__(self) -> None:
        check_int(self.num_exemplars, "num_exemplars", minimum=2)
        check_number(self.strength, "strength", 0, MAX_STRENGTH)
        check_number(self.max_degrees, "max_degrees", 0, 180)
        check_int(self.batch_size, "batch_size")
        check_int(self.num_epochs, "num_epochs")
        check_int(self.recalibration_batches, "recalibration_batches", minimum=0)
        check_budget(self.time_budget_s)


# Per-profile values (the dataclass defaults are the fast profile's); grade and any other profile take fast's.
# full: CIFAR-10 on a GPU, N = 8,000, stronger views for natural images, no time budget.
EXEMPLAR_CONFIGS: dict[str, dict] = {
    "fast": {"num_exemplars": 2000, "strength": 0.5, "time_budget_s": 150.0},
    "full": {"num_exemplars": 8000, "strength": 1.0, "time_budget_s": None},
}


def config_for(profile: Profile, **overrides) -> ExemplarConfig:
    """The exemplar settings for ``profile`` (by name; ``fast``'s for an unknown name), every value resolved,
    then ``overrides``.

    Every profile trains as many steps as ``num_epochs`` epochs over its training set would take:
    passes over the N exemplars = num_epochs x training images / N (fast: 8 x 10,000 / 2,000 = 40).
    With ``max_images_per_class`` (grade), N is at most the images kept (10 classes in every
    course dataset). The batch is the profile's. The profile's own budget wins when it is smaller.
    """
    train_images = {"cifar10": 50_000}.get(profile.dataset, 10_000)
    if profile.max_images_per_class is not None:
        train_images = min(train_images, 10 * profile.max_images_per_class)
    n = overrides.get("num_exemplars", min(profile_row(EXEMPLAR_CONFIGS, profile)["num_exemplars"], train_images))
    derived = {"num_exemplars": n, "num_epochs": max(1, round(profile.num_epochs * train_images / n)),
               "batch_size": profile.batch_size}
    return config_from_table(ExemplarConfig, EXEMPLAR_CONFIGS, profile, {**derived, **overrides}, "exemplar")


# --------------------------------------------------------------------------- inputs and targets


def sample_exemplars(num_images: int, num_exemplars: int, seed: int = 0) -> Tensor:
    """Sorted indices (N,) of ``num_exemplars`` distinct images out of ``num_images``: the exemplars."""
    check_int(num_images, "num_images")
    check_int(num_exemplars, "num_exemplars")
    if num_exemplars > num_images:
        raise ValueError(f"cannot sample {num_exemplars} exemplars from {num_images} images")
    g = torch.Generator().manual_seed(seed)
    return torch.randperm(num_images, generator=g)[:num_exemplars].sort().values


def surrogate_dataset(exemplar_ids: Tensor, views_per_exemplar: int) -> tuple[Tensor, Tensor]:
    """K views of each exemplar, as (image_index (N*K,), targets (N*K,)).

    ``image_index`` says which dataset image to augment (each of ``exemplar_ids``
    repeated K times); ``targets`` is its surrogate class: the exemplar's *position*
    0..N-1 in ``exemplar_ids``, not its index in the dataset.
    """
    if not torch.is_tensor(exemplar_ids) or exemplar_ids.dim() != 1 or exemplar_ids.is_floating_point():
        got = f"{exemplar_ids.dtype} {tuple(exemplar_ids.shape)}" if torch.is_tensor(exemplar_ids) else type(
            exemplar_ids).__name__
        raise TypeError(f"exemplar_ids must be a 1-D integer tensor (N,), got {got}")
    check_int(views_per_exemplar, "views_per_exemplar")
    image_index = exemplar_ids.long().repeat_interleave(views_per_exemplar)  # (N*K,)
    targets = torch.arange(len(exemplar_ids), device=exemplar_ids.device).repeat_interleave(views_per_exemplar)
    return image_index, targets


def augment_config(size: int, strength: float = 1.0) -> AugmentConfig:
    """The exemplar views at ``strength`` s: crop area in (1 - 0.6 s, 1) with aspect ratio
    (1 - s/4, 1 + s/3), flip, brightness/contrast/saturation 0.4 s and hue 0.1 s
    (p 0.8), blur (p 0.5 s). Rotation is added by :func:`make_views`."""
    check_number(strength, "strength", 0, MAX_STRENGTH)
    s = float(strength)
    return AugmentConfig(size=size, crop_scale=(1 - 0.6 * s, 1.0),
                         crop_ratio=(1 - s / 4, 1 + s / 3), flip_p=0.5 if s > 0 else 0.0,
                         jitter=(0.4 * s, 0.4 * s, 0.4 * s, 0.1 * s), jitter_p=0.8 if s > 0 else 0.0,
                         grayscale_p=0.0, blur_p=min(1.0, 0.5 * s), blur_sigma=(0.1, 1.0))


def make_views(images: Tensor, cfg: ExemplarConfig, generator: torch.Generator | None = None) -> Tensor:
    """One random view T(x) of each image: rotation, then crop, flip, colour and blur (float in [0, 1]).

    ``images`` are uint8 (B, C, H, W); the views have the same shape, as floats.
    """
    if not torch.is_tensor(images) or images.dtype != torch.uint8 or images.dim() != 4:
        got = f"{images.dtype} {tuple(images.shape)}" if torch.is_tensor(images) else type(images).__name__
        raise TypeError(f"images must be a uint8 tensor (B, C, H, W), got {got}")
    x = random_rotation(to_float(images), cfg.max_degrees * cfg.strength, generator)  # (B, C, H, W)
    return augment(x, augment_config(images.shape[-1], cfg.strength), generator)


# --------------------------------------------------------------------------- head, loss, step


def make_head(in_dim: int, cfg: ExemplarConfig) -> nn.Module:
    """The N-way classifier on features h: one weight vector per exemplar, logits = W h + b (B, N)."""
    return LinearHead(in_dim, cfg.num_exemplars)


def head_parameters(feature_dim: int, num_exemplars: int) -> int:
    """Parameters of the exemplar head: a weight vector and a bias per exemplar, N (D + 1)."""
    return num_exemplars * (feature_dim + 1)


def exemplar_loss(logits: Tensor, targets: Tensor) -> Tensor:
    """Mean cross-entropy over the N surrogate classes, -log softmax(logits)_target: the objective of
    Dosovitskiy et al. 2014 (eq. 1, with the softmax loss), logits (B, N), targets (B,) in 0..N-1.

    Written as log-sum-exp minus the target's logit, which is stable for large logits.
    With uniform logits it equals log N (chance).
    """
    if logits.dim() != 2 or targets.shape != logits.shape[:1]:
        raise ValueError(f"expected logits (B, N) and targets (B,), got {tuple(logits.shape)} and "
                         f"{tuple(targets.shape)}")
    log_z = torch.logsumexp(logits, dim=1)  # (B,): log sum_j exp(logit_j)
    correct = logits.gather(1, targets.long().unsqueeze(1)).squeeze(1)  # (B,): logit of the true exemplar
    return (log_z - correct).mean()


def exemplar_step(backbone: Backbone, head: LinearHead, cfg: ExemplarConfig,
                  generator: torch.Generator | None = None):
    """The step function for ``course_lib.train.train`` on a loader over the exemplars:
    augment the batch, classify each view as its exemplar (the batch's ``index``).

    The loader must iterate over the N exemplars only (``index`` < N = the head's outputs);
    the first batch is checked, so a loader over the whole dataset fails with a clear error.
    """
    checked = False

    def step(batch) -> dict[str, Tensor]:
        nonlocal checked
        if not checked:
            num_classes = head.fc.out_features
            if int(batch.index.max()) >= num_classes:
                raise ValueError(f"batch.index goes up to {int(batch.index.max())} but the head has "
                                 f"{num_classes} exemplar classes: iterate over the exemplars only "
                                 "(DeviceLoader(images[exemplar_ids]))")
            checked = True
        x = make_views(batch.x, cfg, generator)  # (B, C, H, W) float: one fresh view per exemplar
        y = batch.index  # (B,): the surrogate class is the exemplar's position in the exemplar set
        logits = head(backbone.forward_features(x))  # (B, N)
        return {"loss": exemplar_loss(logits, y), "acc": (logits.argmax(1) == y).float().mean()}

    return step


def setup(train_data: ImageData, profile: Profile, cfg: ExemplarConfig, device: torch.device) -> PretrainSetup:
    """Exemplar's part of its pre-training run (``train.pretrain_method`` does the rest): sample the N
    exemplars (the loader draws from them only: a batch's ``index`` is its target), the profile's backbone
    with the random-init baseline's weights, the N-way head, the step, and the views that recalibrate
    batch norm."""
    if cfg.num_exemplars > len(train_data):
        raise ValueError(f"num_exemplars={cfg.num_exemplars} but the training set has only {len(train_data)} images")
    exemplar_ids = sample_exemplars(len(train_data), cfg.num_exemplars, seed=profile.seed)
    exemplars = train_data.images[exemplar_ids]  # (N, C, H, W): row i is surrogate class i
    backbone = seeded_backbone(profile, train_data.images.shape[1], device)
    head = make_head(backbone.feature_dim, cfg).to(device)
    generator = torch.Generator(device=device).manual_seed(profile.seed)

    def forward(batch) -> Tensor:  # the pretext inputs through both modules (batch-norm recalibration)
        return head(backbone.forward_features(make_views(batch.x, cfg, generator)))

    return PretrainSetup(backbone, {"head": head}, exemplar_step(backbone, head, cfg, generator), forward,
                         exemplars, min(cfg.batch_size, len(exemplars)), profile.lr, profile.weight_decay)


def pretrain(train_data: ImageData, profile: Profile, cfg: ExemplarConfig | None = None,
             device: torch.device | None = None, progress: bool = True) -> Pretrained:
    """Sample the exemplars, pre-train a backbone and the N-way head on their views (cached), then
    recalibrate batch norm. The backbone starts from the same seeded initialisation as the random-init
    baseline. Returns ``Pretrained(backbone, history, heads={"head": ...})``."""
    return pretrain_method(__name__, train_data, profile, cfg, device, progress)


# --------------------------------------------------------------------------- what the features learned


@torch.no_grad()
def view_similarities(backbone: Backbone, images: Tensor, cfg: ExemplarConfig,
                      generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
    """Cosine similarities between features of two random views of the *same* image (B,),
    and of two *different* images (B,: view 1 of image i against view 2 of image i + 1).

    The features h are standardised over the 2B views first (as the linear probe sees
    them): raw h after a ReLU and pooling are all positive, and every pair would look
    alike. The exemplar task asks for both: invariance (same: high) and discrimination
    (different: low).
    """
    if not torch.is_tensor(images) or len(images) < 2:
        raise ValueError("need a uint8 tensor of at least 2 images to compare different ones")
    device = next(backbone.parameters()).device
    was_training = backbone.training
    backbone.eval()
    try:
        images = images.to(device)
        h = torch.cat([backbone.forward_features(make_views(images, cfg, generator)) for _ in range(2)]).float()
    finally:
        backbone.train(was_training)
    h = (h - h.mean(0)) / h.std(0).clamp_min(1e-6)  # (2B, D), standardised per feature
    z1, z2 = F.normalize(h, dim=1).chunk(2)  # (B, D) each: view 1, view 2
    same = (z1 * z2).sum(1)  # (B,)
    different = (z1 * z2.roll(-1, dims=0)).sum(1)  # (B,): image i against image i + 1
    return same.cpu(), different.cpu()
