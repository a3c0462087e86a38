"""The course's evaluation protocol (v3): frozen features, tuned linear probes, kNN, and fine-tuning.

Every method is judged the same way, every feature type (raw pixels included) by the
same procedure:

1. Carve a **validation split** (``validation_per_class`` images of every class) out of
   the training set; the labelled subsets are drawn from the rest (:func:`label_draws`).
2. **One rule for batch-norm statistics** (:func:`evaluation_encoder`): every backbone, random
   init included, is evaluated as a copy whose batch-norm running means and variances are
   re-estimated without labels on the evaluation's training images (``bn_batches`` batches of
   ``bn_batch_size``, a cumulative average: ``train.recalibrate_batchnorm``). Whatever a method's
   training left there (statistics of its own pretext inputs: 8x8 patches, photo crops, masked
   images; or never estimated at all, at random init) does not decide its row. The caller's
   backbone is not changed.
3. Compute the features h of every training and test image **once** (frozen encoder).
4. **Linear probe** (logistic regression on standardised h) with 10, 100 and all labels
   per class. For each budget the L2 penalty is chosen from a small grid by accuracy on
   the validation split; then the probe is fitted on ``draws`` different random
   labelled subsets and the test accuracies are reported as mean ± std.
5. **kNN** (cosine, k votes) with all labels (nothing is tuned, so the validation images vote too).
6. **Fine-tuning** with 10 labels per class, one recipe for every starting point
   (:func:`finetune_accuracy`: LP-FT, the head started from the tuned probe, then a fixed number of
   small AdamW steps on the labelled images, the batch-norm statistics of step 2 kept), once per
   label draw. It is a short fine-tune, named for what it is ("LP-FT"); from random init it is
   *not* the supervised baseline. Raw pixels have no encoder: their fine-tune figure is their
   10-label probe.

The **supervised baseline** -- the same backbone trained from scratch on the labelled images alone,
its length and rate chosen on the validation split -- is ``supervised.py``; ``baselines.py`` puts it
beside raw pixels and random init. Rows carry a ``kind`` ("baseline", "self-supervised", or
"supervised": trained with labels), so that tables and plots show the rows trained with labels apart.

The spread over label draws is not the spread over training seeds: the notebooks give
the gains over random init for training seeds 0-2 as well.

Every notebook evaluates on the same images, loaded by :func:`evaluation_data`. Beyond the
protocol's table, :func:`probe_by_depth` probes every stage of a backbone (which depth gives
the best features: notebooks 03 and 07), under the same batch-norm rule.
"""

from __future__ import annotations

import copy
import json
import math
import statistics
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from course_lib.augment import to_float
from course_lib.config import Profile, Settings, check_int, check_number
from course_lib.datasets import ImageData, load_dataset
from course_lib.loader import DeviceLoader
from course_lib.models import LinearHead
from course_lib.train import check_train_data, recalibrate_batchnorm
from course_lib.train import train as train_loop

Encoder = nn.Module | Callable[[torch.Tensor], torch.Tensor]
FINETUNE_LABELS = 10  # labels per class of the fine-tune column


def evaluation_data(profile: Profile) -> tuple[ImageData, ImageData]:
    """The protocol's train and test images: the profile's dataset, both splits, cut by the profile
    (``max_images_per_class``: fewer images when grading). Every notebook evaluates on these."""
    if not isinstance(profile, Profile):
        raise TypeError(f"profile must be a Profile (config.get_profile()), got {type(profile).__name__}")
    return profile.limit(load_dataset(profile.dataset, "train")), profile.limit(load_dataset(profile.dataset, "test"))


def budget_name(n: int | None) -> str:
    """'10', '100' or 'all': how a label budget is written in tables."""
    return "all" if n is None else str(n)


def mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value; NaN, NaN for none)."""
    if not values:
        return math.nan, math.nan
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


KINDS = ("baseline", "self-supervised", "supervised")  # what a row is: see Evaluation.kind


@dataclass(eq=False)
class Evaluation:
    """One row of the comparison table: accuracies per label draw, so that mean and spread are both kept.

    ``kind`` says what the row is: ``"baseline"`` (raw pixels, random init: nothing trained),
    ``"self-supervised"`` (pre-trained without labels: the rows a ranking compares) or ``"supervised"``
    (trained with labels: the supervised baseline, FaceNet), shown apart from the self-supervised rows.
    For the supervised baseline, ``probe[budget]`` holds the test accuracy of the network trained on that
    many labels per class (one per label draw) and ``knn`` is NaN (not measured).
    """

    method: str
    probe: dict[str, list[float]] = field(default_factory=dict)  # label budget -> test accuracy of each draw
    knn: float = math.nan  # kNN test accuracy with all labels
    finetune: list[float] = field(default_factory=list)  # 10 labels/class, one per draw ([] = not measured)
    weight_decay: dict[str, float] = field(default_factory=dict)  # the probe's L2 penalty chosen per budget
    compute: dict = field(default_factory=dict)  # pre-training cost: images, steps, seconds
    kind: str = "self-supervised"  # "baseline", "self-supervised" or "supervised" (trained with labels)

    def __post_init__(self) -> None:
        self.probe = {str(k): [float(x) for x in (v if isinstance(v, (list, tuple)) else [v])]
                      for k, v in self.probe.items()}
        self.finetune = [float(x) for x in self.finetune]
        self.knn = float(self.knn)
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {self.kind!r}")

    def __eq__(self, other: object) -> bool:
        """Equal when their stored forms are (so that a row with an unmeasured, NaN, kNN equals its copy)."""
        if not isinstance(other, Evaluation):
            return NotImplemented
        return json.dumps(self.as_dict(), sort_keys=True) == json.dumps(other.as_dict(), sort_keys=True)

    __hash__ = None  # mutable

    @property
    def with_labels(self) -> bool:
        """True for a row trained with labels (never ranked with the self-supervised rows)."""
        return self.kind == "supervised"

    def mean(self, budget: str) -> float:
        return mean_std(self.probe.get(budget, []))[0]

    def std(self, budget: str) -> float:
        return mean_std(self.probe.get(budget, []))[1]

    def as_dict(self) -> dict:
        return {"method": self.method, "probe": {k: list(v) for k, v in self.probe.items()}, "knn": self.knn,
                "finetune": list(self.finetune), "weight_decay": dict(self.weight_decay),
                "compute": dict(self.compute), "kind": self.kind}

    @classmethod
    def from_dict(cls, d: dict) -> Evaluation:
        """The row of ``as_dict``; rows saved before ``kind`` existed are read as self-supervised."""
        return cls(method=d["method"], probe=dict(d["probe"]), knn=float(d["knn"]),
                   finetune=list(d.get("finetune", [])),
                   weight_decay={k: float(v) for k, v in d.get("weight_decay", {}).items()},
                   compute=dict(d.get("compute", {})), kind=d.get("kind", "self-supervised"))


@dataclass(frozen=True)
class Protocol(Settings):
    """How every encoder is evaluated (resolved from the profile by :func:`protocol_for`)."""

    labels_per_class: tuple[int | None, ...] = (10, 100, None)  # probe budgets; None = all labels
    draws: int = 3  # random labelled subsets per budget (mean ± std over them)
    validation_per_class: int = 100  # training images per class held out to choose the probe's penalty
    weight_decays: tuple[float, ...] = (1e-3, 1e-2, 1e-1)  # the grid the penalty is chosen from
    probe_max_iter: int = 100  # L-BFGS iterations per probe fit
    knn_k: int = 20
    finetune_labels: int = FINETUNE_LABELS  # labels per class of the fine-tune column
    finetune_steps: int = 100  # optimiser steps of the fine-tune recipe (LP-FT: AdamW from the probe)
    finetune_lr: float = 1e-4  # small: the head starts as the probe, the encoder should move little
    finetune_weight_decay: float = 5e-4
    finetune_batch_size: int = 128  # at most; 10 labels x 10 classes = one batch of 100
    bn_batches: int = 20  # batches of training images that re-estimate every encoder's batch norm (0: keep its own)
    bn_batch_size: int = 256  # images per batch of that estimate (at most the training set)
    seed: int = 0  # label draw d uses seed 100 * seed + d; the batch-norm estimate draws its batches with seed

    def __post_init__(self) -> None:
        if not self.labels_per_class:
            raise ValueError("labels_per_class must name at least one budget")
        for n in self.labels_per_class:
            check_int(n, "a labels_per_class budget", optional=True)
        check_int(self.draws, "draws")
        check_int(self.validation_per_class, "validation_per_class")
        if not self.weight_decays:
            raise ValueError("weight_decays must hold at least one value")
        for wd in self.weight_decays:
            check_number(wd, "a probe weight decay", 0, 1e3)
        check_int(self.knn_k, "knn_k")
        check_int(self.probe_max_iter, "probe_max_iter")
        check_int(self.finetune_labels, "finetune_labels")
        check_int(self.finetune_steps, "finetune_steps", minimum=0)  # 0: the fine-tune column is the probe
        check_number(self.finetune_lr, "finetune_lr", 1e-8, 10)
        check_number(self.finetune_weight_decay, "finetune_weight_decay", 0, 10)
        check_int(self.finetune_batch_size, "finetune_batch_size")
        check_int(self.bn_batches, "bn_batches", minimum=0)  # 0: the encoder's own statistics (protocol v2)
        check_int(self.bn_batch_size, "bn_batch_size")
        check_int(self.seed, "seed", minimum=0)

    def draw_seeds(self) -> list[int]:
        return [100 * self.seed + d for d in range(self.draws)]


def protocol_for(profile: Profile, **overrides) -> Protocol:
    """The protocol for ``profile``: its budgets, k, seed and weight decay; a validation split of 100
    images per class (a fifth of the images when ``max_images_per_class`` keeps fewer than 500);
    fine-tuning for the profile's ``finetune_steps`` (50 on the fast profile, which a laptop's CPU runs:
    every encoder is fine-tuned three times, and a notebook must stay within 3 minutes)."""
    per_class = profile.max_images_per_class
    validation = 100 if per_class is None else max(1, min(100, per_class // 5))
    protocol = Protocol(labels_per_class=tuple(profile.labels_per_class), validation_per_class=validation,
                        knn_k=profile.knn_k, finetune_steps=profile.finetune_steps,
                        finetune_weight_decay=profile.weight_decay, finetune_batch_size=profile.batch_size,
                        seed=profile.seed)
    return protocol.replace(**overrides) if overrides else protocol


PROTOCOL_VERSION = 3  # part of every evaluation's cache key: a changed protocol recomputes the baselines
# v3: one batch-norm rule for every encoder (evaluation_encoder); the supervised baseline (supervised.py)


def protocol_key(train_data: ImageData, test_data: ImageData, profile: Profile) -> dict:
    """Everything that changes the protocol's numbers for an encoder: the whole profile (layout, amp,
    compile, images per class...), the whole protocol, and the data's sizes and shapes (the baselines'
    cache key; an encoder's evaluation adds its weights' digest)."""
    return {"task": "baselines", "version": PROTOCOL_VERSION, "profile": profile.as_dict(),
            "protocol": protocol_for(profile).as_dict(), "train": len(train_data), "test": len(test_data),
            "image_shape": list(train_data.image_shape), "classes": list(train_data.classes)}


def check_labels(labels: torch.Tensor, num_classes: int | None = None) -> None:
    if not torch.is_tensor(labels) or labels.dtype not in (torch.int64, torch.int32, torch.uint8) or labels.dim() != 1:
        raise TypeError(f"labels must be a 1-D integer tensor, got {getattr(labels, 'dtype', type(labels))} "
                        f"of shape {tuple(getattr(labels, 'shape', ()))}")
    if labels.numel() and labels.min() < 0:
        raise ValueError(f"labels must be >= 0, got min {int(labels.min())}")
    if num_classes is not None and labels.numel() and labels.max() >= num_classes:
        raise ValueError(f"labels must be < num_classes={num_classes}, got max {int(labels.max())}")


def sample_per_class(labels: torch.Tensor, n: int | None, seed: int = 0) -> torch.Tensor:
    """Sorted indices of ``n`` random examples of every class (all of them if ``n`` is None)."""
    check_labels(labels)
    if n is None:
        return torch.arange(len(labels))
    if n < 1:
        raise ValueError(f"labels per class must be >= 1 or None, got {n}")
    g = torch.Generator().manual_seed(seed)
    chosen = []
    for c in labels.unique().tolist():
        idx = (labels == c).nonzero().squeeze(1)
        if len(idx) < n:
            raise ValueError(f"class {c} has only {len(idx)} examples, fewer than {n} labels per class")
        chosen.append(idx[torch.randperm(len(idx), generator=g)[:n]])
    return torch.cat(chosen).sort().values


@torch.no_grad()
def extract_features(encoder: Encoder, images: torch.Tensor, batch_size: int = 512,
                     device: torch.device | str | None = None) -> torch.Tensor:
    """Features h (N, D) of uint8 images (N, C, H, W), computed in eval mode, returned on the CPU.

    ``encoder`` is a backbone (its ``forward_features`` is used) or any function
    of a float batch. A module's train/eval mode is restored afterwards.
    """
    if not torch.is_tensor(images) or images.dtype != torch.uint8 or images.dim() != 4:
        raise TypeError(f"images must be a uint8 tensor (N, C, H, W), got {getattr(images, 'dtype', type(images))} "
                        f"of shape {tuple(getattr(images, 'shape', ()))}")
    if isinstance(encoder, nn.Module):
        was_training = encoder.training
        encoder.eval()
        first = next(encoder.parameters(), None)  # a module without parameters (nn.Flatten) is fine too
        device = device or (first.device if first is not None else images.device)
        fn = getattr(encoder, "forward_features", encoder)
    else:
        was_training, fn = None, encoder
        device = device or images.device
    try:
        feats = [fn(to_float(images[i:i + batch_size].to(device))).float().flatten(1).cpu()
                 for i in range(0, len(images), batch_size)]
    finally:
        if was_training:
            encoder.train()
    return torch.cat(feats)


def pixels(x: torch.Tensor) -> torch.Tensor:
    """The raw-pixel 'encoder': h = the flattened image."""
    return x.flatten(1)


def check_features(h_train: torch.Tensor, y_train: torch.Tensor, h_query: torch.Tensor | None = None,
                   y_query: torch.Tensor | None = None) -> None:
    """Raise ``ValueError``/``TypeError``, naming the shapes, unless the features and labels fit together:
    2-D float features with the same size D, non-empty, finite; 1-D integer labels, one per row."""
    named = [("h_train", h_train, "y_train", y_train)]
    if h_query is not None:
        named.append(("h_query", h_query, "y_query", y_query))
    for hname, h, yname, y in named:
        if not torch.is_tensor(h) or not (h.is_floating_point() or h.dtype in (torch.uint8, torch.int64)):
            raise TypeError(f"{hname} must be a tensor of features (N, D), got {type(h).__name__} "
                            f"{getattr(h, 'dtype', '')}")
        if h.dim() != 2:
            raise ValueError(f"{hname} must be 2-D (N, D), got shape {tuple(h.shape)}")
        if len(h) == 0:
            raise ValueError(f"{hname} is empty (shape {tuple(h.shape)}): need at least one example")
        if h.is_floating_point() and not torch.isfinite(h).all():
            bad = int((~torch.isfinite(h)).any(1).sum())
            raise ValueError(f"{hname} (shape {tuple(h.shape)}) holds NaN or inf in {bad} row(s)")
        if y is not None:
            check_labels(y)
            if y.shape != (len(h),):
                raise ValueError(f"{yname} must have one label per row of {hname} {tuple(h.shape)}: expected "
                                 f"shape ({len(h)},), got {tuple(y.shape)}")
    if h_query is not None and h_query.shape[1] != h_train.shape[1]:
        raise ValueError(f"feature sizes differ: h_train is {tuple(h_train.shape)}, h_query is "
                         f"{tuple(h_query.shape)} (the same encoder must make both)")


def fit_linear_probe(h: torch.Tensor, y: torch.Tensor, num_classes: int, weight_decay: float = 1e-3,
                     max_iter: int = 200) -> nn.Module:
    """Multinomial logistic regression on standardised features, fitted with L-BFGS.

    Minimises mean cross-entropy + weight_decay/2 * ||W||^2 (bias unpenalised),
    the objective of scikit-learn's LogisticRegression with C = 1 / (N * weight_decay).
    Returns a module mapping raw features to logits (standardisation included).
    """
    check_features(h, y)
    check_labels(y, num_classes)
    check_number(weight_decay, "weight_decay", 0, 1e6)
    h = h.float()
    mean, std = h.mean(0), h.std(0, unbiased=False).clamp_min(1e-6)
    hs = (h - mean) / std  # (N, D)
    linear = nn.Linear(h.shape[1], num_classes).to(h.device)
    nn.init.zeros_(linear.weight)
    nn.init.zeros_(linear.bias)
    opt = torch.optim.LBFGS(linear.parameters(), lr=1, max_iter=max_iter, history_size=20,
                            tolerance_grad=1e-7, tolerance_change=1e-10, line_search_fn="strong_wolfe")
    y = y.long()

    def closure():
        opt.zero_grad()
        loss = F.cross_entropy(linear(hs), y) + 0.5 * weight_decay * linear.weight.pow(2).sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
    return nn.Sequential(_Standardize(mean, std), linear).requires_grad_(False)


class _Standardize(nn.Module):
    def __init__(self, mean: torch.Tensor, std: torch.Tensor):
        super().__init__()
        self.register_buffer("mean", mean)
        self.register_buffer("std", std)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return (h - self.mean) / self.std


def accuracy(logits_or_pred: torch.Tensor, y: torch.Tensor) -> float:
    pred = logits_or_pred.argmax(1) if logits_or_pred.dim() == 2 else logits_or_pred
    if pred.shape != y.shape:
        raise ValueError(f"predictions {tuple(pred.shape)} and labels {tuple(y.shape)} must have one shape")
    return (pred.cpu() == y.cpu()).float().mean().item()


def linear_probe_accuracy(h_train: torch.Tensor, y_train: torch.Tensor, h_test: torch.Tensor, y_test: torch.Tensor,
                          weight_decay: float = 1e-3, max_iter: int = 200) -> float:
    """Test accuracy of a probe fitted on (h_train, y_train) with this L2 penalty."""
    check_features(h_train, y_train, h_test, y_test)
    num_classes = int(max(y_train.max(), y_test.max())) + 1
    probe = fit_linear_probe(h_train, y_train, num_classes, weight_decay, max_iter)
    return accuracy(probe(h_test.float()), y_test)


@torch.no_grad()
def knn_predict(h_train: torch.Tensor, y_train: torch.Tensor, h_query: torch.Tensor, k: int = 20,
                chunk: int = 1024) -> torch.Tensor:
    """Majority vote of the k training points with the highest cosine similarity (ties -> smallest label)."""
    check_features(h_train, y_train, h_query)
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= len(h_train):
        raise ValueError(f"k must be between 1 and the number of training points {len(h_train)}, got {k!r}")
    bank = F.normalize(h_train.float(), dim=1)  # (N, D)
    num_classes = int(y_train.max()) + 1
    preds = []
    for i in range(0, len(h_query), chunk):
        q = F.normalize(h_query[i:i + chunk].float(), dim=1)  # (Q, D)
        nn_idx = (q @ bank.T).topk(k, dim=1).indices  # (Q, k)
        votes = F.one_hot(y_train[nn_idx].long(), num_classes).sum(1)  # (Q, classes)
        preds.append(votes.argmax(1))
    return torch.cat(preds)


def knn_accuracy(h_train: torch.Tensor, y_train: torch.Tensor, h_test: torch.Tensor, y_test: torch.Tensor,
                 k: int = 20) -> float:
    check_features(h_train, y_train, h_test, y_test)
    return accuracy(knn_predict(h_train, y_train, h_test, k), y_test)


# --------------------------------------------------------------------------- the protocol


def split_validation(labels: torch.Tensor, per_class: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """(pool, validation): sorted indices. ``per_class`` random images of every class form the
    validation split; the labelled subsets of the probes are drawn from the rest (the pool)."""
    check_labels(labels)
    check_int(per_class, "per_class")
    validation = sample_per_class(labels, per_class, seed=10_000 + seed)
    keep = torch.ones(len(labels), dtype=torch.bool)
    keep[validation] = False
    pool = keep.nonzero().squeeze(1)
    if len(pool) == 0 or any(int((labels[pool] == c).sum()) == 0 for c in labels.unique().tolist()):
        raise ValueError(f"a validation split of {per_class} images per class leaves a class without "
                         "training images")
    return pool, validation


def label_draws(labels: torch.Tensor, protocol: Protocol, n: int | None) -> list[torch.Tensor]:
    """The labelled subsets of budget ``n`` (labels per class; None = all): ``n`` random images of every
    class of the pool left by the validation split, one subset per draw of ``protocol.draw_seeds()``
    (one only when ``n`` is None: every draw would be the same set). Sorted indices into ``labels``.
    The probes, the fine-tune column and the supervised baseline all use these."""
    pool, _ = split_validation(labels, protocol.validation_per_class, protocol.seed)
    draws = [pool[sample_per_class(labels[pool], n, s)] for s in protocol.draw_seeds()]
    return draws[:1] if n is None else draws


def choose_weight_decay(h: torch.Tensor, y: torch.Tensor, h_val: torch.Tensor, y_val: torch.Tensor,
                        grid: tuple[float, ...], num_classes: int, max_iter: int = 200) -> tuple[float, dict[float, float]]:
    """The penalty of ``grid`` whose probe, fitted on (h, y), is most accurate on the validation split
    (ties: the larger penalty); also every candidate's validation accuracy."""
    check_features(h, y, h_val, y_val)
    scores = {wd: accuracy(fit_linear_probe(h, y, num_classes, wd, max_iter)(h_val.float()), y_val) for wd in grid}
    best = max(scores.values())
    return max(wd for wd, acc in scores.items() if acc == best), scores


