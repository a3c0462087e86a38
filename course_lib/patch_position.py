"""Patch order: predict where a neighbouring patch sits (Doersch et al. 2015).

"Unsupervised visual representation learning by context prediction" (ICCV 2015):
cut a 3x3 grid of patches from an image, show a network the centre patch and one
of its 8 neighbours, and ask *which* neighbour it was -- an 8-way classification
with labels for free. Both patches go through the same encoder (shared weights);
only a small pair head sees them together, so the encoder has to describe each
patch well enough for its relative position to be guessed ("this is the left
sleeve, so the collar is up-right of it").

Numbering (the lecture's figure "X = (patch 5, patch 4); Y = 3"): the grid's cells
are numbered 1..9 in reading order, the centre is 5, and the label of a neighbour
is its index 0..7 among the 8 neighbours in reading order. So label k is cell k+1
for k < 4 and cell k+2 for k >= 4, and cell 4 (left of the centre) is label 3.

Two details stop the network from cheating (section 3 of the paper): a **gap**
between the cells, so that lines and textures cannot simply be continued across the
border, and a random **jitter** of each patch, so that the exact alignment of the
patches gives nothing away. Everything here is batched on the device: corners are
one tensor, patches are cut with one indexing op, no Python loop over samples.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from course_lib.augment import crop_at, to_float
from course_lib.config import Profile, Settings, check_int
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

# (row, col) step from the centre cell to the neighbour with label k, in reading order.
NEIGHBOURS: tuple[tuple[int, int], ...] = (
    (-1, -1), (-1, 0), (-1, 1),
    (0, -1),           (0, 1),
    (1, -1),  (1, 0),  (1, 1),
)  # fmt: skip
NUM_POSITIONS = len(NEIGHBOURS)  # 8: chance is 1/8, a chance-level loss is log 8


def label_to_cell(label: int) -> int:
    """The lecture's cell number (1..9, reading order, centre 5) of the neighbour with ``label`` (0..7)."""
    if not 0 <= label < NUM_POSITIONS:
        raise ValueError(f"label must be in 0..7, got {label!r}")
    return label + 1 if label < 4 else label + 2


@dataclass(frozen=True)
class PatchPositionConfig(Settings):
    """How pairs of patches are cut (sizes in pixels of the resized image) and how long to train;
    resolved and checked when built (``config_for``): the printed values are the values used."""

    image_size: int = 32  # images are resized to this side first (Fashion-MNIST 28 px -> 32 px)
    patch_size: int = 8  # side of each square patch (the backbones need >= 8 px)
    gap: int = 2  # empty pixels between neighbouring cells (Doersch: 48 px between 96-px patches)
    jitter: int = 2  # each patch moves independently by up to +-jitter pixels per axis (Doersch: 7 of 96)
    hidden_dim: int = 256  # hidden width of the pair head
    batch_size: int = 128  # images per step, one pair each (the profile's)
    num_epochs: int = 8  # passes over the training images
    time_budget_s: float | None = None  # stop pre-training after this many seconds (None: no budget)
    recalibration_batches: int = 20  # batches that re-estimate the batch-norm statistics after training (0: skip)

    def __post_init__(self) -> None:
        for name in ("image_size", "patch_size", "gap", "jitter", "hidden_dim", "recalibration_batches"):
            check_int(getattr(self, name), name, minimum=0)
        check_int(self.batch_size, "batch_size")
        check_int(self.num_epochs, "num_epochs")
        check_budget(self.time_budget_s)
        if self.patch_size < 8:
            raise ValueError(f"patch_size must be >= 8 (the backbones need 8x8 inputs), got {self.patch_size}")
        if self.hidden_dim < 1:
            raise ValueError(f"hidden_dim must be >= 1, got {self.hidden_dim}")
        if self.image_size < self.grid_size:
            raise ValueError(
                f"image of {self.image_size} px is too small for a 3x3 grid of {self.patch_size}-px patches with "
                f"gap {self.gap} and jitter {self.jitter}: need >= 3*patch + 2*gap + 2*jitter = {self.grid_size} px"
            )

    def __str__(self) -> str:
        return super().__str__() + f"\n  (grid of {self.grid_size} px, chance = 1/8)"

    @property
    def stride(self) -> int:
        """Distance between the corners of neighbouring cells: patch_size + gap."""
        return self.patch_size + self.gap

    @property
    def grid_size(self) -> int:
        """The smallest image side that holds the jittered 3x3 grid."""
        return 3 * self.patch_size + 2 * self.gap + 2 * self.jitter


