"""Contrastive predictive coding: predict the patches below from the patches above (CPC).

van den Oord, Li & Vinyals 2018, "Representation learning with contrastive predictive
coding" (CPC v1), and Hénaff et al. 2019, "Data-efficient image recognition with
contrastive predictive coding" (CPC v2). For images:

1. cut each image into a grid of overlapping patches (here 8x8 pixels every 4 pixels:
   a 6x6 grid on a 28x28 image, 50% overlap as in the papers' 64-of-256 px patches
   every 32 px);
2. a **patch encoder** f gives one vector z for every patch (z grid (B, D, R, C)); here f is
   the profile's own backbone (``models.build_backbone``), applied to each patch alone;
3. an autoregressive **context network** g_ar reads the z of the rows above and gives a
   context c for every grid cell: c[r, col] depends on rows <= r only (a masked convolution,
   :class:`ContextNetwork`);
4. for each k = 1..K a linear map W_k **predicts** the patch k rows below:
   ẑ[r + k, col] = W_k c[r, col]. With 50% overlap the patch one row below (k = 1) shares its upper
   half with the source's own patch, which the context has read: ``skip_rows=1`` predicts k = 2..K+1
   instead, rows that share no pixel with the context (CPC v2's appendix pseudo-code, Hénaff et al.,
   with its default settings predicts only the row three below);
5. the **InfoNCE loss** of the lecture makes ẑ pick the true z among other patches'
   embeddings (:func:`cpc_infonce`, built on the course's one contrastive loss
   ``contrastive.info_nce``):

       L = -log( exp(ẑᵀz) / (exp(ẑᵀz) + sum_l exp(ẑᵀz_l)) ),

   source = the prediction ẑ, positive = the true embedding z of that patch, negatives z_l =
   the embeddings of the other patches of the batch at the same distance k (other positions of
   the same image and patches of the other images).

**Normalisation in the patch encoder.** The backbone's batch norm normalises every patch with
statistics of all the patches of the batch, its target included, so a patch's z depends on the other
patches. CPC v2 replaced batch norm by layer normalisation (Hénaff et al., §4.1: batch norm hurt their large
networks, and they hypothesise that the batch statistics let patches depend on each other, a way round
the receptive field).
``patch_norm="layer"`` does that here: every ``BatchNorm2d`` of the backbone becomes
``GroupNorm(1, C)``, which normalises each patch over its own channels and pixels (:func:`per_patch_norm`).

Why not simply regress ẑ onto z? Because the encoder is trained too: ‖ẑ − z‖² is smallest
when every patch has the same z, and gradient descent finds that (:func:`cpc_mse`; notebook 07
shows the collapse). The negatives forbid it: a constant z makes the InfoNCE loss log N.

**From patches to an image encoder.** The patch encoder is the profile's backbone, a fully
convolutional network with global average pooling, starting from the random-init baseline's
weights. Trained on 8x8 patches, the same network accepts a whole 28x28 image: its filters slide
over the image and the pooling averages what they find. That is what the course's protocol
evaluates (``pretrain`` returns the backbone itself), so CPC is compared with raw pixels and random
init through the very same network and probe. CPC v2 evaluates differently: it cuts the image into
the training grid, encodes each patch alone and mean-pools the grid of z; :class:`PatchPooledEncoder`
does that (it is a ``models.Backbone`` too), and notebook 07 measures both against random init.

The method contract (``docs/adding-a-method.md``): :class:`CPCConfig` built by :func:`config_for`;
the losses :func:`cpc_infonce` and :func:`cpc_mse`; the step :func:`cpc_step`; :func:`pretrain`,
returning ``train.Pretrained(backbone, history, heads={"context": g_ar, "predictors": W})``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from course_lib.augment import random_flip, to_float
from course_lib.config import Profile, Settings, check_int, check_number
from course_lib.contrastive import info_nce
from course_lib.datasets import ImageData
from course_lib.models import Backbone
from course_lib.train import (
    Pretrained,
    PretrainSetup,
    check_budget,
    config_from_table,
    pretrain_method,
    seeded_backbone,
)

LOSSES = ("infonce", "mse")
PATCH_NORMS = ("batch", "layer")


@dataclass(frozen=True)
class CPCConfig(Settings):
    """CPC's hyperparameters: every value here is the value used (see :func:`config_for`)."""

    patch_size: int = 8  # side of each square patch in pixels (the backbones need >= 8)
    stride: int = 4  # step between neighbouring patches: patch_size / 2 = 50% overlap, as the papers
    pred_steps: int = 3  # K: predict K rows below each source row
    skip_rows: int = 0  # rows skipped before the first target: 0 predicts k = 1..K (k = 1 overlaps the context by
    #                     half with stride = patch_size / 2); 1 predicts k = 2..K+1, rows that share no pixel with it
    context_dim: int = 128  # channels of the context c
    context_layers: int = 2  # masked conv layers of the context network (each sees one more row above)
    loss: str = "infonce"  # "infonce" (CPC) or "mse" (‖ẑ − z‖², which collapses: notebook 07)
    patch_norm: str = "batch"  # "batch": the backbone's batch norm, statistics over all patches of the batch;
    #                            "layer": GroupNorm(1, C), each patch normalised on its own (CPC v2's layer norm)
    num_negatives: int | None = None  # negatives per prediction; None: every other patch at that k in the batch
    batch_size: int = 32  # images per step (each gives rows x cols patches)
    flip_p: float = 0.5  # horizontal flip of the whole image before cutting patches
    num_epochs: int = 1  # passes over the training images
    lr: float = 2e-3  # AdamW learning rate
    weight_decay: float = 5e-4
    time_budget_s: float | None = None  # stop after this many seconds (None: no budget)
    recalibration_batches: int = 20  # batches that re-estimate the batch-norm statistics after training (0: skip)

    def __post_init__(self) -> None:
        check_int(self.patch_size, "patch_size", minimum=8)
        check_int(self.stride, "stride")
        check_int(self.pred_steps, "pred_steps")
        check_int(self.skip_rows, "skip_rows", minimum=0)
        check_int(self.context_dim, "context_dim")
        check_int(self.context_layers, "context_layers")
        if self.loss not in LOSSES:
            raise ValueError(f"loss must be one of {LOSSES}, got {self.loss!r}")
        if self.patch_norm not in PATCH_NORMS:
            raise ValueError(f"patch_norm must be one of {PATCH_NORMS}, got {self.patch_norm!r}")
        check_int(self.num_negatives, "num_negatives", optional=True)
        check_int(self.batch_size, "batch_size", minimum=2)  # one image: no other images as negatives
        check_number(self.flip_p, "flip_p", 0, 1)
        check_int(self.num_epochs, "num_epochs")
        if isinstance(self.lr, bool) or not isinstance(self.lr, (int, float)) or not self.lr > 0:
            raise ValueError(f"lr must be a positive number, got {self.lr!r}")
        check_number(self.weight_decay, "weight_decay", 0, 10.0)
        check_int(self.recalibration_batches, "recalibration_batches", minimum=0)
        check_budget(self.time_budget_s)

    @property
    def distances(self) -> range:
        """The distances k (in rows) that the predictors target: skip_rows + 1 .. skip_rows + pred_steps."""
        return range(self.skip_rows + 1, self.skip_rows + self.pred_steps + 1)

    def grid(self, image_size: int) -> int:
        """Patches per row (and per column) of a square image of ``image_size`` pixels."""
        check_int(image_size, "image_size")
        if image_size < self.patch_size:
            raise ValueError(f"a {self.patch_size}-px patch does not fit in a {image_size}-px image")
        return (image_size - self.patch_size) // self.stride + 1

    def check_image_size(self, image_size: int) -> None:
        """Raise ``ValueError`` unless the grid has more than ``skip_rows + pred_steps`` rows (something to predict
        at every k)."""
        rows, farthest = self.grid(image_size), self.distances[-1]
        if rows <= farthest:
            skipped = f" ({self.skip_rows} skipped + {self.pred_steps} predicted)" if self.skip_rows else ""
            raise ValueError(f"{image_size}-px images give a {rows}x{rows} grid of {self.patch_size}-px patches "
                             f"(stride {self.stride}): too few rows to predict {farthest} rows ahead{skipped}")