def evaluate_features(method: str, h_train: torch.Tensor, y_train: torch.Tensor, h_test: torch.Tensor,
                      y_test: torch.Tensor, protocol: Protocol) -> Evaluation:
    """Steps 1, 4 and 5 of the protocol on precomputed features: tuned probes over label draws, and kNN.

    The validation split and the labelled draws depend only on the labels and
    ``protocol.seed``, so every method gets the same ones.
    """
    check_features(h_train, y_train, h_test, y_test)
    if not isinstance(protocol, Protocol):
        raise TypeError(f"protocol must be a Protocol (evaluate.protocol_for(profile)), got {type(protocol).__name__}")
    num_classes = int(max(y_train.max(), y_test.max())) + 1
    _, val = split_validation(y_train, protocol.validation_per_class, protocol.seed)
    result = Evaluation(method)
    for n in protocol.labels_per_class:
        draws = label_draws(y_train, protocol, n)  # all labels: one set
        wd, _ = choose_weight_decay(h_train[draws[0]], y_train[draws[0]], h_train[val], y_train[val],
                                    protocol.weight_decays, num_classes, protocol.probe_max_iter)
        result.weight_decay[budget_name(n)] = wd
        result.probe[budget_name(n)] = [linear_probe_accuracy(h_train[idx], y_train[idx], h_test, y_test, wd,
                                                              protocol.probe_max_iter) for idx in draws]
    result.knn = knn_accuracy(h_train, y_train, h_test, y_test, protocol.knn_k)  # nothing to tune: every label votes
    return result


