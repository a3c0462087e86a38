"""The course's evaluation protocol: frozen features, then a linear probe and kNN.

Every method is judged the same way (the "linear classification" tables of the
lecture): freeze the encoder, compute features h for the labelled training images
and the test images, then
  (a) fit a logistic-regression probe on standardised h with 10, 100 and all
      labels per class, and report test accuracy;
  (b) report the accuracy of a k-nearest-neighbour vote (cosine similarity).
The encoder never changes during evaluation.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from course_lib.augment import to_float

Encoder = nn.Module | Callable[[torch.Tensor], torch.Tensor]


def budget_name(n: int | None) -> str:
    """'10', '100' or 'all': how a label budget is written in tables."""
    return "all" if n is None else str(n)


@dataclass
class Evaluation:
    """One row of the comparison table."""

    method: str
    probe: dict[str, float] = field(default_factory=dict)  # label budget -> test accuracy
    knn: float = float("nan")  # kNN test accuracy with all labels

    def as_dict(self) -> dict:
        return {"method": self.method, "probe": dict(self.probe), "knn": self.knn}

    @classmethod
    def from_dict(cls, d: dict) -> Evaluation:
        return cls(method=d["method"], probe={k: float(v) for k, v in d["probe"].items()}, knn=float(d["knn"]))


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


def fit_linear_probe(h: torch.Tensor, y: torch.Tensor, num_classes: int, weight_decay: float = 1e-3,
                     max_iter: int = 200) -> nn.Module:
    """Multinomial logistic regression on standardised features, fitted with L-BFGS.

    Minimises mean cross-entropy + weight_decay/2 * ||W||^2 (bias unpenalised),
    the objective of scikit-learn's LogisticRegression with C = 1 / (N * weight_decay).
    Returns a module mapping raw features to logits (standardisation included).
    """
    check_labels(y, num_classes)
    if h.dim() != 2 or len(h) != len(y):
        raise ValueError(f"expected features (N, D) and labels (N,), got {tuple(h.shape)} and {tuple(y.shape)}")
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
    return (pred.cpu() == y.cpu()).float().mean().item()


def linear_probe_accuracy(h_train: torch.Tensor, y_train: torch.Tensor, h_test: torch.Tensor, y_test: torch.Tensor,
                          weight_decay: float = 1e-3) -> float:
    num_classes = int(max(y_train.max(), y_test.max())) + 1
    probe = fit_linear_probe(h_train, y_train, num_classes, weight_decay)
    return accuracy(probe(h_test.float()), y_test)


@torch.no_grad()
def knn_predict(h_train: torch.Tensor, y_train: torch.Tensor, h_query: torch.Tensor, k: int = 20,
                chunk: int = 1024) -> torch.Tensor:
    """Majority vote of the k training points with the highest cosine similarity (ties -> smallest label)."""
    check_labels(y_train)
    if not 1 <= k <= len(h_train):
        raise ValueError(f"k must be between 1 and the number of training points {len(h_train)}, got {k}")
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
    return accuracy(knn_predict(h_train, y_train, h_test, k), y_test)


def evaluate_features(method: str, h_train: torch.Tensor, y_train: torch.Tensor, h_test: torch.Tensor,
                      y_test: torch.Tensor, labels_per_class=(10, 100, None), k: int = 20,
                      weight_decay: float = 1e-3, seed: int = 0) -> Evaluation:
    """Probe with every label budget (same labelled subsets for every method, given the seed) and kNN."""
    result = Evaluation(method)
    for n in labels_per_class:
        idx = sample_per_class(y_train, n, seed)
        result.probe[budget_name(n)] = linear_probe_accuracy(h_train[idx], y_train[idx], h_test, y_test, weight_decay)
    result.knn = knn_accuracy(h_train, y_train, h_test, y_test, k)
    return result


def evaluate(method: str, encoder: Encoder, train, test, profile) -> Evaluation:
    """The whole protocol for one frozen encoder on ``train``/``test`` (ImageData)."""
    h_train = extract_features(encoder, train.images)
    h_test = extract_features(encoder, test.images)
    return evaluate_features(method, h_train, train.labels, h_test, test.labels, profile.labels_per_class,
                             profile.knn_k, profile.probe_weight_decay, profile.seed)