# Per-profile values (the dataclass defaults are the fast profile's). Fast: 8-px patches every 4 px
# (a 6x6 grid on 28 px), K = 3, a budget only against a slow or busy machine. Full (CIFAR-10, 32 px,
# ResNet-18): the same patches give the papers' 7x7 grid; K = 5 as CPC v1; larger batches, the
# profile's learning rate. Grade: a few steps.
CPC_CONFIGS: dict[str, dict] = {
    "fast": {"time_budget_s": 240.0},
    "full": {"pred_steps": 5, "context_dim": 512, "context_layers": 3, "batch_size": 128, "num_epochs": 30,
             "lr": 1e-3, "weight_decay": 1e-4},
    "grade": {"batch_size": 16, "num_epochs": 1},
}


def config_for(profile: Profile, **overrides) -> CPCConfig:
    """CPC's configuration for ``profile`` (by name; ``fast``'s values for an unknown name), with overrides.

    Resolved here, so that the printed config is the one used: the time budget is the
    smaller of the method's and the profile's.
    """
    return config_from_table(CPCConfig, CPC_CONFIGS, profile, overrides, "CPC")


# --------------------------------------------------------------------------- patches and encoders


def cut_patch_grid(x: Tensor, patch_size: int, stride: int) -> Tensor:
    """Every ``patch_size`` patch of ``x`` (B, C, H, W) every ``stride`` pixels: (B, R, Cols, C, p, p).

    Patch (r, col) of image b is ``x[b, :, r*stride : r*stride + p, col*stride : col*stride + p]``;
    R = (H - p) // stride + 1 rows (pixels beyond the last whole patch are not used), Cols likewise.
    """
    if not isinstance(x, Tensor) or x.dim() != 4:
        raise ValueError(f"x must be a 4-D tensor (B, C, H, W), got {getattr(x, 'shape', type(x).__name__)}")
    check_int(patch_size, "patch_size")
    check_int(stride, "stride")
    if min(x.shape[-2:]) < patch_size:
        raise ValueError(f"{patch_size}-px patches do not fit in {tuple(x.shape[-2:])} images")
    p = x.unfold(2, patch_size, stride).unfold(3, patch_size, stride)  # (B, C, R, Cols, p, p)
    return p.permute(0, 2, 3, 1, 4, 5)  # (B, R, Cols, C, p, p)