def finetune_draws(labels: torch.Tensor, protocol: Protocol) -> list[torch.Tensor]:
    """The labelled subsets of the fine-tune column: ``protocol.finetune_labels`` per class, one per
    draw (the same images as the probes with that many labels)."""
    return label_draws(labels, protocol, protocol.finetune_labels)


def finetune_accuracy(backbone: nn.Module, train, index: torch.Tensor, test, protocol: Protocol, seed: int = 0,
                      progress: bool = False, weight_decay: float | None = None) -> float:
    """The fine-tune recipe (LP-FT: linear probe, then fine-tuning; Kumar et al., ICLR 2022) on the labelled
    images ``train.images[index]``; returns the test accuracy.

    1. Fit the protocol's linear probe on the frozen features of the labelled images (L2 penalty
       ``weight_decay``: the one the protocol chose for this label budget; chosen on the validation
       split here when None) and start the head from it, standardisation folded into its weights.
       A new random head would send large, random gradients into the encoder at the first steps
       and undo what pre-training found before the head is any good.
    2. Train a copy of ``backbone`` and the head together for ``protocol.finetune_steps`` AdamW steps
       at the small rate ``protocol.finetune_lr`` on the labelled images as they are (no crops: on
       centred, aligned images a crop moves the network away from the test images, and cost 1 to 4
       points in our measurements), batches of up to ``finetune_batch_size``; batch-norm statistics
       stay those of the encoder (100 images are too few to re-estimate them; :func:`evaluate` passes
       the copy whose statistics the protocol's rule re-estimated), its scales and shifts train.

    The same recipe for every starting point. It is a short fine-tune from the probe, not supervised
    training: from random init it is *not* the supervised baseline (``supervised.py``).
    With ``finetune_steps`` = 0 it is the linear probe. ``backbone`` itself is not changed.
    """
    if not isinstance(backbone, nn.Module) or not hasattr(backbone, "forward_features"):
        raise TypeError(f"fine-tuning needs a backbone with forward_features, got {type(backbone).__name__}")
    device = next(backbone.parameters()).device
    labels = train.labels[index]
    num_classes = train.num_classes
    h = extract_features(backbone, train.images[index])  # (n, D) frozen features of the labelled images
    if weight_decay is None:
        _, val = split_validation(train.labels, protocol.validation_per_class, protocol.seed)
        weight_decay, _ = choose_weight_decay(h, labels, extract_features(backbone, train.images[val]),
                                              train.labels[val], protocol.weight_decays, num_classes,
                                              protocol.probe_max_iter)
    probe = fit_linear_probe(h, labels, num_classes, weight_decay, protocol.probe_max_iter)
    standardize, linear = probe[0], probe[1]
    torch.manual_seed(seed)
    net = copy.deepcopy(backbone)
    head = LinearHead(net.feature_dim, num_classes).to(device)
    with torch.no_grad():  # logits = W (h - mean) / std + b = (W / std) h + (b - (W / std) mean)
        weight = linear.weight / standardize.std
        head.fc.weight.copy_(weight)
        head.fc.bias.copy_(linear.bias - weight @ standardize.mean)
    batch = min(protocol.finetune_batch_size, len(index))
    loader = DeviceLoader(train.images[index], labels, batch, device=device, seed=seed)
    norms = [m for m in net.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]

    def step(b):
        for m in norms:  # the loop puts the network in train mode; keep the encoder's statistics
            m.eval()
        return F.cross_entropy(head(net.forward_features(to_float(b.x))), b.y)

    if protocol.finetune_steps:
        opt = torch.optim.AdamW([*net.parameters(), *head.parameters()], lr=protocol.finetune_lr,
                                weight_decay=protocol.finetune_weight_decay)
        train_loop([net, head], step, Steps(loader, protocol.finetune_steps), opt, 1, desc="fine-tune",
                   progress=progress)
    return accuracy(classify(net, head, test.images), test.labels)


