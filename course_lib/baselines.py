"""The three baselines every method is compared against, on the same split and seed.

* raw pixels: the probe on the flattened image;
* random init: the same backbone, untrained (a surprisingly strong baseline);
* supervised: the same backbone trained with cross-entropy on the *same*
  labelled images the probe gets (one model per label budget) -- what
  self-supervision must approach with fewer labels.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from course_lib.augment import augment, light_config
from course_lib.checkpoints import load_or_compute, load_or_train
from course_lib.config import Profile, get_device
from course_lib.datasets import ImageData
from course_lib.evaluate import (
    Evaluation,
    budget_name,
    evaluate,
    extract_features,
    knn_accuracy,
    linear_probe_accuracy,
    pixels,
    sample_per_class,
)
from course_lib.loader import DeviceLoader
from course_lib.models import Backbone, LinearHead, build_backbone
from course_lib.train import History, train


def supervised_step(backbone: Backbone, head: LinearHead, size: int, generator: torch.Generator | None = None):
    """Cross-entropy on lightly augmented labelled images (crop + flip)."""
    cfg = light_config(size)

    def step(batch):
        x = augment(batch.x, cfg, generator)  # (B, C, H, W) float
        logits = head(backbone.forward_features(x))  # (B, classes)
        return {"loss": F.cross_entropy(logits, batch.y), "acc": (logits.argmax(1) == batch.y).float().mean()}

    return step


def train_supervised(train_data: ImageData, profile: Profile, labels_per_class: int | None,
                     device: torch.device | None = None, progress: bool = True) -> tuple[Backbone, History]:
    """The supervised baseline for one label budget (cached by load_or_train)."""
    device = device or get_device()
    idx = sample_per_class(train_data.labels, labels_per_class, profile.seed)
    torch.manual_seed(profile.seed)
    backbone = build_backbone(profile, train_data.images.shape[1]).to(device)
    head = LinearHead(backbone.feature_dim, train_data.num_classes).to(device)
    model = torch.nn.ModuleDict({"backbone": backbone, "head": head})
    batch_size = min(profile.batch_size, len(idx))
    loader = DeviceLoader(train_data.images[idx], train_data.labels[idx], batch_size, device=device, seed=profile.seed)
    num_epochs = max(1, math.ceil(profile.supervised_steps / len(loader)))
    generator = torch.Generator(device=device).manual_seed(profile.seed)

    def run() -> History:
        opt = torch.optim.AdamW(model.parameters(), lr=profile.lr, weight_decay=profile.weight_decay)
        return train(model, supervised_step(backbone, head, train_data.images.shape[-1], generator), loader, opt,
                     num_epochs, desc=f"supervised {budget_name(labels_per_class)}/class", progress=progress)

    config = {"task": "supervised", "labels_per_class": labels_per_class, "dataset": profile.dataset,
              "backbone": profile.backbone, "width": profile.width, "batch_size": batch_size,
              "num_epochs": num_epochs, "lr": profile.lr, "weight_decay": profile.weight_decay, "seed": profile.seed}
    history = load_or_train("supervised", config, model, run)
    return backbone, history


def baselines(train_data: ImageData, test_data: ImageData, profile: Profile, device: torch.device | None = None,
              progress: bool = True) -> list[Evaluation]:
    """Evaluations of raw pixels, the random-init backbone and the supervised backbone (cached)."""
    device = device or get_device()
    config = {"profile": profile.as_dict(), "train": len(train_data), "test": len(test_data)}

    def compute() -> dict:
        rows = [evaluate("raw pixels", pixels, train_data, test_data, profile)]
        torch.manual_seed(profile.seed)
        random_backbone = build_backbone(profile, train_data.images.shape[1]).to(device).eval()
        rows.append(evaluate("random init", random_backbone, train_data, test_data, profile))
        supervised = Evaluation("supervised")
        for n in profile.labels_per_class:
            backbone, _ = train_supervised(train_data, profile, n, device, progress)
            h_train = extract_features(backbone, train_data.images)
            h_test = extract_features(backbone, test_data.images)
            idx = sample_per_class(train_data.labels, n, profile.seed)
            supervised.probe[budget_name(n)] = linear_probe_accuracy(
                h_train[idx], train_data.labels[idx], h_test, test_data.labels, profile.probe_weight_decay)
            if n is None:
                supervised.knn = knn_accuracy(h_train, train_data.labels, h_test, test_data.labels, profile.knn_k)
        rows.append(supervised)
        return {"rows": [r.as_dict() for r in rows]}

    return [Evaluation.from_dict(r) for r in load_or_compute("baselines", config, compute)["rows"]]