def encode_patches(backbone: Backbone, x: Tensor, patch_size: int, stride: int) -> Tensor:
    """z of every patch of float images ``x`` (B, C, H, W): the grid (B, D, R, Cols), D = feature_dim.

    Each patch goes through ``backbone`` on its own (a batch of B*R*Cols small images).
    """
    patches = cut_patch_grid(x, patch_size, stride)  # (B, R, Cols, C, p, p)
    B, R, Cols = patches.shape[:3]
    z = backbone.forward_features(patches.reshape(B * R * Cols, *patches.shape[3:]))  # (B*R*Cols, D)
    return z.view(B, R, Cols, -1).permute(0, 3, 1, 2)  # (B, D, R, Cols)


def per_patch_norm(backbone: Backbone) -> Backbone:
    """Replace every ``BatchNorm2d`` of ``backbone`` (in place) by ``GroupNorm(1, C)``: each patch normalised over
    its own C channels and pixels, with a learned scale and shift per channel, as layer normalisation (CPC v2).

    Batch norm normalises a patch with the mean and variance of all the patches of the batch, so its z depends
    on the other patches, the targets included; GroupNorm(1, C) makes z a function of the patch alone. Returns
    ``backbone``."""
    device = next(backbone.parameters()).device
    for module in list(backbone.modules()):
        for name, child in list(module.named_children()):
            if isinstance(child, nn.BatchNorm2d):
                setattr(module, name, nn.GroupNorm(1, child.num_features, eps=child.eps, affine=child.affine).to(device))
    return backbone