@torch.no_grad()
def classify(backbone: nn.Module, head: nn.Module, images: torch.Tensor, batch_size: int = 512) -> torch.Tensor:
    """Logits (N, classes), on the CPU, of a backbone and its head for uint8 images (N, C, H, W), both put in eval
    mode, in batches of ``batch_size``: the test predictions of a fine-tuned or a supervised network."""
    check_int(batch_size, "batch_size")
    device = next(backbone.parameters()).device
    backbone.eval()
    head.eval()
    return torch.cat([head(backbone.forward_features(to_float(images[i:i + batch_size].to(device)))).cpu()
                      for i in range(0, len(images), batch_size)])


class Steps:
    """Exactly ``steps`` batches from a loader, epoch after epoch: a run measured in optimiser steps rather than
    epochs (``train(modules, step, Steps(loader, 300), optimizer, 1)``; the fine-tune recipe, the supervised
    baseline)."""

    def __init__(self, loader, steps: int):
        self.loader, self.steps = loader, steps

    def __len__(self) -> int:
        return self.steps

    def __iter__(self):
        done = 0
        while done < self.steps:
            for batch in self.loader:
                yield batch
                done += 1
                if done == self.steps:
                    return


def evaluation_encoder(encoder: Encoder, train, protocol: Protocol) -> Encoder:
    """The protocol's one batch-norm rule: a copy of ``encoder`` whose batch-norm running statistics are
    re-estimated without labels on ``train.images`` (the evaluation's training images), by
    ``train.recalibrate_batchnorm``: ``protocol.bn_batches`` batches of ``protocol.bn_batch_size``
    images (at most all of them) drawn with ``protocol.seed``, a cumulative average over the batches
    (Wu & Johnson 2021, "Rethinking 'Batch' in BatchNorm": population statistics of the data the
    encoder is evaluated on). Every backbone gets it, random init included (whose statistics were never
    estimated: mean 0, variance 1). ``encoder`` itself is not changed. An encoder without batch norm
    (raw pixels, a plain function) or ``bn_batches == 0`` (the v2 rule: each encoder's own statistics):
    returned as it is."""
    if not isinstance(protocol, Protocol):
        raise TypeError(f"protocol must be a Protocol (evaluate.protocol_for(profile)), got {type(protocol).__name__}")
    if not isinstance(encoder, nn.Module) or protocol.bn_batches == 0 or not any(
            isinstance(m, nn.modules.batchnorm._BatchNorm) for m in encoder.modules()):
        return encoder
    check_train_data(train)
    images = train.images
    if len(images) == 0:
        raise ValueError("train holds no image: the batch-norm statistics need the evaluation's training images")
    net = copy.deepcopy(encoder)
    device = next(net.parameters()).device
    loader = DeviceLoader(images, None, min(protocol.bn_batch_size, len(images)), device=device, seed=protocol.seed)
    forward = getattr(net, "forward_features", net)
    recalibrate_batchnorm(net, lambda b: forward(to_float(b.x)), loader, protocol.bn_batches)
    return net.eval()


