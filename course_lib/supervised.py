"""The supervised baseline: the same backbone trained from scratch on the labelled images alone.

What a self-supervised method must beat to claim that its unlabelled images helped: the network
trained end to end, with the augmentations and the schedule that suit labelled training, on the few
labelled images it would otherwise be fine-tuned on -- CPC v2's comparison (Hénaff et al., ICML 2020,
"Data-efficient image recognition with contrastive predictive coding", sec. 4.2 and Fig. 1: a
ResNet trained on 1 % to 100 % of ImageNet's labels, its hyperparameters tuned for each subset).

The recipe, one run per label draw (``evaluate.label_draws``: the same images as the probes):

* the backbone of the random-init baseline (``train.seeded_backbone``: seeded with ``profile.seed``)
  and a linear head from scratch, logits = W h + b;
* the loss: mean cross-entropy of the logits against the labels, nothing else (the labels alone);
* augmented batches of the labelled images (:func:`augment_labelled`: a random crop of the image
  padded by ``crop_padding`` pixels, and a horizontal flip);
* AdamW with a one-cycle learning rate (:func:`one_cycle`: linear warm-up to ``lr``, cosine decay
  to 0) for ``steps`` steps, through the course's one training loop (``train.train``);
* batch-norm statistics: the network's own running averages over its labelled training batches
  (the labels-only baseline sees no unlabelled image, not even for its statistics).

Its length and peak rate are chosen per label budget on the validation split (:func:`tune`, never
the test set) and recorded in :data:`RECIPES`; ``python -m course_lib tune-supervised`` reruns the
grid. :func:`supervised_baseline` gives the row of the baselines' table: its 10/100/all columns are
the test accuracy of the network trained on that many labels per class.
"""

from __future__ import annotations

import copy
import itertools
import math
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from course_lib.augment import random_crop, random_flip, to_float
from course_lib.config import Profile, Settings, check_int, check_number, get_device
from course_lib.datasets import ImageData
from course_lib.evaluate import (
    Evaluation,
    Steps,
    accuracy,
    budget_name,
    classify,
    label_draws,
    protocol_for,
    split_validation,
)
from course_lib.history import History
from course_lib.loader import DeviceLoader
from course_lib.models import LinearHead
from course_lib.train import check_fields, profile_row, seeded_backbone
from course_lib.train import train as train_loop

ROW = "supervised (labels only)"  # the row's name in every table


@dataclass(frozen=True)
class SupervisedConfig(Settings):
    """One supervised run: how long, how fast, which augmentations."""

    steps: int = 300  # AdamW steps (one batch each)
    lr: float = 2e-3  # peak learning rate of the one-cycle schedule
    batch_size: int = 128  # at most; 10 labels x 10 classes = one batch of 100
    weight_decay: float = 5e-4  # AdamW's decoupled weight decay
    warmup: float = 0.15  # fraction of the steps of linear warm-up, then cosine decay to 0
    crop_padding: int = 2  # random crop of the image padded by this many pixels (0: no crop)
    flip_p: float = 0.0  # horizontal flip probability

    def __post_init__(self) -> None:
        check_int(self.steps, "steps")
        check_number(self.lr, "lr", 1e-8, 10)
        check_int(self.batch_size, "batch_size")
        check_number(self.weight_decay, "weight_decay", 0, 10)
        check_number(self.warmup, "warmup", 0, 1)
        check_int(self.crop_padding, "crop_padding", minimum=0)
        check_number(self.flip_p, "flip_p", 0, 1)