class PatchPooledEncoder(Backbone):
    """An image encoder made of a patch encoder, the way CPC v2 evaluates: cut the image into the
    training patch grid, encode every patch with ``backbone``, mean-pool the grid of z.

    ``forward_maps(x)`` is ``[z grid (B, D, R, Cols)]``; ``forward_features`` (inherited) pools it to
    (B, D). The parameters are the backbone's: fine-tuning this encoder fine-tunes the backbone.
    """

    def __init__(self, backbone: Backbone, patch_size: int, stride: int):
        super().__init__()
        if not isinstance(backbone, Backbone):
            raise TypeError(f"backbone must be a course_lib.models.Backbone, got {type(backbone).__name__}")
        check_int(patch_size, "patch_size", minimum=8)
        check_int(stride, "stride")
        self.backbone = backbone
        self.in_channels = backbone.in_channels
        self.patch_size, self.stride = patch_size, stride

    def extra_repr(self) -> str:  # part of weights_digest, so cached probes of another geometry are not reused
        return f"patch_size={self.patch_size}, stride={self.stride}"

    @property
    def stage_dims(self) -> list[int]:
        return [self.backbone.feature_dim]

    def forward_maps(self, x: Tensor) -> list[Tensor]:
        return [encode_patches(self.backbone, x, self.patch_size, self.stride)]  # [(B, D, R, Cols)]


class ContextNetwork(nn.Module):
    """g_ar: the z grid (B, D, R, Cols) -> the context grid c (B, context_dim, R, Cols), causal in rows.

    Each layer is a (2 x 3) convolution over (row above, this row) x (column left, same, right), the
    grid padded with one zero row on top and one zero column on each side: c[r, col] sees rows
    r - layers .. r only, never a row below r (a masked convolution, as CPC's PixelCNN-style
    context network). The last layer is a 1x1 convolution.
    """

    def __init__(self, in_dim: int, context_dim: int, layers: int = 2):
        super().__init__()
        for name, value in (("in_dim", in_dim), ("context_dim", context_dim), ("layers", layers)):
            check_int(value, name)
        dims = [in_dim] + [context_dim] * layers
        self.convs = nn.ModuleList([nn.Conv2d(a, b, kernel_size=(2, 3)) for a, b in zip(dims[:-1], dims[1:],
                                                                                        strict=True)])
        self.out = nn.Conv2d(context_dim, context_dim, kernel_size=1)

    def forward(self, z: Tensor) -> Tensor:
        if z.dim() != 4:
            raise ValueError(f"z must be a grid (B, D, R, Cols), got shape {tuple(z.shape)}")
        h = z
        for conv in self.convs:
            h = F.relu(conv(F.pad(h, (1, 1, 1, 0))))  # pad (left, right, top, bottom): rows <= r only
        return self.out(h)  # (B, context_dim, R, Cols)


class Predictors(nn.Module):
    """W_k for k = skip_rows + 1 .. skip_rows + pred_steps: linear maps from a context c (context_dim) to the
    prediction ẑ (D) of the patch k rows below (``maps[i]`` is W_{skip_rows + 1 + i})."""

    def __init__(self, context_dim: int, z_dim: int, pred_steps: int, skip_rows: int = 0):
        super().__init__()
        for name, value in (("context_dim", context_dim), ("z_dim", z_dim), ("pred_steps", pred_steps)):
            check_int(value, name)
        check_int(skip_rows, "skip_rows", minimum=0)
        self.skip_rows = skip_rows
        self.maps = nn.ModuleList([nn.Linear(context_dim, z_dim, bias=False) for _ in range(pred_steps)])

    def extra_repr(self) -> str:
        return f"skip_rows={self.skip_rows}" if self.skip_rows else ""

    def forward(self, c: Tensor, k: int) -> Tensor:
        """ẑ from the context grid c (B, context_dim, R, Cols) for distance k: (B, z_dim, R - k, Cols),
        the prediction for rows k .. R-1 made from rows 0 .. R-1-k."""
        first, last = self.skip_rows + 1, self.skip_rows + len(self.maps)
        if not first <= k <= last:
            raise ValueError(f"k must be in {first}..{last}, got {k!r}")
        source = c[:, :, : c.shape[2] - k]  # (B, Dc, R - k, Cols): the contexts that predict k rows ahead
        return self.maps[k - first](source.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)  # (B, D, R - k, Cols)