def protocol_features(encoder: Encoder, train, test, protocol: Protocol) -> tuple[torch.Tensor, torch.Tensor]:
    """Features h of ``train`` and ``test`` (ImageData) as the protocol reads them: under its one batch-norm
    rule (:func:`evaluation_encoder`, re-estimated on ``train.images``), then :func:`extract_features`.
    Every probe of an encoder in the course -- a table row, an ablation, a projection head's input -- starts here."""
    encoder = evaluation_encoder(encoder, train, protocol)
    return extract_features(encoder, train.images), extract_features(encoder, test.images)


def evaluate(method: str, encoder: Encoder, train, test, profile: Profile, finetune: bool = True,
             compute: dict | None = None, progress: bool = False, protocol: Protocol | None = None) -> Evaluation:
    """The whole protocol for one frozen encoder on ``train``/``test`` (ImageData): the batch-norm rule
    (:func:`evaluation_encoder`), features once, tuned probes over label draws, kNN, and (``finetune``,
    backbones only) the LP-FT fine-tune column, from the same re-estimated copy.

    ``compute``: what pre-training the encoder cost (``History.compute()``), shown beside its row.
    The raw-pixel encoder (:func:`pixels`) gets its 10-label probe as its fine-tune figure.
    ``protocol``: ``protocol_for(profile)`` unless given. ``encoder`` itself is not changed.
    """
    protocol = protocol or protocol_for(profile)
    tune = finetune and encoder is not pixels
    draws = finetune_draws(train.labels, protocol) if tune else []  # fails now, not after the probes, if too few
    encoder = evaluation_encoder(encoder, train, protocol)  # one batch-norm rule for every encoder
    h_train = extract_features(encoder, train.images)  # as protocol_features, keeping the copy for the fine-tune
    h_test = extract_features(encoder, test.images)
    result = evaluate_features(method, h_train, train.labels, h_test, test.labels, protocol)
    result.compute = dict(compute or {"images": 0, "steps": 0, "seconds": 0.0})
    if encoder is pixels:
        result.finetune = list(result.probe.get(str(protocol.finetune_labels), []))
    elif tune:
        penalty = result.weight_decay.get(str(protocol.finetune_labels))  # the probe's, for this label budget
        result.finetune = [finetune_accuracy(encoder, train, idx, test, protocol, seed=s, progress=progress,
                                             weight_decay=penalty)
                           for idx, s in zip(draws, protocol.draw_seeds(), strict=True)]
    return result