# The recipe per profile and label budget. On `fast` chosen on the validation split (1,000 images, 100 per class;
# first label draw, seed 0, one torch thread) by `python -m course_lib tune-supervised` in two stages:
#
# 1. augmentations at 300 steps (10 labels/class) and 400 steps (100 labels/class), peak rate 2e-3, validation %:
#        crop padding / flip      none    flip    crop 2   crop 2 + flip
#        10 labels/class          73.9    71.9    73.3     72.4
#        100 labels/class         85.5    85.1    85.8     85.5
#    (`--steps 300 --lr 0.002 --crop-padding 0 2 --flip-p 0 0.5 --labels 10`, and 400 steps for 100). The flip
#    never helped; each budget keeps its best: no crop at 10 labels/class, a 2-pixel crop at 100 and all.
# 2. steps x peak rate (GRID below, the command's default), validation %:
#        10 labels/class   lr:  1e-3  3e-3  1e-2  3e-2  1e-1      100 labels/class   1e-3  3e-3  1e-2  3e-2  1e-1
#        100 steps              73.5  73.7  72.1  72.8  70.5      200 steps          84.6  84.9  85.8  85.4  85.1
#        200 steps              73.5  73.8  73.9  71.0  72.1      400 steps          84.9  85.4  86.0  86.6  85.8
#        300 steps              73.0  73.2  74.3  73.1  68.9
#        all labels        lr:  1e-3  3e-3  1e-2  3e-2  1e-1
#        300 steps              88.0  88.4  88.3  88.9  87.9
#        600 steps              88.6  89.1  89.5  90.9  89.3
#    The 10-label grid is flat within the noise of 1,000 validation images (about ±1.4 points).
#
# The longest lengths of the grid are what a cold run of notebook 01 affords (it computes this row: three runs
# each at 10 and 100 labels/class, one with all labels; about two minutes on one CPU thread). Longer runs would
# still gain: 800 steps at 1e-2 reached 87.0 % with 100 labels/class (400: 86.0), 1,200 steps at 1e-2 90.7 % with
# all labels (600: 89.5).
RECIPES: dict[str, dict[str, dict]] = {
    "fast": {"10": {"steps": 300, "lr": 1e-2, "crop_padding": 0},
             "100": {"steps": 400, "lr": 3e-2, "crop_padding": 2},
             "all": {"steps": 600, "lr": 3e-2, "crop_padding": 2}},
    # grading: a few steps, so that a notebook grades in seconds
    "grade": {"10": {"steps": 10, "lr": 1e-2, "crop_padding": 0}, "100": {"steps": 10, "lr": 1e-2},
              "all": {"steps": 10, "lr": 1e-2}},
    # full profile (CIFAR-10, ResNet-18): not tuned (no GPU has run the grid yet): the fast profile's recipes for
    # 10 and 100 labels per class, about 40 epochs of CIFAR-10's 49,000 pool images in batches of 512 for all labels.
    # `python -m course_lib tune-supervised --profile full` on a GPU chooses them.
    "full": {"10": {"steps": 300, "lr": 1e-2, "crop_padding": 0}, "100": {"steps": 400, "lr": 3e-2},
             "all": {"steps": 4000, "lr": 3e-2, "batch_size": 512}},
}


# The grid `python -m course_lib tune-supervised` tries per budget (every combination), on the first label draw.
GRID: dict[str, dict[str, list]] = {
    "10": {"steps": [100, 200, 300], "lr": [1e-3, 3e-3, 1e-2, 3e-2, 1e-1], "crop_padding": [0], "flip_p": [0.0]},
    "100": {"steps": [200, 400], "lr": [1e-3, 3e-3, 1e-2, 3e-2, 1e-1], "crop_padding": [2], "flip_p": [0.0]},
    "all": {"steps": [300, 600], "lr": [1e-3, 3e-3, 1e-2, 3e-2, 1e-1], "crop_padding": [2], "flip_p": [0.0]},
}


def config_for(profile: Profile, labels_per_class: int | None, **overrides) -> SupervisedConfig:
    """The recorded recipe (:data:`RECIPES`) of ``profile`` (``fast``'s for a profile without one) for
    ``labels_per_class`` labels per class (None: all), the profile's weight decay, then ``overrides``."""
    check_int(labels_per_class, "labels_per_class", optional=True)
    row = profile_row(RECIPES, profile)[recipe_budget(labels_per_class)]  # raises TypeError for a non-Profile
    values = {"weight_decay": profile.weight_decay, **row, **overrides}
    check_fields(SupervisedConfig, values, "supervised")
    return SupervisedConfig(**values)


def recipe_budget(labels_per_class: int | None) -> str:
    """The recorded budget whose recipe a budget uses: "all" for None, else the nearest of 10 and 100
    labels per class on a log scale (5 -> "10", 50 -> "100")."""
    if labels_per_class is None:
        return "all"
    return "10" if labels_per_class < math.sqrt(10 * 100) else "100"


def augment_labelled(x: torch.Tensor, cfg: SupervisedConfig, generator: torch.Generator | None = None) -> torch.Tensor:
    """uint8 images (B, C, H, W) -> float views (B, C, H, W) in [0, 1]: the image padded with
    ``cfg.crop_padding`` black pixels on every side, a random H x W window of it (a shift by up to
    that many pixels), then a horizontal flip with probability ``cfg.flip_p``."""
    x = to_float(x)
    height = x.shape[-2]
    if x.shape[-1] != height:
        raise ValueError(f"augment_labelled expects square images, got {tuple(x.shape)}")
    if cfg.crop_padding:
        p = cfg.crop_padding
        x = random_crop(F.pad(x, (p, p, p, p)), height, generator)  # (B, C, H + 2p, W + 2p) -> (B, C, H, W)
    if cfg.flip_p:
        x = random_flip(x, cfg.flip_p, generator)
    return x