# Per-profile values: none of the patch settings follow the profile's name; they follow its data (the image
# size sets the patch geometry) and its backbone (its feature width sets the pair head's), derived in
# config_for below, with the profile's epochs, batch size and time budget.
PATCH_POSITION_CONFIGS: dict[str, dict] = {"fast": {}, "full": {}, "grade": {}}


def config_for(profile: Profile, **overrides) -> PatchPositionConfig:
    """The patch settings for ``profile``, every value resolved, then ``overrides``.

    Fashion-MNIST (28 px) is resized to 32 px and CIFAR-10 used as it is: 8-px patches, close
    to the scale of the whole images the probe sees (measured in notebook 04: larger,
    upsampled patches transfer worse to whole images). STL-10 (96 px) gets 24-px patches.
    A ResNet-18 (512 features) gets a 512-wide pair head. Training: the profile's epochs, batch
    size and time budget.
    """
    derived = {"num_epochs": profile.num_epochs, "batch_size": profile.batch_size}
    if profile.backbone == "resnet18" or profile.dataset == "stl10":
        derived["hidden_dim"] = 512
    if profile.dataset == "stl10":
        derived.update(image_size=96, patch_size=24, gap=6, jitter=6)
    return config_from_table(PatchPositionConfig, PATCH_POSITION_CONFIGS, profile, {**derived, **overrides},
                             "patch-position")


def neighbour_offsets(patch_size: int, gap: int) -> Tensor:
    """(8, 2) int64: (dy, dx) from the centre patch's top-left corner to neighbour k's, before jitter."""
    return torch.tensor(NEIGHBOURS, dtype=torch.long) * (patch_size + gap)


def grid_corners(batch_size: int, cfg: PatchPositionConfig, image_size: int, generator: torch.Generator | None = None,
                 device: torch.device | str | None = None) -> Tensor:
    """Top-left corners (B, 9, 2), as (row, col), of cells 1..9 of a randomly placed, jittered grid.

    The whole grid moves to a random position that fits the image; then every patch
    moves on its own by a random jitter in [-jitter, jitter] per axis.
    """
    free = image_size - cfg.grid_size  # room to move the whole grid
    if free < 0:
        raise ValueError(f"a {cfg.grid_size}-px grid does not fit in a {image_size}-px image")
    origin = cfg.jitter + torch.randint(0, free + 1, (batch_size, 1, 2), generator=generator, device=device)
    cells = torch.tensor([(r, c) for r in range(3) for c in range(3)], device=device) * cfg.stride  # (9, 2)
    shake = torch.randint(-cfg.jitter, cfg.jitter + 1, (batch_size, 9, 2), generator=generator, device=device)
    return origin + cells + shake  # (B, 9, 2)