# --------------------------------------------------------------------------- which depth gives the best features


@torch.no_grad()
def stage_features(backbone: nn.Module, images: torch.Tensor, grid: int = 1, batch_size: int = 512) -> list[torch.Tensor]:
    """Features of every stage for uint8 images (N, C, H, W), shallow to deep, on the CPU.

    Each stage's map (B, C_s, H_s, W_s) from ``backbone.forward_maps`` is average-pooled to
    grid x grid and flattened: (N, C_s * grid * grid). ``grid = 1`` is global average pooling.
    """
    if not torch.is_tensor(images) or images.dtype != torch.uint8 or images.dim() != 4:
        raise TypeError(f"images must be a uint8 tensor (N, C, H, W), got {getattr(images, 'dtype', type(images))}")
    check_int(grid, "grid")
    device = next(backbone.parameters()).device
    was_training = backbone.training
    backbone.eval()
    chunks: list[list[torch.Tensor]] = []
    try:
        for i in range(0, len(images), batch_size):
            maps = backbone.forward_maps(to_float(images[i:i + batch_size].to(device)))
            chunks.append([F.adaptive_avg_pool2d(m.float(), grid).flatten(1).cpu() for m in maps])  # (b, C_s g^2)
    finally:
        backbone.train(was_training)
    return [torch.cat(per_stage) for per_stage in zip(*chunks, strict=True)]