def one_cycle(optimizer: torch.optim.Optimizer, steps: int, warmup: float) -> torch.optim.lr_scheduler.LambdaLR:
    """The learning rate of every step: a linear warm-up to the optimiser's rate over the first ``warmup``
    fraction of ``steps`` (at least one step), then a cosine decay towards 0 at the last step."""
    check_int(steps, "steps")
    check_number(warmup, "warmup", 0, 1)
    ramp = max(1, round(warmup * steps))

    def factor(t: int) -> float:  # t: steps done before this one
        if t < ramp:
            return (t + 1) / ramp
        return 0.5 * (1 + math.cos(math.pi * (t - ramp + 1) / (steps - ramp + 1)))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


@dataclass
class SupervisedRun:
    """A trained supervised network: the backbone (a copy), its linear head and the run's history."""

    backbone: nn.Module
    head: nn.Module
    history: History

    def predict(self, images: torch.Tensor, batch_size: int = 512) -> torch.Tensor:
        """Logits (N, classes) of uint8 images (N, C, H, W), in eval mode, on the CPU (``evaluate.classify``)."""
        return classify(self.backbone, self.head, images, batch_size)


def check_index(index: torch.Tensor, size: int) -> None:
    """``TypeError``/``ValueError`` unless ``index`` is a non-empty 1-D integer tensor of distinct
    positions in [0, size)."""
    if not torch.is_tensor(index) or index.dim() != 1 or index.dtype not in (torch.int64, torch.int32):
        raise TypeError(f"index must be a 1-D integer tensor of image positions, got "
                        f"{getattr(index, 'dtype', type(index).__name__)} of shape {tuple(getattr(index, 'shape', ()))}")
    if len(index) == 0:
        raise ValueError("index is empty: the supervised baseline needs at least one labelled image")
    if int(index.min()) < 0 or int(index.max()) >= size:
        raise ValueError(f"index must hold positions in [0, {size}), got min {int(index.min())}, max {int(index.max())}")
    if len(index.unique()) != len(index):
        raise ValueError("index holds an image twice: give each labelled image once")


def supervised_step(net: nn.Module, head: nn.Module, cfg: SupervisedConfig, generator: torch.Generator | None = None):
    """The step function of the supervised baseline for the course's loop: batch (uint8 images ``x``, labels ``y``)
    -> {"loss": the mean cross-entropy of ``head(net(augmented x))`` against ``y``, "acc": its top-1 accuracy}."""

    def step(batch) -> dict[str, torch.Tensor]:
        logits = head(net.forward_features(augment_labelled(batch.x, cfg, generator)))  # (B, classes)
        loss = F.cross_entropy(logits, batch.y)
        return {"loss": loss, "acc": (logits.argmax(1) == batch.y).float().mean()}

    return step


def train_supervised(backbone: nn.Module, train: ImageData, index: torch.Tensor, cfg: SupervisedConfig,
                     seed: int = 0, progress: bool = False) -> SupervisedRun:
    """Train a copy of ``backbone`` and a new linear head on the labelled images ``train.images[index]``
    (labels ``train.labels[index]``) alone, by the recipe ``cfg``; ``seed`` draws the head, the batches
    and the augmentations. ``backbone`` itself is not changed; no other image of ``train`` is used."""
    if not isinstance(backbone, nn.Module) or not hasattr(backbone, "forward_features"):
        raise TypeError(f"backbone must be a backbone with forward_features, got {type(backbone).__name__}")
    if not isinstance(train, ImageData):
        raise TypeError(f"train must be an ImageData (images and labels), got {type(train).__name__}")
    if not isinstance(cfg, SupervisedConfig):
        raise TypeError(f"cfg must be a SupervisedConfig (supervised.config_for), got {type(cfg).__name__}")
    check_index(index, len(train))
    check_int(seed, "seed", minimum=0)
    device = next(backbone.parameters()).device
    images, labels = train.images[index.cpu()], train.labels[index.cpu()]  # the labelled images, nothing else
    net = copy.deepcopy(backbone)
    torch.manual_seed(seed)
    head = LinearHead(net.feature_dim, train.num_classes).to(device)
    loader = DeviceLoader(images, labels, min(cfg.batch_size, len(images)), device=device, seed=seed)
    generator = torch.Generator(device=device).manual_seed(seed)
    step = supervised_step(net, head, cfg, generator)
    optimizer = torch.optim.AdamW([*net.parameters(), *head.parameters()], lr=cfg.lr, weight_decay=cfg.weight_decay)
    history = train_loop([net, head], step, Steps(loader, cfg.steps), optimizer, 1,
                         scheduler=one_cycle(optimizer, cfg.steps, cfg.warmup), desc="supervised", progress=progress)
    return SupervisedRun(net, head, history)