def sample_corners(labels: Tensor, cfg: PatchPositionConfig, image_size: int,
                   generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
    """Top-left corners (B, 2) of the centre patch (cell 5) and of neighbour ``labels[i]``."""
    corners = grid_corners(labels.shape[0], cfg, image_size, generator, labels.device)  # (B, 9, 2)
    cell = labels + (labels >= 4).long()  # label -> 0-based cell index, skipping the centre (index 4)
    return corners[:, 4], corners[torch.arange(labels.shape[0], device=labels.device), cell]


def cut_patches(x: Tensor, corners: Tensor, size: int) -> Tensor:
    """Patch ``x[i, :, r:r+size, c:c+size]`` for each corner ``(r, c) = corners[i]``: (B, C, size, size),
    the course's one crop (``augment.crop_at``: one gather for the whole batch)."""
    return crop_at(x, corners, size)


def cut_pair(image: Tensor, label: int, top: int, left: int, patch_size: int, gap: int) -> tuple[Tensor, Tensor]:
    """The pair (centre patch, patch of neighbour ``label``) of one image (C, H, W), without jitter.

    The grid's cell 1 has its top-left corner at (``top``, ``left``); raises ``ValueError``
    if the grid does not fit in the image. (The reference for the notebook's exercise.)
    """
    if not 0 <= label < NUM_POSITIONS:
        raise ValueError(f"label must be in 0..7, got {label!r}")
    centre = torch.tensor([top, left]) + (patch_size + gap)  # (2,): cell 5
    neighbour = centre + neighbour_offsets(patch_size, gap)[label]  # (2,)
    corners = torch.stack([centre, neighbour]).to(image.device)  # (2, 2)
    grid = 3 * patch_size + 2 * gap
    if top < 0 or left < 0 or top + grid > image.shape[-2] or left + grid > image.shape[-1]:
        raise ValueError(f"a {grid}-px grid at ({top}, {left}) does not fit in a {tuple(image.shape[-2:])} image")
    pair = cut_patches(image[None].expand(2, -1, -1, -1), corners, patch_size)  # (2, C, p, p)
    return pair[0], pair[1]


class PatchPairs(NamedTuple):
    """A batch of the pretext task: X = (centre, neighbour), Y = label."""

    centre: Tensor  # (B, C, p, p) float
    neighbour: Tensor  # (B, C, p, p) float
    label: Tensor  # (B,) int64 in 0..7
    centre_corner: Tensor  # (B, 2) (row, col) in the resized image
    neighbour_corner: Tensor  # (B, 2)


def resize(x: Tensor, size: int) -> Tensor:
    """Float images (B, C, H, W) -> (B, C, size, size), bilinear (unchanged if already that size)."""
    if x.shape[-2:] == (size, size):
        return x
    return F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True).clamp_(0, 1)


def make_pairs(x: Tensor, cfg: PatchPositionConfig, generator: torch.Generator | None = None,
               labels: Tensor | None = None) -> PatchPairs:
    """Inputs and targets of the pretext task for a batch of images (uint8 or float in [0, 1]).

    The images are resized to ``cfg.image_size``; labels are uniform over the 8
    neighbours unless given.
    """
    if not torch.is_tensor(x) or x.dim() != 4:
        raise TypeError(f"x must be an image batch (B, C, H, W), got {type(x).__name__} {tuple(getattr(x, 'shape', ()))}")
    x = resize(to_float(x) if x.dtype == torch.uint8 else x, cfg.image_size)  # (B, C, S, S)
    B = x.shape[0]
    if labels is None:
        labels = torch.randint(0, NUM_POSITIONS, (B,), generator=generator, device=x.device)
    elif labels.shape != (B,) or labels.min() < 0 or labels.max() >= NUM_POSITIONS:
        raise ValueError(f"labels must be ({B},) integers in 0..7")
    centre_corner, neighbour_corner = sample_corners(labels, cfg, cfg.image_size, generator)
    return PatchPairs(cut_patches(x, centre_corner, cfg.patch_size), cut_patches(x, neighbour_corner, cfg.patch_size),
                      labels, centre_corner, neighbour_corner)


class PairHead(nn.Module):
    """Late fusion: the features of the two patches, concatenated, through the course's MLP head -> 8 logits.

    Like the paper's network, the two patches meet only here: the encoder sees one patch at a time.
    """

    def __init__(self, in_dim: int, hidden_dim: int = 256):
        super().__init__()
        self.mlp = MLPHead(2 * in_dim, hidden_dim, NUM_POSITIONS)

    def forward(self, h_centre: Tensor, h_neighbour: Tensor) -> Tensor:
        return self.mlp(torch.cat([h_centre, h_neighbour], dim=1))  # (B, 2D) -> (B, 8)