def pairs_at(z: Tensor, z_hat: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """Flatten the predictions ẑ (B, D, R - k, Cols) and their targets z[:, :, k:] into rows (M, D),
    M = B (R - k) Cols; row m of both is one (source, positive) pair."""
    target = z[:, :, k:]  # (B, D, R - k, Cols): the patches k rows below each source
    if target.shape != z_hat.shape:
        raise ValueError(f"predictions {tuple(z_hat.shape)} do not fit the targets {tuple(target.shape)} at k={k}")
    return z_hat.permute(0, 2, 3, 1).reshape(-1, z.shape[1]), target.permute(0, 2, 3, 1).reshape(-1, z.shape[1])


# --------------------------------------------------------------------------- the losses


def cpc_infonce(z_hat: Tensor, z: Tensor, num_negatives: int | None = None,
                generator: torch.Generator | None = None) -> Tensor:
    """The CPC loss for M (prediction, patch) pairs: mean of

        L_m = -log( exp(ẑ_mᵀ z_m) / (exp(ẑ_mᵀ z_m) + sum_l exp(ẑ_mᵀ z_l)) ),

    with the plain dot product of the slide (no normalisation, no temperature).

    ``z_hat`` (M, D): the sources, predicted embeddings. ``z`` (M, D): the positives, row m the
    true embedding of the patch that ẑ_m predicts. The negatives z_l of row m are the other rows
    of ``z``: other patches of the same image and patches of other images. ``num_negatives``:
    None uses all M - 1; an int n splits the M pairs into random groups of n + 1 (pairs left over
    are dropped), each pair's negatives being the n other positives of its group.
    Chance (every score equal) gives log(n + 1).
    """
    if z_hat.dim() != 2 or z.shape != z_hat.shape:
        raise ValueError(f"z_hat and z must both be (M, D), got {tuple(z_hat.shape)} and {tuple(z.shape)}")
    check_int(num_negatives, "num_negatives", optional=True)
    if num_negatives is None:
        return info_nce(z_hat, z, normalize=False)  # candidates of row m: every row of z
    group = num_negatives + 1
    if group > len(z):
        raise ValueError(f"{num_negatives} negatives need at least {group} pairs, got {len(z)}")
    order = torch.randperm(len(z), generator=generator, device=generator.device if generator else None)
    order = order.to(z.device)[: len(z) // group * group]  # (G * group,)
    D = z.shape[1]
    return info_nce(z_hat[order].view(-1, group, D), z[order].view(-1, group, D), normalize=False)  # (G, group, D)


def cpc_mse(z_hat: Tensor, z: Tensor) -> Tensor:
    """The loss the lecture warns against: mean over the M pairs of ‖ẑ_m − z_m‖² (sum over D).

    ``z_hat``, ``z``: (M, D). Zero for any constant encoder with a matching predictor: no negatives,
    nothing stops every patch from getting the same z.
    """
    if z_hat.dim() != 2 or z.shape != z_hat.shape:
        raise ValueError(f"z_hat and z must both be (M, D), got {tuple(z_hat.shape)} and {tuple(z.shape)}")
    return (z_hat - z).pow(2).sum(1).mean()


@torch.no_grad()
def prediction_accuracy(z_hat: Tensor, z: Tensor) -> Tensor:
    """Fraction of predictions whose highest-scoring candidate (ẑᵀz over all M rows of z) is their own patch."""
    return ((z_hat @ z.T).argmax(1) == torch.arange(len(z), device=z.device)).float().mean()


@torch.no_grad()
def patch_variance(z: Tensor) -> tuple[Tensor, Tensor]:
    """How spread out the patch embeddings are: z (B, D, R, Cols) -> (total variance across the B R Cols
    patches summed over the D dimensions, the same divided by the mean squared norm: 1 when the mean is 0,
    -> 0 when every patch gets the same z, whatever its length)."""
    flat = z.permute(0, 2, 3, 1).reshape(-1, z.shape[1]).float()  # (B R Cols, D)
    var = flat.var(0, unbiased=False).sum()
    return var, var / flat.pow(2).sum(1).mean().clamp_min(1e-12)


# --------------------------------------------------------------------------- the step


def cpc_losses(z: Tensor, context: ContextNetwork, predictors: Predictors, cfg: CPCConfig,
               generator: torch.Generator | None = None) -> dict[str, Tensor]:
    """The loss (mean over the K distances k of ``cfg.distances``) and the metrics for a z grid (B, D, R, Cols):
    loss, acc (the InfoNCE-style top-1 among the batch's patches, mean over k), loss_k and acc_k per k (named by
    the distance: loss_2 .. loss_4 when ``skip_rows`` = 1 and K = 3), and var / rel_var of z across patches
    (:func:`patch_variance`)."""
    c = context(z)  # (B, Dc, R, Cols)
    out: dict[str, Tensor] = {}
    losses, accs = [], []
    for k in cfg.distances:
        z_hat, target = pairs_at(z, predictors(c, k), k)  # (M, D) sources and positives, M = B (R - k) Cols
        loss_k = cpc_infonce(z_hat, target, cfg.num_negatives, generator) if cfg.loss == "infonce" \
            else cpc_mse(z_hat, target)
        out[f"loss_{k}"] = loss_k.detach()
        out[f"acc_{k}"] = prediction_accuracy(z_hat.detach().float(), target.detach().float())
        losses.append(loss_k)
        accs.append(out[f"acc_{k}"])
    out["loss"] = torch.stack(losses).mean()
    out["acc"] = torch.stack(accs).mean()
    out["var"], out["rel_var"] = patch_variance(z.detach())
    return out


def cpc_inputs(x: Tensor, cfg: CPCConfig, generator: torch.Generator | None = None) -> Tensor:
    """The training images of a step: uint8 or float (B, C, H, W) -> float in [0, 1], flipped at random."""
    x = to_float(x) if x.dtype == torch.uint8 else x
    return random_flip(x, cfg.flip_p, generator) if cfg.flip_p > 0 else x


def cpc_step(backbone: Backbone, context: ContextNetwork, predictors: Predictors, cfg: CPCConfig,
             generator: torch.Generator | None = None):
    """The step function for ``course_lib.train.train``: batch -> {"loss", "acc", per-k values, var, rel_var}.

    Labels in the batch are never looked at: the targets are the images' own patches.
    """

    def step(batch) -> dict[str, Tensor]:
        x = cpc_inputs(batch.x, cfg, generator)  # (B, C, H, W)
        z = encode_patches(backbone, x, cfg.patch_size, cfg.stride)  # (B, D, R, Cols)
        return cpc_losses(z, context, predictors, cfg, generator)

    return step


# --------------------------------------------------------------------------- training


def setup(train_data: ImageData, profile: Profile, cfg: CPCConfig, device: torch.device) -> PretrainSetup:
    """CPC's part of its pre-training run (``train.pretrain_method`` does the rest): the patch encoder (the
    profile's backbone, with the random-init baseline's weights; ``patch_norm="layer"``: its batch norms
    replaced by :func:`per_patch_norm`), g_ar and the W_k, the step, the patches
    that recalibrate batch norm, AdamW at the config's own rate. No labels: self-supervised."""
    images = train_data.images
    if images.shape[-1] != images.shape[-2]:
        raise ValueError(f"CPC's patch grid needs square images, got {tuple(images.shape[-2:])}")
    cfg.check_image_size(images.shape[-1])
    backbone = seeded_backbone(profile, images.shape[1], device)
    if cfg.patch_norm == "layer":
        per_patch_norm(backbone)  # the same seeded convolutions; each patch normalised on its own
    context = ContextNetwork(backbone.feature_dim, cfg.context_dim, cfg.context_layers).to(device)
    predictors = Predictors(cfg.context_dim, backbone.feature_dim, cfg.pred_steps, cfg.skip_rows).to(device)
    generator = torch.Generator(device=device).manual_seed(profile.seed)

    def forward(batch) -> Tensor:  # patches through the encoder and g_ar (batch-norm recalibration)
        return context(encode_patches(backbone, cpc_inputs(batch.x, cfg, generator), cfg.patch_size, cfg.stride))

    return PretrainSetup(backbone, {"context": context, "predictors": predictors},
                         cpc_step(backbone, context, predictors, cfg, generator), forward, images, cfg.batch_size,
                         cfg.lr, cfg.weight_decay)


def pretrain(train_data: ImageData, profile: Profile, cfg: CPCConfig | None = None,
             device: torch.device | None = None, progress: bool = True) -> Pretrained:
    """Pre-train the profile's backbone as CPC's patch encoder on ``train_data``'s images (labels unused), cached.

    Trains encoder, context network and predictors together with AdamW, then recalibrates batch
    norm on patches. Returns ``Pretrained(backbone, history, heads={"context", "predictors"})``: the
    protocol evaluates the backbone on whole images (``PatchPooledEncoder(backbone, ...)`` gives CPC v2's
    mean-pooled patch features instead).
    """
    return pretrain_method(__name__, train_data, profile, cfg, device, progress)