def probe_by_depth(backbone: nn.Module, train_data: ImageData, test_data: ImageData, profile: Profile,
                   labels_per_class: int = 100, grid: int = 1) -> list[list[float]]:
    """Linear-probe test accuracy on the pooled features of every stage, shallow to deep: for each stage
    the accuracy of every label draw (the protocol's draws and penalty choice on its validation split).

    Gidaris et al. (sec. 3.1, table 1) probe each conv block of a rotation-trained
    network: the deepest blocks specialise in the pretext task, and an intermediate
    block gives the best features for object classes.

    Cached, keyed by the backbone's weights (``checkpoints.weights_digest``), the data and the profile.
    """
    from course_lib.checkpoints import load_or_compute, weights_digest

    check_int(labels_per_class, "labels_per_class")
    check_int(grid, "grid")
    key = {**protocol_key(train_data, test_data, profile), "task": "probe_by_depth",
           "weights": weights_digest(backbone), "labels_per_class": labels_per_class, "grid": grid}

    def run() -> dict:
        return {"accuracy": _probe_by_depth(backbone, train_data, test_data, profile, labels_per_class, grid)}

    return load_or_compute("probe_by_depth", key, run)["accuracy"]


def _probe_by_depth(backbone: nn.Module, train_data: ImageData, test_data: ImageData, profile: Profile,
                    labels_per_class: int, grid: int) -> list[list[float]]:
    protocol = protocol_for(profile)
    _, val = split_validation(train_data.labels, protocol.validation_per_class, protocol.seed)
    draws = label_draws(train_data.labels, protocol, labels_per_class)
    backbone = evaluation_encoder(backbone, train_data, protocol)  # the protocol's batch-norm rule
    needed = torch.cat([val, *draws]).unique()  # features of these training images only
    position = torch.full((len(train_data),), -1, dtype=torch.long)
    position[needed] = torch.arange(len(needed))
    h_train = stage_features(backbone, train_data.images[needed], grid)
    h_test = stage_features(backbone, test_data.images, grid)
    y, num_classes = train_data.labels, train_data.num_classes
    result = []
    for a, b in zip(h_train, h_test, strict=True):
        first = position[draws[0]]
        wd, _ = choose_weight_decay(a[first], y[draws[0]], a[position[val]], y[val], protocol.weight_decays,
                                    num_classes, protocol.probe_max_iter)
        result.append([linear_probe_accuracy(a[position[idx]], y[idx], b, test_data.labels, wd,
                                             protocol.probe_max_iter) for idx in draws])
    return result