def supervised_baseline(train: ImageData, test: ImageData, profile: Profile, device: torch.device | None = None,
                        progress: bool = False) -> Evaluation:
    """The supervised baseline's row: for every label budget of the protocol, the random-init backbone trained
    by :func:`config_for`'s recipe on each label draw (the probes' draws: ``evaluate.label_draws``), its test
    accuracy per draw in ``probe[budget]``. "all" is one run (every draw is the same set of labels, as for the
    probe): its figure has no spread over label draws. ``compute``: images, steps and seconds of all the runs
    together, and per budget one run's (``compute["per_run"]``). ``kind`` is "supervised"; kNN is not measured."""
    if not isinstance(train, ImageData) or not isinstance(test, ImageData):
        raise TypeError("train and test must be ImageData (evaluate.evaluation_data(profile))")
    protocol = protocol_for(profile)
    device = device or get_device()
    budgets = list(protocol.labels_per_class)
    draws = {n: label_draws(train.labels, protocol, n) for n in budgets}  # fails now if a class has too few images
    configs = {n: config_for(profile, n) for n in budgets}
    backbone = seeded_backbone(profile, train.images.shape[1], device).eval()  # the random-init baseline's weights
    row = Evaluation(ROW, kind="supervised")
    total = {"images": 0, "steps": 0, "seconds": 0.0}
    per_run = {}
    for n in budgets:
        accs = []
        for index, seed in zip(draws[n], protocol.draw_seeds(), strict=False):  # "all": one draw
            run = train_supervised(backbone, train, index, configs[n], seed=seed, progress=progress)
            accs.append(accuracy(run.predict(test.images), test.labels))
            cost = run.history.compute()
            for k in total:
                total[k] += cost[k]
            per_run[budget_name(n)] = cost
        row.probe[budget_name(n)] = accs
    row.compute = {**total, "seconds": round(total["seconds"], 1), "per_run": per_run}
    return row


# --------------------------------------------------------------------------- choosing the recipe on validation


def tune(train: ImageData, profile: Profile, labels_per_class: int | None, grid: Iterable[dict],
         device: torch.device | None = None, progress: bool = False) -> list[dict]:
    """The validation accuracy of every recipe of ``grid`` (each a dict of :class:`SupervisedConfig` fields
    that override ``config_for(profile, labels_per_class)``), trained on the first label draw of that
    budget and measured on the protocol's validation split, which the draws never touch. Only training
    images come in: the test set cannot choose the recipe. Returns one dict per recipe: ``overrides``,
    ``config`` (all its values), ``validation`` (accuracy) and ``seconds``."""
    if not isinstance(train, ImageData):
        raise TypeError(f"train must be an ImageData (the training split), got {type(train).__name__}")
    protocol = protocol_for(profile)
    _, val = split_validation(train.labels, protocol.validation_per_class, protocol.seed)
    index = label_draws(train.labels, protocol, labels_per_class)[0]
    grid = [dict(g) for g in grid]
    if not grid:
        raise ValueError("grid must hold at least one recipe (a dict of SupervisedConfig fields)")
    configs = [config_for(profile, labels_per_class, **g) for g in grid]  # every recipe checked before training
    device = device or get_device()
    backbone = seeded_backbone(profile, train.images.shape[1], device).eval()
    results = []
    for overrides, cfg in zip(grid, configs, strict=True):
        start = time.perf_counter()
        run = train_supervised(backbone, train, index, cfg, seed=protocol.draw_seeds()[0], progress=progress)
        acc = accuracy(run.predict(train.images[val]), train.labels[val])
        results.append({"overrides": overrides, "config": cfg.as_dict(), "validation": acc,
                        "seconds": round(time.perf_counter() - start, 1)})
    return results


def best(results: Sequence[dict]) -> dict:
    """The recipe with the highest validation accuracy; ties go to the fewer steps (the cheaper run)."""
    if not results:
        raise ValueError("no results to choose from")
    return max(results, key=lambda r: (r["validation"], -r["config"]["steps"]))


def grid_of(**values: Sequence) -> list[dict]:
    """Every combination of the given values: ``grid_of(steps=[150, 300], lr=[1e-3, 3e-3])`` -> 4 recipes."""
    names = list(values)
    check_fields(SupervisedConfig, names, "supervised")
    return [dict(zip(names, combo, strict=True)) for combo in itertools.product(*(values[n] for n in names))]