def make_head(in_dim: int, cfg: PatchPositionConfig) -> PairHead:
    return PairHead(in_dim, cfg.hidden_dim)


def patch_position_loss(logits: Tensor, labels: Tensor) -> Tensor:
    """Doersch et al. 2015 (sec. 3): mean cross-entropy of the 8-way position logits (B, 8) against the
    neighbour labels (B,) in 0..7; chance = log 8."""
    if logits.dim() != 2 or logits.shape[1] != NUM_POSITIONS or labels.shape != logits.shape[:1]:
        raise ValueError(f"expected logits (B, 8) and labels (B,), got {tuple(logits.shape)} and {tuple(labels.shape)}")
    return F.cross_entropy(logits, labels)


def pair_logits(backbone: Backbone, head: PairHead, pairs: PatchPairs) -> Tensor:
    """Both patches through the shared encoder in one pass, then the pair head: (B, 8)."""
    h = backbone.forward_features(torch.cat([pairs.centre, pairs.neighbour]))  # (2B, D)
    h_centre, h_neighbour = h.chunk(2)  # (B, D) each
    return head(h_centre, h_neighbour)


def patch_position_step(backbone: Backbone, head: PairHead, cfg: PatchPositionConfig,
                        generator: torch.Generator | None = None):
    """The step function for ``course_lib.train.train``: cross-entropy over the 8 positions."""

    def step(batch):
        pairs = make_pairs(batch.x, cfg, generator)
        logits = pair_logits(backbone, head, pairs)  # (B, 8)
        return {"loss": patch_position_loss(logits, pairs.label), "acc": (logits.argmax(1) == pairs.label).float().mean()}

    return step


@torch.no_grad()
def pretext_accuracy(backbone: Backbone, head: PairHead, images: Tensor, cfg: PatchPositionConfig, seed: int = 0,
                     batch_size: int = 512) -> float:
    """Accuracy of the 8-way position guess on ``images`` (uint8), with fixed random pairs (``seed``);
    computed in eval mode, the modules' modes restored afterwards."""
    modes = backbone.training, head.training
    backbone.eval()
    head.eval()
    device = next(backbone.parameters()).device
    generator = torch.Generator(device=device).manual_seed(seed)
    correct = 0
    try:
        for i in range(0, len(images), batch_size):
            pairs = make_pairs(images[i:i + batch_size].to(device), cfg, generator)
            correct += (pair_logits(backbone, head, pairs).argmax(1) == pairs.label).sum().item()
    finally:
        backbone.train(modes[0])
        head.train(modes[1])
    return correct / len(images)


def setup(train_data: ImageData, profile: Profile, cfg: PatchPositionConfig, device: torch.device) -> PretrainSetup:
    """Patch position's part of its pre-training run (``train.pretrain_method`` does the rest): the
    profile's backbone with the random-init baseline's weights, the pair head, the step, and the pairs
    that recalibrate batch norm."""
    backbone = seeded_backbone(profile, train_data.images.shape[1], device)
    head = make_head(backbone.feature_dim, cfg).to(device)
    generator = torch.Generator(device=device).manual_seed(profile.seed)

    def forward(batch) -> Tensor:  # the pretext inputs through both modules (batch-norm recalibration)
        return pair_logits(backbone, head, make_pairs(batch.x, cfg, generator))

    return PretrainSetup(backbone, {"head": head}, patch_position_step(backbone, head, cfg, generator), forward,
                         train_data.images, min(cfg.batch_size, len(train_data)), profile.lr, profile.weight_decay)


def pretrain(train_data: ImageData, profile: Profile, cfg: PatchPositionConfig | None = None,
             device: torch.device | None = None, progress: bool = True) -> Pretrained:
    """Pre-train a backbone and the pair head on the pretext task (cached: the key holds the whole
    profile and config, so a changed knob -- a gap of 0 -- retrains), then recalibrate batch norm.
    Returns ``Pretrained(backbone, history, heads={"head": ...})``."""
    return pretrain_method(__name__, train_data, profile, cfg, device, progress)
